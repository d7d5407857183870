"""ApprovalService on a real SQLite store: requests, decisions, the rules about who may decide,
the two-person rule, expiry, withdrawal, restarts, races, and decisions made elsewhere."""

from __future__ import annotations

import asyncio
import random
import re
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from approvals_helpers import PEOPLE, FakeClock, closed_port

from pgwarden.approvals import (
    ApprovalError,
    ApprovalService,
    Outcome,
    PendingApproval,
    statement_hash,
)
from pgwarden.auth import Identity
from pgwarden.config import ApprovalsConfig
from pgwarden.store import ApprovalRecord, SqliteStore

T = TypeVar("T")

SQL = "DROP TABLE orders"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def ask(
    svc: ApprovalService,
    who: Identity,
    *,
    sql: str = SQL,
    params: tuple[Any, ...] = (),
    session_id: str = "sess-1",
) -> PendingApproval:
    return await svc.request(
        session_id=session_id,
        sql=sql,
        params=params,
        requester=who,
        target="shop",
        rule="hold-ddl",
        reason="DROP is held for approval",
    )


async def refused(coro: Coroutine[Any, Any, Any], status: int, pattern: str) -> ApprovalError:
    with pytest.raises(ApprovalError) as info:
        await coro
    assert info.value.status == status, info.value
    assert re.search(pattern, info.value.message), info.value.message
    return info.value


async def waiting(pending: PendingApproval) -> asyncio.Task[Outcome]:
    task = asyncio.create_task(pending.wait())
    await asyncio.sleep(0.05)
    assert not task.done()
    return task


# --------------------------------------------------------------------------------------------
# requesting


def test_request_persists_a_bound_pending_record(make_service, people, store) -> None:
    svc = make_service(timeout="10m")

    async def main() -> PendingApproval:
        pending = await ask(svc, people["agent-7"], params=("5", None, b"\x00\xff"))
        await svc.aclose()
        return pending

    before = time.time()
    pending = run(main())
    rec = pending.record
    assert re.fullmatch(r"apr_[a-z0-9]{10}", rec.id)
    assert store.get_approval(rec.id) == rec
    assert rec.state == "pending"
    assert (rec.requester, rec.requester_groups, rec.target, rec.rule, rec.session_id) == (
        "agent-7",
        ("agents",),
        "shop",
        "hold-ddl",
        "sess-1",
    )
    assert rec.params == ("5", None, {"encoding": "base64", "data": "AP8="})
    assert before <= rec.requested_at <= time.time()
    assert rec.expires_at == pytest.approx(rec.requested_at + 600)
    assert rec.statement_hash == statement_hash(
        SQL, ["5", None, b"\x00\xff"], session_id="sess-1", target="shop", requester="agent-7"
    )
    assert (rec.deciders, rec.reasons, rec.decided_at) == ((), (), None)
    assert pending.reason == "DROP is held for approval"
    assert svc.approve_url(rec.id) == f"https://console.example/approvals/{rec.id}"
    assert pending.approve_url == svc.approve_url(rec.id)
    notice = pending.notice()
    assert notice.startswith("pgwarden: statement held for approval by rule hold-ddl")
    assert rec.id in notice and pending.approve_url in notice  # type: ignore[operator]
    assert f"pgwarden approvals approve|deny {rec.id}" in notice
    assert "within 10m" in notice
    assert svc.get(rec.id) == rec
    assert svc.list(state="pending") == [rec]
    assert svc.list(state="approved") == []
    with pytest.raises(ApprovalError) as info:
        svc.list(state="maybe")
    assert info.value.status == 400


def test_ids_are_unique_and_no_console_means_no_url(make_service, people) -> None:
    svc = make_service(console_url=None)

    async def main() -> set[str]:
        ids = {(await ask(svc, people["agent-7"])).id for _ in range(50)}
        await svc.aclose()
        return ids

    ids = run(main())
    assert len(ids) == 50
    assert svc.approve_url(next(iter(ids))) is None


def test_request_does_not_wait_for_webhooks(make_service, people) -> None:
    """A webhook that cannot be reached neither slows nor fails the request."""
    dead = f"http://127.0.0.1:{closed_port()}/hook"
    svc = make_service(notify=[{"url": dead}, {"url": dead, "format": "slack"}])

    async def main() -> float:
        started = time.monotonic()
        await ask(svc, people["agent-7"])
        took = time.monotonic() - started
        await svc.aclose()  # cancels the deliveries still retrying
        return took

    assert run(main()) < 0.5


