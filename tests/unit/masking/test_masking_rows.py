"""DataRow masking: text and binary formats, types, column rules, lineage, fail-closed."""

from __future__ import annotations

import json
import struct
from collections import Counter
from decimal import Decimal

import pytest
from masking_samples import CUSTOMERS, KEY, digits, leaks, masker

from pgwarden.masking import NO_COUNTS, Masker, MaskingFailure, load_masking
from pgwarden.protocol.messages import Column, DataRow, RowDescription

CUSTOMERS_OID = 16384
ORDERS_OID = 16390
TABLES = {CUSTOMERS_OID: "customers", ORDERS_OID: "orders"}
CUSTOMER_COLS = {1: "id", 2: "name", 3: "email", 4: "ssn", 5: "card_number", 6: "phone",
                 7: "created_at"}  # fmt: skip


def resolve(table_oid: int, attnum: int) -> tuple[str, str] | None:
    if table_oid == CUSTOMERS_OID:
        return "public.customers", CUSTOMER_COLS[attnum]
    if table_oid == ORDERS_OID:
        return "orders", {1: "id", 2: "customer_id", 3: "amount"}[attnum]
    return None


def col(name: str, type_oid: int = 25, fmt: int = 0, table: int = 0, attnum: int = 0) -> Column:
    return Column(name, table, attnum, type_oid, -1, -1, fmt)


def desc(*cols: Column) -> RowDescription:
    return RowDescription.build(cols)


def customers_desc(fmt: int = 0) -> RowDescription:
    types = {1: 23, 2: 25, 3: 25, 4: 25, 5: 25, 6: 25, 7: 1184}
    return desc(*(col(n, types[a], fmt, CUSTOMERS_OID, a) for a, n in CUSTOMER_COLS.items()))


def customer_row(c: dict[str, str]) -> DataRow:
    return DataRow.build(
        [c["id"].encode(), c["name"].encode(), c["email"].encode(), c["ssn"].encode(),
         c["card"].encode(), c["phone"].encode(), b"2023-01-01 00:00:00+00"]
    )  # fmt: skip


def test_select_star_from_customers_text() -> None:
    rows = masker().for_columns(customers_desc(), resolve)
    total: Counter[str] = Counter()
    for c in CUSTOMERS:
        row = customer_row(c)
        out, counts = rows.mask_datarow(row)
        total.update(counts)
        assert leaks(out.raw) == []
        v = out.values()
        assert v[0] == c["id"].encode()
        assert v[1] == c["name"].encode()
        assert v[5] == c["phone"].encode()
        assert v[6] == b"2023-01-01 00:00:00+00"
        assert v[2] is not None and len(v[2]) == len(c["email"])
        assert v[4] is not None and len(v[4]) == len(c["card"])
        assert v[3] == b"***-**-****"
    n = len(CUSTOMERS)
    assert total == Counter({"card": n, "ssn": n, "email": n})


def test_ordinary_rows_are_the_same_object() -> None:
    rows = masker().for_columns(customers_desc(), resolve)
    row = DataRow.build([b"1", b"Ada Lovelace", b"no mail", b"n/a", b"none", b"+1-202-555-0100",
                         b"2023-01-01 00:00:00+00"])  # fmt: skip
    out, counts = rows.mask_datarow(row)
    assert out is row and counts is NO_COUNTS and not counts
    outs, counts = rows.mask_datarows([row, row])
    assert outs[0] is row and outs[1] is row and counts is NO_COUNTS
    with pytest.raises(TypeError):
        NO_COUNTS["card"] = 1


