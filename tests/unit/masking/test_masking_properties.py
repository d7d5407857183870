"""Hypothesis properties.

- Text carrying card numbers, SSNs and e-mails (in any layout the detectors promise to catch,
  among arbitrary other text) comes out with none of them: not raw, not as digits, and an
  independent oracle finds no Luhn-valid network-prefixed 13-19 digit run, no valid dashed
  SSN and no e-mail in the output.
- Ordinary text (words, short numbers, dates, amounts, phone numbers) comes out
  byte-identical, as the very same object.
- Masking is idempotent.
- Any DataRow, with any column types and formats, is masked or refused with MaskingFailure;
  nothing else escapes.
- A binary COPY stream cut anywhere masks exactly like the whole stream.
"""

from __future__ import annotations

import itertools
import re
import struct
from collections import Counter
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from masking_samples import masker

from pgwarden.masking import MaskingFailure, detectors, engine
from pgwarden.masking._common import SAME
from pgwarden.masking.copy import SIGNATURE
from pgwarden.protocol.messages import Column, CopyData, DataRow, RowDescription

MASKERS = {s: masker({"strategy": s}) for s in ("redact", "partial", "hash")}
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        v = int(ch)
        if i % 2 == 0:  # these get doubled once the check digit is appended
            v *= 2
            if v > 9:
                v -= 9
        total += v
    return str((10 - total % 10) % 10)


def oracle_luhn(d: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(d)):
        v = int(ch) * (2 if i % 2 else 1)
        total += v - 9 if v > 9 else v
    return total % 10 == 0


@st.composite
def cards(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    first = draw(st.sampled_from("23456"))
    body = first + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=length - 2,
                                         max_size=length - 2)))  # fmt: skip
    number = body + luhn_digit(body)
    assert oracle_luhn(number)
    sep = draw(st.sampled_from(["", " ", "-"]))
    if sep and length == 15 and draw(st.booleans()):
        return sep.join([number[:4], number[4:10], number[10:]])
    if sep and (length % 4 == 0 or length % 4 >= 3):
        return sep.join(number[i : i + 4] for i in range(0, length, 4))
    return number


@st.composite
def ssns(draw: st.DrawFn) -> str:
    area = draw(st.integers(1, 899).filter(lambda a: a != 666))
    group = draw(st.integers(1, 99))
    serial = draw(st.integers(1, 9999))
    return f"{area:03d}-{group:02d}-{serial:04d}"


@st.composite
def emails(draw: st.DrawFn) -> str:
    local = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,15}", fullmatch=True))
    labels = draw(st.lists(st.from_regex(r"[a-zA-Z0-9]{1,8}", fullmatch=True), min_size=1,
                           max_size=3))  # fmt: skip
    tld = draw(st.from_regex(r"[a-zA-Z]{2,6}", fullmatch=True))
    return f"{local}@{'.'.join(labels)}.{tld}"


SEPARATORS = st.sampled_from([" ", ", ", "\t", '"', "'", "(", ")", "<", ">", "{", "}", "[",
                              "]", ": ", "=", ";", " | ", "\n", "/"])  # fmt: skip
FILLER = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)

SSN_ORACLE = re.compile(r"(?<![0-9-])([0-9]{3})-([0-9]{2})-([0-9]{4})(?![0-9])")
EMAIL_ORACLE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def oracle_problems(text: str) -> list[str]:
    problems = []
    for m in re.finditer(r"[0-9]+", text):
        d = m.group()
        if 13 <= len(d) <= 19 and d[0] in "23456" and oracle_luhn(d):
            problems.append(d)
    for m in SSN_ORACLE.finditer(text):
        a, g, s = m.groups()
        if a not in ("000", "666") and a[0] != "9" and g != "00" and s != "0000":
            problems.append(m.group())
    problems += EMAIL_ORACLE.findall(text)
    return problems


