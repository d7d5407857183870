"""Which table column a result column comes from: RowDescription carries the table OID and
attribute number; the catalog turns them into ``schema.table`` and the column name, so a
masking rule on ``customers.ssn`` holds however the query aliases or renames it.

The map is loaded per target from ``pg_attribute`` on the gateway's side connection, and
reloaded (at most every few seconds) when a result names a table OID it does not know yet.

Views: a result column of a view points at the view, not at the table behind it. A view
column is traced to the base column it depends on (``pg_depend`` of the view's rewrite rule)
that has the same name, through views of views; a renamed column (``ssn AS tax_id``) keeps
the view's own lineage, so only a rule naming the view or a ``*.column`` rule matches it
(content detectors apply either way).

Functions: which called function names could be a user's VOLATILE function (one that may
write), and which relations read run one (a view's query, a row security policy), for the
policy (``GuardHooks``: a statement calling one runs code the gateway cannot see, as a CALL
does).
"""

# The catalog queries are joined from constant fragments; what a statement names goes in as a
# bound parameter ($1), never into the text.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pgwarden.config import TargetConfig
from pgwarden.guard.kept import Kept
from pgwarden.guard.sideconn import SideConnection
from pgwarden.protocol.messages import Bind, RowDescription
from pgwarden.proxy.upstream import UpstreamError
from pgwarden.sql import classify
from pgwarden.sql.functions import may_be_users

log = logging.getLogger("pgwarden.catalog")
_V = TypeVar("_V")
#: What a look-up raises when the target's catalog cannot be read (the caller fails closed).
LOOKUP_FAILURES = (UpstreamError, LookupError, TimeoutError, OSError, ValueError)

_QUERY = """
SELECT coalesce(string_agg(c.oid::text || '|' || a.attnum::text || '|' ||
                           n.nspname || '|' || c.relname || '|' || a.attname, E'\\n'), '')
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
UNION ALL
SELECT coalesce(string_agg(r.ev_class::text || '|' || d.refobjid::text || '|' ||
                           d.refobjsubid::text, E'\\n'), '')
FROM pg_rewrite r
JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
WHERE d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0
  AND d.refobjid <> r.ev_class
"""
_MIN_RELOAD = 2.0

# p (pg_proc) in n (its pg_namespace) is a user's function: not PostgreSQL's own, not an
# extension's (an administrator installed it).
_USERS = """n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass
                  AND e.objid = p.oid AND e.deptype = 'e')
"""
# ... and VOLATILE: it may write.
_USERS_VOLATILE = "p.provolatile = 'v' AND " + _USERS
# named(name, oid): the relations the names $1 (a JSON array, matched as _USER_FUNCTIONS
# matches function names) may stand for.
_NAMED_RELATIONS = r"""named AS (
  SELECT q.name, c.oid
  FROM json_array_elements_text($1::json) AS q(name)
  JOIN pg_class c ON lower(c.relname) = lower(substring(q.name FROM '[^.]*$'))
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE strpos(q.name, '.') = 0 OR lower(n.nspname) = lower(substring(q.name FROM '^[^.]*'))
)"""
# reached(name, oid): the named relations, those their views and rules depend on (what a view
# reads and an updatable view writes, the tables a rule names) and their partitions and
# inheritance children, recursively: a superset of what reading or writing them touches.
_REACHED = r"""reached(name, oid) AS (
  SELECT name, oid FROM named
  UNION
  SELECT r.name, u.oid
  FROM reached r CROSS JOIN LATERAL (
    SELECT d.refobjid
    FROM pg_rewrite w
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid
     AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.oid
    WHERE w.ev_class = r.oid
    UNION ALL SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = r.oid
  ) AS u(oid)
)"""


def _called(source: str) -> str:
    """called(name, fn): the functions the objects in ``source(name, classid, objid)`` use,
    as PostgreSQL records in pg_depend, directly or as an operator's function."""
    return f"""called(name, fn) AS (
  SELECT s.name, d.refobjid
  FROM {source} s JOIN pg_depend d ON d.classid = s.classid AND d.objid = s.objid
  WHERE d.refclassid = 'pg_proc'::regclass
  UNION
  SELECT s.name, o.oprcode::oid
  FROM {source} s JOIN pg_depend d ON d.classid = s.classid AND d.objid = s.objid
  JOIN pg_operator o ON o.oid = d.refobjid
  WHERE d.refclassid = 'pg_operator'::regclass
)"""


