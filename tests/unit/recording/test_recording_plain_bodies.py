"""The statement and result events encode their own bodies from parts (``plain_body``); the
recorder hands them pre-encoded classification, context and columns. Every one of those
shortcuts must give the bytes ``encode_event`` gives for the same event, or recordings would
differ by path (and a reader relying on the canonical form would see two)."""

from __future__ import annotations

import tempfile
import uuid
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgwarden.guard.recorder import _DICTS, _classification_dict, _columns
from pgwarden.protocol.messages import Column as WireColumn
from pgwarden.protocol.messages import RowDescription
from pgwarden.recording.canonical import canonical_json
from pgwarden.recording.codec import encode_event, parse_line
from pgwarden.recording.errors import RecordingError
from pgwarden.recording.events import (
    _DECISION_JSON,
    Column,
    Decision,
    ResultBuilder,
    ResultEvent,
    StatementEvent,
    _decision_json,
    format_ts,
)
from pgwarden.recording.signing import RecordingSigner
from pgwarden.recording.storage.local import LocalFileStorage
from pgwarden.recording.writer import RecordingWriter
from pgwarden.sql import classify_cached

_TEXT = st.text(max_size=20)  # any code point but lone surrogates' neighbours: control, quotes
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=10,
)
_BASE64 = st.fixed_dictionaries({"encoding": st.just("base64"), "data": _TEXT})
# a parameter may be any Mapping (MappingProxyType: not a dict, recorded as one)
_PARAM = st.none() | _TEXT | _BASE64 | _BASE64.map(MappingProxyType)
_HASH = st.text("0123456789abcdef", min_size=64, max_size=64)


def _whole(
    event: StatementEvent | ResultEvent, session: str, seq: int, ts: str, prev: str
) -> bytes:
    line, _digest = encode_event(
        session=session, seq=seq, ts=ts, type_=event.type, prev=prev, payload=event.to_payload()
    )
    return parse_line(line).body


statement_events = st.builds(
    StatementEvent,
    sql=_TEXT,
    protocol=st.sampled_from(["simple", "extended"]),
    decision=st.builds(
        Decision, st.sampled_from(["allow", "deny", "review"]), _TEXT | st.none(), _TEXT
    ),
    classification=st.dictionaries(_TEXT, _JSON, max_size=4),
    params=st.lists(_PARAM, max_size=3),
    param_types=st.lists(st.integers(0, 2**32 - 1), max_size=3),
    statement_name=_TEXT | st.none(),
    portal=_TEXT | st.none(),
    context=st.dictionaries(_TEXT, _JSON, max_size=3),
    context_sources=st.dictionaries(_TEXT, _TEXT, max_size=3),
)

result_events = st.builds(
    ResultEvent,
    columns=st.lists(
        st.builds(Column, _TEXT, st.integers(0, 2**32 - 1), st.sampled_from([0, 1])), max_size=3
    ),
    rows=st.lists(
        st.lists(
            st.none()
            | _TEXT
            | st.fixed_dictionaries({"encoding": st.just("base64"), "data": _TEXT}),
            max_size=3,
        ),
        max_size=3,
    ),
    row_count=st.integers(0, 2**40),
    command_tag=_TEXT | st.none(),
    digest=_TEXT,
    truncated=st.booleans(),
    masked=st.dictionaries(_TEXT, st.integers(0, 1000), max_size=3),
    statement_seq=st.integers(1, 2**40) | st.none(),
)


@settings(max_examples=300)
@given(statement_events, st.integers(1, 2**40), _HASH, st.floats(0, 4e9), st.booleans())
def test_a_statement_body_is_what_encode_event_writes(
    event: StatementEvent, seq: int, prev: str, t: float, pre_encoded: bool
) -> None:
    session, ts = str(uuid.uuid4()), format_ts(t)
    if pre_encoded:  # as the recorder hands them over
        event.classification_json = canonical_json(event.classification)
        event.context_json = canonical_json(event.context)
        event.context_sources_json = canonical_json(event.context_sources)
    body = event.plain_body(canonical_json(session), seq, ts, prev)
    assert body == _whole(event, session, seq, ts, prev)


@settings(max_examples=300)
@given(result_events, st.integers(1, 2**40), _HASH, st.floats(0, 4e9), st.booleans())
def test_a_result_body_is_what_encode_event_writes(
    event: ResultEvent, seq: int, prev: str, t: float, pre_encoded: bool
) -> None:
    session, ts = str(uuid.uuid4()), format_ts(t)
    if pre_encoded:
        event.columns_json = canonical_json([c.to_dict() for c in event.columns])
    body = event.plain_body(canonical_json(session), seq, ts, prev)
    assert body == _whole(event, session, seq, ts, prev)


