"""The recorded-sessions endpoints, against a real SQLite index and real recording files
written by RecordingWriter, with real tokens from a local issuer."""

from __future__ import annotations

import time
from typing import Any

import pytest
from api_helpers import PROMPT, ApiClient, Env, Run, record

from pgwarden.api.app import create_app
from pgwarden.auth import LocalIssuer
from pgwarden.recording.crypto import RecordingCipher
from pgwarden.recording.events import format_ts
from pgwarden.store import SessionRecord

SESSION_PATHS = ("/api/v1/sessions", "/api/v1/sessions/s-1", "/api/v1/sessions/s-1/events")


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in rows]


# --------------------------------------------------------------------------------------------
# who may read


def test_every_session_endpoint_needs_a_valid_token(env: Env) -> None:
    record(env, "s-1")
    stranger = LocalIssuer.generate().issue("audrey", ["auditors"])  # right name, wrong key
    with env.client() as c:
        for path in SESSION_PATHS:
            for headers in (
                {},
                {"Authorization": "Basic YXVkcmV5Ong="},
                {"Authorization": "Bearer not-a-token"},
                {"Authorization": f"Bearer {stranger}"},
            ):
                r = c.get(path, headers=headers)
                assert r.status_code == 401, (path, headers, r.text)
                assert r.headers["www-authenticate"] == "Bearer"
                assert PROMPT not in r.text


def test_a_non_auditor_gets_403_for_other_sessions(env: Env) -> None:
    record(env, "s-1", subject="agent-7")
    with env.client() as c:
        for who in ("agent-9", "dora"):  # another agent; an approver is not an auditor
            for path in SESSION_PATHS:
                r = c.get(path, headers=env.auth(who))
                assert r.status_code == 403, (who, path, r.text)
                assert PROMPT not in r.text
        # unknown ids answer 403 too: a non-auditor cannot probe which sessions exist
        for path in ("/api/v1/sessions/nope", "/api/v1/sessions/nope/events"):
            assert c.get(path, headers=env.auth("agent-9")).status_code == 403


def test_a_caller_reads_their_own_sessions(env: Env) -> None:
    record(env, "s-1", subject="agent-7")
    record(env, "s-2", subject="agent-9")
    with env.client() as c:
        me = env.auth("agent-7")
        # listing everyone is auditors' business, listing oneself is not
        r = c.get("/api/v1/sessions", headers=me)
        assert r.status_code == 403 and "subject=" in r.json()["detail"]
        assert c.get("/api/v1/sessions?subject=agent-9", headers=me).status_code == 403
        r = c.get("/api/v1/sessions?subject=agent-7", headers=me)
        assert r.status_code == 200 and ids(r.json()) == ["s-1"]
        assert c.get("/api/v1/sessions/s-1", headers=me).json()["subject"] == "agent-7"
        events = c.get("/api/v1/sessions/s-1/events", headers=me).json()
        assert any(e["type"] == "statement" for e in events)


def test_own_means_same_issuer_too(env: Env) -> None:
    """A session of an OIDC identity whose subject happens to equal a local token's subject
    is not that local caller's session."""
    run = Run(env, "s-oidc", subject="agent-7")
    run.end()
    env.store.delete_session("s-oidc")
    env.store.create_session(
        SessionRecord(
            id="s-oidc",
            subject="agent-7",
            issuer="https://idp.example.com",
            target="shop",
            started_at=time.time() - 10,
        )
    )
    with env.client() as c:
        me = env.auth("agent-7")
        assert c.get("/api/v1/sessions/s-oidc", headers=me).status_code == 403
        assert c.get("/api/v1/sessions?subject=agent-7", headers=me).json() == []
        assert c.get("/api/v1/sessions/s-oidc", headers=env.auth("audrey")).status_code == 200