@st.composite
def sensitive_text(draw: st.DrawFn) -> tuple[str, list[str]]:
    parts: list[str] = []
    secrets: list[str] = []
    for _ in range(draw(st.integers(1, 5))):
        parts.append(draw(FILLER))
        parts.append(draw(SEPARATORS))
        value = draw(st.one_of(cards(), ssns(), emails()))
        secrets.append(value)
        parts.append(value)
        parts.append(draw(SEPARATORS))
    parts.append(draw(FILLER))
    return "".join(parts), secrets


@SETTINGS
@given(sensitive_text(), st.sampled_from(sorted(MASKERS)))
def test_no_sensitive_value_survives(case: tuple[str, list[str]], strategy: str) -> None:
    text, secrets = case
    m = MASKERS[strategy]
    out, counts = m.mask_text(text)
    assert sum(counts.values()) >= 1
    lower = out.lower()
    for value in secrets:
        assert value.lower() not in lower, (value, out)
        if "@" not in value:
            assert "".join(c for c in value if c.isdigit()) not in out.replace(" ", "").replace(
                "-", ""
            ) or (strategy == "partial" and len(value) <= 4), (value, out)
    # what the independent oracle finds in the output was already in the filler around
    leftover = oracle_problems(out)
    assert all(p in text and not any(p in s or s in p for s in secrets) for p in leftover), (
        leftover, out,
    )  # fmt: skip
    # the same through a text DataRow column
    rows = m.for_columns(RowDescription.build([Column("v", 0, 0, 25, -1, -1, 0)]))
    row, _ = rows.mask_datarow(DataRow.build([text.encode()]))
    assert row.values()[0] == out.encode()


@SETTINGS
@given(sensitive_text())
def test_masking_is_idempotent(case: tuple[str, list[str]]) -> None:
    for m in MASKERS.values():
        once, _ = m.mask_text(case[0])
        twice, counts = m.mask_text(once)
        assert twice == once and not counts


WORDS = st.from_regex(r"[A-Za-z]{1,10}", fullmatch=True).filter(
    lambda w: not any(k in w.lower() for k in ("ssn", "social", "tax"))
)
ORDINARY = st.one_of(
    st.integers(0, 99_999_999).map(str),
    st.decimals(min_value=0, max_value=10**7, places=2, allow_nan=False).map(str),
    st.dates().map(str),
    st.datetimes().map(str),
    st.from_regex(r"\+1-[2-9][0-9]{2}-555-01[0-9]{2}", fullmatch=True),
    st.uuids().map(str),
    st.sampled_from(["paid", "shipped", "N/A", "(none)", "100%", "a/b", "x.y", "#42"]),
)


@SETTINGS
@given(st.lists(st.tuples(WORDS, ORDINARY), max_size=8))
def test_ordinary_values_are_untouched(tokens: list[tuple[str, str]]) -> None:
    text = " ".join(f"{w} {v}" for w, v in tokens)
    buf = text.encode()
    for m in MASKERS.values():
        out, counts = m.mask_bytes(buf)
        assert out is buf and not counts, text
    rows = MASKERS["redact"].for_columns(
        RowDescription.build([Column("a", 0, 0, 25, -1, -1, 0), Column("b", 1, 1, 25, -1, -1, 0)])
    )
    row = DataRow.build([buf, buf])
    assert rows.mask_datarow(row)[0] is row


TYPES = [0, 16, 17, 18, 19, 20, 21, 23, 25, 26, 114, 142, 700, 701, 1005, 1007, 1009, 1016, 1043,
         1082, 1184, 1231, 1700, 2249, 2950, 3802, 3926, 4072, 99999]  # fmt: skip
VALUE = st.one_of(
    st.none(),
    st.binary(max_size=40),
    st.sampled_from(
        [
            b"4111111111111111",
            b"ada@example.com",
            b"332-20-6469",
            b"\x01{}",
            b'{"a": 4111111111111111}',
            b"\\x41",
            b"{1,2}",
            b"332206469",
        ]
    ),
    st.integers(-(2**63), 2**63 - 1).map(lambda n: struct.pack("!q", n)),
)