def test_batch_masks_like_one_by_one() -> None:
    rows = masker().for_columns(customers_desc(), resolve)
    msgs = [customer_row(c) for c in CUSTOMERS[:10]]
    plain = DataRow.build([b"1", b"x", b"y", b"z", b"w", b"v", b"u"])
    batch, counts = rows.mask_datarows([plain, *msgs])
    assert batch[0] is plain
    assert [b.raw for b in batch[1:]] == [rows.mask_datarow(m)[0].raw for m in msgs]
    assert counts == Counter({"card": 10, "ssn": 10, "email": 10})


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x02" + struct.pack("!i", 15) + b"ada@example.com" + b"\x00\x00",  # cut length
        b"\x00\x01" + struct.pack("!i", 40) + b"ada@example.com",  # value past the end
        b"\x00\x03" + struct.pack("!i", 15) + b"ada@example.com",  # values missing
    ],
    ids=["cut-length", "value-overruns", "values-missing"],
)
def test_a_malformed_row_holding_a_value_fails_closed(body: bytes) -> None:
    # DataRow's own decoder would refuse these; the masking reads rows in place and must
    # refuse them too, not pass the e-mail on
    raw = b"D" + struct.pack("!i", len(body) + 4) + body
    rows = masker().for_columns(None)
    with pytest.raises(MaskingFailure):
        rows.mask_datarow(DataRow(raw))
    with pytest.raises(MaskingFailure):
        rows.mask_datarows([DataRow(raw)])


def test_masking_off_passes_everything() -> None:
    rows = masker({"detectors": [], "columns": []}).for_columns(customers_desc(), resolve)
    assert not rows.active
    row = customer_row(CUSTOMERS[0])
    assert rows.mask_datarow(row)[0] is row


def test_binary_formats() -> None:
    card = int(digits(CUSTOMERS[0]["card"]))
    numeric_card = _numeric_binary(Decimal(card))
    d = desc(
        col("id", 23, 1), col("email", 25, 1), col("card8", 20, 1), col("big", 20, 1),
        col("amount", 1700, 1), col("card_num", 1700, 1), col("doc", 3802, 1),
        col("j", 114, 1),
    )  # fmt: skip
    row = DataRow.build(
        [struct.pack("!i", 7), b"ada@example.com", struct.pack("!q", card),
         struct.pack("!q", 1_700_000_000_000), _numeric_binary(Decimal("1234.50")),
         numeric_card, b'\x01{"card": "4111 1111 1111 1111", "n": 5}',
         b'{"mail": "ADA@EXAMPLE.COM"}']
    )  # fmt: skip
    out, counts = masker().for_columns(d).mask_datarow(row)
    v = out.values()
    assert v[0] == struct.pack("!i", 7)
    assert v[1] == b"***@*******.***"
    assert v[2] is None  # redact: an int8 cannot hold a masked card number
    assert v[3] == struct.pack("!q", 1_700_000_000_000)
    assert v[4] == _numeric_binary(Decimal("1234.50"))
    assert v[5] is None
    assert v[6] == b'\x01{"card": "**** **** **** ****", "n": 5}'
    assert v[7] == b'{"mail": "***@*******.***"}'
    assert counts == Counter({"card": 3, "email": 2})

    hashed, _ = masker({"strategy": "hash"}).for_columns(d).mask_datarow(row)
    h = hashed.values()[2]
    assert h is not None and len(h) == 8
    (number,) = struct.unpack("!q", h)
    assert len(str(number)) == 16 and str(number)[0] == "1"
    assert str(card) not in str(number)


def _numeric_binary(value: Decimal) -> bytes:
    sign, digit_tuple, exp = value.as_tuple()
    assert isinstance(exp, int)
    text = "".join(map(str, digit_tuple))
    scale = max(0, -exp)
    int_digits = text[: len(text) - scale] if scale else text + "0" * exp
    frac_digits = text[len(text) - scale :] if scale else ""
    int_digits = int_digits.lstrip("0")
    pad_int = "0" * (-len(int_digits) % 4) + int_digits
    pad_frac = frac_digits + "0" * (-len(frac_digits) % 4)
    groups = [int(pad_int[i : i + 4]) for i in range(0, len(pad_int), 4)]
    weight = len(groups) - 1
    groups += [int(pad_frac[i : i + 4]) for i in range(0, len(pad_frac), 4)]
    while groups and groups[-1] == 0:
        groups.pop()
    head = struct.pack("!hhHH", len(groups), weight, 0x4000 if sign else 0, scale)
    return head + b"".join(struct.pack("!H", g) for g in groups)


