"""``ApprovalService``: just-in-time approval of single held statements (the control plane).

The data path holds a statement and calls ``request(...)``, which persists a ``pending``
``ApprovalRecord`` bound to the statement (``statement_hash``), schedules the webhooks, and
returns a ``PendingApproval``; ``await pending.wait()`` resolves to an ``Outcome``:

- ``approved``/``denied``: decided through ``decide`` (the HTTP API, the CLI through the API, or
  another gateway process sharing the store);
- ``expired``: nobody decided before ``expires_at`` (``approvals.timeout`` after the request);
- ``withdrawn``: the client cancelled or went away (``withdraw``), or the gateway restarted
  (``withdraw_stale`` at start-up).

Only ``approved`` lets the statement run. Every state change is a compare-and-set in the store
(from ``pending``, and for votes also from the exact list of deciders so far), so a decision
racing the timeout or a withdrawal has exactly one winner, and the waiter reports the state the
store holds, never one it merely hoped for. If the store cannot be read or written when the
deadline passes, the waiter fails closed: ``expired``.

Decisions (``decide``):

- unknown id: 404;
- the decider is in none of ``approvals.approvers``: 403;
- the decider is the requester: 403, for approve *and* deny (a requester withdraws by
  cancelling the statement); see ``rules.py`` for how "same person" is judged (fail closed:
  case-insensitive, any issuer);
- not pending any more (approved, denied, expired, withdrawn; or pending past its deadline,
  which is then marked expired): 409; a late approval changes nothing;
- the decider already voted: 409;
- approve: one vote; the request is approved once ``approvals.min_approvals`` distinct
  approvers voted for it, pending until then;
- deny: one approver's deny denies it at once.

In-process waiters wake at once (also when the decision arrives on another thread or event
loop, as when the API runs apart from the gateway); waiters also re-read the store about once a
second (``poll_interval``), so decisions written by another process sharing the store are seen.
Every pending request also has a timer that marks it expired at its deadline even when nobody
waits on it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import logging
import secrets
import string
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from pgwarden.approvals.binding import jsonable_params, statement_hash
from pgwarden.approvals.errors import ApprovalError
from pgwarden.approvals.notify import Notifier
from pgwarden.approvals.rules import is_approver, same_person
from pgwarden.auth.identity import Identity, format_duration
from pgwarden.config import ApprovalsConfig
from pgwarden.store.base import APPROVAL_STATES, ApprovalRecord, ApprovalState, Store

__all__ = [
    "ID_PREFIX",
    "MAX_REASON_CHARS",
    "ApprovalService",
    "Outcome",
    "PendingApproval",
    "new_approval_id",
]

log = logging.getLogger("pgwarden.approvals")

ID_PREFIX = "apr_"
_ID_ALPHABET = string.ascii_lowercase + string.digits
_ID_LENGTH = 10  # 36**10: about 52 bits
MAX_REASON_CHARS = 2000
RESTART_REASON = "gateway restarted"
_CAS_ATTEMPTS = 20


def new_approval_id() -> str:
    """``apr_`` and 10 random lowercase letters and digits (URL-safe, easy to type)."""
    return ID_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))


@dataclass(frozen=True)
class Outcome:
    """How a held statement's approval ended. Only ``approved`` lets it run."""

    state: ApprovalState  # "approved" | "denied" | "expired" | "withdrawn"
    record: ApprovalRecord  # the final record: deciders, reasons, decided_at

    @property
    def approved(self) -> bool:
        return self.state == "approved"