@SETTINGS
@given(
    st.lists(st.tuples(st.sampled_from(TYPES), st.sampled_from([0, 1]), VALUE, st.booleans()),
             min_size=1, max_size=6),
    st.sampled_from(["default", "rules"]),
    st.sampled_from(sorted(MASKERS)),
)  # fmt: skip
def test_any_row_is_masked_or_refused(
    cols: list[tuple[int, int, bytes | None, bool]], config: str, strategy: str
) -> None:
    m = masker({"strategy": strategy, "columns": ["*.c1", "t.c2"]} if config == "rules"
               else {"strategy": strategy})  # fmt: skip
    desc = RowDescription.build(
        [Column(f"c{i}", 16384 if named else 0, i + 1, oid, -1, -1, fmt)
         for i, (oid, fmt, _, named) in enumerate(cols)]
    )  # fmt: skip
    rows = m.for_columns(desc, lambda t, a: ("t", f"c{a - 1}"))
    row = DataRow.build([v for _, _, v, _ in cols])
    try:
        out, _ = rows.mask_datarow(row)
    except MaskingFailure:
        return
    assert len(out.values()) == len(cols)
    for (oid, fmt, value, _), new in zip(cols, out.values(), strict=True):
        if value is None:
            assert new is None
        if fmt == 0 and oid in (25, 1043, 2249, 99999) and new is not None and value is not None:
            assert oracle_problems(new.decode("utf-8", "replace")) == [] or new == value


def _tuple(values: list[bytes | None]) -> bytes:
    out = struct.pack("!h", len(values))
    for v in values:
        out += struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v
    return out


@SETTINGS
@given(
    st.lists(st.lists(st.one_of(st.none(), st.binary(max_size=12), emails().map(str.encode),
                                cards().map(str.encode)), min_size=3, max_size=3),
             max_size=6),
    st.lists(st.integers(1, 400), max_size=8),
)  # fmt: skip
def test_binary_copy_split_anywhere(rows: list[list[bytes | None]], cuts: list[int]) -> None:
    blob = SIGNATURE + struct.pack("!ii", 0, 0) + b"".join(_tuple(r) for r in rows)
    blob += struct.pack("!h", -1)
    m = masker()
    whole = m.for_copy(1)
    out, _ = whole.feed(CopyData.build(blob))
    expected = out.data if out is not None else b""
    points = sorted({c % (len(blob) + 1) for c in cuts} | {0, len(blob)})
    split = m.for_copy(1)
    got = b""
    for a, b in itertools.pairwise(points):
        piece, _ = split.feed(CopyData.build(blob[a:b]))
        if piece is not None:
            got += piece.data
    split.end()
    assert got == expected
    assert len(got) == len(blob)


# -- the fast paths answer exactly as the general ones ------------------------------------------

CARD_CHUNKS = st.one_of(
    cards(),
    st.sampled_from(["4111 1111 1111 1111", "4111-1111 1111-1111", "4111111111111111",
                     "5500 0000 0000 0004", "4111 1111 1111 1112", "0000 0000 0000 0000"]),
    st.text(alphabet="0123456789 -", max_size=24),
    st.text(alphabet="abcdefABCDEFxyz\x00.@", max_size=6),
    st.sampled_from(["deadbeefdeadbeef", "deadbeef", "abcdef0123456789abcdef", "-"]),
)  # fmt: skip


@SETTINGS
@given(st.lists(CARD_CHUNKS, max_size=8))
def test_card_fast_paths_find_what_the_general_search_finds(chunks: list[str]) -> None:
    buf = "".join(chunks).encode()
    general: list[tuple[int, int, str]] = []
    for m in detectors._CARD_AREA.finditer(buf):
        detectors._find_cards_in_area(buf, m, general)
    found: list[tuple[int, int, str]] = []
    detectors.find_cards(buf, found)
    assert found == general


