"""Which table column a result column comes from: RowDescription carries the table OID and
attribute number; the catalog turns them into ``schema.table`` and the column name, so a
masking rule on ``customers.ssn`` holds however the query aliases or renames it.

The map is loaded per target from ``pg_attribute`` on the gateway's side connection, and
reloaded (at most every few seconds) when a result names a table OID it does not know yet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from pgwarden.config import TargetConfig
from pgwarden.guard.sideconn import SideConnection
from pgwarden.protocol.messages import RowDescription
from pgwarden.proxy.upstream import UpstreamError

log = logging.getLogger("pgwarden.catalog")

_QUERY = """
SELECT coalesce(string_agg(c.oid::text || '|' || a.attnum::text || '|' ||
                           n.nspname || '|' || c.relname || '|' || a.attname, E'\\n'), '')
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""
_MIN_RELOAD = 2.0


class _TargetCatalog:
    def __init__(self, target: TargetConfig) -> None:
        self.conn = SideConnection(target)
        self.columns: dict[tuple[int, int], tuple[str, str, str]] = {}
        self.tables: set[int] = set()
        self.loaded_at = 0.0
        self.lock = asyncio.Lock()

    async def load(self) -> None:
        async with self.lock:
            if time.monotonic() - self.loaded_at < _MIN_RELOAD and self.loaded_at:
                return
            rows = await self.conn.query(_QUERY, None, ())
            columns: dict[tuple[int, int], tuple[str, str, str]] = {}
            for line in "".join(rows).splitlines():
                oid, attnum, schema, table, column = line.split("|", 4)
                columns[(int(oid), int(attnum))] = (schema, table, column)
            self.columns = columns
            self.tables = {oid for oid, _ in columns}
            self.loaded_at = time.monotonic()


class Catalog:
    def __init__(self, targets: Mapping[str, TargetConfig]) -> None:
        self._targets = targets
        self._cats: dict[str, _TargetCatalog] = {}

    def _cat(self, target: str) -> _TargetCatalog | None:
        cat = self._cats.get(target)
        if cat is None and target in self._targets:
            cat = self._cats[target] = _TargetCatalog(self._targets[target])
        return cat

    async def prepare(self, target: str, desc: RowDescription) -> bool:
        """Make sure every table OID in ``desc`` is known. False if the catalog could not be
        read (the caller decides how to fail closed)."""
        cat = self._cat(target)
        if cat is None:
            return False
        if all(c.table_oid == 0 or c.table_oid in cat.tables for c in desc.columns):
            return True
        try:
            await cat.load()
        except (UpstreamError, TimeoutError, OSError, ValueError) as exc:
            log.warning("cannot read the catalog of %s: %s", target, exc)
            return False
        return True

    def resolve(self, target: str, table_oid: int, attnum: int) -> tuple[str, str, str] | None:
        """(schema, table, column) of a result column, or None (computed or unknown)."""
        cat = self._cats.get(target)
        if cat is None or table_oid == 0:
            return None
        return cat.columns.get((table_oid, attnum))

    async def close(self) -> None:
        for cat in self._cats.values():
            cat.conn.close()
