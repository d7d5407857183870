"""Process wiring: the gateway and the API in one asyncio loop, until cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import uvicorn

from pgwarden.api.app import create_app
from pgwarden.auth.local_issuer import LocalIssuer
from pgwarden.auth.oidc import OidcIssuerConfig
from pgwarden.auth.verifier import TokenVerifier
from pgwarden.config import Config
from pgwarden.guard.estimator import Estimator
from pgwarden.guard.hooks import GuardHooks
from pgwarden.policy import load_policy
from pgwarden.proxy.server import Gateway

log = logging.getLogger("pgwarden")


def build_verifier(config: Config) -> TokenVerifier:
    ident = config.identity
    local = LocalIssuer.load_or_create(config.data_dir) if ident.local_issuer else None
    oidc = [
        OidcIssuerConfig(issuer=o.issuer, audience=o.audience, groups_claim=o.groups_claim)
        for o in ident.oidc
    ]
    return TokenVerifier(local_issuer=local, oidc=oidc, max_token_ttl=ident.max_token_ttl)


class Server:
    """The running gateway and API; ``start()`` binds both ports, ``stop()`` frees them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.verifier = build_verifier(config)
        self.policy = load_policy(config.policy)
        self.estimator = Estimator(config.targets)
        policy, estimator = self.policy, self.estimator
        self.gateway = Gateway(config, self.verifier, lambda info: GuardHooks(policy, estimator))
        self._api: uvicorn.Server | None = None
        self._api_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self.gateway.start()
        api = self.config.api.listen
        uv_config = uvicorn.Config(
            create_app(self.gateway),
            host=api.host,
            port=api.port,
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
        self._api = uvicorn.Server(uv_config)
        self._api.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
        self._api_task = asyncio.create_task(self._api.serve())
        while not self._api.started:
            if self._api_task.done():
                self._api_task.result()
                raise RuntimeError(f"the API could not listen on {api.host}:{api.port}")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._api is not None:
            self._api.should_exit = True
        if self._api_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._api_task, 5)
        await self.gateway.close()
        await self.estimator.close()
        await self.verifier.aclose()


async def serve(config: Config, *, ready: Callable[[], None] | None = None) -> None:
    """Run the gateway and the API until cancelled."""
    server = Server(config)
    await server.start()
    log.info("pgwarden listening on %s (API %s)", config.listen, config.api.listen)
    try:
        if ready is not None:
            ready()
        await asyncio.Event().wait()
    finally:
        await server.stop()