SSN_CHUNKS = st.one_of(
    ssns(),
    st.sampled_from(["ssn", "SSN", "Ssns", "social", "Social Security No", "social_sec",
                     "TAX ID", "tax-id", "taxid", "ssnssn", "sSn", "ssocial", "ta", "x"]),
    st.text(alphabet="0123456789 -:=#\"'()\n\x00", max_size=14),
    st.text(alphabet="abnostxSNOT._", max_size=6),
)  # fmt: skip


def _ssn_context_by_scan(buf: bytes) -> list[tuple[int, int, str]]:
    out = []
    for m in detectors._SSN_CONTEXT.finditer(buf):
        if detectors.ssn_valid(m[1], m[2], m[3]):
            out.append((m.start(1), m.end(3), "ssn"))
    return out


@SETTINGS
@given(st.lists(SSN_CHUNKS, max_size=10))
def test_ssn_context_search_finds_what_a_scan_of_every_byte_finds(chunks: list[str]) -> None:
    """The SSN-after-a-key search tries its pattern only where a key word starts: it finds
    exactly what the pattern's own search over every byte finds, less what the search for
    dashed SSNs found already."""
    buf = "".join(chunks).encode()
    quick: list[tuple[int, int, str]] = []
    detectors.find_ssns(buf, quick, context=False)
    found: list[tuple[int, int, str]] = []
    detectors.find_ssns(buf, found, context=True)
    # what both searches find is kept once (merging drops the second anyway)
    assert found == quick + [s for s in _ssn_context_by_scan(buf) if s not in quick]


ROW_NAMES = st.sampled_from(["c", "note", "ssn", "tax_id", "social_security_no"])


@SETTINGS
@given(
    st.lists(st.tuples(ROW_NAMES, st.sampled_from([25, 1043, 20, 99999]), st.sampled_from([0, 1])),
             min_size=1, max_size=5),
    st.lists(st.lists(VALUE, min_size=5, max_size=5), min_size=1, max_size=6),
    st.sampled_from(sorted(MASKERS)),
)  # fmt: skip
def test_rows_masked_together_as_one_by_one(
    cols: list[tuple[str, int, int]], values: list[list[bytes | None]], strategy: str
) -> None:
    """A run of rows is scanned in one pass (values of all rows joined): each row comes out
    as it would alone, and the counts add up."""
    m = MASKERS[strategy]
    desc = RowDescription.build(
        [Column(name, 0, 0, oid, -1, -1, fmt) for name, oid, fmt in cols]
    )  # fmt: skip
    rows = m.for_columns(desc)
    msgs = [DataRow.build(v[: len(cols)]) for v in values]
    try:
        alone = [rows.mask_datarow(r) for r in msgs]
    except MaskingFailure:
        with pytest.raises(MaskingFailure):
            rows.mask_datarows(msgs)
        return
    together, counts = rows.mask_datarows(msgs)
    assert [r.raw for r in together] == [r.raw for r, _ in alone]
    assert all(t is r for t, r, (a, _) in zip(together, msgs, alone, strict=True) if a is r)
    total: Counter[str] = Counter()
    for _, c in alone:
        total.update(c)
    assert counts == total


@SETTINGS
@given(
    st.lists(st.tuples(ROW_NAMES, st.sampled_from([25, 1043, 99999])), min_size=1, max_size=5),
    st.lists(st.one_of(st.none(), VALUE, st.just(b"332206469"), st.just(b"332 20 6469")),
             min_size=5, max_size=5),
    st.sampled_from(sorted(MASKERS)),
)  # fmt: skip
def test_text_values_of_a_row_masked_as_each_alone(
    cols: list[tuple[str, int]], values: list[bytes | None], strategy: str
) -> None:
    """Text values scanned together with the row's others (SSN-named columns with each
    other, the rest with each other) come out as each value masked on its own."""
    m = MASKERS[strategy]
    desc = RowDescription.build([Column(name, 0, 0, oid, -1, -1, 0) for name, oid in cols])
    rows = m.for_columns(desc)
    assert rows.plans is not None
    row = DataRow.build(values[: len(cols)])
    out, counts = rows.mask_datarow(row)
    expected: list[bytes | None] = []
    total: Counter[str] = Counter()
    for plan, value in zip(rows.plans, row.values(), strict=True):
        if value is None:
            expected.append(None)
            continue
        res = m.mask_value(plan, value, total)
        expected.append(value if isinstance(res, type(SAME)) else res)
    assert out.values() == tuple(expected)
    assert counts == total


