"""An approval as JSON for people and programs (``approvals list --json``, the HTTP API).

``record.to_dict()`` with the times (``requested_at``, ``expires_at``, ``decided_at``) as
ISO-8601 UTC strings like the rest of pgwarden's JSON output (``sessions list --json``), plus
``url`` (the console page, or null) and ``approvals_required`` (``approvals.min_approvals``: how
many distinct approvers must approve; null when not known).
"""

from __future__ import annotations

from typing import Any

from pgwarden.recording.events import format_ts
from pgwarden.store.base import ApprovalRecord

__all__ = ["TIME_FIELDS", "approval_json"]

TIME_FIELDS = ("requested_at", "expires_at", "decided_at")


def approval_json(
    record: ApprovalRecord, *, url: str | None = None, required: int | None = None
) -> dict[str, Any]:
    out = record.to_dict()
    for key in TIME_FIELDS:
        value = out.get(key)
        out[key] = format_ts(value) if value is not None else None
    out["url"] = url
    out["approvals_required"] = required
    return out