# Of the names $1 (a JSON array; "name" or "schema.name", matched without regard to case, in
# any schema when unqualified), those that could call a function defined by a user (not in
# pg_catalog or information_schema, not part of an extension) that
# - writes: VOLATILE (PostgreSQL refuses writes inside STABLE and IMMUTABLE functions);
# - switches: may change the session's search_path or role, whatever its volatility (a
#   STABLE function may call set_config): its source names search_path, set_config, SET
#   ROLE or session_authorization, or is a SQL-standard body (BEGIN ATOMIC), whose source
#   is not kept as text. A SET clause of the function's own (proconfig) is undone on return.
_USER_FUNCTIONS = (
    r"""
SELECT json_build_object(
  'writers', coalesce(json_agg(f.name) FILTER (WHERE f.writes), '[]'),
  'switchers', coalesce(json_agg(f.name) FILTER (WHERE f.switches), '[]'))::text
FROM (
  SELECT q.name, bool_or(p.provolatile = 'v') AS writes,
    bool_or(p.prosrc ~* ('(search_path|set_config|session_authorization|'
                         || 'set\s+((session|local)\s+)?role)')
            OR (to_jsonb(p) ->> 'prosqlbody') IS NOT NULL) AS switches
  FROM json_array_elements_text($1::json) AS q(name)
  JOIN pg_proc p ON lower(p.proname) = lower(substring(q.name FROM '[^.]*$'))
  JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE (strpos(q.name, '.') = 0 OR lower(n.nspname) = lower(substring(q.name FROM '^[^.]*')))
    AND """
    + _USERS
    + """
  GROUP BY q.name) AS f
"""
)
# The names of the operators whose function is a user's VOLATILE one (defined as
# _USER_FUNCTIONS says), wherever the operator is.
_WRITING_OPERATORS = (
    r"""
SELECT coalesce(json_agg(DISTINCT o.oprname), '[]')::text
FROM pg_operator o
JOIN pg_proc p ON p.oid = o.oprcode
JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE """
    + _USERS_VOLATILE
)
# As a JSON object, the names (lower case, "names") a statement must spell to run a cast whose
# function is a user's VOLATILE one (defined as _USER_FUNCTIONS says): the cast's own types
# that are not PostgreSQL's, the types that hold them (domains over them, arrays of them,
# composite types with an attribute of them: a table's or a view's row type has its
# relation's name), and the user's functions that take or return one of those. A value of
# such a type is cast where the statement names the type (``1::t``), or, through an implicit
# or assignment cast, where it reads or writes a relation that holds one or calls such a
# function. And those types' OIDs ("types"), for a parameter a client declares as one.
_WRITING_CASTS = (
    r"""
WITH RECURSIVE cast_types(typ) AS (
  SELECT t.oid
  FROM pg_cast k
  JOIN pg_proc p ON p.oid = k.castfunc
  JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_type t ON t.oid IN (k.castsource, k.casttarget)
  JOIN pg_namespace tn ON tn.oid = t.typnamespace AND tn.nspname <> 'pg_catalog'
  WHERE """
    + _USERS_VOLATILE
    + r"""
  UNION
  SELECT u.typ
  FROM cast_types c CROSS JOIN LATERAL (
    SELECT t.oid FROM pg_type t WHERE t.typtype = 'd' AND t.typbasetype = c.typ
    UNION ALL SELECT t.oid FROM pg_type t WHERE t.typelem = c.typ AND t.typlen = -1
    UNION ALL SELECT t.oid FROM pg_attribute a JOIN pg_type t ON t.typrelid = a.attrelid
     WHERE a.atttypid = c.typ AND a.attnum > 0 AND NOT a.attisdropped
  ) AS u(typ)
)
SELECT json_build_object(
  'names', (SELECT coalesce(json_agg(DISTINCT lower(x.name)), '[]') FROM (
    SELECT t.typname::text AS name FROM cast_types c JOIN pg_type t ON t.oid = c.typ
    UNION ALL
    SELECT p.proname::text
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE (p.prorettype IN (SELECT typ FROM cast_types)
           OR p.proargtypes::oid[] && ARRAY(SELECT typ FROM cast_types))
      AND """
    + _USERS
    + """) AS x),
  'types', (SELECT coalesce(json_agg(DISTINCT c.typ::bigint), '[]') FROM cast_types c))::text
"""
)
#: How long what a function name resolves to is kept.
FUNCTIONS_TTL = 5.0