def _emails_by_walking_back(buf: bytes) -> list[tuple[int, int, str]]:
    """The e-mail search as first written: the local part found by stepping back byte by byte
    from each "@" (at most 64)."""
    local = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
    out = []
    at = buf.find(b"@")
    while at >= 0:
        s, lim = at, max(0, at - 64)
        while s > lim and buf[s - 1] in local:
            s -= 1
        if s < at:
            m = detectors._DOMAIN.match(buf, at + 1)
            if m is not None:
                out.append((s, m.end(), "email"))
        at = buf.find(b"@", at + 1)
    return out


@SETTINGS
@given(st.lists(st.one_of(emails(), st.text(alphabet="ab.%+-_@ \x00\xe9,", max_size=12),
                          st.sampled_from(["x" * 70, "@", "@@a.bc", "a" * 64 + "@ex.com"])),
                max_size=8))  # fmt: skip
def test_email_search_finds_what_walking_back_finds(chunks: list[str]) -> None:
    buf = "".join(chunks).encode()
    found: list[tuple[int, int, str]] = []
    detectors.find_emails(buf, found)
    assert found == _emails_by_walking_back(buf)


def _offsets(values: list[bytes | None]) -> list[int]:
    """Start and end of each value in its DataRow (-1 for a NULL's end), as the row scan
    records them."""
    out, pos = [], 7
    for v in values:
        pos += 4
        out += [pos, -1] if v is None else [pos, pos + len(v)]
        pos += 0 if v is None else len(v)
    return out


@SETTINGS
@given(
    st.lists(st.one_of(st.none(), st.binary(max_size=12)), min_size=1, max_size=6),
    st.lists(st.tuples(st.integers(0, 5), st.one_of(st.none(), st.integers(-2, 2),
                                                    st.binary(max_size=12))), max_size=4),
)  # fmt: skip
def test_a_row_with_replacements_is_the_row_built_from_its_new_values(
    values: list[bytes | None], changes: list[tuple[int, bytes | int | None]]
) -> None:
    """A row whose replacements all keep their value's length is patched in a copy of its
    bytes, any other re-encoded: either way it is the row built from the new values (an
    integer change: a replacement that many bytes longer than the value, or of its length)."""
    edits: dict[int, bytes | None] = {}
    for i, change in changes:
        if i >= len(values):
            continue
        if isinstance(change, int):
            old = values[i] or b""
            edits[i] = b"*" * max(0, len(old) + change)
        else:
            edits[i] = change
    row = DataRow.build(values)
    new = engine._rebuilt(row, (len(values), _offsets(values), edits))
    expected = [edits[i] if i in edits else v for i, v in enumerate(values)]
    assert new.raw == DataRow.build(expected).raw
    assert new.values() == tuple(expected)
    if not edits:
        assert new is row


LINE = st.one_of(
    sensitive_text().map(lambda case: case[0]),
    FILLER,
    # COPY text escapes (a backslash before N, t, n), a Bearer token on the next line, a
    # password whose masked form is shorter (one byte for each two-byte letter)
    st.sampled_from(["id\tnote", "\\N", "a\\tb 4111\\t1111 1111 1111", "ssn\\n332-20-6469",
                     "Authorization: Bearer", "abcdef0123456789xyz",
                     "\u00e9t\u00e9 ada@example.com", "-----BEGIN RSA PRIVATE KEY-----MIIE",
                     "+1 202 555 0100", "\u00e9\u00e9 4111 1111 1111 1111",
                     "https://user:p\u00e4ssw\u00f6rd@example.com/x"]),  # a shorter mask
).map(lambda text: text.replace("\n", " ").encode() + b"\n")  # fmt: skip


