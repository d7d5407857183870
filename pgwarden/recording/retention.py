"""Retention: ``prune(store, storage, older_than)`` deletes old sessions.

A session is pruned when it is no longer active (``ended`` or ``crashed``) and it ended more
than ``older_than`` seconds ago. Its recording is deleted first, then its index entry, so a
crash half-way leaves an index entry whose recording is gone ("missing" until pruned again)
rather than an orphan recording nobody can find. Approvals are left alone.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from pgwarden.recording.storage.base import RecordingStorage
from pgwarden.store.base import SessionFilter, Store

__all__ = ["PruneResult", "prune"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PruneResult:
    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # session -> why


def prune(
    store: Store,
    storage: RecordingStorage,
    older_than: float,
    *,
    now: float | None = None,
    dry_run: bool = False,
) -> PruneResult:
    """Delete sessions that ended more than ``older_than`` seconds before ``now``."""
    if older_than < 0:
        raise ValueError("older_than must not be negative")
    cutoff = (time.time() if now is None else now) - older_than
    result = PruneResult()
    for session in store.list_sessions(SessionFilter(ended_before=cutoff)):
        if session.state == "active":
            continue
        if dry_run:
            result.deleted.append(session.id)
            continue
        try:
            storage.delete(session.id)
            store.delete_session(session.id)
        except Exception as exc:
            log.warning("cannot prune session %s: %s", session.id, exc)
            result.failed[session.id] = str(exc)
            continue
        result.deleted.append(session.id)
    return result
