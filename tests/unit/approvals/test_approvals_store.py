"""``Store.add_approval_vote``: one approver's vote, compare-and-set on state and deciders,
on SqliteStore and MemoryStore alike."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgwarden.store import ApprovalRecord, MemoryStore, SqliteStore, Store


@pytest.fixture(params=["sqlite", "memory"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store = SqliteStore(tmp_path / "pgwarden.db") if request.param == "sqlite" else MemoryStore()
    s.create_approval(
        ApprovalRecord(
            id="apr_1",
            session_id="s1",
            sql="DROP TABLE orders",
            requester="agent-7",
            target="shop",
            requested_at=10.0,
            statement_hash="a" * 64,
            expires_at=610.0,
        )
    )
    yield s
    s.close()


def test_votes_then_decides(any_store: Store) -> None:
    one = any_store.add_approval_vote(
        "apr_1", decider="alice", reason="", at=20.0, expected_deciders=()
    )
    assert one is not None
    assert (one.state, one.deciders, one.reasons, one.decided_at) == (
        "pending",
        ("alice",),
        ("",),
        None,
    )
    assert any_store.get_approval("apr_1") == one
    # a stale view of the deciders loses
    assert (
        any_store.add_approval_vote(
            "apr_1", decider="bob", reason="ok", at=21.0, expected_deciders=(), state="approved"
        )
        is None
    )
    two = any_store.add_approval_vote(
        "apr_1", decider="bob", reason="ok", at=22.0, expected_deciders=["alice"], state="approved"
    )
    assert two is not None
    assert (two.state, two.deciders, two.reasons, two.decided_at) == (
        "approved",
        ("alice", "bob"),
        ("", "ok"),
        22.0,
    )
    # decided: no more votes, no expiry
    assert (
        any_store.add_approval_vote(
            "apr_1",
            decider="carol",
            reason="",
            at=23.0,
            expected_deciders=("alice", "bob"),
            state="denied",
        )
        is None
    )
    assert any_store.decide_approval("apr_1", state="expired", decided_at=24.0) is None
    assert any_store.get_approval("apr_1") == two


def test_vote_loses_to_expiry_and_bad_input(any_store: Store) -> None:
    assert any_store.decide_approval("apr_1", state="expired", decided_at=700.0) is not None
    assert (
        any_store.add_approval_vote(
            "apr_1", decider="alice", reason="", at=701.0, expected_deciders=(), state="approved"
        )
        is None
    )
    assert (
        any_store.add_approval_vote(
            "apr_nope", decider="alice", reason="", at=1.0, expected_deciders=()
        )
        is None
    )
    with pytest.raises(ValueError):
        any_store.add_approval_vote("apr_1", decider="", reason="", at=1.0, expected_deciders=())
    with pytest.raises(ValueError):
        any_store.add_approval_vote(
            "apr_1",
            decider="x",
            reason="",
            at=1.0,
            expected_deciders=(),
            state="maybe",  # type: ignore[arg-type]
        )


def test_concurrent_votes_one_winner(any_store: Store) -> None:
    wins: list[str] = []
    barrier = threading.Barrier(8)

    def vote(i: int) -> None:
        barrier.wait()
        if any_store.add_approval_vote(
            "apr_1", decider=f"d{i}", reason="", at=1.0, expected_deciders=()
        ):
            wins.append(f"d{i}")

    threads = [threading.Thread(target=vote, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    got = any_store.get_approval("apr_1")
    assert got is not None and got.deciders == (wins[0],)