# Of the relation names $1 (matched as _WRITING_RELATIONS matches them), the definitions of what
# writing them runs besides the write, as [name, definition] pairs:
# - each enabled trigger's function when it is a user's (not PostgreSQL's, not an
#   extension's), and each rule other than a view's ON SELECT;
# - each user's VOLATILE function that a column default, a CHECK constraint or a CHECK of a
#   column's domain calls, directly or through an operator (through domains over domains,
#   arrays and composite types): they run for the rows written.
# The relations are those _REACHED reaches from the names.
_WRITE_HOOKS = (
    "WITH RECURSIVE "
    + _NAMED_RELATIONS
    + ", "
    + _REACHED
    + r""", typed(name, typ) AS (
  SELECT r.name, a.atttypid
  FROM reached r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0
   AND NOT a.attisdropped
  UNION
  SELECT x.name, u.typ
  FROM typed x JOIN pg_type t ON t.oid = x.typ
  CROSS JOIN LATERAL (
    SELECT t.typbasetype WHERE t.typtype = 'd'
    UNION ALL SELECT t.typelem WHERE t.typelem <> 0 AND t.typlen = -1
    UNION ALL SELECT a.atttypid FROM pg_attribute a
     WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
  ) AS u(typ)
), checked(name, classid, objid) AS (
  SELECT r.name, 'pg_attrdef'::regclass, a.oid
  FROM reached r JOIN pg_attrdef a ON a.adrelid = r.oid
  UNION ALL
  SELECT r.name, 'pg_constraint'::regclass, k.oid
  FROM reached r JOIN pg_constraint k ON k.conrelid = r.oid AND k.contype = 'c'
  UNION ALL
  SELECT x.name, 'pg_constraint'::regclass, k.oid
  FROM typed x JOIN pg_constraint k ON k.contypid = x.typ AND k.contype = 'c'
), """
    + _called("checked")
    + r"""
SELECT coalesce(json_agg(json_build_array(x.name, x.def)), '[]')::text FROM (
  SELECT r.name, pg_get_functiondef(p.oid) AS def
  FROM reached r
  JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal AND t.tgenabled <> 'D'
  JOIN pg_proc p ON p.oid = t.tgfoid
  JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE """
    + _USERS
    + """
  UNION ALL
  SELECT r.name, pg_get_ruledef(w.oid)
  FROM reached r JOIN pg_rewrite w ON w.ev_class = r.oid AND w.ev_type <> '1'
  UNION ALL
  SELECT c.name, pg_get_functiondef(p.oid)
  FROM called c
  JOIN pg_proc p ON p.oid = c.fn
  JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE """
    + _USERS_VOLATILE
    + """
) AS x
"""
)
#: What a trigger or rule may do besides reading and adding rows and still let its write pass.
_HARMLESS_KINDS = frozenset({"select", "insert", "create_function", "create_rule"})
_UNSEEN_CODE = frozenset({"dynamic_sql", "unparsed_body", "untrusted_language"})


def _destroys(definition: str) -> bool:
    """Whether a trigger's function, a rule or a function a default or CHECK calls, from its
    definition, may change or remove rows or objects: anything it runs but reads and
    INSERTs, code the classifier cannot see into (dynamic SQL, C, untrusted languages), or a
    call of a function that may be a user's."""
    c = classify(definition)
    if c.error is not None or not c.statements:
        return True
    return any(
        not st.kinds <= _HARMLESS_KINDS
        or bool(st.flags & _UNSEEN_CODE)
        or any(may_be_users(f) for f in st.functions)
        for st in c.statements
    )


# Of the relation names $1 (a JSON array, matched as _USER_FUNCTIONS matches function names),
# those whose reading runs a user's VOLATILE function (defined as _USER_FUNCTIONS says): a
# view's query calls it, directly, through an operator or through another view, or a row
# security policy of the relation or of such a view does (the relations _REACHED reaches: a
# partition's or child's own policy counts too, a superset). PostgreSQL records what a view's
# rewrite rule and a policy's expressions use in pg_depend.
_WRITING_RELATIONS = (
    "WITH RECURSIVE "
    + _NAMED_RELATIONS
    + ", "
    + _REACHED
    + r""", used(name, classid, objid) AS (
  SELECT r.name, 'pg_rewrite'::regclass, w.oid
  FROM reached r JOIN pg_rewrite w ON w.ev_class = r.oid
  UNION ALL
  SELECT r.name, 'pg_policy'::regclass, pol.oid
  FROM reached r JOIN pg_policy pol ON pol.polrelid = r.oid
), """
    + _called("used")
    + """
SELECT coalesce(json_agg(DISTINCT c.name), '[]')::text
FROM called c
JOIN pg_proc p ON p.oid = c.fn
JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE """
    + _USERS_VOLATILE
)


@dataclass(frozen=True, slots=True)
class WritingCasts:
    """What may run one of the target's casts over a user's VOLATILE function (see
    _WRITING_CASTS): a statement that spells one of ``names``, or whose parameter is
    declared as one of ``types`` (None: any type, when the catalog could not be read)."""

    names: frozenset[str]
    types: frozenset[int] | None


