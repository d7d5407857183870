"""Run the real gateway (``pgwarden.app.Server``) in-process, on its own event loop.

    with RunningGateway(gateway_config(tmp_path, targets={"shop": shop.target()})) as gw:
        token = gw.token("alice")
        psycopg.connect(gw.dsn(user="alice", dbname="shop"))

The gateway runs in a background thread with its own asyncio loop, so tests may use blocking
clients (psql, pgbench, psycopg) as well as asyncio clients (asyncpg on the test's own loop)
against it. Everything listens on 127.0.0.1, on free ports.

Caveat: a client call that blocks in C while holding the GIL deadlocks with a gateway in the
same process. psycopg's legacy ``Connection.cancel()`` (PQcancel) is one: use
``cancel_safe()`` in-process, or a client in another process (psql, pgbench).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import copy
import json
import threading
import time
from collections.abc import Coroutine, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

from pgwarden.app import Server
from pgwarden.auth.local_issuer import LocalIssuer
from pgwarden.config import Config
from pgwarden.devcluster import conninfo

__all__ = [
    "PERMISSIVE_POLICY",
    "RunningGateway",
    "deep_merge",
    "gateway_config",
    "token_claims",
]

T = TypeVar("T")

# The transport tests exercise the data path, not policy: a policy in audit mode blocks
# nothing (CONTRACT.md), so schema changes and DO blocks run as they would directly.
PERMISSIVE_POLICY: dict[str, Any] = {"mode": "audit", "default": "allow", "rules": []}


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `base` with `overrides` merged in (mappings recursively; None deletes)."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def gateway_config(
    data_dir: Path | str,
    *,
    targets: Mapping[str, Mapping[str, Any]],
    policy: Any = PERMISSIVE_POLICY,
    **overrides: Any,
) -> dict[str, Any]:
    """A config document for a gateway on free loopback ports, with `overrides` merged in."""
    base: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "api": {"listen": "127.0.0.1:0"},
        "data_dir": str(data_dir),
        "targets": {name: dict(t) for name, t in targets.items()},
        "policy": policy,
    }
    return deep_merge(base, overrides)


def token_claims(token: str) -> dict[str, Any]:
    """The (unverified) claims of a JWT, e.g. to know exactly when it expires."""
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload))
    return claims


class RunningGateway:
    """``Server(config)`` on a private event loop in a daemon thread."""

    host = "127.0.0.1"

    def __init__(self, config: Config | Mapping[str, Any], *, start_timeout: float = 30) -> None:
        self.config = config if isinstance(config, Config) else Config.model_validate(config)
        self.start_timeout = start_timeout
        self.server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._issuer: LocalIssuer | None = None

    # ---- life cycle ------------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            asyncio.set_event_loop(loop)

            async def boot() -> None:
                self.server = Server(self.config)
                await self.server.start()

            try:
                loop.run_until_complete(boot())
            except BaseException as exc:  # report start-up failures to the caller
                ready.set_exception(exc)
                loop.close()
                return
            ready.set_result(None)
            try:
                loop.run_forever()
            finally:
                with contextlib.suppress(Exception):
                    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                    for task in pending:
                        task.cancel()
                    if pending:
                        loop.run_until_complete(asyncio.wait(pending, timeout=5))
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="pgwarden-gateway", daemon=True)
        self._thread.start()
        try:
            ready.result(self.start_timeout)
        except BaseException:
            self._thread.join(5)
            self._thread = None
            self._loop = None
            raise
        return self

    def stop(self, timeout: float = 15) -> None:
        """Stop the server (sessions end through their normal path) and the loop. Idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            if self.server is not None and not loop.is_closed():
                fut = asyncio.run_coroutine_threadsafe(self.server.stop(), loop)
                with contextlib.suppress(Exception):
                    fut.result(timeout)
        finally:
            if not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._thread = None
            self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- calling into the gateway's loop ---------------------------------------------------

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the gateway's loop and return its result."""
        if self._loop is None:
            raise RuntimeError("the gateway is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def sessions(self) -> list[Any]:
        """A snapshot of the gateway's active sessions (``ActiveSession`` objects)."""

        async def snapshot() -> list[Any]:
            assert self.server is not None
            return list(self.server.gateway.sessions.values())

        return self.call(snapshot())

    def wait_for_sessions(self, count: int, timeout: float = 10) -> list[Any]:
        """Wait until exactly `count` sessions are active; return them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.sessions()
            if len(found) == count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} active sessions, found {len(found)}")
            time.sleep(0.02)

    def open_connections(self) -> int:
        """Client connections the gateway currently holds (authenticated or not)."""

        async def count() -> int:
            assert self.server is not None
            return len(self.server.gateway._conns)

        return self.call(count())

    # ---- addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self.server is None:
            raise RuntimeError("the gateway is not running")
        return self.server.gateway.port

    @property
    def api_port(self) -> int:
        if self.server is None or self.server._api is None:
            raise RuntimeError("the gateway is not running")
        for server in self.server._api.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        raise RuntimeError("the API is not listening")

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    # ---- identity --------------------------------------------------------------------------

    @property
    def issuer(self) -> LocalIssuer:
        """The local issuer whose key the gateway trusts (the key file in data_dir)."""
        if self._issuer is None:
            self._issuer = LocalIssuer.load_or_create(self.config.data_dir)
        return self._issuer

    def token(
        self, subject: str, groups: tuple[str, ...] | list[str] = (), ttl: float = 900
    ) -> str:
        return self.issuer.issue(subject, list(groups), ttl_seconds=ttl)

    # ---- connection strings ----------------------------------------------------------------

    def dsn(
        self,
        user: str = "alice",
        dbname: str = "shop",
        *,
        password: str | None = None,
        groups: tuple[str, ...] | list[str] = (),
        ttl: float = 900,
        sslmode: str | None = "disable",
        **extra: str | int | None,
    ) -> str:
        """A libpq connection string; the password is a fresh token for `user` unless given."""
        if password is None:
            password = self.token(user, groups, ttl)
        params: dict[str, str | int | None] = {"connect_timeout": 10, **extra}
        return conninfo(
            host=self.host,
            port=self.port,
            dbname=dbname,
            user=user,
            password=password,
            sslmode=sslmode,
            **params,
        )

    def url(
        self,
        user: str = "alice",
        dbname: str = "shop",
        *,
        password: str | None = None,
        groups: tuple[str, ...] | list[str] = (),
        ttl: float = 900,
    ) -> str:
        """A postgresql:// URL (asyncpg); the password is a fresh token unless given."""
        if password is None:
            password = self.token(user, groups, ttl)
        return (
            f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}"
            f"@{self.host}:{self.port}/{quote(dbname, safe='')}"
        )

    def connect_kwargs(
        self,
        user: str = "alice",
        dbname: str = "shop",
        *,
        password: str | None = None,
        groups: tuple[str, ...] | list[str] = (),
        ttl: float = 900,
    ) -> dict[str, Any]:
        """host/port/user/password/database keyword arguments (asyncpg style)."""
        if password is None:
            password = self.token(user, groups, ttl)
        return {
            "host": self.host,
            "port": self.port,
            "user": user,
            "password": password,
            "database": dbname,
        }

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self.server is not None else "stopped"
        return f"<RunningGateway {where}>"
