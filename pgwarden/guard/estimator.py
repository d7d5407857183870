"""Blast radius: how many rows would an UPDATE / DELETE / MERGE touch, asked of PostgreSQL.

The question is put as ``EXPLAIN (FORMAT JSON)`` — the planner's estimate, never an execution
— on a side connection per target that only the gateway uses, through the extended protocol so
bind parameters are substituted exactly as the real statement will see them. The answer is the
rows the ModifyTable nodes read from their inputs, and the planner's estimate for a full scan
of the written table (so "more than half the table" works even before ANALYZE).

Limits, by design: the side connection sees committed schema only (not the session's
temporary tables or uncommitted DDL) and the default search_path. When the estimate cannot be
had, the policy sees none and the rules that need one do not match (``estimate_missing`` is
recorded with the decision).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pgwarden.config import TargetConfig
from pgwarden.policy import RowEstimate
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

log = logging.getLogger("pgwarden.estimator")

_TIMEOUT = 5.0


class _SideConnection:
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


def _modify_nodes(plan: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = []
    if plan.get("Node Type") == "ModifyTable":
        found.append(plan)
    for child in plan.get("Plans", ()) or ():
        found.extend(_modify_nodes(child))
    return found


def _quote(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


class Estimator:
    """Row estimates per target, one side connection each (created on first use)."""

    def __init__(self, targets: Mapping[str, TargetConfig]) -> None:
        self._targets = targets
        self._conns: dict[str, _SideConnection] = {}

    def _conn(self, target: str) -> _SideConnection | None:
        conn = self._conns.get(target)
        if conn is None:
            cfg = self._targets.get(target)
            if cfg is None:
                return None
            conn = self._conns[target] = _SideConnection(cfg)
        return conn

    async def estimate(
        self, target: str, sql: str, bind: Bind | None = None, param_types: Sequence[int] = ()
    ) -> RowEstimate | None:
        conn = self._conn(target)
        if conn is None:
            return None
        try:
            out = await conn.query(f"EXPLAIN (FORMAT JSON, VERBOSE) {sql}", bind, param_types)
            doc = json.loads("".join(out))
            plan = doc[0]["Plan"]
            nodes = _modify_nodes(plan)
            if not nodes:
                return None
            rows = 0.0
            table_rows: float | None = None
            for node in nodes:
                rows += sum(float(c.get("Plan Rows", 0)) for c in node.get("Plans", ()) or ())
                rel, schema = node.get("Relation Name"), node.get("Schema")
                if rel and schema:
                    full = await conn.query(
                        f"EXPLAIN (FORMAT JSON) SELECT 1 FROM ONLY {_quote(schema)}.{_quote(rel)}",  # noqa: S608 - quoted identifiers from the plan
                        None,
                        (),
                    )
                    n = float(json.loads("".join(full))[0]["Plan"].get("Plan Rows", 0))
                    table_rows = n if table_rows is None else min(table_rows, n)
            return RowEstimate(rows=rows, table_rows=table_rows)
        except (
            UpstreamError,
            TimeoutError,
            OSError,
            ValueError,
            KeyError,
            IndexError,
            TypeError,
        ) as exc:
            log.info("no row estimate for a statement on %s: %s", target, exc)
            return None

    async def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
