"""The control-plane store: the session index and approvals, behind one ``Store`` Protocol.

Backends: ``SqliteStore`` (default, ``data_dir/pgwarden.db``) and ``MemoryStore`` (tests); a
PostgreSQL store shared by several gateways implements the same Protocol. All methods are
short synchronous calls, thread-safe; from asyncio call them directly (they are quick) or via
``asyncio.to_thread``. Times are unix seconds (floats).

Session index
=============
``create_session`` when a session starts (state ``active``); ``record_progress`` after each
checkpoint (``last_seq``/``last_hash`` of the checkpoint: verification then knows the
recording reached at least that far); ``count_statement`` per statement decided;
``end_session(..., state="ended")`` only once the recording's ``session_end`` and final
checkpoint are synced (``RecordingWriter.end`` returned): "ended" means "ended cleanly", and a
recording that stops short of it is tampered. ``mark_active_crashed`` at start-up flags the
sessions a previous run of this gateway left ``active`` as ``crashed``.

Approvals
=========
``create_approval`` (state ``pending``), ``decide_approval`` (compare-and-set from an expected
state, so two approvers or an approver and the timeout cannot both win), ``list_approvals``.
``add_approval_vote`` records one approver's vote (compare-and-set on the state *and* the list
of deciders so far), optionally deciding in the same write: with ``min_approvals`` N the first
N-1 approvals keep the request ``pending``, the N-th approves it. A vote always appends its
reason (``""`` when none was given), so ``reasons[i]`` is ``deciders[i]``'s reason; entries past
``len(deciders)`` explain a decision nobody voted for (expiry, withdrawal).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

__all__ = [
    "APPROVAL_STATES",
    "SESSION_STATES",
    "ApprovalRecord",
    "ApprovalState",
    "Outcome",
    "SessionFilter",
    "SessionRecord",
    "SessionState",
    "Store",
    "StoreError",
]

SessionState = Literal["active", "ended", "crashed"]
SESSION_STATES: frozenset[str] = frozenset({"active", "ended", "crashed"})
ApprovalState = Literal["pending", "approved", "denied", "expired", "withdrawn"]
APPROVAL_STATES: frozenset[str] = frozenset(
    {"pending", "approved", "denied", "expired", "withdrawn"}
)
Outcome = Literal["allowed", "denied", "reviewed"]
OUTCOMES: frozenset[str] = frozenset({"allowed", "denied", "reviewed", "masked"})


class StoreError(Exception):
    """The store cannot do what was asked (schema too new, unknown session, ...)."""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str
    subject: str
    issuer: str
    target: str
    started_at: float
    groups: tuple[str, ...] = ()
    client_addr: str = ""
    application_name: str = ""
    gateway_instance: str = ""
    ended_at: float | None = None
    end_reason: str | None = None
    state: SessionState = "active"
    last_seq: int = 0
    last_hash: str | None = None
    statements: int = 0
    allowed: int = 0
    denied: int = 0
    reviewed: int = 0
    masked: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["groups"] = list(self.groups)
        return out


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """All given conditions must hold. ``since``/``until`` bound ``started_at`` (inclusive /
    exclusive); ``decision`` keeps sessions with at least one statement of that outcome
    (``allowed``, ``denied``, ``reviewed`` or ``masked``); ``ended_before`` keeps sessions that
    ended before that time. Newest first; ``limit`` caps the count."""

    subject: str | None = None
    target: str | None = None
    since: float | None = None
    until: float | None = None
    decision: str | None = None
    state: str | None = None
    ended_before: float | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.decision is not None and self.decision not in OUTCOMES:
            raise ValueError(f"decision must be one of {sorted(OUTCOMES)}")
        if self.state is not None and self.state not in SESSION_STATES:
            raise ValueError(f"state must be one of {sorted(SESSION_STATES)}")

    def matches(self, s: SessionRecord) -> bool:
        if self.subject is not None and s.subject != self.subject:
            return False
        if self.target is not None and s.target != self.target:
            return False
        if self.since is not None and s.started_at < self.since:
            return False
        if self.until is not None and s.started_at >= self.until:
            return False
        if self.decision is not None and getattr(s, self.decision) <= 0:
            return False
        if self.state is not None and s.state != self.state:
            return False
        return not (
            self.ended_before is not None
            and (s.ended_at is None or s.ended_at >= self.ended_before)
        )


def check_vote(state: str, decider: str) -> None:
    """The arguments of ``Store.add_approval_vote`` every backend refuses alike."""
    if state not in APPROVAL_STATES:
        raise ValueError(f"bad state {state!r}")
    if not decider:
        raise ValueError("a vote needs a decider")


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    id: str
    session_id: str
    sql: str
    requester: str
    target: str
    requested_at: float
    statement_hash: str
    state: ApprovalState = "pending"
    params: tuple[Any, ...] = ()
    expires_at: float | None = None
    decided_at: float | None = None
    deciders: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    rule: str | None = None
    requester_groups: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("params", "deciders", "reasons", "requester_groups"):
            out[key] = list(out[key])
        return out


class Store(Protocol):
    # sessions
    def create_session(self, session: SessionRecord) -> None: ...

    def get_session(self, session_id: str) -> SessionRecord | None: ...

    def list_sessions(
        self, filter: SessionFilter | None = None
    ) -> builtins.list[SessionRecord]: ...

    def record_progress(self, session_id: str, last_seq: int, last_hash: str) -> None: ...

    def count_statement(
        self, session_id: str, outcome: Outcome, *, masked: bool = False
    ) -> None: ...

    def add_counts(
        self,
        session_id: str,
        *,
        allowed: int = 0,
        denied: int = 0,
        reviewed: int = 0,
        masked: int = 0,
    ) -> None:
        """Add batched statement counts (one write for many statements)."""
        ...

    def end_session(
        self,
        session_id: str,
        *,
        ended_at: float,
        reason: str,
        state: SessionState = "ended",
        last_seq: int | None = None,
        last_hash: str | None = None,
    ) -> None: ...

    def mark_active_crashed(
        self, *, ended_at: float, reason: str, gateway_instance: str | None = None
    ) -> builtins.list[str]: ...

    def delete_session(self, session_id: str) -> bool: ...

    # approvals
    def create_approval(self, approval: ApprovalRecord) -> None: ...

    def get_approval(self, approval_id: str) -> ApprovalRecord | None: ...

    def list_approvals(
        self, *, state: str | None = None, session_id: str | None = None
    ) -> builtins.list[ApprovalRecord]: ...

    def decide_approval(
        self,
        approval_id: str,
        *,
        state: ApprovalState,
        decided_at: float,
        decider: str | None = None,
        reason: str | None = None,
        expected_state: ApprovalState = "pending",
    ) -> ApprovalRecord | None: ...

    def add_approval_vote(
        self,
        approval_id: str,
        *,
        decider: str,
        reason: str,
        at: float,
        expected_deciders: Sequence[str],
        state: ApprovalState = "pending",
    ) -> ApprovalRecord | None:
        """Append ``decider`` and ``reason`` and set ``state`` (``decided_at = at`` unless the
        new state is ``pending``), only while the approval is ``pending`` and its deciders are
        exactly ``expected_deciders``. None when that no longer holds (or no such approval)."""
        ...

    def delete_approval(self, approval_id: str) -> bool: ...

    def close(self) -> None: ...