class PendingApproval:
    """The data path's handle on one request; ``await wait()`` for the outcome."""

    def __init__(
        self,
        service: ApprovalService,
        record: ApprovalRecord,
        loop: asyncio.AbstractEventLoop,
        reason: str,
    ) -> None:
        self.record = record
        self.reason = reason  # why the statement was held (not stored: webhooks and the caller)
        self._service = service
        self._loop = loop
        self._event = asyncio.Event()

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def approve_url(self) -> str | None:
        return self._service.approve_url(self.record.id)

    def notice(self) -> str:
        """The text of the NoticeResponse the client gets while its statement is held: begins
        with ``pgwarden:``, names the approval and says how to decide it."""
        rec = self.record
        rule = f" by rule {rec.rule}" if rec.rule else ""
        timeout = format_duration(self._service.config.timeout)
        where = f" in the console at {self.approve_url} or" if self.approve_url else ""
        return (
            f"pgwarden: statement held for approval{rule}: approval {rec.id}; an approver "
            f"(group {', '.join(self._service.config.approvers) or '-'}) decides it{where} "
            f"with `pgwarden approvals approve|deny {rec.id} --token ...`; it is refused if "
            f"not approved within {timeout}"
        )

    def _wake(self) -> None:
        """Wake ``wait()``; safe from any thread or event loop."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._event.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self) -> Outcome:
        """Resolve when the request is decided, expires, or is withdrawn (see module doc)."""
        service = self._service
        try:
            while True:
                self._event.clear()
                try:
                    current = await asyncio.to_thread(service.store.get_approval, self.record.id)
                except Exception:
                    log.exception("approval %s: cannot read the store", self.record.id)
                else:
                    if current is None:  # deleted under us: never approved
                        return Outcome("withdrawn", self.record)
                    self.record = current
                    if current.state != "pending":
                        return Outcome(current.state, current)
                now = service.clock()
                expires_at = self.record.expires_at
                if expires_at is not None and now >= expires_at:
                    final = await service._expire(self.record)
                    self.record = final
                    return Outcome(final.state, final)
                delay = service.poll_interval
                if expires_at is not None:
                    delay = min(delay, max(expires_at - now, 0.0) + 0.001)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._event.wait(), delay)
        finally:
            service._forget(self.record.id, self)


class ApprovalService:
    """Requests, decisions, expiry and withdrawal of approvals (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        config: ApprovalsConfig,
        *,
        console_url: str | None = None,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 1.0,
        notifier: Notifier | None = None,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self.store = store
        self.config = config
        self.console_url = console_url.rstrip("/") if console_url else None
        self.clock = clock
        self.poll_interval = poll_interval
        self.notifier = notifier if notifier is not None else Notifier(config.notify)
        self._pending: dict[str, PendingApproval] = {}
        self._timers: dict[str, asyncio.Task[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # ---------------------------------------------------------------- reading

    def approve_url(self, approval_id: str) -> str | None:
        """The console page of an approval, when a console URL is configured."""
        if self.console_url is None:
            return None
        return f"{self.console_url}/approvals/{approval_id}"

    def is_approver(self, who: Identity) -> bool:
        return is_approver(who, self.config.approvers)

    def list(self, *, state: str | None = None) -> builtins.list[ApprovalRecord]:
        """Approvals in the store, oldest first; only those in ``state`` when given."""
        if state is not None and state not in APPROVAL_STATES:
            raise ApprovalError(400, f"state must be one of {', '.join(sorted(APPROVAL_STATES))}")
        return self.store.list_approvals(state=state)

    def get(self, approval_id: str) -> ApprovalRecord | None:
        return self.store.get_approval(approval_id)

    # ---------------------------------------------------------------- requesting

    async def request(
        self,
        *,
        session_id: str,
        sql: str,
        params: Sequence[Any],
        requester: Identity,
        target: str,
        rule: str | None,
        reason: str,
    ) -> PendingApproval:
        """Persist a new pending request bound to this statement, schedule its webhooks and
        its expiry, and return the handle to wait on. Store errors propagate (the data path
        then refuses the statement); webhook problems never do."""
        if self._closed:
            raise ApprovalError(503, "the approval service is shut down")
        loop = asyncio.get_running_loop()
        values = jsonable_params(params)
        now = self.clock()
        record = ApprovalRecord(
            id=new_approval_id(),
            session_id=session_id,
            sql=sql,
            requester=requester.subject,
            target=target,
            requested_at=now,
            statement_hash=statement_hash(
                sql, values, session_id=session_id, target=target, requester=requester.subject
            ),
            state="pending",
            params=tuple(values),
            expires_at=now + self.config.timeout,
            rule=rule,
            requester_groups=tuple(requester.groups),
        )
        await asyncio.to_thread(self.store.create_approval, record)
        pending = PendingApproval(self, record, loop, reason)
        self._pending[record.id] = pending
        self._timers[record.id] = self._spawn(self._expiry_timer(record))
        if self.notifier.targets:
            self._spawn(self._notify(record, reason))
        log.info(
            "approval %s requested by %s on %s (rule %s)",
            record.id,
            record.requester,
            record.target,
            rule,
        )
        return pending

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _notify(self, record: ApprovalRecord, reason: str) -> None:
        try:
            await self.notifier.notify_requested(
                record, url=self.approve_url(record.id), reason=reason
            )
        except Exception:  # Notifier never raises; belt and braces
            log.exception("approval %s: webhook delivery failed", record.id)

    async def _expiry_timer(self, record: ApprovalRecord) -> None:
        expires_at = record.expires_at
        if expires_at is None:
            return
        while True:  # re-check after sleeping: the clock may be adjusted (or fake, in tests)
            delay = expires_at - self.clock()
            if delay <= 0:
                break
            await asyncio.sleep(min(delay, 3600.0))
        try:
            await self._expire(record)
        except Exception:
            log.exception("approval %s: cannot mark it expired", record.id)

    # ---------------------------------------------------------------- state changes

    async def _expire(self, record: ApprovalRecord) -> ApprovalRecord:
        """Mark a request past its deadline expired (compare-and-set) and return the final
        record: ours, or whatever decision won the race. Fails closed: when the store cannot
        be written, the returned record says expired anyway."""
        reason = f"not decided within {format_duration(self.config.timeout)}"
        now = self.clock()
        try:
            final = await asyncio.to_thread(
                self.store.decide_approval,
                record.id,
                state="expired",
                decided_at=now,
                reason=reason,
                expected_state="pending",
            )
            if final is None:
                final = await asyncio.to_thread(self.store.get_approval, record.id)
        except Exception:
            log.exception("approval %s: cannot record its expiry; refusing it", record.id)
            final = None
        if final is None or final.state == "pending":
            # unreadable, deleted, or (a store that lost our write) still pending: never run it
            final = dataclasses.replace(
                record, state="expired", decided_at=now, reasons=(*record.reasons, reason)
            )
        else:
            if final.state == "expired":
                log.info("approval %s expired", record.id)
            self._finished(record.id)
        return final

    async def decide(
        self, approval_id: str, who: Identity, *, approve: bool, reason: str | None
    ) -> ApprovalRecord:
        """One approver's decision; raises ``ApprovalError`` (see the module docstring)."""
        text = (reason or "").strip()
        if len(text) > MAX_REASON_CHARS:
            raise ApprovalError(400, f"the reason is longer than {MAX_REASON_CHARS} characters")
        verb = "approve" if approve else "deny"
        for _ in range(_CAS_ATTEMPTS):
            current = await asyncio.to_thread(self.store.get_approval, approval_id)
            if current is None:
                raise ApprovalError(404, f"no approval {approval_id!r}")
            if not self.is_approver(who):
                groups = ", ".join(self.config.approvers) or "(none configured)"
                raise ApprovalError(
                    403, f"only members of the approver groups ({groups}) may {verb} statements"
                )
            if same_person(who.subject, current.requester):
                if approve:
                    raise ApprovalError(403, "nobody may approve their own statement")
                raise ApprovalError(
                    403,
                    "nobody may decide on their own statement (cancel it to withdraw the request)",
                )
            if current.state != "pending":
                raise ApprovalError(409, f"approval {approval_id} is already {current.state}")
            if current.expires_at is not None and self.clock() >= current.expires_at:
                final = await self._expire(current)
                raise ApprovalError(409, f"approval {approval_id} is already {final.state}")
            if any(same_person(who.subject, d) for d in current.deciders):
                raise ApprovalError(409, f"you have already voted on approval {approval_id}")
            state: ApprovalState
            if not approve:
                state = "denied"
            elif len(current.deciders) + 1 >= self.config.min_approvals:
                state = "approved"
            else:
                state = "pending"
            updated = await asyncio.to_thread(
                self.store.add_approval_vote,
                approval_id,
                decider=who.subject,
                reason=text,
                at=self.clock(),
                expected_deciders=current.deciders,
                state=state,
            )
            if updated is None:
                continue  # someone else changed it in between: judge again on the new state
            log.info("approval %s: %s by %s (%s)", approval_id, verb, who.subject, updated.state)
            if updated.state != "pending":
                self._finished(approval_id)
            return updated
        raise ApprovalError(409, f"approval {approval_id} is changing too fast; try again")

    async def withdraw(self, approval_id: str, reason: str) -> ApprovalRecord | None:
        """The client cancelled or went away: a pending request becomes ``withdrawn``.
        Returns the withdrawn record, or None when it was not pending (already decided,
        expired, withdrawn) or does not exist; a later decision then gets 409."""
        updated = await asyncio.to_thread(
            self.store.decide_approval,
            approval_id,
            state="withdrawn",
            decided_at=self.clock(),
            reason=reason or "withdrawn",
            expected_state="pending",
        )
        if updated is not None:
            log.info("approval %s withdrawn: %s", approval_id, reason)
            self._finished(approval_id)
        return updated

    async def withdraw_stale(self) -> int:
        """At gateway start: every pending request in the store not made by this service
        (left by a previous process, whose client is gone) becomes ``withdrawn`` ("gateway
        restarted"). Returns how many. With a store shared by several live gateways this
        would withdraw the others' requests too: call it only where one gateway owns the
        store."""
        stale = await asyncio.to_thread(self.store.list_approvals, state="pending")
        count = 0
        for record in stale:
            if record.id in self._pending:
                continue
            done = await asyncio.to_thread(
                self.store.decide_approval,
                record.id,
                state="withdrawn",
                decided_at=self.clock(),
                reason=RESTART_REASON,
                expected_state="pending",
            )
            if done is not None:
                count += 1
        if count:
            log.warning("withdrew %d approval request(s) left pending by a previous run", count)
        return count

    def _finished(self, approval_id: str) -> None:
        """A final state is in the store: wake the waiter, stop the timer."""
        pending = self._pending.get(approval_id)
        if pending is not None:
            pending._wake()
        timer = self._timers.pop(approval_id, None)
        if timer is not None and not timer.done():
            loop = timer.get_loop()
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                timer.cancel()
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(timer.cancel)

    def _forget(self, approval_id: str, pending: PendingApproval) -> None:
        if self._pending.get(approval_id) is pending:
            del self._pending[approval_id]

    async def aclose(self) -> None:
        """Cancel the expiry timers and webhook deliveries of this process."""
        self._closed = True
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._timers.clear()
