"""The HTTP API (FastAPI): health, the agent-context endpoint and the approvals endpoints
(``pgwarden.api.approvals``); the console and the session endpoints arrive with their
capabilities.

Every ``/api/`` call needs ``Authorization: Bearer <token>``, verified by the same issuers as
the wire protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request

from pgwarden import __version__
from pgwarden.api.approvals import approvals_router
from pgwarden.auth.identity import AuthError, Identity
from pgwarden.proxy.hooks import EndSession

if TYPE_CHECKING:
    from pgwarden.approvals.service import ApprovalService
    from pgwarden.auth.verifier import TokenVerifier
    from pgwarden.proxy.server import Gateway

MAX_CONTEXT_BYTES = 64 * 1024


def create_app(
    gateway: Gateway | None = None,
    verifier: TokenVerifier | None = None,
    approvals: ApprovalService | None = None,
) -> FastAPI:
    app = FastAPI(title="pgwarden", version=__version__, docs_url=None, redoc_url=None)

    async def caller(authorization: Annotated[str | None, Header()] = None) -> Identity:
        if verifier is None:
            raise HTTPException(503, "identity verification is not configured")
        if not authorization or not authorization.lower().startswith("bearer "):
            raise HTTPException(
                401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        try:
            return await verifier.identify(authorization[7:].strip())
        except AuthError as exc:
            raise HTTPException(401, exc.message, headers={"WWW-Authenticate": "Bearer"}) from None

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "sessions": len(gateway.sessions) if gateway is not None else 0,
        }

    @app.post("/api/v1/sessions/{session_id}/context")
    async def post_context(
        session_id: str,
        request: Request,
        who: Identity = Depends(caller),  # noqa: B008 - Annotated[...] cannot name a local
    ) -> dict[str, Any]:
        """Attach agent context (prompt, intent, ...) to a live session, as its own identity."""
        session = gateway.sessions.get(session_id) if gateway is not None else None
        if session is None:
            raise HTTPException(404, "no such live session")
        owner = session.info.identity
        if (who.subject, who.issuer) != (owner.subject, owner.issuer):
            raise HTTPException(403, "only the session's own identity may set its context")
        body = await request.body()
        if len(body) > MAX_CONTEXT_BYTES:
            raise HTTPException(413, "context too large")
        try:
            values = await request.json()
        except ValueError:
            raise HTTPException(400, "the body must be a JSON object") from None
        if not isinstance(values, dict) or not values:
            raise HTTPException(400, "the body must be a non-empty JSON object")
        recorder = getattr(session.hooks, "recorder", None)
        if recorder is None:
            raise HTTPException(409, "this session is not recorded")
        try:
            await recorder.apply_api_context(values, who.subject)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        except EndSession as exc:
            raise HTTPException(503, str(exc)) from None
        return {"session": session_id, "context": recorder.context.session_context()}

    app.include_router(approvals_router(approvals, caller))

    return app