def test_auditors_and_admins_read_every_session(env: Env) -> None:
    record(env, "s-1", subject="agent-7")
    record(env, "s-2", subject="agent-9")
    with env.client() as c:
        for who in ("audrey", "adam"):
            r = c.get("/api/v1/sessions", headers=env.auth(who))
            assert r.status_code == 200
            assert sorted(ids(r.json())) == ["s-1", "s-2"]
            for sid in ("s-1", "s-2"):
                assert c.get(f"/api/v1/sessions/{sid}", headers=env.auth(who)).status_code == 200
            assert c.get("/api/v1/sessions/nope", headers=env.auth(who)).status_code == 404


def test_without_a_recording_setup_503(env: Env) -> None:
    with ApiClient(create_app(verifier=env.verifier)) as c:
        for path in SESSION_PATHS:
            assert c.get(path).status_code == 401  # authentication first
            assert c.get(path, headers=env.auth("audrey")).status_code == 503


# --------------------------------------------------------------------------------------------
# the list and its filters


def test_list_is_sessions_list_json(env: Env) -> None:
    at = 1_780_000_000.25
    record(env, "s-1", at=at)
    with env.client() as c:
        [row] = c.get("/api/v1/sessions", headers=env.auth("audrey")).json()
    assert row["id"] == "s-1"
    assert row["subject"] == "agent-7"
    assert row["issuer"] == LocalIssuer.ISSUER
    assert row["target"] == "shop"
    assert row["started_at"] == format_ts(at)
    assert row["ended_at"].endswith("Z")
    assert row["state"] == "ended"
    assert row["statements"] == 1 and row["allowed"] == 1
    assert row["groups"] == ["agents"]


def test_list_filters(env: Env) -> None:
    now = time.time()
    record(env, "old", subject="agent-7", target="shop", at=now - 10 * 86400)
    record(env, "mid", subject="agent-9", target="crm", at=now - 2 * 3600, action="deny")
    record(env, "new", subject="agent-7", target="crm", at=now - 60)
    crashed = Run(env, "live", subject="agent-9", at=now - 30)
    crashed.statement("SELECT 1", context={"prompt": "p"})
    env.store.mark_active_crashed(ended_at=now, reason="gateway crashed")

    with env.client() as c:

        def listing(query: str) -> list[str]:
            r = c.get(f"/api/v1/sessions{query}", headers=env.auth("audrey"))
            assert r.status_code == 200, (query, r.text)
            return ids(r.json())

        assert listing("") == ["live", "new", "mid", "old"]  # newest first
        assert listing("?subject=agent-7") == ["new", "old"]
        assert listing("?target=crm") == ["new", "mid"]
        assert listing("?since=3h") == ["live", "new", "mid"]
        assert listing("?until=1h") == ["mid", "old"]
        assert listing(f"?since=@{now - 3 * 86400:.0f}&until=5m") == ["mid"]
        assert listing("?since=2001-01-01&until=2001-01-02") == []
        assert listing("?decision=denied") == ["mid"]
        assert listing("?decision=allowed&subject=agent-9") == ["live"]
        assert listing("?state=crashed") == ["live"]
        assert listing("?state=ended&target=shop") == ["old"]
        assert listing("?limit=2") == ["live", "new"]

        # a start time copied from a listing selects its own session (microsecond rounding)
        started = c.get("/api/v1/sessions/new", headers=env.auth("audrey")).json()["started_at"]
        assert listing(f"?since={started}")[-1] == "new"


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("?decision=maybe", 400),
        ("?state=sleeping", 400),
        ("?since=yesterday-ish", 400),
        ("?until=%2B%2B", 400),
        ("?limit=0", 422),
        ("?limit=100001", 422),
        ("?limit=ten", 422),
    ],
)
def test_bad_filters(env: Env, query: str, status: int) -> None:
    with env.client() as c:
        r = c.get(f"/api/v1/sessions{query}", headers=env.auth("audrey"))
    assert r.status_code == status, r.text


# --------------------------------------------------------------------------------------------
# one session, its verification and its events


def test_session_with_verification(env: Env) -> None:
    record(env, "s-1")
    with env.client() as c:
        doc = c.get("/api/v1/sessions/s-1", headers=env.auth("audrey")).json()
    assert doc["id"] == "s-1" and doc["indexed"] is True and doc["state"] == "ended"
    v = doc["verification"]
    assert v["status"] == "intact"
    assert v["first_bad_seq"] is None
    assert v["events"] == doc["last_seq"]


