"""Blast radius: how many rows would an UPDATE / DELETE / MERGE touch, asked of PostgreSQL.

The question is put as ``EXPLAIN (FORMAT JSON)`` — the planner's estimate, never an execution
— on a side connection per target that only the gateway uses, through the extended protocol so
bind parameters are substituted exactly as the real statement will see them. The answer is the
rows the ModifyTable nodes read from their inputs, and the planner's estimate for a full scan
of the written table (so "more than half the table" works even before ANALYZE).

A WHERE the planner has no statistics for (a column inside an expression: ``abs(id) > 0``,
``id + 0 > 0``, ``lower(email) = 'x'``; a subquery) gets a fixed guess from it (a third of the
table for an inequality, 0.5 % for an equality), so ``DELETE FROM orders WHERE abs(id) > 0``
would pass for a third of the table. The rows such a DELETE or UPDATE writes are counted
instead: ``SELECT count(*)`` of its table with its WHERE and parameters, up to COUNT_LIMIT rows
(past it: the whole table), in a READ ONLY transaction that is rolled back, within
COUNT_TIMEOUT (past it: no estimate, the write is held). Only when the WHERE calls nothing but
PostgreSQL's own functions that act on nothing else (``pgwarden.sql.writes``); one that calls
the target's functions, dangerous ones, ``pg_sleep``, advisory locks or ``set_config`` is not
run, and its guess cannot be checked: no estimate (held). The write itself never runs. A
DELETE or UPDATE in a statement's only WITH query is counted too; one among several WITH
queries keeps the guess.

A write by a unique key (``UPDATE t ... WHERE id = 5``, the one statement agents and
applications send most) asks no EXPLAIN: when the classifier saw ``column = value`` in the
top AND of a one-table UPDATE/DELETE and the catalog says that column alone is a unique key
of a plain table, at most one row can match, and the estimate is the planner's own for it
(one row). The catalog's answer is kept for a few seconds per table; what would let one
"key" match several rows keeps the EXPLAIN: a partial, expression, deferrable or
multi-column index, a column type other than integers and uuid, inheritance children,
rewrite rules, a parameter of a lossy type (``int8_col = $1`` bound as float8).

A DELETE also counts the rows other tables lose or change through foreign keys (ON DELETE
CASCADE, SET NULL, SET DEFAULT), and an UPDATE that sets a referenced column those that ON
UPDATE CASCADE / SET NULL / SET DEFAULT change, down cascading chains. The rows that reference
the written ones directly are asked of the planner with the statement's own condition
(``pgwarden.sql.writes``): ``id = 7`` put on ``customer_id``, whose statistics the planner
reads for 7, so the one customer who holds most of the orders counts as such; other
conditions count the referencing rows of a semi-join on the statement's table and WHERE
(the planner would estimate it with an average per referenced row). Further down a chain,
and for statements with USING or FROM, several WITH queries, and SQL-level EXECUTE, each key
counts the written rows times the referencing table's rows per referenced row (an average).
A MERGE's DELETE and UPDATE actions count an average for each row it reads; UPDATEs among
several WITH queries are not followed.

Names resolve as in the session: the side connection takes the session's start-up search_path
(``options=-c search_path=tenant_a``) before each question. A session that changes its
search_path later (SET, RESET ALL, set_config, or a call of a target's function whose source
may: ``Catalog.user_functions``) gets no estimates (see ``GuardHooks``).

Limits, by design: the side connection sees committed schema only (not the session's
temporary tables or uncommitted DDL). When the estimate cannot be
had, the policy sees none and the rules that need one do not match (``estimate_missing`` is
recorded with the decision).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pgwarden.config import TargetConfig
from pgwarden.guard.kept import Kept
from pgwarden.guard.sideconn import SideConnection
from pgwarden.policy import RowEstimate
from pgwarden.protocol.messages import (
    Bind,
)
from pgwarden.proxy.upstream import UpstreamError
from pgwarden.sql.idents import quote_ident
from pgwarden.sql.model import KeyLookup
from pgwarden.sql.writes import WriteScope, merge_actions, where_onto, write_scope

log = logging.getLogger("pgwarden.estimator")

_FAILURES = (UpstreamError, TimeoutError, OSError, ValueError, KeyError, IndexError, TypeError)


def _modify_nodes(plan: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = []
    if plan.get("Node Type") == "ModifyTable":
        found.append(plan)
    for child in plan.get("Plans", ()) or ():
        found.extend(_modify_nodes(child))
    return found


#: Side connections per target: estimates of concurrent sessions do not wait for each other
#: (one connection made every UPDATE of every session queue behind one EXPLAIN at a time).
POOL_SIZE = 4
#: How long a table's planner size (and its unique keys) is reused: it moves with ANALYZE and
#: autovacuum, not with each statement, and asking for it doubled the round trips of every
#: estimate.
TABLE_ROWS_TTL = 5.0


# A table's single-column unique keys, if it is a plain table nothing rewrites or extends.
_UNIQUE_KEYS = """
SELECT json_build_object(
  'schema', n.nspname, 'table', c.relname,
  'plain', c.relkind = 'r' AND NOT c.relhassubclass AND NOT c.relhasrules,
  'keys', ARRAY(
    SELECT a.attname FROM pg_index i
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid AND i.indimmediate
      AND i.indnkeyatts = 1 AND i.indexprs IS NULL AND i.indpred IS NULL
      AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'uuid'::regtype)
  ))::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass($1)