#: What may run a writing cast when the catalog cannot be read: anything (an empty name is in
#: every text).
ALL_CASTS = WritingCasts(frozenset({""}), None)


def _read_casts(answer: Any) -> WritingCasts:
    """_WRITING_CASTS's answer; ValueError if it is not one (the caller fails closed)."""
    if not isinstance(answer, dict):
        raise ValueError(f"unexpected answer to the casts look-up: {answer!r}")
    return WritingCasts(frozenset(answer["names"]), frozenset(int(t) for t in answer["types"]))


@dataclass(frozen=True, slots=True)
class UserFunctions:
    """Of the names a statement calls: ``writers`` could call a user's VOLATILE function
    (which may write), ``switchers`` one that may change the session's search_path or
    role."""

    writers: frozenset[str]
    switchers: frozenset[str]


class _TargetCatalog:
    def __init__(self, target: TargetConfig) -> None:
        self.conn = SideConnection(target)
        self.columns: dict[tuple[int, int], tuple[str, str, str]] = {}
        self.tables: set[int] = set()
        self.loaded_at = 0.0
        self.lock = asyncio.Lock()
        self.functions: Kept[str, tuple[bool, bool]] = Kept()  # name -> (writes, switches)
        self.relations: Kept[str, bool] = Kept()  # name -> reading it runs a writer
        self.operators: Kept[None, frozenset[str]] = Kept()  # names of writing operators
        self.casts: Kept[None, WritingCasts] = Kept()  # what may run a writing cast
        self.write_hooks: Kept[str, bool] = Kept()  # name -> a trigger or rule may destroy

    async def load(self) -> None:
        async with self.lock:
            if time.monotonic() - self.loaded_at < _MIN_RELOAD and self.loaded_at:
                return
            rows = await self.conn.query(_QUERY, None, ())
            own: dict[tuple[int, int], tuple[str, str, str]] = {}
            for line in rows[0].splitlines():
                oid, attnum, schema, table, column = line.split("|", 4)
                own[(int(oid), int(attnum))] = (schema, table, column)
            deps: dict[int, list[tuple[int, int]]] = {}
            for line in (rows[1] if len(rows) > 1 else "").splitlines():
                view, base, attnum = line.split("|", 2)
                deps.setdefault(int(view), []).append((int(base), int(attnum)))
            self.columns = _trace_views(own, deps)
            self.tables = {oid for oid, _ in self.columns}
            self.loaded_at = time.monotonic()


def _trace_views(
    own: dict[tuple[int, int], tuple[str, str, str]],
    deps: dict[int, list[tuple[int, int]]],
) -> dict[tuple[int, int], tuple[str, str, str]]:
    """Each view column mapped to the one same-named base column its view depends on."""
    out = dict(own)
    for (oid, attnum), (_, _, column) in own.items():
        seen = {oid}
        current = oid
        target = own[(oid, attnum)]
        while current in deps:
            same = {
                own[d]
                for d in deps[current]
                if d in own and own[d][2] == column and d[0] not in seen
            }
            bases = {d[0] for d in deps[current] if d in own and own[d] in same}
            if len(same) != 1 or len(bases) != 1:
                break
            target = next(iter(same))
            current = next(iter(bases))
            seen.add(current)
        out[(oid, attnum)] = target
    return out


def _kept_names(kept: Kept[str, bool], names: frozenset[str]) -> tuple[set[str], list[str]]:
    """Of ``names``: those kept as true, and those not kept."""
    found: set[str] = set()
    unknown: list[str] = []
    for name in names:
        hit = kept.get(name, FUNCTIONS_TTL)
        if hit is None:
            unknown.append(name)
        elif hit[0]:
            found.add(name)
    return found, unknown


async def _ask_names(
    cat: _TargetCatalog,
    kept: Kept[str, bool],
    query: str,
    names: frozenset[str],
    true_of: Callable[[Any], set[str]],
) -> frozenset[str]:
    """The names among ``names`` that ``query`` (asked with the names not kept, as a JSON
    array; its answer read by ``true_of``) says are true of, kept for FUNCTIONS_TTL."""
    found, unknown = _kept_names(kept, names)
    if unknown:
        out = await cat.conn.query(
            query, Bind.build("", "", (json.dumps(unknown).encode(),)), (25,)
        )
        true = true_of(json.loads(out[0]) if out else [])
        for name in unknown:
            if kept.put(name, name in true):
                found.add(name)
    return frozenset(found)