def test_text_types_stay_valid() -> None:
    d = desc(
        col("j", 114), col("jb", 3802), col("n", 20), col("amount", 1700), col("arr", 1016),
        col("tarr", 1009), col("rng", 3926), col("b", 17), col("x", 142), col("rec", 2249),
        col("f", 701),
    )  # fmt: skip
    row = DataRow.build(
        [
            b'{"card": 4111111111111111, "email": "ada@example.com", "n": [5, 6]}',
            b'{"a": {"b": 378282246310005}}',
            b"4111111111111111",
            b"4111111111111111.00",
            b"{1,4111111111111111,3}",
            b'{ada@example.com,"4111 1111 1111 1111",NULL}',
            b"[4111111111111111,4111111111111112)",
            b"\\x" + b"ada@example.com".hex().encode(),
            b"<c><email>ada@example.com</email><ssn>332-20-6469</ssn></c>",
            b'(1,"Ada Lovelace",ada.lovelace@example.com,332-20-6469,4111111111111111)',
            b"4.111111111111111e+15",
        ]
    )
    out, _ = masker().for_columns(d).mask_datarow(row)
    v = out.values()
    assert json.loads(v[0] or b"") == {"card": None, "email": "***@*******.***", "n": [5, 6]}
    assert json.loads(v[1] or b"") == {"a": {"b": None}}
    assert v[2] is None and v[3] is None
    assert v[4] == b"{1,NULL,3}"
    assert v[5] == b'{***@*******.***,"**** **** **** ****",NULL}'
    assert v[6] is None
    assert v[7] is not None and bytes.fromhex(v[7][2:].decode()) == b"***@*******.***"
    assert v[8] == b"<c><email>***@*******.***</email><ssn>***-**-****</ssn></c>"
    assert v[9] == b'(1,"Ada Lovelace",***.********@*******.***,***-**-****,****************)'
    assert v[10] == b"4.111111111111111e+15"  # a float cannot carry the digits: left alone
    assert leaks(out.raw) == []

    hashed, _ = masker({"strategy": "hash"}).for_columns(d).mask_datarow(row)
    h = hashed.values()
    doc = json.loads(h[0] or b"")
    assert isinstance(doc["card"], int) and len(str(doc["card"])) == 16
    assert (h[2] or b"").isdigit() and len(h[2] or b"") == 16
    assert (h[3] or b"").endswith(b".00")
    assert (h[4] or b"").startswith(b"{1,1") and (h[4] or b"").endswith(b",3}")


def test_bytea_alone_in_a_row() -> None:
    """bytea in hex hides its content from the row pre-check: it is decoded on every row."""
    d = desc(col("b", 17), col("id", 23))
    row = DataRow.build([b"\\x" + b"Ada@Example.com".hex().encode(), b"1"])
    out, counts = masker().for_columns(d).mask_datarow(row)
    assert bytes.fromhex((out.values()[0] or b"")[2:].decode()) == b"***@*******.***"
    assert counts == Counter({"email": 1})
    plain = DataRow.build([b"\\x" + b"hello".hex().encode(), b"1"])
    assert masker().for_columns(d).mask_datarow(plain)[0] is plain


def test_column_rules_follow_lineage_not_names() -> None:
    m = masker({"columns": ["customers.name", "*.card_number"], "detectors": []})
    d = desc(
        col("who", 25, 0, CUSTOMERS_OID, 2),  # SELECT name AS who
        col("name", 25, 0, 0, 0),  # a computed column called name: no lineage, name fallback
        col("name", 25, 0, ORDERS_OID, 1),  # orders.id aliased to name: lineage says no
        col("cc", 25, 0, CUSTOMERS_OID, 5),  # *.card_number by lineage
        col("card_number", 25, 0, 0, 0),  # *.card_number by output name
        col("name", 25, 0, 99999, 1),  # unresolvable lineage: falls back to the name
    )
    rows = m.for_columns(d, resolve)
    assert rows.rule_columns == {
        0: "customers.name",
        1: "customers.name",
        3: "*.card_number",
        4: "*.card_number",
        5: "customers.name",
    }
    row = DataRow.build([b"Ada Lovelace", b"Ada", b"7", b"4111 x", b"abc", b"Bob"])
    out, counts = rows.mask_datarow(row)
    assert out.values() == (b"*** ********", b"***", b"7", b"**** *", b"***", b"***")
    assert counts == Counter({"column:customers.name": 3, "column:*.card_number": 2})