def test_request_after_aclose_is_refused(make_service, people) -> None:
    svc = make_service()

    async def main() -> None:
        await svc.aclose()
        await refused(ask(svc, people["agent-7"]), 503, "shut down")

    run(main())


# --------------------------------------------------------------------------------------------
# deciding


def test_approve_wakes_the_waiter_at_once(make_service, people, store) -> None:
    svc = make_service(poll_interval=30)  # so only the in-process wake can be this quick

    async def main() -> tuple[Outcome, float, ApprovalRecord]:
        pending = await ask(svc, people["agent-7"])
        task = await waiting(pending)
        started = time.monotonic()
        decided = await svc.decide(pending.id, people["alice"], approve=True, reason=" fine ")
        outcome = await asyncio.wait_for(task, 5)
        took = time.monotonic() - started
        await svc.aclose()
        return outcome, took, decided

    outcome, took, decided = run(main())
    assert took < 0.5
    assert outcome.state == "approved" and outcome.approved
    assert outcome.record == decided == store.get_approval(decided.id)
    assert decided.deciders == ("alice",)
    assert decided.reasons == ("fine",)
    assert decided.decided_at is not None


def test_deny(make_service, people) -> None:
    svc = make_service()

    async def main() -> Outcome:
        pending = await ask(svc, people["agent-7"])
        task = await waiting(pending)
        await svc.decide(pending.id, people["bob"], approve=False, reason="not on a Friday")
        outcome = await asyncio.wait_for(task, 5)
        await svc.aclose()
        return outcome

    outcome = run(main())
    assert outcome.state == "denied" and not outcome.approved
    assert outcome.record.deciders == ("bob",)
    assert outcome.record.reasons == ("not on a Friday",)


def test_reason_is_optional_and_bounded(make_service, people) -> None:
    svc = make_service(min_approvals=2)

    async def main() -> ApprovalRecord:
        pending = await ask(svc, people["agent-7"])
        await refused(
            svc.decide(pending.id, people["alice"], approve=True, reason="x" * 2001), 400, "reason"
        )
        await svc.decide(pending.id, people["alice"], approve=True, reason=None)
        rec = await svc.decide(pending.id, people["bob"], approve=True, reason="ok")
        await svc.aclose()
        return rec

    rec = run(main())
    # reasons[i] belongs to deciders[i]; "" when none was given
    assert (rec.state, rec.deciders, rec.reasons) == ("approved", ("alice", "bob"), ("", "ok"))


def test_unknown_id(make_service, people) -> None:
    svc = make_service()
    run(refused(svc.decide("apr_nosuchthing", people["alice"], approve=True, reason=None), 404, ""))


def test_nobody_approves_or_denies_their_own_statement(make_service, people, store) -> None:
    """Even a requester who is in the approver group (agent-7 with a dba token)."""
    svc = make_service()

    async def main() -> str:
        pending = await ask(svc, people["agent-7@dba"])
        await refused(
            svc.decide(pending.id, people["agent-7@dba"], approve=True, reason=None),
            403,
            "nobody may approve their own statement",
        )
        await refused(
            svc.decide(pending.id, people["agent-7@dba"], approve=False, reason=None),
            403,
            "their own statement",
        )
        await svc.aclose()
        return pending.id

    aid = run(main())
    rec = store.get_approval(aid)
    assert rec is not None and (rec.state, rec.deciders) == ("pending", ())


@pytest.mark.parametrize(
    "spelling",
    ["Agent-7", "AGENT-7", " agent-7 ", "\uff41\uff47\uff45\uff4e\uff54-7", "agent\u200b-7"],
)
def test_own_statement_in_another_spelling(make_service, people, spelling) -> None:
    """Subjects are case-sensitive identifiers, but for "is this the requester?" pgwarden
    fails closed: another case, Unicode form or invisible character is the same person."""
    assert spelling in PEOPLE and people[spelling].subject == spelling
    svc = make_service()

    async def main() -> None:
        pending = await ask(svc, people["agent-7"])
        await refused(
            svc.decide(pending.id, people[spelling], approve=True, reason=None),
            403,
            "nobody may approve their own statement",
        )
        await svc.aclose()

    run(main())


