"""The HTTP API (FastAPI): health, metrics and, in later capabilities, sessions and approvals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from pgwarden import __version__

if TYPE_CHECKING:
    from pgwarden.proxy.server import Gateway


def create_app(gateway: Gateway | None = None) -> FastAPI:
    app = FastAPI(title="pgwarden", version=__version__, docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "sessions": len(gateway.sessions) if gateway is not None else 0,
        }

    return app