async def _ask_all(
    cat: _TargetCatalog, kept: Kept[None, _V], query: str, read: Callable[[Any], _V]
) -> _V:
    """What ``query`` (no parameters; one JSON value, read by ``read``) answers, kept for
    FUNCTIONS_TTL."""
    hit = kept.get(None, FUNCTIONS_TTL)
    if hit is not None:
        return hit[0]
    out = await cat.conn.query(query, None, ())
    return kept.put(None, read(json.loads(out[0]) if out else None))


class Catalog:
    def __init__(self, targets: Mapping[str, TargetConfig]) -> None:
        self._targets = targets
        self._cats: dict[str, _TargetCatalog] = {}

    def _known(self, target: str) -> _TargetCatalog:
        cat = self._cat(target)
        if cat is None:
            raise LookupError(f"unknown target {target!r}")
        return cat

    def _cat(self, target: str) -> _TargetCatalog | None:
        cat = self._cats.get(target)
        if cat is None and target in self._targets:
            cat = self._cats[target] = _TargetCatalog(self._targets[target])
        return cat

    async def user_functions(self, target: str, names: frozenset[str]) -> UserFunctions:
        """What the names among ``names`` could call of the target's own functions (see
        _USER_FUNCTIONS). Raises when the catalog cannot be read."""
        cat = self._known(target)
        writers: set[str] = set()
        switchers: set[str] = set()
        unknown = []
        for name in names:
            hit = cat.functions.get(name, FUNCTIONS_TTL)
            if hit is None:
                unknown.append(name)
                continue
            writes, switches = hit[0]
            if writes:
                writers.add(name)
            if switches:
                switchers.add(name)
        if unknown:
            out = await cat.conn.query(
                _USER_FUNCTIONS, Bind.build("", "", (json.dumps(unknown).encode(),)), (25,)
            )
            found = json.loads(out[0]) if out else {"writers": [], "switchers": []}
            new_writers, new_switchers = set(found["writers"]), set(found["switchers"])
            for name in unknown:
                cat.functions.put(name, (name in new_writers, name in new_switchers))
            writers |= new_writers
            switchers |= new_switchers
        return UserFunctions(frozenset(writers), frozenset(switchers))

    async def writing_relations(self, target: str, names: frozenset[str]) -> frozenset[str]:
        """The names among ``names`` whose reading runs a user's VOLATILE function (see
        _WRITING_RELATIONS). Raises when the catalog cannot be read."""
        cat = self._known(target)
        return await _ask_names(cat, cat.relations, _WRITING_RELATIONS, names, set)

    async def destroying_write_hooks(self, target: str, names: frozenset[str]) -> frozenset[str]:
        """The names among ``names`` (relations a statement writes) whose writing runs a
        trigger, rule, column default or CHECK that may change or remove rows or objects
        beyond the write (see _WRITE_HOOKS and _destroys). Raises when the catalog cannot be
        read."""
        cat = self._known(target)
        return await _ask_names(
            cat,
            cat.write_hooks,
            _WRITE_HOOKS,
            names,
            lambda rows: {name for name, definition in rows if _destroys(definition)},
        )

    async def writing_operators(self, target: str) -> frozenset[str]:
        """The names of the target's operators that run a user's VOLATILE function (see
        _WRITING_OPERATORS). Raises when the catalog cannot be read."""
        cat = self._known(target)
        return await _ask_all(cat, cat.operators, _WRITING_OPERATORS, lambda v: frozenset(v or ()))

    async def writing_casts(self, target: str) -> WritingCasts:
        """What may run one of the target's casts over a user's VOLATILE function (see
        _WRITING_CASTS). Raises when the catalog cannot be read."""
        cat = self._known(target)
        return await _ask_all(
            cat,
            cat.casts,
            _WRITING_CASTS,
            _read_casts,
        )

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

    async def describe(
        self, target: str, sql: str, search_path: str | None = None
    ) -> RowDescription | None:
        """The columns ``sql`` would return, described (never run) on the side connection
        with the session's ``search_path``, their tables loaded for ``resolve``. Raises when
        it cannot be described."""
        cat = self._known(target)
        desc = await cat.conn.describe(sql, search_path)
        if desc is not None and not await self.prepare(target, desc):
            raise LookupError("the catalog could not be read")
        return desc

    def resolve(self, target: str, table_oid: int, attnum: int) -> tuple[str, str, str] | None:
        """(schema, table, column) of a result column, or None (computed or unknown)."""
        cat = self._cats.get(target)
        if cat is None or table_oid == 0:
            return None
        return cat.columns.get((table_oid, attnum))

    async def close(self) -> None:
        for cat in self._cats.values():
            cat.conn.close()