def test_only_approver_groups_decide(make_service, people) -> None:
    svc = make_service()

    async def main() -> None:
        pending = await ask(svc, people["agent-7"])
        for name in ("mallory", "dave-wronggroup", "agent-7"):
            for approve in (True, False):
                await refused(
                    svc.decide(pending.id, people[name], approve=approve, reason=None),
                    403,
                    r"only members of the approver groups \(dba\)",
                )
        assert svc.get(pending.id).state == "pending"  # type: ignore[union-attr]
        await svc.aclose()

    run(main())


def test_a_decided_request_stays_decided(make_service, people) -> None:
    """Approve twice, deny after approve, approve after deny: 409, nothing changes."""
    svc = make_service()

    async def main() -> None:
        first = await ask(svc, people["agent-7"])
        approved = await svc.decide(first.id, people["alice"], approve=True, reason="ok")
        for name, approve in (("alice", True), ("bob", True), ("bob", False), ("alice", False)):
            await refused(
                svc.decide(first.id, people[name], approve=approve, reason=None),
                409,
                "already approved",
            )
        assert svc.get(first.id) == approved

        second = await ask(svc, people["agent-7"])
        denied = await svc.decide(second.id, people["bob"], approve=False, reason="no")
        await refused(
            svc.decide(second.id, people["alice"], approve=True, reason=None),
            409,
            "already denied",
        )
        assert svc.get(second.id) == denied
        await svc.aclose()

    run(main())


def test_two_person_rule(make_service, people) -> None:
    svc = make_service(min_approvals=2)

    async def main() -> Outcome:
        pending = await ask(svc, people["agent-7"])
        task = await waiting(pending)
        one = await svc.decide(pending.id, people["alice"], approve=True, reason="lgtm")
        assert (one.state, one.deciders, one.decided_at) == ("pending", ("alice",), None)
        await asyncio.sleep(0.05)
        assert not task.done()
        await refused(
            svc.decide(pending.id, people["alice"], approve=True, reason=None),
            409,
            "already voted",
        )
        two = await svc.decide(pending.id, people["bob"], approve=True, reason="ok")
        assert (two.state, two.deciders, two.reasons) == (
            "approved",
            ("alice", "bob"),
            ("lgtm", "ok"),
        )
        outcome = await asyncio.wait_for(task, 5)
        await refused(
            svc.decide(pending.id, people["carol"], approve=True, reason=None),
            409,
            "already approved",
        )
        await svc.aclose()
        return outcome

    outcome = run(main())
    assert outcome.state == "approved"
    assert outcome.record.deciders == ("alice", "bob")


def test_two_person_rule_same_person_in_another_case(make_service, auth, people) -> None:
    """ "alice" and "ALICE" (say, from two identity providers) are one approver, not two."""
    shouting = asyncio.run(auth.verifier.identify(auth.issuer.issue("ALICE", ["dba"])))
    svc = make_service(min_approvals=2)

    async def main() -> None:
        pending = await ask(svc, people["agent-7"])
        await svc.decide(pending.id, people["alice"], approve=True, reason=None)
        await refused(
            svc.decide(pending.id, shouting, approve=True, reason=None), 409, "already voted"
        )
        assert svc.get(pending.id).state == "pending"  # type: ignore[union-attr]
        await svc.aclose()

    run(main())


def test_one_deny_after_an_approval_denies(make_service, people) -> None:
    svc = make_service(min_approvals=3)

    async def main() -> Outcome:
        pending = await ask(svc, people["agent-7"])
        task = await waiting(pending)
        await svc.decide(pending.id, people["alice"], approve=True, reason="ok")
        await svc.decide(pending.id, people["bob"], approve=False, reason="wrong table")
        outcome = await asyncio.wait_for(task, 5)
        await svc.aclose()
        return outcome

    outcome = run(main())
    assert outcome.state == "denied"
    assert (outcome.record.deciders, outcome.record.reasons) == (
        ("alice", "bob"),
        ("ok", "wrong table"),
    )


# --------------------------------------------------------------------------------------------
# expiry


