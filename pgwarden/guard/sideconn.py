"""A connection per target that only the gateway uses, for questions it asks the database
itself (row estimates, catalog lookups) without touching any client's session."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from pgwarden.config import TargetConfig
from pgwarden.protocol.messages import (
    Bind,
    CommandComplete,
    DataRow,
    ErrorResponse,
    Execute,
    Parse,
    ReadyForQuery,
    Sync,
)
from pgwarden.proxy import upstream as upstream_mod
from pgwarden.proxy.upstream import Upstream, UpstreamError

_TIMEOUT = 5.0


class SideConnection:
    def __init__(self, target: TargetConfig) -> None:
        self.target = target
        self.up: Upstream | None = None
        self.lock = asyncio.Lock()

    async def query(self, sql: str, bind: Bind | None, param_types: Sequence[int]) -> list[str]:
        """Run one statement with the given bind values; return the first column of each row."""
        async with self.lock:
            try:
                return await asyncio.wait_for(self._query(sql, bind, param_types), _TIMEOUT)
            except (TimeoutError, OSError, UpstreamError, asyncio.IncompleteReadError):
                self.close()
                raise

    async def _query(self, sql: str, bind: Bind | None, param_types: Sequence[int]) -> list[str]:
        if self.up is None or self.up.writer.is_closing():
            self.up = await upstream_mod.connect(
                self.target, {"application_name": "pgwarden-estimator"}
            )
        up = self.up
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
        while True:
            msg = up.parser.next()
            if msg is None:
                data = await up.reader.read(65536)
                if not data:
                    raise UpstreamError("estimator connection closed")
                up.parser.feed(data)
                continue
            if isinstance(msg, DataRow):
                value = msg.values()[0]
                rows.append(value.decode() if value is not None else "")
            elif isinstance(msg, ErrorResponse):
                error = msg
            elif isinstance(msg, ReadyForQuery):
                break
            elif isinstance(msg, CommandComplete):
                continue
        if error is not None:
            raise UpstreamError(error.message, error.sqlstate)
        return rows

    def close(self) -> None:
        if self.up is not None:
            with contextlib.suppress(Exception):
                self.up.writer.close()
        self.up = None