def test_events_carry_the_prompt(env: Env) -> None:
    run = Run(env, "s-1")
    run.set_prompt(PROMPT)
    seq = run.statement(
        "SELECT email FROM customers WHERE id = 42",
        context={"prompt": PROMPT, "traceparent": "00-abc-01"},
    )
    run.end()
    with env.client() as c:
        r = c.get("/api/v1/sessions/s-1/events", headers=env.auth("audrey"))
    assert r.status_code == 200
    assert r.headers["x-pgwarden-verification"] == "intact"
    events = r.json()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    types = [e["type"] for e in events]
    assert types[0] == "session_start" and types[-2:] == ["session_end", "checkpoint"]
    [stmt] = [e for e in events if e["type"] == "statement"]
    assert stmt["seq"] == seq
    assert stmt["sql"] == "SELECT email FROM customers WHERE id = 42"
    assert stmt["context"] == {"prompt": PROMPT, "traceparent": "00-abc-01"}
    assert stmt["decision"]["action"] == "allow"
    for key in ("session", "ts", "prev", "hash", "v"):
        assert key in stmt
    [ctx] = [e for e in events if e["type"] == "context"]
    assert ctx["context"] == {"prompt": PROMPT}
    [result] = [e for e in events if e["type"] == "result"]
    assert result["statement_seq"] == seq and result["rows"] == [["1"]]


def test_events_paging(env: Env) -> None:
    run = Run(env, "s-1")
    for i in range(5):
        run.statement(f"SELECT {i}", context={"prompt": f"p{i}"})
    run.end()
    with env.client() as c:
        auth = env.auth("audrey")
        everything = c.get("/api/v1/sessions/s-1/events", headers=auth).json()
        page = c.get("/api/v1/sessions/s-1/events?after=3&limit=4", headers=auth).json()
        assert [e["seq"] for e in page] == [4, 5, 6, 7]
        assert page == everything[3:7]
        assert c.get("/api/v1/sessions/s-1/events?after=999", headers=auth).json() == []
        assert c.get("/api/v1/sessions/s-1/events?after=-1", headers=auth).status_code == 422


def test_tampered_recording_is_reported_tampered(env: Env) -> None:
    record(env, "s-1")
    path = env.recording_path("s-1")
    data = path.read_bytes()
    assert b"SELECT count(*) FROM orders" in data
    path.write_bytes(data.replace(b"SELECT count(*) FROM orders", b"SELECT count(*) FROM ordersX"))
    with env.client() as c:
        auth = env.auth("audrey")
        doc = c.get("/api/v1/sessions/s-1", headers=auth).json()
        assert doc["verification"]["status"] == "tampered"
        assert doc["verification"]["first_bad_seq"] == 3  # start, context, the statement
        assert "hash mismatch" in doc["verification"]["detail"]
        r = c.get("/api/v1/sessions/s-1/events", headers=auth)
        # what is left is still shown, with the verdict beside it
        assert r.status_code == 200
        assert r.headers["x-pgwarden-verification"] == "tampered"
        assert any(e.get("sql") == "SELECT count(*) FROM ordersX" for e in r.json())


def test_truncated_recording_is_tampered_and_crash_is_unterminated(env: Env) -> None:
    record(env, "s-1")
    path = env.recording_path("s-1")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-2]))  # drop session_end and the final checkpoint
    crashed = Run(env, "s-2")
    crashed.statement("SELECT 1", context={"prompt": "p"})
    crashed.crash()
    with env.client() as c:
        auth = env.auth("audrey")
        v1 = c.get("/api/v1/sessions/s-1", headers=auth).json()["verification"]
        assert v1["status"] == "tampered" and "truncated" in v1["detail"]
        v2 = c.get("/api/v1/sessions/s-2", headers=auth).json()["verification"]
        assert v2["status"] == "unterminated"