def test_expiry(make_service, people, store) -> None:
    svc = make_service(timeout=0.3)

    async def main() -> tuple[Outcome, float]:
        pending = await ask(svc, people["agent-7"])
        started = time.monotonic()
        outcome = await asyncio.wait_for(pending.wait(), 5)
        took = time.monotonic() - started
        await refused(
            svc.decide(pending.id, people["alice"], approve=True, reason=None),
            409,
            "already expired",
        )
        await svc.aclose()
        return outcome, took

    outcome, took = run(main())
    assert 0.2 <= took < 2.0
    assert outcome.state == "expired"
    assert outcome.record == store.get_approval(outcome.record.id)
    assert outcome.record.deciders == ()
    assert outcome.record.reasons == ("not decided within 0.3s",)


def test_expiry_without_a_waiter(make_service, people, store) -> None:
    """The timer expires a request nobody waits on (a data path that went away)."""
    svc = make_service(timeout=0.2)

    async def main() -> str:
        pending = await ask(svc, people["agent-7"])
        await asyncio.sleep(0.6)
        await svc.aclose()
        return pending.id

    rec = store.get_approval(run(main()))
    assert rec is not None and rec.state == "expired"


def test_approving_past_the_deadline_expires_instead(make_service, people, fake_clock) -> None:
    """No waiter has noticed the deadline yet (a stopped clock in the test): a decision
    arriving after it must not approve."""
    svc = make_service(clock=fake_clock, timeout="10m")

    async def main() -> None:
        pending = await ask(svc, people["agent-7"])
        fake_clock.now += 600  # exactly at the deadline: too late
        await refused(
            svc.decide(pending.id, people["alice"], approve=True, reason=None),
            409,
            "already expired",
        )
        rec = svc.get(pending.id)
        assert rec is not None and (rec.state, rec.deciders) == ("expired", ())
        assert rec.decided_at == fake_clock.now
        outcome = await asyncio.wait_for(pending.wait(), 5)
        assert outcome.state == "expired"
        await svc.aclose()

    run(main())


def test_waiter_notices_the_deadline_with_an_adjusted_clock(
    make_service, people, fake_clock
) -> None:
    svc = make_service(clock=fake_clock, timeout="10m", poll_interval=0.05)

    async def main() -> Outcome:
        pending = await ask(svc, people["agent-7"])
        task = await waiting(pending)
        fake_clock.now += 601
        outcome = await asyncio.wait_for(task, 5)
        await svc.aclose()
        return outcome

    outcome = run(main())
    assert outcome.state == "expired"
    assert outcome.record.reasons == ("not decided within 10m",)


def _race_once(db: Path, people: dict[str, Identity], n: int) -> tuple[Outcome, Any]:
    """One round: the gateway's waiter at its deadline vs. an approver on another thread."""
    clock = FakeClock()
    gateway_store, api_store = SqliteStore(db), SqliteStore(db)
    config = ApprovalsConfig(approvers=["dba"], timeout=60)
    gateway = ApprovalService(gateway_store, config, clock=clock, poll_interval=0.01)
    api = ApprovalService(api_store, config, clock=lambda: 0.0)  # its clock: not late
    decisions: list[Any] = []
    jitter = (random.uniform(0, 0.004), random.uniform(0, 0.004))

    async def main() -> Outcome:
        pending = await ask(gateway, people["agent-7"], session_id=f"s{n}")
        go = threading.Event()

        def approver() -> None:
            go.wait()
            time.sleep(jitter[0])
            try:
                decided = asyncio.run(
                    api.decide(pending.id, people["alice"], approve=True, reason="")
                )
                decisions.append(decided)
            except ApprovalError as exc:
                decisions.append(exc)

        thread = threading.Thread(target=approver)
        thread.start()
        go.set()
        await asyncio.sleep(jitter[1])
        clock.now += 60  # the deadline has come
        outcome = await asyncio.wait_for(pending.wait(), 10)
        await asyncio.to_thread(thread.join)
        await gateway.aclose()
        return outcome

    try:
        outcome = asyncio.run(main())
    finally:
        gateway_store.close()
        api_store.close()
    (decision,) = decisions
    return outcome, decision


def test_decision_racing_the_deadline_has_one_winner(tmp_path: Path, people) -> None:
    """An approver (another thread, its own store connection: as another process would) and
    the deadline race, many times. Whatever wins, the waiter reports exactly what the store
    holds, and an approval never coexists with an expiry."""
    db = tmp_path / "race.db"
    check = SqliteStore(db)
    seen: set[str] = set()
    try:
        for n in range(40):
            outcome, decision = _race_once(db, people, n)
            final = check.get_approval(outcome.record.id)
            assert final is not None
            assert outcome.state == final.state
            assert outcome.record == final
            if final.state == "approved":
                assert isinstance(decision, ApprovalRecord) and decision == final
                assert final.deciders == ("alice",)
            else:
                assert final.state == "expired"
                assert isinstance(decision, ApprovalError) and decision.status == 409
                assert final.deciders == ()
            seen.add(final.state)
    finally:
        check.close()
    print("race winners seen:", sorted(seen))


