"""A connection per target that only the gateway uses, for questions it asks the database
itself (row estimates, catalog lookups) without touching any client's session."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from pgwarden.config import TargetConfig
from pgwarden.protocol.messages import (
    Bind,
    DataRow,
    Describe,
    ErrorResponse,
    Execute,
    Message,
    NoData,
    Parse,
    ReadyForQuery,
    RowDescription,
    Sync,
    Terminate,
)
from pgwarden.proxy import upstream as upstream_mod
from pgwarden.proxy.upstream import Upstream, UpstreamError

_TIMEOUT = 5.0
# Unused this long, a side connection closes. DROP DATABASE (without FORCE) waits up to 5 s
# for other sessions to leave its database; the gateway's own connections then leave in time,
# and a target nobody uses holds no connection of the gateway's.
IDLE_CLOSE = 2.0
_T = TypeVar("_T")
_LOST = (OSError, UpstreamError, asyncio.IncompleteReadError)


def _lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection is gone, not that the question failed on it:
    connection exceptions (class 08) and the server ending the session (57P01-57P03)."""
    if isinstance(exc, UpstreamError):
        return exc.sqlstate.startswith("08") or exc.sqlstate in {"57P01", "57P02", "57P03"}
    return True


class SideConnection:
    def __init__(self, target: TargetConfig, *, idle_close: float = IDLE_CLOSE) -> None:
        self.target = target
        self.idle_close = idle_close
        self.up: Upstream | None = None
        self._idle: asyncio.TimerHandle | None = None
        self.lock = asyncio.Lock()  # one statement at a time
        # The search_path this connection has set for the session it answers for (None: its
        # role's default); names in a statement resolve as they do in that session.
        self.search_path: str | None = None
        self.session_lock = asyncio.Lock()  # a sequence that needs session state to itself
        self._sequence: asyncio.Task[object] | None = None  # the task running one
        self._sequence_asked = False  # it has asked something: the session holds its state

    async def query(
        self,
        sql: str,
        bind: Bind | None,
        param_types: Sequence[int],
        search_path: str | None = None,
    ) -> list[str]:
        """Run one statement with the given bind values, its names resolved with
        ``search_path`` (None: the role's default); return the first column of each row."""
        return await self._ask(search_path, lambda: self._query(sql, bind, param_types))

    async def describe(self, sql: str, search_path: str | None = None) -> RowDescription | None:
        """The columns ``sql`` would return (Parse + Describe, never executed), its names
        resolved with ``search_path``; None if it returns no rows."""
        return await self._ask(search_path, lambda: self._describe(sql))

    @contextlib.asynccontextmanager
    async def sequence(self) -> AsyncIterator[None]:
        """The connection to one task for several questions (PREPARE .. DEALLOCATE, BEGIN ..
        ROLLBACK): the other tasks' questions wait until it ends, so none runs inside it
        (and none that fails closes the connection under it). One sequence may hold another
        (a count inside PREPARE .. DEALLOCATE)."""
        if self._sequence is not None and self._sequence is asyncio.current_task():
            yield  # already this task's
            return
        async with self.session_lock:
            self._sequence = asyncio.current_task()
            self._sequence_asked = False
            try:
                yield
            finally:
                self._sequence = None

    async def _ask(self, search_path: str | None, then: Callable[[], Awaitable[_T]]) -> _T:
        """One question at a time, within one timeout: the session's search_path, then
        ``then()``. A failure closes the connection (a new one starts at the role's default).
        A connection that died while unused is replaced and the question asked again once."""
        while self._sequence is not None and self._sequence is not asyncio.current_task():
            async with self.session_lock:  # another task's sequence: after it
                pass

        async def run() -> _T:
            await self._set_path(search_path)
            return await then()

        async with self.lock:
            if self._idle is not None:
                self._idle.cancel()
                self._idle = None
            # A backend terminated, a database dropped and made again or a restarted server
            # leaves an idle connection that looks open (the EOF keeps the transport
            # half-open) until it is asked something.
            reused = self.up is not None
            try:
                answer = await self._once(run)
            except _LOST as exc:
                if not (reused and _lost(exc) and self._stateless()):
                    raise
                answer = await self._once(run)
            if self._sequence is not None:
                self._sequence_asked = True
            self._idle = asyncio.get_running_loop().call_later(self.idle_close, self._close_idle)
            return answer

    async def _once(self, run: Callable[[], Awaitable[_T]]) -> _T:
        try:
            return await asyncio.wait_for(run(), _TIMEOUT)
        except (TimeoutError, *_LOST):
            self.close()
            raise

    def _stateless(self) -> bool:
        """Whether a new connection may stand in for this one: not inside a sequence that
        has set session state (BEGIN READ ONLY, PREPARE) the rest of it relies on."""
        return self._sequence is None or not self._sequence_asked

    def _close_idle(self) -> None:
        self._idle = None
        if not self.lock.locked() and not self.session_lock.locked():
            self.close()

    async def _describe(self, sql: str) -> RowDescription | None:
        up = await self._connect()
        up.writer.write(Parse.build("", sql).raw + Describe.build(b"S", "").raw + Sync.build().raw)
        await up.writer.drain()
        desc: RowDescription | None = None
        error: ErrorResponse | None = None
        async for msg in self._replies(up):
            if isinstance(msg, RowDescription):
                desc = msg
            elif isinstance(msg, ErrorResponse):
                error = msg
            elif isinstance(msg, NoData):
                desc = None
        if error is not None:
            raise UpstreamError(error.message, error.sqlstate)
        return desc

    async def _connect(self) -> Upstream:
        if self.up is None or self.up.writer.is_closing():
            self.search_path = None
            self.up = await upstream_mod.connect(
                self.target, {"application_name": "pgwarden-estimator"}
            )
        return self.up

    async def _set_path(self, search_path: str | None) -> None:
        await self._connect()
        if search_path == self.search_path:
            return
        if search_path is None:
            await self._query("RESET search_path", None, ())
        else:
            value = Bind.build("", "", (search_path.encode(),))
            await self._query(
                "SELECT pg_catalog.set_config('search_path', $1, false)", value, (25,)
            )
        self.search_path = search_path

    @staticmethod
    async def _replies(up: Upstream) -> AsyncIterator[Message]:
        """Messages up to and including ReadyForQuery."""
        while True:
            msg = up.parser.next()
            if msg is None:
                data = await up.reader.read(65536)
                if not data:
                    raise UpstreamError("side connection closed")
                up.parser.feed(data)
                continue
            yield msg  # type: ignore[misc]
            if isinstance(msg, ReadyForQuery):
                return

    async def _query(self, sql: str, bind: Bind | None, param_types: Sequence[int]) -> list[str]:
        up = await self._connect()
        if bind is not None:
            b = Bind.build("", "", bind.params, bind.param_formats, (0,))
        else:
            b = Bind.build("", "", (), (), (0,))
        up.writer.write(
            Parse.build("", sql, param_types).raw + b.raw + Execute.build().raw + Sync.build().raw
        )
        await up.writer.drain()
        rows: list[str] = []
        error: ErrorResponse | None = None
        async for msg in self._replies(up):
            if isinstance(msg, DataRow):
                value = msg.values()[0]
                rows.append(value.decode() if value is not None else "")
            elif isinstance(msg, ErrorResponse):
                error = msg
        if error is not None:
            raise UpstreamError(error.message, error.sqlstate)
        return rows

    def close(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self.up is not None:
            with contextlib.suppress(Exception):
                if not self.up.writer.is_closing():
                    self.up.writer.write(Terminate.build().raw)
                self.up.writer.close()
        self.up = None