def test_the_writer_stores_the_same_lines_either_way() -> None:
    """A writer's line for a statement and a result (its own body) against the line
    encode_event makes of the same event, envelope and chain."""
    with tempfile.TemporaryDirectory() as tmp:
        storage = LocalFileStorage(tmp)
        session = str(uuid.uuid4())
        writer = RecordingWriter(session, storage, RecordingSigner.generate(), clock=lambda: 1.5e9)
        statement = StatementEvent(
            sql="SELECT 1 /* app='x' */",
            protocol="simple",
            decision=Decision("allow", "default", "ok"),
            classification={"kinds": ["select"]},
            context={"application_name": "psql", "intent": 'count "orders"\n'},
            context_sources={"application_name": "application_name", "intent": "comment"},
        )
        b = ResultBuilder(statement_seq=1)
        b.set_columns([Column("?column?", 23, 0)])
        b.add_row([b"1"])
        result = b.finish("SELECT 1")
        prev = writer.last_hash
        writer.append(statement)
        writer.append(result)
        lines = storage.path(session).read_bytes().splitlines(keepends=True)
        ts = format_ts(1.5e9)
        want1, hash1 = encode_event(
            session=session,
            seq=1,
            ts=ts,
            type_="statement",
            prev=prev,
            payload=statement.to_payload(),
        )
        want2, _ = encode_event(
            session=session, seq=2, ts=ts, type_="result", prev=hash1, payload=result.to_payload()
        )
        assert lines == [want1, want2]


def test_a_shape_template_gives_the_json_of_each_texts_dict() -> None:
    """Texts of one shape (other constants) get their classification's JSON joined from the
    shape's template: it must equal the JSON of the dict built for that text, quotes,
    backslashes and all."""
    texts = [
        "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 22",
        "SELECT abalance FROM pgbench_accounts WHERE aid = '3\"\\\\'",
        "UPDATE t SET note = 'é\u2028\t' WHERE id = 4",
        "UPDATE t SET note = 'x' WHERE id = 5",
        "DELETE FROM t WHERE id = 6",
        "DELETE FROM t WHERE id = 7",
    ]
    seen_shape_hit = False
    for text in texts:
        c = classify_cached(text)
        seen_shape_hit |= c.shape is not None
        d, encoded = _classification_dict(c)
        if c.shape is not None:
            assert encoded == canonical_json(d), text
        else:  # classified in full: encoded by the event at first sight, kept from the next
            assert _classification_dict(c)[1] == canonical_json(d), text
    assert seen_shape_hit  # the template path was taken at least once


def test_recorded_columns_and_their_json_agree() -> None:
    desc = RowDescription.build(
        (WireColumn('a"b', 0, 0, 25, -1, -1, 0), WireColumn("n", 0, 0, 23, 4, -1, 1))
    )
    cols, encoded = _columns(desc)
    assert encoded == canonical_json([c.to_dict() for c in cols])
    assert _columns(desc)[1] is encoded  # once per description


def test_a_prev_that_is_not_a_digest_is_never_written() -> None:
    """The bodies take ``prev`` as it is: sealing must refuse one that is not a SHA-256 hex
    digest (say, a chain resumed from a tampered file) before anything is stored."""
    with tempfile.TemporaryDirectory() as tmp:
        storage = LocalFileStorage(tmp)
        session = str(uuid.uuid4())
        writer = RecordingWriter(session, storage, RecordingSigner.generate())
        writer.last_hash = 'abc","seq":1,"x":"'
        event = StatementEvent(sql="SELECT 1", protocol="simple", decision=Decision("allow"))
        with pytest.raises(RecordingError):
            writer.append(event)
        assert not storage.path(session).exists() or storage.path(session).read_bytes() == b""


def test_what_is_seen_once_is_not_kept_encoded() -> None:
    """Encoded classifications and decisions are kept for objects that come back (the
    classifier's and the guard's caches hand out the same object). One made for a single
    statement (a text with constants of its own, a decision with its row estimate) must not
    stay encoded: thousands of them would hold megabytes (TPC-B held 16 MB more)."""
    once = [Decision("allow", "estimate", f"{'x' * 2000} {i}") for i in range(50)]
    for d in once:
        _decision_json(d)
    kept = [_DECISION_JSON[id(d)][1] for d in once]
    assert kept == [None] * len(once)
    again = once[0]
    assert _decision_json(again) == canonical_json(again.to_dict())
    assert _DECISION_JSON[id(again)][1] == canonical_json(again.to_dict())

    c = classify_cached("UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid = 12345")
    d, encoded = _classification_dict(c)
    if c.shape is None:  # a text classified in full: kept as a dict, encoded on its return
        assert encoded is None and _DICTS[id(c)][2] is None
        assert _classification_dict(c)[1] == canonical_json(d)
        assert _DICTS[id(c)][2] == canonical_json(d)
