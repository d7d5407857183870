"""Canonical encoding, the stored-line format, values, results, migrations."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import struct
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgwarden.recording.canonical import ZERO_HASH, canonical_json, chain_hash, seal, unseal
from pgwarden.recording.codec import encode_event, parse_line, read_events
from pgwarden.recording.compat import migrate
from pgwarden.recording.errors import FormatError
from pgwarden.recording.events import (
    ApprovalEvent,
    Column,
    Decision,
    ResultBuilder,
    ResultEvent,
    StatementEvent,
    encode_params,
    encode_value,
    format_ts,
    parse_ts,
    statement_hash,
    value_bytes,
)


def test_canonical_json() -> None:
    assert canonical_json({"b": 1, "a": [1, "é", None], "c": {"z": True, "y": 1.5}}) == (
        '{"a":[1,"é",null],"b":1,"c":{"y":1.5,"z":true}}'.encode()
    )
    assert canonical_json({"s": "line\nbreak\u2028"}) == '{"s":"line\\nbreak\u2028"}'.encode()
    # Always standard JSON: no NaN token a strict reader would refuse.
    assert canonical_json({"x": float("nan"), "y": float("-inf")}) == b'{"x":null,"y":null}'
    assert canonical_json({"x": 1e-7, "y": 1795827754.0}) == b'{"x":1e-7,"y":1795827754.0}'
    # What orjson cannot write falls back to the standard library's encoder.
    assert canonical_json({"n": 2**70}) == b'{"n":1180591620717411303424}'
    assert canonical_json({1: "k"}) == b'{"1":"k"}'
    with pytest.raises(ValueError):
        canonical_json({"s": "\ud800"})


_JSON_NO_FLOATS = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_JSON_NO_FLOATS)
def test_canonical_json_matches_the_encoder_of_older_recordings(value: object) -> None:
    # Signatures, associated data and approval bindings re-serialise strings and integers:
    # their bytes must not change with the encoder.
    try:
        old = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        expected = old.encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(ValueError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


def test_seal_is_exactly_the_documented_construction() -> None:
    body = canonical_json({"prev": ZERO_HASH, "seq": 1, "type": "x"})
    line, digest = seal(body, ZERO_HASH)
    assert digest == hashlib.sha256(bytes(32) + body).hexdigest()
    assert line == body[:-1] + b',"hash":"' + digest.encode() + b'"}\n'
    assert unseal(line) == (body, digest)
    assert unseal(line[:-1]) == (body, digest)
    assert json.loads(line)["hash"] == digest
    assert chain_hash(digest, b"{}") == hashlib.sha256(bytes.fromhex(digest) + b"{}").hexdigest()
    with pytest.raises(FormatError):
        unseal(b'{"a":1}\n')
    with pytest.raises(FormatError):
        unseal(body[:-1] + b',"hash":"ABC"}\n')
    with pytest.raises(ValueError):
        seal(b"{}", ZERO_HASH)
    with pytest.raises(FormatError):
        chain_hash("xyz", b"{}")


def test_chain_hash_checks_a_prev_it_did_not_compute() -> None:
    # A digest just computed is remembered for the next event; any other prev, including
    # the same digest in capitals or with spaces, is still checked and refused.
    first = chain_hash(ZERO_HASH, b'{"a":1}')
    second = chain_hash(first, b'{"a":2}')
    assert second == hashlib.sha256(bytes.fromhex(first) + b'{"a":2}').hexdigest()
    for bad in (first.upper(), " ".join(first[i : i + 2] for i in range(0, 64, 2)), first[:-1]):
        with pytest.raises(FormatError):
            chain_hash(bad, b"{}")


def test_encode_event_and_parse_line() -> None:
    line, digest = encode_event(
        session="s1",
        seq=1,
        ts="2026-01-02T03:04:05.000000Z",
        type_="session_end",
        prev=ZERO_HASH,
        payload={"reason": "bye"},
    )
    stored = parse_line(line)
    assert stored.hash == digest
    assert stored.obj == {
        "v": 1,
        "session": "s1",
        "seq": 1,
        "ts": "2026-01-02T03:04:05.000000Z",
        "type": "session_end",
        "prev": ZERO_HASH,
        "reason": "bye",
    }
    events = read_events(line)
    assert events[0].data == {"reason": "bye"}
    assert events[0].to_dict()["hash"] == digest
    assert events[0].raw == line[:-1]
    with pytest.raises(ValueError, match="reserved"):
        encode_event(session="s", seq=1, ts="t", type_="x", prev=ZERO_HASH, payload={"seq": 2})
    with pytest.raises(FormatError):
        read_events(line[:-1])  # incomplete last line
    assert read_events(line + b"junk", strict=False) == events


def test_timestamps() -> None:
    t = 1_767_323_045.123456
    ts = format_ts(t)
    assert ts == "2026-01-02T03:04:05.123456Z"
    assert parse_ts(ts) == pytest.approx(t)


def test_values() -> None:
    assert encode_value(None) is None
    assert encode_value(b"hello") == "hello"
    assert encode_value("é".encode()) == "é"
    assert encode_value(b"\xff\xfe") == {"encoding": "base64", "data": "//4=", "format": "text"}
    assert encode_value(struct.pack("!i", 42), binary=True, type_oid=23) == {
        "encoding": "base64",
        "data": "AAAAKg==",
        "format": "binary",
        "type_oid": 23,
        "text": "42",
    }
    assert encode_value(struct.pack("!q", -7), binary=True, type_oid=20)["text"] == "-7"  # type: ignore[index]
    assert encode_value(b"\x01", binary=True, type_oid=16)["text"] == "true"  # type: ignore[index]
    assert encode_value(struct.pack("!d", 1.5), binary=True, type_oid=701)["text"] == "1.5"  # type: ignore[index]
    assert encode_value(struct.pack("!d", float("nan")), binary=True, type_oid=701)["text"] == "NaN"  # type: ignore[index]
    u = uuid.uuid4()
    assert encode_value(u.bytes, binary=True, type_oid=2950)["text"] == str(u)  # type: ignore[index]
    assert encode_value(b"\x01{}", binary=True, type_oid=3802)["text"] == "{}"  # type: ignore[index]
    raw = encode_value(b"\x00\x01", binary=True, type_oid=17)
    assert raw == {"encoding": "base64", "data": "AAE=", "format": "binary", "type_oid": 17}
    assert encode_value(b"abc", binary=True) == {
        "encoding": "base64",
        "data": "YWJj",
        "format": "binary",
    }
    for v in (None, b"x", b"\xff", struct.pack("!i", 1)):
        for binary in (False, True):
            assert value_bytes(encode_value(v, binary=binary, type_oid=23)) == v
    with pytest.raises(ValueError):
        value_bytes(12)


def test_encode_params_follows_bind_format_codes() -> None:
    vals = [b"1", b"\xff", None]
    assert encode_params(vals) == [
        "1",
        {"encoding": "base64", "data": base64.b64encode(b"\xff").decode(), "format": "text"},
        None,
    ]
    vals = [b"1", struct.pack("!i", 2), None]
    all_binary = encode_params([struct.pack("!i", 5)], [1], [23])
    assert all_binary[0]["text"] == "5"  # type: ignore[index]
    mixed = encode_params(vals, [0, 1, 0], [23, 23, 25])
    assert mixed[0] == "1" and mixed[1]["text"] == "2" and mixed[2] is None  # type: ignore[index]


def test_statement_hash_and_payloads() -> None:
    h = statement_hash("DELETE FROM t WHERE id = $1", ["5"])
    expected = hashlib.sha256(b'{"params":["5"],"sql":"DELETE FROM t WHERE id = $1"}').hexdigest()
    assert h == "sha256:" + expected
    st = StatementEvent(
        sql="DELETE FROM t WHERE id = $1",
        protocol="extended",
        decision=Decision("review"),
        params=["5"],
        statement_name="s1",
        portal="",
    )
    assert st.statement_hash == h
    p = st.to_payload()
    assert p["decision"] == {"action": "review", "rule": None, "reason": "", "mode": "enforce"}
    a = ApprovalEvent("ap-1", "approved", h, actor="dba-1", at=1_767_323_045.0, reason="ok")
    assert a.to_payload()["at"] == "2026-01-02T03:04:05.000000Z"


def _row_body(values: list[bytes | None]) -> bytes:
    out = struct.pack("!h", len(values))
    for v in values:
        out += struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v
    return out


def test_result_builder_caps_rows_and_digests_everything() -> None:
    b = ResultBuilder(cap=2, statement_seq=7)
    b.set_columns([Column("id", 23), Column("email", 25)])
    rows: list[list[bytes | None]] = [[b"1", b"[redacted]"], [b"2", None], [b"3", b"x@y"]]
    for r in rows:
        b.add_row(r)
    b.count_masked("email", 1)
    result = b.finish("SELECT 3")
    assert result.rows == [["1", "[redacted]"], ["2", None]]
    assert result.row_count == 3 and result.truncated
    assert (
        result.digest
        == "sha256:" + hashlib.sha256(b"".join(_row_body(r) for r in rows)).hexdigest()
    )
    payload = result.to_payload()
    assert payload["rows_recorded"] == 2 and payload["statement_seq"] == 7
    assert payload["masked"] == {"email": 1}
    assert payload["columns"][0] == {"name": "id", "type_oid": 23, "format": 0}
    small = ResultBuilder()
    small.finish("UPDATE 0")
    assert small.finish("UPDATE 0").truncated is False


def test_result_builder_starts_over_after_finish() -> None:
    """The recorder keeps one builder per statement: each result of a multi-statement
    query (`SELECT ...; UPDATE ...`) must start empty, without the previous one's columns,
    rows, masking counts or digest."""
    b = ResultBuilder(statement_seq=4)
    b.set_columns([Column("id", 23)])
    b.add_row([b"1"])
    b.count_masked("email", 2)
    first = b.finish("SELECT 1")
    second = b.finish("UPDATE 3", row_count=3)
    assert first.rows == [["1"]] and first.columns == [Column("id", 23)]
    assert first.masked == {"email": 1 + 1}
    assert second.columns == [] and second.rows == [] and second.masked == {}
    assert second.row_count == 3 and second.statement_seq == 4
    assert second.digest == "sha256:" + hashlib.sha256(b"").hexdigest()
    assert first.to_payload()["rows"] == [["1"]]  # the first event is not changed by the second


def test_migrate() -> None:
    obj = {"v": 1, "type": "x"}
    assert migrate(dict(obj)) == obj
    with pytest.raises(FormatError, match="newer"):
        migrate({"v": 2})
    with pytest.raises(FormatError):
        migrate({"v": "1"})
    with pytest.raises(FormatError):
        migrate({"v": 0})


_VALUES = st.one_of(
    st.none(),
    st.binary(max_size=12),  # often not UTF-8: recorded as tagged base64
    st.text(max_size=12).map(lambda s: s.encode("utf-8")),
)


@given(
    formats=st.lists(st.sampled_from([0, 1]), max_size=4),
    rows=st.lists(st.lists(_VALUES, min_size=0, max_size=5), max_size=4),
)
def test_recorded_rows_equal_encode_value_per_value(
    formats: list[int], rows: list[list[bytes | None]]
) -> None:
    """The builder's whole-row path for text columns records what encode_value records for
    each value, whatever the columns (none, fewer than the values, binary among them)."""
    columns = [Column(f"c{i}", 23 if f else 25, f) for i, f in enumerate(formats)]
    b = ResultBuilder(cap=3)
    b.set_columns(columns)
    for row in rows:
        b.add_row(row)
    want = [
        [
            encode_value(
                v,
                binary=i < len(columns) and columns[i].format == 1,
                type_oid=columns[i].type_oid if i < len(columns) else None,
            )
            for i, v in enumerate(row)
        ]
        for row in rows[:3]
    ]
    event = b.finish("SELECT")
    assert event.rows == want
    assert event.row_count == len(rows)


# A value of the field's type for every field, none of them a default (compiled, the
# constructor checks the types it declares).
_EVENT_FIELDS: dict[type, dict[str, object]] = {
    StatementEvent: {
        "sql": "select 2",
        "protocol": "extended",
        "decision": Decision("allow"),
        "classification": {"kinds": ["select"]},
        "params": ("5",),
        "param_types": (23,),
        "statement_name": "s1",
        "portal": "p1",
        "context": {"intent": "x"},
        "context_sources": {"intent": "set"},
        "classification_json": b'{"kinds":["select"]}',
        "context_json": b'{"intent":"x"}',
        "context_sources_json": b'{"intent":"set"}',
    },
    ResultEvent: {
        "columns": [Column("a", 23, 0)],
        "rows": [[1]],
        "row_count": 1,
        "command_tag": "SELECT 1",
        "digest": "sha256:00",
        "truncated": True,
        "masked": {"email": 1},
        "statement_seq": 7,
        "columns_json": b"[]",
    },
}


@pytest.mark.parametrize("cls", [StatementEvent, ResultEvent])
def test_the_hand_written_init_sets_every_field(cls: type) -> None:
    """The two per-statement events write their own __init__ (init=False): a field added to
    the class and not to it would be left unset (AttributeError) or keep a stale default."""
    values = _EVENT_FIELDS[cls]
    assert set(values) == {f.name for f in dataclasses.fields(cls)}
    event = cls(**values)
    for name, value in values.items():
        assert getattr(event, name) is value, name
    first = dataclasses.fields(cls)[0].name
    changed = dataclasses.replace(event, **{first: "new"})  # replace() calls it by name
    assert getattr(changed, first) == "new"
    assert all(getattr(changed, n) is v for n, v in values.items() if n != first)


def test_the_events_defaults_are_fresh_mappings() -> None:
    a = StatementEvent(sql="select 1", protocol="simple", decision=Decision("allow"))
    b = StatementEvent(sql="select 1", protocol="simple", decision=Decision("allow"))
    assert a.classification == {} and a.context == {} and a.context_sources == {}
    assert a.classification is not b.classification  # never one dict shared by all
    assert (a.params, a.param_types, a.statement_name, a.portal) == ((), (), None, None)
    r = ResultEvent(columns=[], rows=[], row_count=0, command_tag=None, digest="d")
    assert (r.truncated, r.masked, r.statement_seq, r.columns_json) == (False, {}, None, None)