def _vote_at_once(
    db: Path, aid: str, voters: list[tuple[str, Identity]], config: ApprovalsConfig
) -> list[Any]:
    """Each voter decides through its own store connection, all released at once."""
    barrier = threading.Barrier(len(voters))
    outcomes: list[Any] = []

    def vote(who: Identity) -> None:
        store = SqliteStore(db)
        svc = ApprovalService(store, config)
        barrier.wait()
        try:
            outcomes.append(asyncio.run(svc.decide(aid, who, approve=True, reason=who.subject)))
        except ApprovalError as exc:
            outcomes.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=vote, args=(who,)) for _, who in voters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_concurrent_votes_from_two_processes(tmp_path: Path, people) -> None:
    """min_approvals=2: alice and bob vote at the same moment through different store
    connections: both votes count (a lost compare-and-set is retried), and alice voting
    twice at once counts once."""
    db = tmp_path / "votes.db"
    config = ApprovalsConfig(approvers=["dba"], min_approvals=2)
    store = SqliteStore(db)
    svc = ApprovalService(store, config)

    async def make() -> str:
        return (await ask(svc, people["agent-7"])).id

    try:
        for _ in range(10):
            aid = asyncio.run(make())
            voters = [("alice", people["alice"]), ("bob", people["bob"])]
            outcomes = _vote_at_once(db, aid, voters, config)
            final = store.get_approval(aid)
            assert final is not None and final.state == "approved"
            assert sorted(final.deciders) == ["alice", "bob"]
            assert all(isinstance(o, ApprovalRecord) for o in outcomes)

            aid = asyncio.run(make())
            outcomes = _vote_at_once(db, aid, [("alice", people["alice"])] * 2, config)
            final = store.get_approval(aid)
            assert final is not None and (final.state, final.deciders) == ("pending", ("alice",))
            statuses = sorted(o.status if isinstance(o, ApprovalError) else 200 for o in outcomes)
            assert statuses == [200, 409]
    finally:
        store.close()


# --------------------------------------------------------------------------------------------
# withdrawal and restarts


def test_withdraw_then_a_late_approval_does_nothing(make_service, people, store) -> None:
    svc = make_service(poll_interval=30)

    async def main() -> tuple[Outcome, ApprovalRecord | None, ApprovalRecord | None]:
        pending = await ask(svc, people["agent-7"])
        task = await waiting(pending)
        withdrawn = await svc.withdraw(pending.id, "client disconnected")
        outcome = await asyncio.wait_for(task, 1)
        await refused(
            svc.decide(pending.id, people["alice"], approve=True, reason=None),
            409,
            "already withdrawn",
        )
        again = await svc.withdraw(pending.id, "again")
        await svc.aclose()
        return outcome, withdrawn, again

    outcome, withdrawn, again = run(main())
    assert outcome.state == "withdrawn"
    assert withdrawn is not None and outcome.record == withdrawn
    assert withdrawn.reasons == ("client disconnected",)
    assert again is None
    assert store.get_approval(withdrawn.id) == withdrawn


def test_withdraw_after_approval_keeps_the_approval(make_service, people) -> None:
    svc = make_service()

    async def main() -> None:
        pending = await ask(svc, people["agent-7"])
        approved = await svc.decide(pending.id, people["alice"], approve=True, reason=None)
        assert await svc.withdraw(pending.id, "too late") is None
        assert svc.get(pending.id) == approved
        assert await svc.withdraw("apr_unknown", "x") is None
        await svc.aclose()

    run(main())