def test_column_rules_without_resolver_use_names() -> None:
    m = masker({"columns": ["customers.ssn"], "detectors": []})
    d = desc(col("ssn", 25, 0, CUSTOMERS_OID, 4), col("x", 25, 0, CUSTOMERS_OID, 4))
    out, _ = m.for_columns(d).mask_datarow(DataRow.build([b"123456789", b"123456789"]))
    assert out.values() == (b"*********", b"123456789")


def test_column_rules_per_type() -> None:
    d = desc(
        col("t", 25), col("n", 23), col("j", 3802), col("d", 1082), col("tb", 25, 1),
        col("nb", 23, 1), col("jb", 3802, 1), col("u", 2950, 1), col("e", 99999),
        col("eb", 99999, 1),
    )  # fmt: skip
    row = DataRow.build([b"secret", b"12345", b'{"a": 1}', b"2023-01-01", b"secret",
                         struct.pack("!i", 12345), b'\x01{"a": 1}', b"\x00" * 16, b"(1,x)",
                         b"\x00\x01"])  # fmt: skip
    cfg = {"columns": ["*"], "detectors": []}
    out, counts = masker(cfg).for_columns(d).mask_datarow(row)
    assert out.values() == (b"******", None, b'"***"', None, b"******", None, b'\x01"***"', None,
                            b"(*,*)", None)  # fmt: skip
    assert counts == Counter({"column:*": 10})
    out, _ = masker({**cfg, "strategy": "hash"}).for_columns(d).mask_datarow(row)
    v = out.values()
    assert v[0] is not None and v[0].isalpha() and len(v[0]) == 6
    assert v[1] is not None and v[1].isdigit() and len(v[1]) == 5 and v[1] != b"12345"
    assert v[2] is not None and json.loads(v[2]) != {"a": 1}
    assert v[5] is not None and len(v[5]) == 4 and v[5] != struct.pack("!i", 12345)
    out, _ = masker({**cfg, "strategy": "partial"}).for_columns(d).mask_datarow(row)
    assert out.values()[0] == b"**cret"


def test_expressions_over_tables_with_rules() -> None:
    """With the statement's tables known, computed text-like columns of a statement that
    reads a table with a table-qualified rule are masked whole; numbers are not."""
    m = masker({"columns": ["customers.name", "*.secret"], "detectors": []})
    d = desc(col("upper"), col("row_to_json", 114), col("count", 20), col("c", 2249),
             col("id", 23, 0, CUSTOMERS_OID, 1))  # fmt: skip
    row = DataRow.build([b"ADA LOVELACE", b'{"name": "Ada"}', b"47", b"(1,Ada)", b"1"])
    out, counts = m.for_columns(d, resolve, reads=["public.customers"]).mask_datarow(row)
    assert out.values() == (b"*** ********", b'"***"', b"47", b"(*,***)", b"1")
    assert counts == Counter({"column:customers.name": 3})
    for reads in (["orders"], None):  # no rule on the tables read, or tables unknown
        rows = m.for_columns(d, resolve, reads=reads)
        assert rows.mask_datarow(row)[0] is row


def test_computed_columns() -> None:
    """table OID 0: content detectors apply, and a text value of exactly nine digits that is
    a valid SSN is one (replace(ssn, '-', '')); a table column of nine digits is not."""
    d = desc(col("replace"), col("zip", 25, 0, ORDERS_OID, 2), col("count", 20),
             col("upper"), col("concat"), col("?column?", 25))  # fmt: skip
    row = DataRow.build([b"332206469", b"332206469", b"332206469", b"ADA@EXAMPLE.COM",
                         b"Ada 4111111111111111", b"900123456"])  # fmt: skip
    out, counts = masker().for_columns(d, resolve).mask_datarow(row)
    assert out.values() == (b"*********", b"332206469", b"332206469", b"***@*******.***",
                            b"Ada ****************", b"900123456")  # fmt: skip
    assert counts == Counter({"ssn": 1, "email": 1, "card": 1})


