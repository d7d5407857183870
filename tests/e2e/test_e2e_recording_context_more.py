"""More of the agent context through real clients: transactions (SET undone by ROLLBACK,
SET LOCAL), SET application_name, pipelined statements each with its own comment, and bad
API bodies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.recording_support import (
    ENFORCE_ALLOW_ALL,
    RecordedGateway,
    following,
    of_type,
    show_session_id,
    start_recorded_gateway,
    statement_with,
    wait_ended,
)
from tests.support.databases import TargetDb


@pytest.fixture
def rg(tmp_path: Path, shop: TargetDb) -> Iterator[RecordedGateway]:
    rg = start_recorded_gateway(tmp_path / "gw", {"shop": shop.target()}, policy=ENFORCE_ALLOW_ALL)
    try:
        yield rg
    finally:
        rg.gw.stop()


def test_context_follows_transactions(rg: RecordedGateway) -> None:
    with psycopg.connect(rg.gw.dsn("agent-tx")) as conn:  # not autocommit: BEGIN first
        session_id = show_session_id(conn)
        conn.commit()
        conn.execute("SET pgwarden.intent = 'rolled back'")
        conn.execute("SELECT 'in tx' AS a").fetchall()
        conn.rollback()
        conn.execute("SELECT 'after rollback' AS a").fetchall()
        conn.commit()
        conn.execute("SET pgwarden.intent = 'committed'")
        conn.execute("SET LOCAL pgwarden.ticket = 'T-7'")
        conn.execute("SELECT 'local' AS a").fetchall()
        conn.commit()
        conn.execute("SELECT 'after commit' AS a").fetchall()
        conn.commit()
    events = wait_ended(rg.data_dir, session_id)
    assert statement_with(events, "'in tx'")["context"]["intent"] == "rolled back"
    assert "intent" not in statement_with(events, "'after rollback'")["context"]
    local = statement_with(events, "'local'")
    assert local["context"]["intent"] == "committed"
    assert local["context"]["ticket"] == "T-7"
    assert local["context_sources"]["ticket"] == "set_local"
    after = statement_with(events, "'after commit'")
    assert after["context"]["intent"] == "committed"
    assert "ticket" not in after["context"]


def test_reset_removes_context(rg: RecordedGateway) -> None:
    """RESET pgwarden.<name> and RESET ALL take context back out: the statements after them
    are recorded without it, and each reset is a context event of its own."""
    with psycopg.connect(rg.gw.dsn("agent-reset"), autocommit=True) as conn:
        session_id = show_session_id(conn)
        conn.execute("SET pgwarden.intent = 'clean up'")
        conn.execute("SET pgwarden.ticket = 'T-9'")
        conn.execute("SELECT 'both' AS a").fetchall()
        conn.execute("RESET pgwarden.intent")
        conn.execute("SELECT 'ticket only' AS a").fetchall()
        conn.execute("RESET ALL")
        conn.execute("SELECT 'none' AS a").fetchall()
    events = wait_ended(rg.data_dir, session_id)
    both = statement_with(events, "'both'")["context"]
    assert (both["intent"], both["ticket"]) == ("clean up", "T-9")
    ticket_only = statement_with(events, "'ticket only'")["context"]
    assert "intent" not in ticket_only
    assert ticket_only["ticket"] == "T-9"
    none = statement_with(events, "'none'")["context"]
    assert "intent" not in none
    assert "ticket" not in none
    resets = [e for e in of_type(events, "context") if e["source"] == "reset"]
    assert len(resets) == 2


def test_set_application_name_changes_the_context(rg: RecordedGateway) -> None:
    with psycopg.connect(rg.gw.dsn("agent-app", application_name="first"), autocommit=True) as c:
        session_id = show_session_id(c)
        c.execute("SET application_name = 'second'")
        c.execute("SELECT 'renamed' AS a").fetchall()
    events = wait_ended(rg.data_dir, session_id)
    assert events[0]["application_name"] == "first"
    assert statement_with(events, "'renamed'")["context"]["application_name"] == "second"


def test_pipelined_statements_keep_their_own_comment_and_rows(rg: RecordedGateway) -> None:
    with psycopg.connect(rg.gw.dsn("agent-pipe"), autocommit=True) as conn:
        session_id = show_session_id(conn)
        with conn.pipeline():
            cursors = [
                conn.execute(
                    f"SELECT %s::text AS v, 'p{i}' AS marker /*prompt='step%%20{i}'*/",
                    (f"value {i}",),
                )
                for i in range(3)
            ]
        assert [c.fetchall() for c in cursors] == [[(f"value {i}", f"p{i}")] for i in range(3)]
    events = wait_ended(rg.data_dir, session_id)
    for i in range(3):
        stmt = statement_with(events, f"'p{i}'")
        assert stmt["context"]["prompt"] == f"step {i}"
        assert stmt["params"] == [f"value {i}"]
        [result] = following(events, stmt, "result")
        assert result["rows"] == [[f"value {i}", f"p{i}"]]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(["not", "an", "object"], id="array"),
        pytest.param({}, id="empty"),
    ],
)
def test_api_context_bad_bodies_are_client_errors(rg: RecordedGateway, body: Any) -> None:
    token = rg.gw.token("agent-api")
    with psycopg.connect(rg.gw.dsn("agent-api", password=token), autocommit=True) as conn:
        session_id = show_session_id(conn)
        r = httpx.post(
            f"{rg.gw.api_url}/api/v1/sessions/{session_id}/context",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert 400 <= r.status_code < 500, (r.status_code, r.text)
        # the session is unaffected
        assert conn.execute("SELECT 'still here' AS a").fetchall() == [("still here",)]


def test_api_context_read_only_key_is_refused_whole(rg: RecordedGateway) -> None:
    token = rg.gw.token("agent-api")
    with psycopg.connect(rg.gw.dsn("agent-api", password=token), autocommit=True) as conn:
        session_id = show_session_id(conn)
        r = httpx.post(
            f"{rg.gw.api_url}/api/v1/sessions/{session_id}/context",
            json={"prompt": "half applied", "session_id": "forged"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        conn.execute("SELECT 'after the refusal' AS a").fetchall()
    events = wait_ended(rg.data_dir, session_id)
    after = statement_with(events, "'after the refusal'")
    # nothing of a refused body is in force, and the refusal is a client error
    assert "prompt" not in after["context"], after["context"]
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