def test_withdraw_stale_at_start(make_service, people, store) -> None:
    """A previous gateway process left requests pending; its clients are gone."""

    def leftover(aid: str, state: str = "pending") -> ApprovalRecord:
        rec = ApprovalRecord(
            id=aid,
            session_id="old-session",
            sql=SQL,
            requester="agent-7",
            target="shop",
            requested_at=100.0,
            statement_hash="0" * 64,
            state=state,  # type: ignore[arg-type]
            expires_at=1e12,
        )
        store.create_approval(rec)
        return rec

    leftover("apr_old0000001")
    leftover("apr_old0000002")
    leftover("apr_old0000003", "approved")
    svc = make_service()

    async def main() -> tuple[int, str, int]:
        live = await ask(svc, people["agent-7"])
        count = await svc.withdraw_stale()
        again = await svc.withdraw_stale()
        await svc.aclose()
        return count, live.id, again

    count, live_id, again = run(main())
    assert (count, again) == (2, 0)
    for aid in ("apr_old0000001", "apr_old0000002"):
        rec = store.get_approval(aid)
        assert rec is not None and (rec.state, rec.reasons) == ("withdrawn", ("gateway restarted",))
    assert store.get_approval("apr_old0000003").state == "approved"  # type: ignore[union-attr]
    assert store.get_approval(live_id).state == "pending"  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------------
# decisions made elsewhere


DECIDE_IN_ANOTHER_PROCESS = """
import sys, time
from pgwarden.store import SqliteStore
store = SqliteStore(sys.argv[1])
rec = store.get_approval(sys.argv[2])
assert rec is not None and rec.state == "pending", rec
done = store.add_approval_vote(sys.argv[2], decider="bob", reason="from elsewhere",
                               at=time.time(), expected_deciders=rec.deciders, state="approved")
assert done is not None
store.close()
"""


def test_waiter_sees_a_decision_written_by_another_process(
    make_service, people, db_path: Path
) -> None:
    svc = make_service(poll_interval=0.2)

    async def main() -> tuple[Outcome, float]:
        pending = await ask(svc, people["agent-7"])
        task = await waiting(pending)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", DECIDE_IN_ANOTHER_PROCESS, str(db_path), pending.id
        )
        assert await proc.wait() == 0
        started = time.monotonic()
        outcome = await asyncio.wait_for(task, 5)
        took = time.monotonic() - started
        await svc.aclose()
        return outcome, took

    outcome, took = run(main())
    assert took < 1.0
    assert outcome.state == "approved"
    assert (outcome.record.deciders, outcome.record.reasons) == (("bob",), ("from elsewhere",))


def test_waiter_woken_from_another_thread(make_service, people) -> None:
    """The API may run on another thread's event loop: its decision still wakes the waiter
    at once (not at the next poll)."""
    svc = make_service(poll_interval=30)

    async def main() -> float:
        pending = await ask(svc, people["agent-7"])
        task = await waiting(pending)
        started = time.monotonic()

        def other_loop() -> None:
            asyncio.run(svc.decide(pending.id, people["carol"], approve=False, reason="no"))

        await asyncio.to_thread(other_loop)
        outcome = await asyncio.wait_for(task, 5)
        assert outcome.state == "denied"
        took = time.monotonic() - started
        await svc.aclose()
        return took

    assert run(main()) < 1.0


def test_deleted_request_never_approves(make_service, people, store) -> None:
    svc = make_service(poll_interval=0.05)

    async def main() -> Outcome:
        pending = await ask(svc, people["agent-7"])
        task = await waiting(pending)
        store.delete_approval(pending.id)
        outcome = await asyncio.wait_for(task, 5)
        await svc.aclose()
        return outcome

    assert run(main()).state == "withdrawn"


def test_unreadable_store_at_the_deadline_fails_closed(
    make_service, people, tmp_path, fake_clock
) -> None:
    """The store goes away (closed connection) while a statement waits: when the deadline
    comes the outcome is "expired", never a hang and never an approval."""
    the_store = SqliteStore(tmp_path / "gone.db")
    svc = make_service(the_store=the_store, clock=fake_clock, poll_interval=0.05, timeout=60)

    async def main() -> Outcome:
        pending = await ask(svc, people["agent-7"])
        task = await waiting(pending)
        the_store.close()
        fake_clock.now += 61
        outcome = await asyncio.wait_for(task, 5)
        await svc.aclose()
        return outcome

    outcome = run(main())
    assert outcome.state == "expired" and not outcome.approved


def test_service_config_is_used(make_service) -> None:
    svc = make_service(approvers=["dba", "sre"], timeout="1h30m")
    assert svc.config.approvers == ["dba", "sre"]
    assert svc.config.timeout == 5400.0