def test_ssn_named_columns_mask_bare_digits() -> None:
    d = desc(col("ssn", 25, 0, CUSTOMERS_OID, 4), col("tax_id", 23, 1), col("ssn_int", 23),
             col("social_security_no", 20, 1), col("note", 25, 0, ORDERS_OID, 2))  # fmt: skip
    row = DataRow.build([b"332206469", struct.pack("!i", 50108780), b"50108780",
                         struct.pack("!q", 332206469), b"332206469"])  # fmt: skip
    out, counts = masker().for_columns(d, resolve).mask_datarow(row)
    assert out.values() == (b"*********", None, None, None, b"332206469")
    assert counts == Counter({"ssn": 4})


def test_unknown_columns() -> None:
    rows = masker().for_columns(None)
    row = DataRow.build([b"ada@example.com", b"\x00\x00\x00\x01", None])
    out, counts = rows.mask_datarow(row)
    assert out.values() == (b"***@*******.***", b"\x00\x00\x00\x01", None)
    assert counts == Counter({"email": 1})
    with pytest.raises(MaskingFailure):
        masker({"columns": ["*.ssn"]}).for_columns(None).mask_datarow(DataRow.build([b"x"]))


def test_binary_in_place_masking_keeps_lengths_or_withholds() -> None:
    # a binary array of text (1009): elements are length-prefixed, so replacements keep size
    elem = b"ada@example.com"
    arr = struct.pack("!iiI", 1, 0, 25) + struct.pack("!ii", 1, 1) + struct.pack("!i", 15) + elem
    cfg = {"detectors": [], "custom": [{"name": "umlaut", "pattern": "J\u00f6rg"}]}
    d = desc(col("a", 1009, 1), col("b", 1009, 1))
    out, _ = masker().for_columns(desc(col("a", 1009, 1))).mask_datarow(DataRow.build([arr]))
    assert out.values()[0] == arr[:-15] + b"***@*******.***"
    # a replacement that would change a length inside a binary value withholds it
    out, counts = (
        masker(cfg).for_columns(d).mask_datarow(DataRow.build(["J\u00f6rg".encode(), b"ok"]))
    )
    assert out.values() == (None, b"ok") and counts == Counter({"umlaut": 1})


def test_detection_across_joined_values_is_redone_per_value() -> None:
    """Values of a row are scanned in one pass, joined by NUL bytes; a custom pattern that
    matches across that join must not mask (or corrupt) either value."""
    m = masker({"custom": [{"name": "pair", "pattern": "(?s)ab.cd"}]})
    rows = m.for_columns(desc(col("a"), col("b"), col("c")))
    row = DataRow.build([b"xab", b"cdx", b"ab-cd"])
    out, counts = rows.mask_datarow(row)
    assert out.values() == (b"xab", b"cdx", b"**-**")
    assert counts == Counter({"pair": 1})


def test_private_key_block_running_past_its_value_masks_only_its_value() -> None:
    """A private-key block without its END line runs to the end of what is scanned: in a run
    of rows scanned joined it must not swallow the values after it; each value comes out
    exactly as it does alone."""
    m = masker({"detectors": ["secrets", "email"]})
    rows = m.for_columns(desc(col("a"), col("b")))
    key = b"-----BEGIN RSA PRIVATE KEY-----MIIEowIBAAKCAQEA"
    first = DataRow.build([key, b"kept as it is"])
    second = DataRow.build([b"mail ada@example.com", b"also kept"])
    together, counts = rows.mask_datarows([first, second])
    alone = [rows.mask_datarow(r)[0] for r in (first, second)]
    assert [r.values() for r in together] == [r.values() for r in alone]
    assert together[0].values()[1] == b"kept as it is"
    assert together[1].values() == (b"mail ***@*******.***", b"also kept")
    assert counts == Counter({"secrets": 1, "email": 1})


