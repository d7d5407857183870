"""The approvals endpoints of the HTTP API (bearer token required on every one):

    GET  /api/v1/approvals[?state=pending]   a JSON array of approvals, oldest first
    GET  /api/v1/approvals/{id}              one approval
    POST /api/v1/approvals/{id}/approve      body (optional): {"reason": "..."}
    POST /api/v1/approvals/{id}/deny         body (optional): {"reason": "..."}

Records are ``pgwarden.approvals.approval_json`` objects (``id``, ``state``, ``sql``,
``params``, ``requester``, ``target``, ``requested_at``, ``expires_at``, ``deciders``,
``reasons``, ... with ISO-8601 UTC times).

Who sees what: members of the approver groups see every approval; any other caller sees only
the requests they made themselves (requester equal to their token's subject), so an agent can
poll its own request but not read others' statements. An approval the caller may not see
answers 404, like one that does not exist.

Deciding follows ``ApprovalService.decide``: 403 when the caller is not an approver or is the
requester, 404 unknown, 409 no longer pending or already voted, 400 bad body. Without an
approval service configured every endpoint answers 503 (after authentication).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request

from pgwarden.approvals.errors import ApprovalError
from pgwarden.approvals.render import approval_json
from pgwarden.approvals.rules import may_view
from pgwarden.approvals.service import ApprovalService
from pgwarden.auth.identity import Identity
from pgwarden.store.base import APPROVAL_STATES, ApprovalRecord

__all__ = ["MAX_BODY_BYTES", "approvals_router"]

MAX_BODY_BYTES = 16 * 1024


def approvals_router(
    service: ApprovalService | None, caller: Callable[..., Awaitable[Identity]]
) -> APIRouter:
    """The approvals routes; ``caller`` is the app's bearer-token dependency."""
    router = APIRouter(prefix="/api/v1/approvals", tags=["approvals"])

    def need_service() -> ApprovalService:
        if service is None:
            raise HTTPException(503, "approvals are not configured on this gateway")
        return service

    def render(svc: ApprovalService, record: ApprovalRecord) -> dict[str, Any]:
        return approval_json(
            record, url=svc.approve_url(record.id), required=svc.config.min_approvals
        )

    @router.get("")
    async def list_approvals(
        state: str | None = None,
        who: Identity = Depends(caller),  # noqa: B008 - Annotated[...] cannot name a local
    ) -> list[dict[str, Any]]:
        """Approvals, oldest first (all for approvers, else the caller's own)."""
        svc = need_service()
        if state is not None and state not in APPROVAL_STATES:
            raise HTTPException(400, f"state must be one of {', '.join(sorted(APPROVAL_STATES))}")
        records = await asyncio.to_thread(svc.list, state=state)
        approvers = svc.config.approvers
        return [render(svc, r) for r in records if may_view(who, r, approvers)]

    @router.get("/{approval_id}")
    async def get_approval(
        approval_id: str,
        who: Identity = Depends(caller),  # noqa: B008
    ) -> dict[str, Any]:
        svc = need_service()
        record = await asyncio.to_thread(svc.get, approval_id)
        if record is None or not may_view(who, record, svc.config.approvers):
            raise HTTPException(404, f"no approval {approval_id!r}")
        return render(svc, record)

    async def decide(
        approval_id: str, request: Request, who: Identity, *, approve: bool
    ) -> dict[str, Any]:
        svc = need_service()
        reason = await _reason(request)
        try:
            record = await svc.decide(approval_id, who, approve=approve, reason=reason)
        except ApprovalError as exc:
            raise HTTPException(exc.status, exc.message) from None
        return render(svc, record)

    @router.post("/{approval_id}/approve")
    async def approve(
        approval_id: str,
        request: Request,
        who: Identity = Depends(caller),  # noqa: B008
    ) -> dict[str, Any]:
        """Approve (one vote; approved once ``min_approvals`` approvers voted)."""
        return await decide(approval_id, request, who, approve=True)

    @router.post("/{approval_id}/deny")
    async def deny(
        approval_id: str,
        request: Request,
        who: Identity = Depends(caller),  # noqa: B008
    ) -> dict[str, Any]:
        """Deny (one approver's deny is final)."""
        return await decide(approval_id, request, who, approve=False)

    return router


async def _reason(request: Request) -> str | None:
    """The optional ``reason`` from an empty body, ``null``, or ``{"reason": "..."}``."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(413, "the request body is too large")
    if not body.strip():
        return None
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(400, 'the body must be JSON: {"reason": "..."}') from None
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise HTTPException(400, 'the body must be a JSON object: {"reason": "..."}')
    unknown = sorted(set(doc) - {"reason"})
    if unknown:
        raise HTTPException(400, f"unknown key(s) in the body: {', '.join(unknown)}")
    reason = doc.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise HTTPException(400, "reason must be a string")
    return reason
