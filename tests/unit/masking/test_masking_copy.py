"""COPY ... TO STDOUT: text, CSV and binary, rows split across CopyData messages."""

from __future__ import annotations

import csv
import io
import struct
from collections import Counter

import pytest
from masking_samples import CUSTOMERS, leaks, masker

from pgwarden.masking import CopyMasker, MaskingFailure
from pgwarden.masking.copy import SIGNATURE
from pgwarden.protocol.messages import CopyData

COLUMNS = [("customers", n) for n in ("id", "name", "email", "ssn", "card_number", "phone")]


def text_line(c: dict[str, str]) -> bytes:
    fields = [c["id"], c["name"], c["email"], c["ssn"], c["card"], c["phone"]]
    return "\t".join(fields).encode() + b"\n"


def csv_line(c: dict[str, str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(
        [c["id"], c["name"], c["email"], c["ssn"], c["card"], c["phone"]]
    )
    return out.getvalue().encode()


def run(cm: CopyMasker, messages: list[bytes]) -> tuple[bytes, Counter[str], list[CopyData | None]]:
    outs = []
    total: Counter[str] = Counter()
    for data in messages:
        out, counts = cm.feed(CopyData.build(data))
        outs.append(out)
        total.update(counts)
    end, _ = cm.end()
    assert end is None
    return b"".join(o.data for o in outs if o is not None), total, outs


def test_text_copy_one_row_per_message() -> None:
    lines = [text_line(c) for c in CUSTOMERS]
    data, counts, _outs = run(masker().for_copy(0, [0] * 6), lines)
    assert leaks(data) == []
    n = len(CUSTOMERS)
    assert counts == Counter({"card": n, "ssn": n, "email": n})
    out_lines = data.split(b"\n")[:-1]
    assert len(out_lines) == len(CUSTOMERS)
    for c, line in zip(CUSTOMERS, out_lines, strict=True):
        f = line.split(b"\t")
        assert f[0] == c["id"].encode() and f[1] == c["name"].encode()
        assert f[5] == c["phone"].encode()
        assert len(f[4]) == len(c["card"])


def test_text_copy_unchanged_messages_are_the_same_object() -> None:
    cm = masker().for_copy(0, [0, 0])
    msg = CopyData.build(b"1\tAda Lovelace\n2\tAlan\n")
    out, counts = cm.feed(msg)
    assert out is msg and not counts


def test_text_copy_rows_split_across_messages() -> None:
    blob = b"".join(text_line(c) for c in CUSTOMERS[:8])
    pieces = [blob[i : i + 7] for i in range(0, len(blob), 7)]
    data, counts, outs = run(masker().for_copy(0), pieces)
    whole, _, _ = run(masker().for_copy(0), [blob])
    assert data == whole
    assert leaks(data) == []
    assert None in outs  # bytes of unfinished rows were held back
    assert counts["card"] == 8


def test_text_copy_unfinished_row_is_refused() -> None:
    cm = masker().for_copy(0)
    out, _ = cm.feed(CopyData.build(b"1\tada@exam"))
    assert out is None
    with pytest.raises(MaskingFailure):
        cm.end()


def test_csv_copy_with_quotes_and_multiline_fields() -> None:
    rows = [csv_line(c) for c in CUSTOMERS[:5]]
    rows.append(b'99,"Quoted, ""name""","multi\nline ada@example.com",x,"4111 1111\n1111 1111",y\n')
    blob = b"".join(rows)
    pieces = [blob[i : i + 11] for i in range(0, len(blob), 11)]
    cm = masker({"columns": ["customers.name"]}).for_copy(0, columns=COLUMNS, csv=True)
    data, counts, _ = run(cm, pieces)
    parsed = list(csv.reader(io.StringIO(data.decode())))
    assert len(parsed) == 6
    assert [r[0] for r in parsed] == [c["id"] for c in CUSTOMERS[:5]] + ["99"]
    assert parsed[5][1] == '******, "****"'  # quoting intact: still one field
    assert parsed[5][2] == "multi\nline ***@*******.***"
    assert parsed[5][4] == "4111 1111\n1111 1111"  # split by a newline: not a card
    assert leaks(data) == []
    assert counts["column:customers.name"] == 6


def test_csv_copy_without_rules_split_inside_a_quoted_field() -> None:
    blob = b'1,"a\nada@example.com, and\n4111 1111 1111 1111",x\n2,plain,y\n'
    pieces = [blob[:9], blob[9:30], blob[30:]]
    data, counts, _ = run(masker().for_copy(0, csv=True), pieces)
    assert data == b'1,"a\n***@*******.***, and\n**** **** **** ****",x\n2,plain,y\n'
    assert counts == Counter({"email": 1, "card": 1})


def test_text_copy_column_rules() -> None:
    cm = masker({"columns": ["*.name"]}).for_copy(0, columns=COLUMNS, csv=False)
    lines = [b"1\tAda\\tLovelace\tx\ty\tz\tw\n", b"2\t\\N\tx\ty\tz\tw\n"]
    data, counts, _ = run(cm, lines)
    assert data == b"1\t***\\t********\tx\ty\tz\tw\n2\t\\N\tx\ty\tz\tw\n"
    assert counts == Counter({"column:*.name": 1})
    with pytest.raises(MaskingFailure):
        run(cm.__class__(cm._masker, 0, columns=COLUMNS, csv=False), [b"1\t2\n"])  # 2 fields


def test_copy_rules_need_columns_and_format() -> None:
    m = masker({"columns": ["customers.ssn"]})
    with pytest.raises(MaskingFailure):
        m.for_copy(0)
    with pytest.raises(MaskingFailure):
        m.for_copy(0, columns=COLUMNS)  # text or CSV?
    m.for_copy(0, columns=[("products", "sku")])  # no rule matches: no need to know
    m.for_copy(1, columns=COLUMNS)  # binary needs no CSV flag


def _tuple(values: list[bytes | None]) -> bytes:
    out = struct.pack("!h", len(values))
    for v in values:
        out += struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v
    return out


def _binary_stream(rows: list[list[bytes | None]]) -> bytes:
    head = SIGNATURE + struct.pack("!ii", 0, 0)
    return head + b"".join(_tuple(r) for r in rows) + struct.pack("!h", -1)


def test_binary_copy() -> None:
    rows: list[list[bytes | None]] = [
        [struct.pack("!i", int(c["id"])), c["name"].encode(), c["email"].encode(),
         c["ssn"].encode(), c["card"].encode(), None]
        for c in CUSTOMERS[:6]
    ]  # fmt: skip
    blob = _binary_stream(rows)
    types = [23, 25, 25, 25, 25, 25]
    # as PostgreSQL sends it: header with the first row, then a row per message, trailer
    first = len(SIGNATURE) + 8 + len(_tuple(rows[0]))
    msgs = [blob[:first]]
    pos = first
    for r in rows[1:]:
        msgs.append(blob[pos : pos + len(_tuple(r))])
        pos += len(_tuple(r))
    msgs.append(blob[pos:])
    data, counts, _outs = run(masker().for_copy(1, [1] * 6, column_types=types), msgs)
    assert leaks(data) == []
    assert len(data) == len(blob)  # same-shape replacements keep every length
    assert counts == Counter({"card": 6, "ssn": 6, "email": 6})
    # the same stream cut at every 5th byte (a tuple split across messages) gives the same
    cut = [blob[i : i + 5] for i in range(0, len(blob), 5)]
    data2, counts2, outs2 = run(masker().for_copy(1, column_types=types), cut)
    assert data2 == data and counts2 == counts
    assert None in outs2


def test_binary_copy_types_and_rules() -> None:
    card = 4111111111111111
    rows: list[list[bytes | None]] = [
        [struct.pack("!q", card), b"Ada", struct.pack("!i", 5)],
        [struct.pack("!q", 42), b"Bob", None],
    ]
    blob = _binary_stream(rows)
    cm = masker({"columns": ["*.name"]}).for_copy(
        1, columns=["n", "name", "k"], column_types=[20, 25, 23]
    )
    data, counts, _ = run(cm, [blob])
    expected = _binary_stream([[None, b"***", struct.pack("!i", 5)],
                               [struct.pack("!q", 42), b"***", None]])  # fmt: skip
    assert data == expected
    assert counts == Counter({"card": 1, "column:*.name": 2})


def test_binary_copy_unchanged_is_the_same_object() -> None:
    blob = _binary_stream([[b"Ada", b"1"]])
    msg = CopyData.build(blob)
    cm = masker().for_copy(1)
    out, _ = cm.feed(msg)
    assert out is msg
    assert cm.end() == (None, Counter())


@pytest.mark.parametrize(
    "stream",
    [
        b"NOTCOPY\n\xff\r\n\x00" + b"\x00" * 8 + _tuple([b"x"]),
        SIGNATURE + struct.pack("!ii", 1, 0),  # an unknown critical flag
        SIGNATURE + struct.pack("!ii", 1 << 16, 0),  # OIDs
        SIGNATURE + struct.pack("!ii", 0, 0) + struct.pack("!hi", 1, -5),
        SIGNATURE + struct.pack("!ii", 0, 0) + struct.pack("!h", -1) + _tuple([b"x"]),
    ],
)
def test_binary_copy_fails_closed(stream: bytes) -> None:
    cm = masker().for_copy(1)
    with pytest.raises(MaskingFailure):
        cm.feed(CopyData.build(stream))
        cm.end()


def test_binary_copy_truncated() -> None:
    cm = masker().for_copy(1)
    cm.feed(CopyData.build(SIGNATURE + struct.pack("!ii", 0, 0) + _tuple([b"x"])))
    with pytest.raises(MaskingFailure):
        cm.end()  # no trailer
    cm = masker().for_copy(1, column_types=[25, 25])
    with pytest.raises(MaskingFailure):
        cm.feed(CopyData.build(SIGNATURE + struct.pack("!ii", 0, 0) + _tuple([b"x"])))


@pytest.mark.parametrize("csv_format", [False, True])
def test_anchored_custom_patterns_match_each_field(csv_format: bool) -> None:
    """A custom pattern anchored to the value (``^...$``) masks each COPY field that is such
    a value (a quoted CSV field inside its quotes), row by row or a run of rows at once."""
    m = masker({"custom": [{"name": "emp", "pattern": "^EMP-[0-9]{6}$"}]})
    sep = b"," if csv_format else b"\t"
    last, masked_last = (
        (b'"EMP-654321"', b'"***-******"') if csv_format else (b"EMP-654321", b"***-******")
    )
    first = sep.join([b"EMP-123456", b"x EMP-123456", last])
    second = sep.join([b"a", b"EMP-000001", b"ada@example.com"])
    expected = [
        sep.join([b"***-******", b"x EMP-123456", masked_last]),
        sep.join([b"a", b"***-******", b"***@*******.***"]),
    ]
    cm = m.for_copy(0, [0, 0, 0], csv=csv_format, delimiter=sep)
    alone = [cm.feed(CopyData.build(line + b"\n")) for line in (first, second)]
    assert [fwd.data for fwd, _ in alone if fwd is not None] == [e + b"\n" for e in expected]
    cm = m.for_copy(0, [0, 0, 0], csv=csv_format, delimiter=sep)
    together, counts = cm.feed_many([CopyData.build(first + b"\n"), CopyData.build(second + b"\n")])
    assert [fwd.data for fwd in together] == [e + b"\n" for e in expected]
    assert counts == Counter({"emp": 3, "email": 1})


def test_copy_run_masked_together_as_one_by_one() -> None:
    """``feed_many`` (one detector pass over a run of messages) forwards what ``feed`` of each
    message in turn forwards: the same bytes, unchanged messages as the same objects, rows
    split across messages held until complete, and the same counts."""
    lines = [text_line(c) for c in CUSTOMERS[:20]]
    plain = [b"%d\tnothing here\t12.50\n" % i for i in range(5)]
    data = [lines[0], plain[0], lines[1][:7], lines[1][7:], *plain[1:], *lines[2:]]
    msgs = [CopyData.build(d) for d in data]

    def passed(out: list[CopyData]) -> list[bool]:
        return [any(o is m for m in msgs) for o in out]

    for split_at in range(len(data) + 1):
        one = m_default.for_copy(0, [0] * 7)
        expected, want = [], Counter()
        for msg in msgs:
            fwd, counts = one.feed(msg)
            want.update(counts)
            if fwd is not None:
                expected.append(fwd)
        many = m_default.for_copy(0, [0] * 7)
        got_a, ca = many.feed_many(msgs[:split_at])
        got_b, cb = many.feed_many(msgs[split_at:])
        got = got_a + got_b
        assert [g.raw for g in got] == [e.raw for e in expected]
        assert ca + cb == want
        assert passed(got) == passed(expected)
        assert any(passed(got)) and not all(passed(got))
    assert not leaks(b"".join(e.data for e in expected))


m_default = masker()