"""
# Foreign keys whose ON DELETE or ON UPDATE deletes or changes (c: CASCADE, n: SET NULL, d: SET
# DEFAULT) rows of another table, referencing the table named $1 (declared once: not their
# partitions' clones), with their columns and the referenced ones, in key order.
_CASCADES = """
SELECT coalesce(json_agg(json_build_array(n.nspname, c.relname, f.confdeltype, f.confupdtype,
  ARRAY(SELECT a.attname FROM unnest(f.conkey) WITH ORDINALITY k(num, i)
        JOIN pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = k.num ORDER BY k.i),
  ARRAY(SELECT a.attname FROM unnest(f.confkey) WITH ORDINALITY k(num, i)
        JOIN pg_attribute a ON a.attrelid = f.confrelid AND a.attnum = k.num ORDER BY k.i)
)), '[]')::text
FROM pg_constraint f
JOIN pg_class c ON c.oid = f.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE f.contype = 'f' AND f.conparentid = 0
  AND (f.confdeltype IN ('c', 'n', 'd') OR f.confupdtype IN ('c', 'n', 'd'))
  AND f.confrelid = to_regclass($1)
"""
_REFERENCING = "pgwarden_referencing"  # the referencing table's alias in a question
#: A write whose WHERE the planner can only guess at has its rows counted, up to this many
#: (one more than the default policy's threshold, ten times over); past it, the estimate is
#: the whole table (the count stopped: how many more is unknown).
COUNT_LIMIT = 10_001
#: How long that count may take (seconds); past it, the write has no estimate (held).
COUNT_TIMEOUT = 2.0


def _writing(
    sql: str, scope: WriteScope | None, bind: Bind | None, param_types: Sequence[int]
) -> _Writing | None:
    return _Writing(sql, scope, bind, param_types) if scope is not None and scope.alone else None


#: How many foreign keys down a chain of ON DELETE CASCADE is followed.
CASCADE_DEPTH = 4

_CHANGES = frozenset("cnd")  # CASCADE, SET NULL, SET DEFAULT (not NO ACTION, RESTRICT)


@dataclass(frozen=True, slots=True)
class _Referencing:
    """A foreign key of schema.table (``columns``) onto ``referenced`` columns, with its
    ON DELETE and ON UPDATE actions (pg_constraint's letters)."""

    schema: str
    table: str
    on_delete: str
    on_update: str
    columns: tuple[str, ...]
    referenced: tuple[str, ...]

    def changes(self, sets: frozenset[str] | None) -> str | None:
        """Its action when the referenced rows are deleted (``sets`` None) or have
        ``sets`` set, if that action deletes or changes the referencing rows."""
        if sets is None:
            return self.on_delete if self.on_delete in _CHANGES else None
        if self.on_update in _CHANGES and not sets.isdisjoint(self.referenced):
            return self.on_update
        return None


@dataclass(frozen=True, slots=True)
class _Writing:
    """The DELETE or UPDATE being estimated (``sql``, written alone: see ``write_scope``),
    to ask with its own WHERE and parameters how many rows reference the rows it writes."""

    sql: str
    scope: WriteScope
    bind: Bind | None
    param_types: Sequence[int]


#: Parameter types a key may be compared with: unspecified (the column's own), the integers,
#: numeric, oid, uuid and text (compared as the key's type or refused). Not float4/float8,
#: which map several int8 keys to one value.
_KEY_PARAM_TYPES = frozenset({0, 20, 21, 23, 25, 26, 705, 1043, 1700, 2950})


class Estimator:
    """Row estimates per target, on up to POOL_SIZE side connections each (opened on use)."""

    def __init__(self, targets: Mapping[str, TargetConfig]) -> None:
        self._targets = targets
        self._pools: dict[str, list[SideConnection]] = {}
        self._turn = 0
        # (target, schema, table, ONLY) -> planner rows
        self._table_rows: Kept[tuple[int, str, str, bool], float] = Kept()
        # (target, search_path, relation as written) -> (schema, table, unique key columns)
        # or None
        self._keys: Kept[tuple[int, str | None, str], tuple[str, str, frozenset[str]] | None]
        self._keys = Kept()
        # (target, schema, table) -> the foreign keys referencing it
        self._fks: Kept[tuple[int, str, str], list[_Referencing]] = Kept()
        self.by_key = 0  # estimates made from a unique key, without EXPLAIN
        self.counted = 0  # estimates whose rows were counted (a WHERE the planner guesses at)

    def _conn(self, target: str) -> SideConnection | None:
        pool = self._pools.get(target)
        if pool is None:
            cfg = self._targets.get(target)
            if cfg is None:
                return None
            pool = self._pools[target] = [SideConnection(cfg) for _ in range(POOL_SIZE)]
        for conn in pool:  # an idle connection that is open, else the next in turn
            if conn.up is not None and not conn.lock.locked():
                return conn
        self._turn = (self._turn + 1) % len(pool)
        return pool[self._turn]

    async def estimate(
        self,
        target: str,
        sql: str,
        bind: Bind | None = None,
        param_types: Sequence[int] = (),
        key: KeyLookup | None = None,
        search_path: str | None = None,
    ) -> RowEstimate | None:
        """The estimate for ``sql`` with its names resolved as in a session whose
        search_path is ``search_path`` (None: the role's default)."""
        conn = self._conn(target)
        if conn is None:
            return None
        try:
            if key is not None:
                found = await self._by_key(conn, key, sql, bind, param_types, search_path)
                if found is not None:
                    return found
            return await self._explain(conn, sql, bind, param_types, search_path, sql, exact=True)
        except _FAILURES as exc:
            log.info("no row estimate for a statement on %s: %s", target, exc)
            return None

    async def estimate_prepared(
        self, target: str, body: str, execute_sql: str, name: str, search_path: str | None = None
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
            async with conn.sequence():  # PREPARE .. DEALLOCATE: nobody else in between
                await conn.query(f"PREPARE pgwarden_estimate AS {body}", None, (), search_path)
                try:
                    # a body without parameters is asked as itself ("$" anywhere: as if
                    # it had some, which only costs the questions that need it)
                    return await self._explain(
                        conn, renamed, None, (), search_path, body, exact="$" not in body
                    )
                finally:
                    await conn.query("DEALLOCATE pgwarden_estimate", None, (), search_path)
        except _FAILURES as exc:
            log.info("no row estimate for a prepared statement on %s: %s", target, exc)
            return None

    async def _explain(
        self,
        conn: SideConnection,
        sql: str,
        bind: Bind | None,
        param_types: Sequence[int],
        path: str | None,
        writes: str,
        *,
        exact: bool,
    ) -> RowEstimate | None:
        """``writes``: the statement that writes (``sql``, or the statement it EXECUTEs);
        ``exact``: ``writes`` can be asked with ``bind`` (it is ``sql``, or has no
        parameters), so that the rows it writes, and those referencing them, can be asked
        with its WHERE."""
        out = await conn.query(f"EXPLAIN (FORMAT JSON, VERBOSE) {sql}", bind, param_types, path)
        doc = json.loads("".join(out))
        plan = doc[0]["Plan"]
        nodes = _modify_nodes(plan)
        if not nodes:
            return None
        rows = cascaded = 0.0
        table_rows: float | None = None
        exactly = False  # the rows written were counted, below COUNT_LIMIT
        for node in nodes:
            node_rows = sum(float(c.get("Plan Rows", 0)) for c in node.get("Plans", ()) or ())
            rel, schema = node.get("Relation Name"), node.get("Schema")
            operation = node.get("Operation")
            if rel and schema:
                n = await self._table_size(conn, str(schema), str(rel), path)
                table_rows = n if table_rows is None else min(table_rows, n)
            if rel and schema and operation == "Merge" and len(nodes) == 1:
                # each row the MERGE reads may be deleted or updated: both counted, averaged
                actions = merge_actions(writes)
                if actions is not None and await self._referencing(
                    conn, str(schema), str(rel), path
                ):
                    deletes, sets = actions
                    if deletes:
                        cascaded += await self._cascaded(
                            conn, str(schema), str(rel), node_rows, path, None
                        )
                    if sets:
                        cascaded += await self._cascaded(
                            conn, str(schema), str(rel), node_rows, path, sets
                        )
            if rel and schema and operation in ("Delete", "Update"):
                # writes in WITH: which node writes what is not known here
                scope = write_scope(writes) if len(nodes) == 1 else None
                writing = _writing(writes, scope, bind, param_types) if exact else None
                if scope is not None and scope.alone and scope.guessed:
                    if writing is None or not scope.runnable:
                        # a guess that cannot be checked (the WHERE would run what it must
                        # not, or has an EXECUTE's arguments): no estimate, the write is held
                        return None
                    table = f"{quote_ident(str(schema))}.{quote_ident(str(rel))}"
                    counted = await self._count(conn, scope.rows(table), writing, path)
                    exactly = counted < COUNT_LIMIT
                    node_rows = counted if exactly else max(node_rows, n)
                    self.counted += 1
                    writing = None  # its WHERE is as much a guess for what references the rows
                if (operation == "Delete" or scope is not None) and await self._referencing(
                    conn, str(schema), str(rel), path
                ):
                    cascaded += await self._cascaded(
                        conn,
                        str(schema),
                        str(rel),
                        node_rows,
                        path,
                        scope.sets if scope is not None else None,
                        writing,
                    )
            rows += node_rows
        return RowEstimate(rows=rows, table_rows=table_rows, cascaded=cascaded, counted=exactly)

    async def _count(
        self, conn: SideConnection, rows: str, writing: _Writing, path: str | None
    ) -> float:
        """The rows of ``SELECT 1 FROM <rows>`` (tables and a WHERE with ``writing``'s
        parameters), counted up to COUNT_LIMIT in a read-only transaction that is rolled
        back, within COUNT_TIMEOUT."""
        sql = (
            f"SELECT count(*) FROM (SELECT 1 FROM {rows} "  # noqa: S608 - names quoted, WHERE the client's
            f"LIMIT {COUNT_LIMIT}) AS pgwarden_rows"
        )
        async with conn.sequence():  # BEGIN .. ROLLBACK: nobody else in between
            await conn.query("BEGIN TRANSACTION READ ONLY", None, (), path)
            try:
                timeout = f"SET LOCAL statement_timeout = {int(COUNT_TIMEOUT * 1000)}"
                await conn.query(timeout, None, (), path)
                out = await conn.query(sql, writing.bind, writing.param_types, path)
            finally:
                await conn.query("ROLLBACK", None, (), path)
        return float(out[0])

    async def _by_key(
        self,
        conn: SideConnection,
        key: KeyLookup,
        sql: str,
        bind: Bind | None,
        param_types: Sequence[int],
        path: str | None,
    ) -> RowEstimate | None:
        columns = {
            column
            for column, n in key.columns
            if n == 0 or (param_types[n - 1] if n <= len(param_types) else 0) in _KEY_PARAM_TYPES
        }
        if not columns:
            return None
        table = await self._unique_keys(conn, key.relation, path)
        if table is None or columns.isdisjoint(table[2]):
            return None
        table_rows = await self._table_size(conn, table[0], table[1], path)
        cascaded = 0.0
        if await self._referencing(conn, table[0], table[1], path):
            scope = write_scope(sql)
            if scope is None:
                return None
            writing = _writing(sql, scope, bind, param_types)
            cascaded = await self._cascaded(
                conn, table[0], table[1], 1.0, path, scope.sets, writing
            )
        self.by_key += 1
        return RowEstimate(rows=1.0, table_rows=table_rows, cascaded=cascaded)

    async def _cascaded(
        self,
        conn: SideConnection,
        schema: str,
        rel: str,
        rows: float,
        path: str | None,
        sets: frozenset[str] | None,
        writing: _Writing | None = None,
        chain: frozenset[tuple[str, str]] = frozenset(),
    ) -> float:
        """Rows of other tables that deleting ``rows`` rows of schema.rel (``sets`` None) or
        setting their ``sets`` columns deletes or changes through foreign keys, following
        CASCADE down to CASCADE_DEPTH keys. ``writing``: the statement writing these rows,
        whose referencing rows the planner is asked for; without it (further down a chain),
        an average per referenced row."""
        chain = chain | {(schema, rel)}
        if rows <= 0 or len(chain) > CASCADE_DEPTH:
            return 0.0
        children = await self._referencing(conn, schema, rel, path)
        if not children:
            return 0.0
        parent_rows = max(await self._table_size(conn, schema, rel, path), 1.0)
        total = 0.0
        for fk in children:
            action = fk.changes(sets)
            if action is None:
                continue
            size = await self._table_size(conn, fk.schema, fk.table, path, only=False)
            if writing is not None:
                hit = await self._referencing_rows(conn, schema, rel, fk, writing, path)
            else:
                hit = rows * size / parent_rows
            hit = min(size, hit)
            total += hit
            if action == "c" and (fk.schema, fk.table) not in chain:
                # a cascaded UPDATE sets the referencing columns, which others may reference
                then = None if sets is None else frozenset(fk.columns)
                total += await self._cascaded(
                    conn, fk.schema, fk.table, hit, path, then, None, chain
                )
        return total

    async def _referencing_rows(
        self,
        conn: SideConnection,
        schema: str,
        rel: str,
        fk: _Referencing,
        writing: _Writing,
        path: str | None,
    ) -> float:
        """The rows of ``fk``'s table that reference a row ``writing`` writes: the planner's
        for the statement's condition on the referencing column when it reads only the
        referenced one; else those of a semi-join on the statement's table and WHERE, counted
        (up to COUNT_LIMIT: past it, the whole table) when the WHERE may run (the planner
        estimates such a join with an average per referenced row), else the planner's."""
        scope = writing.scope
        referencing = ", ".join(f"{_REFERENCING}.{quote_ident(c)}" for c in fk.columns)
        onto = None
        if len(fk.columns) == 1:
            onto = where_onto(writing.sql, fk.referenced[0], _REFERENCING, fk.columns[0])
        if onto is not None:
            condition = onto
        else:
            table = f"{quote_ident(schema)}.{quote_ident(rel)}"
            qualifier = quote_ident(scope.alias) if scope.alias is not None else table
            referenced = ", ".join(f"{qualifier}.{quote_ident(c)}" for c in fk.referenced)
            rows = scope.rows(table)
            condition = f"({referencing}) IN (SELECT {referenced} FROM {rows})"  # noqa: S608
            if scope.runnable:
                child = f"{quote_ident(fk.schema)}.{quote_ident(fk.table)} AS {_REFERENCING}"
                counted = await self._count(conn, f"{child} WHERE {condition}", writing, path)
                self.counted += 1
                if counted < COUNT_LIMIT:
                    return counted
                return await self._table_size(conn, fk.schema, fk.table, path, only=False)
        sql = (
            "EXPLAIN (FORMAT JSON) SELECT 1 FROM "  # noqa: S608 - names quoted, WHERE the client's
            f"{quote_ident(fk.schema)}.{quote_ident(fk.table)} AS {_REFERENCING} WHERE {condition}"
        )
        out = await conn.query(sql, writing.bind, writing.param_types, path)
        return float(json.loads("".join(out))[0]["Plan"].get("Plan Rows", 0))

    async def _referencing(
        self, conn: SideConnection, schema: str, rel: str, path: str | None
    ) -> list[_Referencing]:
        cache_key = (id(conn.target), schema, rel)
        known = self._fks.get(cache_key, TABLE_ROWS_TTL)
        if known is not None:
            return known[0]
        name = f"{quote_ident(schema)}.{quote_ident(rel)}"
        out = await conn.query(_CASCADES, Bind.build("", "", (name.encode(),)), (25,), path)
        found = [
            _Referencing(
                str(s), str(t), str(d), str(u), tuple(map(str, cols)), tuple(map(str, refs))
            )
            for s, t, d, u, cols, refs in (json.loads(out[0]) if out else ())
        ]
        return self._fks.put(cache_key, found)

    async def _unique_keys(
        self, conn: SideConnection, relation: str, path: str | None
    ) -> tuple[str, str, frozenset[str]] | None:
        cache_key = (id(conn.target), path, relation)
        known = self._keys.get(cache_key, TABLE_ROWS_TTL)
        if known is not None:
            return known[0]
        out = await conn.query(_UNIQUE_KEYS, Bind.build("", "", (relation.encode(),)), (25,), path)
        found: tuple[str, str, frozenset[str]] | None = None
        if out:
            doc = json.loads(out[0])
            if doc["plain"] and doc["keys"]:
                found = (str(doc["schema"]), str(doc["table"]), frozenset(map(str, doc["keys"])))
        return self._keys.put(cache_key, found)

    async def _table_size(
        self, conn: SideConnection, schema: str, rel: str, path: str | None, *, only: bool = True
    ) -> float:
        """The planner's rows for a full scan of schema.rel (with its partitions and
        inheritance children unless ``only``)."""
        # The pool's connections share one TargetConfig: it names the database.
        key = (id(conn.target), schema, rel, only)
        known = self._table_rows.get(key, TABLE_ROWS_TTL)
        if known is not None:
            return known[0]
        full = await conn.query(
            f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {'ONLY ' if only else ''}"  # noqa: S608
            f"{quote_ident(schema)}.{quote_ident(rel)}",
            None,
            (),
            path,  # a qualified name: only so that the connection keeps the session's path
        )
        return self._table_rows.put(
            key, float(json.loads("".join(full))[0]["Plan"].get("Plan Rows", 0))
        )

    async def close(self) -> None:
        for pool in self._pools.values():
            for conn in pool:
                conn.close()
        self._pools.clear()
