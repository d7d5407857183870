"""``MemoryStore``: the ``Store`` Protocol in dicts, for unit tests."""

from __future__ import annotations

import builtins
import dataclasses
import threading
from collections.abc import Sequence

from pgwarden.store.base import (
    APPROVAL_STATES,
    SESSION_STATES,
    ApprovalRecord,
    ApprovalState,
    Outcome,
    SessionFilter,
    SessionRecord,
    SessionState,
    StoreError,
    check_vote,
)

__all__ = ["MemoryStore"]


class MemoryStore:
    def __init__(self) -> None:
        self._sessions: dict[str, SessionRecord] = {}
        self._approvals: dict[str, ApprovalRecord] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ sessions

    def create_session(self, session: SessionRecord) -> None:
        if session.state not in SESSION_STATES:
            raise ValueError(f"bad state {session.state!r}")
        with self._lock:
            if session.id in self._sessions:
                raise StoreError(f"session {session.id} exists")
            self._sessions[session.id] = session

    def get_session(self, session_id: str) -> SessionRecord | None:
        with self._lock:
            return self._sessions.get(session_id)

    def list_sessions(self, filter: SessionFilter | None = None) -> builtins.list[SessionRecord]:
        f = filter or SessionFilter()
        with self._lock:
            rows = [s for s in self._sessions.values() if f.matches(s)]
        rows.sort(key=lambda s: (s.started_at, s.id), reverse=True)
        return rows[: f.limit] if f.limit is not None else rows

    def _update(self, session_id: str, **changes: object) -> None:
        with self._lock:
            current = self._sessions.get(session_id)
            if current is None:
                raise StoreError(f"no session {session_id}")
            self._sessions[session_id] = dataclasses.replace(current, **changes)  # type: ignore[arg-type]

    def record_progress(self, session_id: str, last_seq: int, last_hash: str) -> None:
        with self._lock:
            current = self._sessions.get(session_id)
            if current is None:
                raise StoreError(f"no session {session_id}")
            if last_seq > current.last_seq:
                self._sessions[session_id] = dataclasses.replace(
                    current, last_seq=last_seq, last_hash=last_hash
                )

    def count_statement(self, session_id: str, outcome: Outcome, *, masked: bool = False) -> None:
        if outcome not in ("allowed", "denied", "reviewed"):
            raise ValueError(f"bad outcome {outcome!r}")
        with self._lock:
            current = self._sessions.get(session_id)
            if current is None:
                raise StoreError(f"no session {session_id}")
            changes: dict[str, int] = {
                "statements": current.statements + 1,
                outcome: getattr(current, outcome) + 1,
            }
            if masked:
                changes["masked"] = current.masked + 1
            self._sessions[session_id] = dataclasses.replace(current, **changes)  # type: ignore[arg-type]

    def add_counts(
        self,
        session_id: str,
        *,
        allowed: int = 0,
        denied: int = 0,
        reviewed: int = 0,
        masked: int = 0,
    ) -> None:
        with self._lock:
            current = self._sessions.get(session_id)
            if current is None:
                raise StoreError(f"no session {session_id}")
            self._sessions[session_id] = dataclasses.replace(
                current,
                statements=current.statements + allowed + denied + reviewed,
                allowed=current.allowed + allowed,
                denied=current.denied + denied,
                reviewed=current.reviewed + reviewed,
                masked=current.masked + masked,
            )

    def end_session(
        self,
        session_id: str,
        *,
        ended_at: float,
        reason: str,
        state: SessionState = "ended",
        last_seq: int | None = None,
        last_hash: str | None = None,
    ) -> None:
        if state not in ("ended", "crashed"):
            raise ValueError(f"bad end state {state!r}")
        changes: dict[str, object] = {"ended_at": ended_at, "end_reason": reason, "state": state}
        if last_seq is not None:
            changes["last_seq"] = last_seq
            changes["last_hash"] = last_hash
        self._update(session_id, **changes)

    def mark_active_crashed(
        self, *, ended_at: float, reason: str, gateway_instance: str | None = None
    ) -> builtins.list[str]:
        with self._lock:
            ids = [
                s.id
                for s in self._sessions.values()
                if s.state == "active"
                and (gateway_instance is None or s.gateway_instance == gateway_instance)
            ]
            for sid in ids:
                self._sessions[sid] = dataclasses.replace(
                    self._sessions[sid], state="crashed", ended_at=ended_at, end_reason=reason
                )
        return sorted(ids)

    def delete_session(self, session_id: str) -> bool:
        with self._lock:
            return self._sessions.pop(session_id, None) is not None

    # ------------------------------------------------------------ approvals

    def create_approval(self, approval: ApprovalRecord) -> None:
        if approval.state not in APPROVAL_STATES:
            raise ValueError(f"bad state {approval.state!r}")
        with self._lock:
            if approval.id in self._approvals:
                raise StoreError(f"approval {approval.id} exists")
            self._approvals[approval.id] = approval

    def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        with self._lock:
            return self._approvals.get(approval_id)

    def list_approvals(
        self, *, state: str | None = None, session_id: str | None = None
    ) -> builtins.list[ApprovalRecord]:
        with self._lock:
            rows = [
                a
                for a in self._approvals.values()
                if (state is None or a.state == state)
                and (session_id is None or a.session_id == session_id)
            ]
        rows.sort(key=lambda a: (a.requested_at, a.id))
        return rows

    def decide_approval(
        self,
        approval_id: str,
        *,
        state: ApprovalState,
        decided_at: float,
        decider: str | None = None,
        reason: str | None = None,
        expected_state: ApprovalState = "pending",
    ) -> ApprovalRecord | None:
        if state not in APPROVAL_STATES:
            raise ValueError(f"bad state {state!r}")
        with self._lock:
            current = self._approvals.get(approval_id)
            if current is None or current.state != expected_state:
                return None
            updated = dataclasses.replace(
                current,
                state=state,
                decided_at=decided_at,
                deciders=current.deciders + ((decider,) if decider else ()),
                reasons=current.reasons + ((reason,) if reason else ()),
            )
            self._approvals[approval_id] = updated
            return updated

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
        check_vote(state, decider)
        with self._lock:
            current = self._approvals.get(approval_id)
            if (
                current is None
                or current.state != "pending"
                or current.deciders != tuple(expected_deciders)
            ):
                return None
            updated = dataclasses.replace(
                current,
                state=state,
                decided_at=None if state == "pending" else at,
                deciders=(*current.deciders, decider),
                reasons=(*current.reasons, reason),
            )
            self._approvals[approval_id] = updated
            return updated

    def delete_approval(self, approval_id: str) -> bool:
        with self._lock:
            return self._approvals.pop(approval_id, None) is not None

    def close(self) -> None:
        pass