def test_anchored_custom_patterns_match_each_value() -> None:
    """A custom pattern anchored to the value (``^...$``) masks every column holding such a
    value, alone in its row or not, one row or a run of rows. (Values were once scanned
    joined, where ``^`` and ``$`` only matched at the ends of the joined buffer.)"""
    m = masker({"custom": [{"name": "emp", "pattern": "^EMP-[0-9]{6}$"}]})
    rows = m.for_columns(desc(col("a"), col("b"), col("c")))
    row = DataRow.build([b"EMP-123456", b"x EMP-123456", b"EMP-654321"])
    out, counts = rows.mask_datarow(row)
    assert out.values() == (b"***-******", b"x EMP-123456", b"***-******")
    assert counts == Counter({"emp": 2})
    batch, counts = rows.mask_datarows([row, DataRow.build([b"a", b"b", b"EMP-000001"])])
    assert [r.values() for r in batch] == [
        (b"***-******", b"x EMP-123456", b"***-******"),
        (b"a", b"b", b"***-******"),
    ]
    assert counts == Counter({"emp": 3})


def test_formats_from_bind() -> None:
    d = desc(col("n", 20), col("e"))  # described before Bind: format codes 0
    m = masker()
    row = DataRow.build([struct.pack("!q", 4111111111111111), b"ada@example.com"])
    out, _ = m.for_columns(d, formats=[1]).mask_datarow(row)
    assert out.values() == (None, b"***@*******.***")
    with pytest.raises(MaskingFailure):
        m.for_columns(d, formats=[1, 0, 1])


def test_fail_closed() -> None:
    m = masker({"columns": ["customers.ssn"]})

    def broken(table_oid: int, attnum: int) -> tuple[str, str] | None:
        raise RuntimeError("catalog unavailable")

    with pytest.raises(MaskingFailure):
        m.for_columns(customers_desc(), broken)
    rows = masker().for_columns(desc(col("a"), col("b")))
    with pytest.raises(MaskingFailure):
        rows.mask_datarow(DataRow.build([b"ada@example.com"]))  # one value for two columns
    bad = DataRow(b"D" + struct.pack("!ih", 10, 1) + struct.pack("!i", 50) + b"x@y.z")
    with pytest.raises(MaskingFailure):
        masker().for_columns(None).mask_datarow(bad)
    # a bad binary integer in a column that must be checked
    with pytest.raises(MaskingFailure):
        masker().for_columns(desc(col("n", 20, 1))).mask_datarow(DataRow.build([b"123"]))


def test_hash_strategy_joins() -> None:
    rows = masker({"strategy": "hash"}).for_columns(desc(col("a"), col("b")))
    out, _ = rows.mask_datarow(DataRow.build([b"ada@example.com", b"ADA@example.com"]))
    a, b = out.values()
    assert a == b and a is not None and b"ada" not in a
    other = masker({"strategy": "hash"}, key=KEY + b"2").for_columns(desc(col("a"), col("b")))
    out2, _ = other.mask_datarow(DataRow.build([b"ada@example.com", b"x"]))
    assert out2.values()[0] != a


def test_whole_row_reference_of_a_protected_table_is_masked_whole() -> None:
    # `SELECT c FROM customers c`: RowDescription names the table's OID with attribute 0
    m = Masker(load_masking({"columns": ["public.customers.name"]}), b"k" * 32)
    desc = RowDescription.build((Column("c", 16386, 0, 16388, -1, -1, 0),))
    rows = m.for_columns(desc, lambda oid, att: None, reads=frozenset({"customers"}))
    out, counts = rows.mask_datarow(DataRow.build((b'(1,"Ada Lovelace")',)))
    assert b"Ada" not in out.raw
    assert counts == {"column:public.customers.name": 1}


def test_can_pass_only_rows_with_nothing_to_mask() -> None:
    m = Masker(load_masking("default"), b"k" * 32)
    desc = RowDescription.build((Column("name", 0, 0, 25, -1, -1, 0),))
    rows = m.for_columns(desc, None)
    clean = b"".join(DataRow.build((b"Ada %d" % i,)).raw for i in range(50))
    assert rows.can_pass(clean)
    dirty = clean + DataRow.build((b"ada@example.com",)).raw
    assert not rows.can_pass(dirty)
    # a computed text column of nine digits may be an SSN: always looked at
    assert not rows.can_pass(DataRow.build((b"332206469",)).raw)
    # column rules with unknown columns: never passed unseen
    ruled = Masker(load_masking({"columns": ["*.name"]}), b"k" * 32)
    assert not ruled.for_columns(None).can_pass(clean)
