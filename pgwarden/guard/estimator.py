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

import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pgwarden.config import TargetConfig
from pgwarden.guard.sideconn import SideConnection
from pgwarden.policy import RowEstimate
from pgwarden.protocol.messages import (
    Bind,
)
from pgwarden.proxy.upstream import UpstreamError

log = logging.getLogger("pgwarden.estimator")

_FAILURES = (UpstreamError, TimeoutError, OSError, ValueError, KeyError, IndexError, TypeError)


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
        self._conns: dict[str, SideConnection] = {}

    def _conn(self, target: str) -> SideConnection | None:
        conn = self._conns.get(target)
        if conn is None:
            cfg = self._targets.get(target)
            if cfg is None:
                return None
            conn = self._conns[target] = SideConnection(cfg)
        return conn

    async def estimate(
        self, target: str, sql: str, bind: Bind | None = None, param_types: Sequence[int] = ()
    ) -> RowEstimate | None:
        conn = self._conn(target)
        if conn is None:
            return None
        try:
            return await self._explain(conn, sql, bind, param_types)
        except _FAILURES as exc:
            log.info("no row estimate for a statement on %s: %s", target, exc)
            return None

    async def estimate_prepared(
        self, target: str, body: str, execute_sql: str, name: str
    ) -> RowEstimate | None:
        """Estimate ``EXECUTE name(args)`` of a statement prepared as ``body``: the body is
        prepared on the side connection under a name of its own and EXPLAIN EXECUTEd."""
        conn = self._conn(target)
        if conn is None:
            return None
        pattern = re.compile(r"^(\s*execute\s+)(\"?)" + re.escape(name) + r"\2", re.IGNORECASE)
        renamed, n = pattern.subn(r"\1pgwarden_estimate", execute_sql, count=1)
        if n != 1:
            return None
        try:
            await conn.query(f"PREPARE pgwarden_estimate AS {body}", None, ())
            try:
                return await self._explain(conn, renamed, None, ())
            finally:
                await conn.query("DEALLOCATE pgwarden_estimate", None, ())
        except _FAILURES as exc:
            log.info("no row estimate for a prepared statement on %s: %s", target, exc)
            return None

    async def _explain(
        self, conn: SideConnection, sql: str, bind: Bind | None, param_types: Sequence[int]
    ) -> RowEstimate | None:
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
                    f"EXPLAIN (FORMAT JSON) SELECT 1 FROM ONLY {_quote(schema)}.{_quote(rel)}",  # noqa: S608
                    None,
                    (),
                )
                n = float(json.loads("".join(full))[0]["Plan"].get("Plan Rows", 0))
                table_rows = n if table_rows is None else min(table_rows, n)
        return RowEstimate(rows=rows, table_rows=table_rows)

    async def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