# every detector: some match across a line end ("Bearer" then the token on the next line), or
# over the end of a value (a private-key block without its end)
EVERY_DETECTOR = ["card", "ssn", "email", "phone", "iban", "secrets", "ip"]
LINE_MASKERS = {**MASKERS, "all": masker({"detectors": EVERY_DETECTOR}),
                "all-hash": masker({"detectors": EVERY_DETECTOR, "strategy": "hash"})}  # fmt: skip


@SETTINGS
@given(st.lists(LINE, min_size=1, max_size=8), st.sampled_from(sorted(LINE_MASKERS)))
def test_lines_masked_in_one_pass_as_one_by_one(lines: list[bytes], strategy: str) -> None:
    """COPY lines are masked in one replacement pass over them all, each changed line cut
    back out: the lines and counts are those of masking each line with its own spans, and
    a line no detection touches is the very same object."""
    m = LINE_MASKERS[strategy]
    joined = b"".join(lines)
    spans = m.scanner.find(joined) if m.scanner.may_match(joined) else []
    expected = m._lines_apart(lines, spans, True) if spans else (lines, Counter())
    got, counts = m._mask_lines(lines, True)
    assert got == expected[0]
    assert counts == expected[1]
    bounds = list(itertools.pairwise(itertools.accumulate(map(len, lines), initial=0)))
    for (a, b), g, line in zip(bounds, got, lines, strict=True):
        if not any(s < b and e > a for s, e, _ in spans):
            assert g is line


ROW_VALUE = st.one_of(
    VALUE,
    sensitive_text().map(lambda case: case[0].encode()),
    LINE.map(lambda line: line[:-1]),
    # a backslash inside a detection: an escape in a composite or array value, not in text
    st.just(b"https://user:pa\\nss@example.com/x"),
)


@SETTINGS
@given(
    st.lists(st.tuples(ROW_NAMES, st.sampled_from([25, 1043, 20, 114, 99999, 0]),
                       st.sampled_from([0, 0, 1]), st.booleans()),
             min_size=1, max_size=5),
    st.lists(st.lists(ROW_VALUE, min_size=5, max_size=5), min_size=1, max_size=6),
    st.sampled_from(sorted(LINE_MASKERS)),
)  # fmt: skip
@example(  # a detection over the end of its value, into the next
    [("c", 25, 0, True)] * 2,
    [[b"-----BEGIN RSA PRIVATE KEY-----MIIE", b"abc"] + [None] * 3],
    "all-hash",
)
def test_values_masked_in_one_pass_as_one_by_one(
    cols: list[tuple[str, int, int, bool]], values: list[list[bytes | None]], strategy: str
) -> None:
    """The text values of a run of rows are masked in one replacement pass over them all,
    each changed value cut back out: the rows and counts are those of masking each value
    with its own spans (what happens when that pass declines: another kind of value, a
    detection over a value's end, a mask of another length)."""
    m = LINE_MASKERS[strategy]
    desc = RowDescription.build(
        [Column(name, 16384 if table else 0, i + 1, oid, -1, -1, fmt)
         for i, (name, oid, fmt, table) in enumerate(cols)]
    )  # fmt: skip
    rows = m.for_columns(desc, lambda t, a: ("t", desc.columns[a - 1].name))
    msgs = [DataRow.build(v[: len(cols)]) for v in values]

    def masked() -> tuple[list[bytes], Counter[str]] | str:
        try:
            out, counts = rows.mask_datarows(msgs)
        except MaskingFailure:
            return "refused"
        return [r.raw for r in out], counts

    in_one_pass = masked()
    with mock.patch.object(type(rows), "_text_in_place", lambda *_: False):
        assert masked() == in_one_pass