def test_missing_recording_and_recording_without_index(env: Env) -> None:
    record(env, "s-1")
    record(env, "s-2")
    env.recording_path("s-1").unlink()
    env.store.delete_session("s-2")
    with env.client() as c:
        auth = env.auth("audrey")
        doc = c.get("/api/v1/sessions/s-1", headers=auth).json()
        assert doc["indexed"] is True and doc["verification"]["status"] == "missing"
        r = c.get("/api/v1/sessions/s-1/events", headers=auth)
        assert r.status_code == 404 and "missing" in r.json()["detail"]
        assert r.headers["x-pgwarden-verification"] == "missing"

        # the index lost s-2, its recording is still evidence: auditors see it
        doc = c.get("/api/v1/sessions/s-2", headers=auth).json()
        assert doc == {"id": "s-2", "indexed": False, "verification": doc["verification"]}
        assert doc["verification"]["status"] == "intact"
        events = c.get("/api/v1/sessions/s-2/events", headers=auth).json()
        assert any(e.get("context", {}).get("prompt") == PROMPT for e in events)
        # its owner cannot be established from the index: not for a non-auditor
        assert c.get("/api/v1/sessions/s-2", headers=env.auth("agent-7")).status_code == 403


def test_odd_session_ids_are_not_found(env: Env) -> None:
    with env.client() as c:
        auth = env.auth("audrey")
        for sid in ("..%2F..%2Fetc%2Fpasswd", "%2E%2E", "a" * 200, "-x", "a%00b"):
            r = c.get(f"/api/v1/sessions/{sid}", headers=auth)
            assert r.status_code == 404, (sid, r.status_code)


def test_encrypted_recordings(tmp_path: Any) -> None:
    cipher = RecordingCipher.from_env({"PGWARDEN_RECORDING_KEY": RecordingCipher.generate_key()})
    assert cipher is not None
    env = Env.open(tmp_path / "enc", cipher=cipher)
    try:
        record(env, "s-1")
        assert PROMPT.encode() not in env.recording_path("s-1").read_bytes()
        with env.client() as c:  # the gateway holds the key: decrypted
            events = c.get("/api/v1/sessions/s-1/events", headers=env.auth("audrey")).json()
            [stmt] = [e for e in events if e["type"] == "statement"]
            assert stmt["context"]["prompt"] == PROMPT
            assert all("unreadable" not in e for e in events)
        keyless = Env(**{**env.__dict__, "cipher": None})
        with keyless.client() as c:  # no key: sealed payloads, envelopes still in place
            r = c.get("/api/v1/sessions/s-1/events", headers=keyless.auth("audrey"))
            assert r.headers["x-pgwarden-verification"] == "intact"  # verifying needs no key
            events = r.json()
            assert PROMPT not in r.text
            stmt = next(e for e in events if e.get("type") == "statement")
            assert "encrypted" in stmt["unreadable"] and stmt["seq"] == stmt["line"]
            assert "enc" not in stmt
            assert events[-1]["type"] == "checkpoint" and "unreadable" not in events[-1]
    finally:
        env.close()


def test_a_live_sessions_line_in_flight_is_not_damage(env: Env) -> None:
    live = Run(env, "s-live")
    live.statement("SELECT 1", context={"prompt": "p"})
    record(env, "s-done")
    for sid in ("s-live", "s-done"):
        with env.recording_path(sid).open("ab") as f:
            f.write(b'{"v":1,"session":"')  # a writer half-way through an append
    with env.client() as c:
        auth = env.auth("audrey")
        live_doc = c.get("/api/v1/sessions/s-live", headers=auth).json()
        assert live_doc["state"] == "active"
        assert live_doc["verification"]["status"] == "unterminated"
        events = c.get("/api/v1/sessions/s-live/events", headers=auth).json()
        assert all("unreadable" not in e for e in events)
        # a session that ended cleanly has no writer: a trailing fragment is damage
        done = c.get("/api/v1/sessions/s-done", headers=auth).json()["verification"]
        assert done["status"] == "tampered" and "incomplete" in done["detail"]
