"""Recording through real clients: the agent context behind each statement (sqlcommenter
comment, ``SET pgwarden.*``, the HTTP API, application_name), bind parameters and rows in the
export, and the identity in session_start (issue 4, "How it will be checked", first point)."""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psycopg
import pytest

from tests.e2e.recording_support import (
    ENFORCE_ALLOW_ALL,
    RecordedGateway,
    export,
    following,
    of_type,
    show_session_id,
    start_recorded_gateway,
    statement_with,
    value_bytes,
    wait_ended,
)
from tests.support.databases import TargetDb
from tests.support.gateway import token_claims

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACEPARENT_2 = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SUBJECT = "agent-7"
GROUPS = ["analysts", "oncall"]
APP_NAME = "refund-bot"


@pytest.fixture
def rg(tmp_path: Path, shop: TargetDb) -> Iterator[RecordedGateway]:
    rg = start_recorded_gateway(tmp_path / "gw", {"shop": shop.target()}, policy=ENFORCE_ALLOW_ALL)
    try:
        yield rg
    finally:
        rg.gw.stop()


def _context_api(
    rg: RecordedGateway, session_id: str, body: Any, token: str | None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(
        f"{rg.gw.api_url}/api/v1/sessions/{session_id}/context",
        json=body,
        headers=headers,
        timeout=10,
    )


def _check_api_refusals(rg: RecordedGateway, session_id: str) -> None:
    # another subject's token: 403
    r = _context_api(rg, session_id, {"prompt": "hijack"}, rg.gw.token("mallory", GROUPS))
    assert r.status_code == 403, r.text
    # no token at all: 401
    r = _context_api(rg, session_id, {"prompt": "anonymous"}, None)
    assert r.status_code == 401, r.text
    # a token that is not valid: 401
    r = _context_api(rg, session_id, {"prompt": "forged"}, "not.a.token")
    assert r.status_code == 401, r.text
    # an unknown session, with the right identity: 404
    r = _context_api(rg, uuid.uuid4().hex, {"prompt": "nowhere"}, rg.gw.token(SUBJECT, GROUPS))
    assert r.status_code == 404, r.text


def _check_common(
    rg: RecordedGateway, session_id: str, token: str, events: list[dict[str, Any]]
) -> None:
    """The context of the four unparameterised statements, the API context event and the
    identity; the same for both clients."""
    # ---- identity, client and application_name in session_start
    start = events[0]
    assert start["type"] == "session_start"
    claims = token_claims(token)
    assert start["subject"] == SUBJECT
    assert start["issuer"] == claims["iss"]
    assert sorted(start["groups"]) == sorted(GROUPS)
    assert "127.0.0.1" in start["client_addr"]
    assert start["application_name"] == APP_NAME
    assert start["target"] == "shop"
    assert start["claims"].get("sub") == SUBJECT

    # ---- the envelope on every event
    for n, event in enumerate(events, start=1):
        assert event["session"] == session_id
        assert event["seq"] == n
        for key in ("ts", "type", "prev", "hash"):
            assert event[key], (key, event)

    # ---- 1: its own comment only
    s1 = statement_with(events, "'one'")
    assert s1["context"]["prompt"] == "why I ask"
    assert s1["context"]["traceparent"] == TRACEPARENT
    assert s1["context_sources"]["prompt"] == "comment"
    assert s1["context"]["application_name"] == APP_NAME

    # ---- 2: no comment, nothing set yet: neither the comment's prompt nor its traceparent
    s2 = statement_with(events, "'two'")
    assert "prompt" not in s2["context"]
    assert "traceparent" not in s2["context"]
    assert s2["context"]["application_name"] == APP_NAME

    # ---- 3: after SET pgwarden.prompt
    s3 = statement_with(events, "'three'")
    assert s3["context"]["prompt"] == "the session's prompt"
    assert s3["context_sources"]["prompt"] == "set"
    assert "traceparent" not in s3["context"]

    # ---- 4: a comment wins over SET for its own statement
    s4 = statement_with(events, "'four'")
    assert s4["context"]["prompt"] == "one statement's own prompt"
    assert s4["context"]["traceparent"] == TRACEPARENT_2
    assert s4["context_sources"]["prompt"] == "comment"

    # the SET is recorded as a context event, and itself as a statement
    set_stmt = statement_with(events, "SET pgwarden.prompt")
    assert set_stmt["decision"]["action"] == "allow"
    sets = [e for e in of_type(events, "context") if e["source"] == "set"]
    assert sets and sets[0]["changes"] == {"prompt": "the session's prompt"}
    assert sets[0]["seq"] > set_stmt["seq"]

    # ---- the API call: a context event, by the session's identity, before statement 5
    api = [e for e in of_type(events, "context") if e["source"] == "api"]
    assert len(api) == 1, api  # the refused calls left no trace in the recording
    assert api[0]["actor"] == SUBJECT
    assert api[0]["changes"] == {"prompt": "from the api", "intent": "check refund 991"}
    assert s4["seq"] < api[0]["seq"]

    # the rows of an unparameterised statement
    result = following(events, s2, "result")
    assert len(result) == 1
    assert [c["name"] for c in result[0]["columns"]] == ["step"]
    assert result[0]["row_count"] == 1


def _check_params_statement(events: list[dict[str, Any]], *, comment: bool) -> dict[str, Any]:
    api_seq = next(e["seq"] for e in events if e["type"] == "context" and e["source"] == "api")
    s5 = statement_with(events, "AS five")
    assert s5["seq"] > api_seq
    assert s5["protocol"] == "extended"
    assert s5["decision"]["action"] == "allow"
    assert s5["context"]["intent"] == "check refund 991"
    assert s5["context_sources"]["intent"] == "api"
    if comment:
        assert s5["context"]["prompt"] == "param prompt"
        assert s5["context_sources"]["prompt"] == "comment"
    else:
        # the API set prompt after the SET did: the later one is in force
        assert s5["context"]["prompt"] == "from the api"
        assert s5["context_sources"]["prompt"] == "api"
    assert "traceparent" not in s5["context"]
    assert len(s5["params"]) == 3
    return s5


def test_context_params_rows_identity_psycopg(rg: RecordedGateway) -> None:
    token = rg.gw.token(SUBJECT, GROUPS)
    dsn = rg.gw.dsn(SUBJECT, password=token, application_name=APP_NAME)
    with psycopg.connect(dsn, autocommit=True) as conn:
        session_id = show_session_id(conn)
        assert rg.gw.sessions()[0].info.id == session_id
        conn.execute(
            f"SELECT 'one' AS step /*prompt='why%20I%20ask',traceparent='{TRACEPARENT}'*/"
        ).fetchall()
        conn.execute("SELECT 'two' AS step").fetchall()
        conn.execute("SET pgwarden.prompt = 'the session''s prompt'")
        conn.execute("SELECT 'three' AS step").fetchall()
        conn.execute(
            "SELECT 'four' AS step "
            f"/*prompt='one%20statement%27s%20own%20prompt',traceparent='{TRACEPARENT_2}'*/"
        ).fetchall()

        _check_api_refusals(rg, session_id)
        r = _context_api(
            rg, session_id, {"prompt": "from the api", "intent": "check refund 991"}, token
        )
        assert r.status_code == 200, r.text
        assert r.json()["context"]["intent"] == "check refund 991"

        rows = conn.execute(
            "SELECT %s::text AS who, %s::int AS n, %s::text AS nothing, 'x' AS five",
            ("hello world", 42, None),
        ).fetchall()
        assert rows == [("hello world", 42, None, "x")]

    events = wait_ended(rg.data_dir, session_id)
    _check_common(rg, session_id, token, events)
    s5 = _check_params_statement(events, comment=False)
    params = [value_bytes(p) for p in s5["params"]]
    assert params[0] == b"hello world"
    # psycopg may send the int in text or binary; either way it is the value 42
    assert params[1] in (b"42", struct.pack("!h", 42), struct.pack("!i", 42), struct.pack("!q", 42))
    assert params[2] is None

    # ---- the export (CLI `sessions export` when available) holds the same
    exported = export(rg, session_id)
    assert [e["seq"] for e in exported] == [e["seq"] for e in events]
    ex5 = statement_with(exported, "AS five")
    assert ex5["params"] == s5["params"]
    assert ex5["context"] == s5["context"]
    [res] = following(exported, ex5, "result")
    assert res["rows"] == [["hello world", "42", None, "x"]]
    assert res["row_count"] == 1
    assert res["command_tag"] == "SELECT 1"
    assert exported[0]["subject"] == SUBJECT
    assert exported[-2]["type"] == "session_end"

    # the OCSF form (Datastore Activity) carries the statement, its parameters and context
    ocsf = export(rg, session_id, "ocsf")
    assert {r["class_uid"] for r in ocsf} == {6005}
    [o5] = [r for r in ocsf if "AS five" in r.get("query_info", {}).get("query_string", "")]
    assert o5["actor"]["user"]["name"] == SUBJECT
    assert o5["unmapped"]["pgwarden"]["context"]["prompt"] == "from the api"
    assert o5["unmapped"]["pgwarden"]["params"] == s5["params"]

    # after the session: the API no longer knows it
    r = _context_api(rg, session_id, {"prompt": "too late"}, token)
    assert r.status_code == 404, r.text


def test_context_params_rows_identity_asyncpg(rg: RecordedGateway) -> None:
    token = rg.gw.token(SUBJECT, GROUPS)

    async def run() -> str:
        conn = await asyncpg.connect(
            **rg.gw.connect_kwargs(SUBJECT, password=token),
            server_settings={"application_name": APP_NAME},
            ssl=False,
        )
        try:
            session_id = await conn.fetchval("SHOW pgwarden.session_id")
            # execute() without arguments: simple protocol; fetch(): extended
            await conn.execute(
                f"SELECT 'one' AS step /*prompt='why%20I%20ask',traceparent='{TRACEPARENT}'*/"
            )
            assert await conn.fetchval("SELECT 'two' AS step") == "two"
            await conn.execute("SET pgwarden.prompt = 'the session''s prompt'")
            assert await conn.fetchval("SELECT 'three' AS step") == "three"
            await conn.fetch(
                "SELECT 'four' AS step "
                f"/*prompt='one%20statement%27s%20own%20prompt',traceparent='{TRACEPARENT_2}'*/"
            )
            async with httpx.AsyncClient(timeout=10) as client:
                r = await client.post(
                    f"{rg.gw.api_url}/api/v1/sessions/{session_id}/context",
                    json={"prompt": "from the api", "intent": "check refund 991"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert r.status_code == 200, r.text
            rows = await conn.fetch(
                "SELECT $1::text AS who, $2::int AS n, $3::text AS nothing, 'x' AS five "
                "/*prompt='param%20prompt'*/",
                "hello world",
                42,
                None,
            )
            assert [tuple(r) for r in rows] == [("hello world", 42, None, "x")]
            return str(session_id)
        finally:
            await conn.close()

    session_id = asyncio.run(run())
    events = wait_ended(rg.data_dir, session_id)
    _check_common(rg, session_id, token, events)
    s5 = _check_params_statement(events, comment=True)
    params = [value_bytes(p) for p in s5["params"]]
    # asyncpg sends binary parameters
    assert params == [b"hello world", struct.pack("!i", 42), None]

    exported = export(rg, session_id)
    ex5 = statement_with(exported, "AS five")
    assert ex5["params"] == s5["params"]
    [res] = following(exported, ex5, "result")
    assert res["row_count"] == 1
    [row] = res["rows"]
    # asyncpg asks for binary results: the row is recorded as sent (binary values tagged)
    assert value_bytes(row[0]) == b"hello world"
    assert value_bytes(row[1]) == struct.pack("!i", 42)
    assert row[2] is None
    assert value_bytes(row[3]) == b"x"
