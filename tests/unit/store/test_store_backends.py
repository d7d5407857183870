"""The Store contract, on SqliteStore and MemoryStore alike, plus SQLite specifics."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgwarden.store import open_store
from pgwarden.store.base import ApprovalRecord, SessionFilter, SessionRecord, Store, StoreError
from pgwarden.store.memory import MemoryStore
from pgwarden.store.sqlite import SCHEMA_VERSION, SqliteStore


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store = SqliteStore(tmp_path / "pgwarden.db") if request.param == "sqlite" else MemoryStore()
    yield s
    s.close()


def _session(
    sid: str, subject: str = "agent-7", target: str = "shop", started: float = 100.0
) -> SessionRecord:
    return SessionRecord(
        id=sid,
        subject=subject,
        issuer="pgwarden-local",
        target=target,
        started_at=started,
        groups=("agents", "readers"),
        client_addr="127.0.0.1:5000",
        application_name="psql",
        gateway_instance="gw-1",
    )


def _approval(aid: str, session: str = "s1", at: float = 10.0) -> ApprovalRecord:
    return ApprovalRecord(
        id=aid,
        session_id=session,
        sql="DROP TABLE orders",
        requester="agent-7",
        target="shop",
        requested_at=at,
        statement_hash="sha256:abc",
        params=("5", None, {"encoding": "base64", "data": "AA==", "format": "binary"}),
        expires_at=at + 600,
        rule="hold-ddl",
        requester_groups=("agents",),
    )


def test_session_crud(store: Store) -> None:
    s = _session("s1")
    store.create_session(s)
    assert store.get_session("s1") == s
    assert store.get_session("nope") is None
    with pytest.raises(StoreError):
        store.create_session(s)
    store.record_progress("s1", 5, "a" * 64)
    store.record_progress("s1", 3, "b" * 64)  # never goes backwards
    got = store.get_session("s1")
    assert got is not None and (got.last_seq, got.last_hash) == (5, "a" * 64)
    store.count_statement("s1", "allowed")
    store.count_statement("s1", "allowed", masked=True)
    store.count_statement("s1", "denied")
    store.count_statement("s1", "reviewed")
    got = store.get_session("s1")
    assert got is not None
    assert (got.statements, got.allowed, got.denied, got.reviewed, got.masked) == (4, 2, 1, 1, 1)
    store.end_session("s1", ended_at=200.0, reason="client closed", last_seq=9, last_hash="c" * 64)
    got = store.get_session("s1")
    assert got is not None
    assert (got.state, got.ended_at, got.end_reason, got.last_seq) == (
        "ended",
        200.0,
        "client closed",
        9,
    )
    assert got.to_dict()["groups"] == ["agents", "readers"]
    with pytest.raises(StoreError):
        store.end_session("nope", ended_at=1.0, reason="x")
    with pytest.raises(StoreError):
        store.count_statement("nope", "allowed")
    with pytest.raises(StoreError):
        store.record_progress("nope", 1, "a" * 64)
    with pytest.raises(ValueError):
        store.end_session("s1", ended_at=1.0, reason="x", state="active")
    with pytest.raises(ValueError):
        store.count_statement("s1", "masked")  # type: ignore[arg-type]
    assert store.delete_session("s1") is True
    assert store.delete_session("s1") is False
    assert store.get_session("s1") is None


def test_session_filters(store: Store) -> None:
    store.create_session(_session("a", subject="agent-7", target="shop", started=100))
    store.create_session(_session("b", subject="agent-8", target="shop", started=200))
    store.create_session(_session("c", subject="agent-7", target="crm", started=300))
    store.create_session(_session("d", subject="alice", target="crm", started=400))
    store.count_statement("a", "denied")
    store.count_statement("b", "allowed", masked=True)
    store.count_statement("c", "reviewed")
    store.end_session("a", ended_at=150, reason="x")
    store.end_session("b", ended_at=250, reason="x", state="crashed")

    def ids(**kw: object) -> list[str]:
        return [s.id for s in store.list_sessions(SessionFilter(**kw))]  # type: ignore[arg-type]

    assert ids() == ["d", "c", "b", "a"]  # newest first
    assert [s.id for s in store.list_sessions()] == ["d", "c", "b", "a"]
    assert ids(subject="agent-7") == ["c", "a"]
    assert ids(target="crm") == ["d", "c"]
    assert ids(subject="agent-7", target="crm") == ["c"]
    assert ids(since=200, until=400) == ["c", "b"]
    assert ids(decision="denied") == ["a"]
    assert ids(decision="masked") == ["b"]
    assert ids(decision="reviewed") == ["c"]
    assert ids(decision="allowed") == ["b"]
    assert ids(state="active") == ["d", "c"]
    assert ids(state="crashed") == ["b"]
    assert ids(ended_before=200) == ["a"]
    assert ids(limit=2) == ["d", "c"]
    with pytest.raises(ValueError):
        SessionFilter(decision="everything")
    with pytest.raises(ValueError):
        SessionFilter(state="sleeping")


def test_mark_active_crashed(store: Store) -> None:
    store.create_session(_session("a"))
    store.create_session(SessionRecord("b", "x", "i", "shop", 1.0, gateway_instance="gw-2"))
    store.create_session(_session("c"))
    store.end_session("c", ended_at=5.0, reason="done")
    assert store.mark_active_crashed(ended_at=9.0, reason="restart", gateway_instance="gw-1") == [
        "a"
    ]
    a = store.get_session("a")
    assert a is not None and (a.state, a.ended_at, a.end_reason) == ("crashed", 9.0, "restart")
    assert store.mark_active_crashed(ended_at=9.0, reason="restart") == ["b"]
    c = store.get_session("c")
    assert c is not None and c.state == "ended"


def test_approvals_crud(store: Store) -> None:
    store.create_approval(_approval("ap1", at=10))
    store.create_approval(_approval("ap2", session="s2", at=5))
    with pytest.raises(StoreError):
        store.create_approval(_approval("ap1"))
    got = store.get_approval("ap1")
    assert got == _approval("ap1", at=10)
    assert got is not None and got.to_dict()["params"][2]["encoding"] == "base64"
    assert [a.id for a in store.list_approvals()] == ["ap2", "ap1"]
    assert [a.id for a in store.list_approvals(state="pending", session_id="s1")] == ["ap1"]
    decided = store.decide_approval(
        "ap1", state="approved", decided_at=20, decider="dba", reason="ok"
    )
    assert decided is not None
    assert (decided.state, decided.decided_at, decided.deciders, decided.reasons) == (
        "approved",
        20,
        ("dba",),
        ("ok",),
    )
    # compare-and-set: a second decision (or the timeout) loses
    assert store.decide_approval("ap1", state="denied", decided_at=21, decider="dba2") is None
    assert store.decide_approval("ap1", state="expired", decided_at=22) is None
    assert store.decide_approval("nope", state="denied", decided_at=1) is None
    assert [a.id for a in store.list_approvals(state="approved")] == ["ap1"]
    assert store.decide_approval("ap2", state="withdrawn", decided_at=30) is not None
    assert store.delete_approval("ap2") is True
    assert store.delete_approval("ap2") is False
    with pytest.raises(ValueError):
        store.decide_approval("ap1", state="maybe", decided_at=1, expected_state="approved")  # type: ignore[arg-type]


def test_concurrent_use(store: Store) -> None:
    store.create_session(_session("s1"))
    for i in range(8):
        store.create_approval(_approval(f"ap{i}"))
    wins: list[str] = []

    def work(i: int) -> None:
        for _ in range(50):
            store.count_statement("s1", "allowed")
        if store.decide_approval("ap0", state="approved", decided_at=1.0, decider=f"d{i}"):
            wins.append(f"d{i}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = store.get_session("s1")
    assert got is not None and got.allowed == 400
    assert len(wins) == 1


def test_sqlite_schema_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "pgwarden.db"
    s = SqliteStore(path)
    assert s.schema_version == SCHEMA_VERSION == 1
    s.create_session(_session("s1"))
    s.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    s2 = SqliteStore(path)  # reopening migrates nothing and keeps data
    assert s2.get_session("s1") == _session("s1")
    s2.close()
    other = SqliteStore(path)  # two stores on one file (gateway and CLI)
    again = SqliteStore(path)
    other.create_session(_session("s2"))
    assert again.get_session("s2") is not None
    other.close()
    again.close()


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "pgwarden.db"
    SqliteStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="newer"):
        SqliteStore(path)


def test_open_store(tmp_path: Path) -> None:
    s = open_store(None, tmp_path)
    assert isinstance(s, SqliteStore) and s.path == tmp_path / "pgwarden.db"
    s.close()
    s = open_store(f"sqlite://{tmp_path}/other.db", tmp_path)
    assert isinstance(s, SqliteStore) and s.path == tmp_path / "other.db"
    s.close()
    with pytest.raises(StoreError):
        open_store("postgresql://localhost/x", tmp_path)
    with pytest.raises(StoreError):
        open_store("mysql://x", tmp_path)
