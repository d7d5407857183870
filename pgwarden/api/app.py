"""The HTTP API (FastAPI): health, metrics, the agent-context endpoint, the approvals
endpoints (``pgwarden.api.approvals``) and the recorded-sessions endpoints
(``pgwarden.api.sessions``); and, when given, the web console (``pgwarden.console``) under
``/console``, which signs people in itself (OIDC) instead of taking bearer tokens.

Every ``/api/`` call needs ``Authorization: Bearer <token>``, verified by the same issuers as
the wire protocol.

``/healthz`` and ``/metrics`` need no token: health checks and Prometheus scrapers are
normally unauthenticated, and both answer with counts only, never data (no statement, no
identity, no value). Keep ``api.listen`` on loopback (the default) or an admin network.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request, Response

from pgwarden import __version__
from pgwarden.api.approvals import approvals_router
from pgwarden.api.sessions import sessions_router
from pgwarden.auth.identity import AuthError, Identity
from pgwarden.metrics import Metrics
from pgwarden.proxy.hooks import EndSession

if TYPE_CHECKING:
    from pgwarden.approvals.service import ApprovalService
    from pgwarden.auth.verifier import TokenVerifier
    from pgwarden.config import Config
    from pgwarden.proxy.server import Gateway
    from pgwarden.recording.access import RecordingAccess

MAX_CONTEXT_BYTES = 64 * 1024


def create_app(
    gateway: Gateway | None = None,
    verifier: TokenVerifier | None = None,
    approvals: ApprovalService | None = None,
    *,
    config: Config | None = None,
    recordings: RecordingAccess | None = None,
    metrics: Metrics | None = None,
    console: APIRouter | None = None,
) -> FastAPI:
    """The API app. ``config`` (roles) and ``recordings`` (index, storage, keys) enable the
    session endpoints (else they answer 503); ``metrics`` is the gateway's (a private, idle
    one when not given, so ``/metrics`` always answers)."""
    app = FastAPI(title="pgwarden", version=__version__, docs_url=None, redoc_url=None)
    the_metrics = metrics if metrics is not None else Metrics()
    if gateway is not None:
        gw = gateway
        the_metrics.set_sessions_source(lambda: len(gw.sessions))

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
            the_metrics.token_failure(exc.message)
            raise HTTPException(401, exc.message, headers={"WWW-Authenticate": "Bearer"}) from None

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "sessions": len(gateway.sessions) if gateway is not None else 0,
        }

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        # rendering calls the scrape-time sources (a store query): off the event loop
        body, content_type = await asyncio.to_thread(the_metrics.render)
        return Response(body, media_type=content_type)

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
    app.include_router(sessions_router(config, recordings, caller))
    if console is not None:  # the web console (pgwarden.console.console_router), under /console
        app.include_router(console)

    return app
