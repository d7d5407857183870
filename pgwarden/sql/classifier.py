"""SQL text -> Classification, with PostgreSQL's own parser (pglast / libpg_query).

The text is parsed to libpg_query's JSON tree (see ``_nodes``) and walked: statement nodes
record an ``Operation`` (the statement itself first, nested ones after it, in source order);
``RangeVar`` nodes record tables; ``FuncCall`` nodes record functions. Wrappers that run other
statements (CTEs, ``EXPLAIN ANALYZE``, ``PREPARE``, ``COPY (query)``, ``CREATE TABLE AS``,
rules, cursors, function bodies, ``DO`` blocks) walk them as nested statements, so a
destructive statement is seen however it is wrapped. Anything the walker does not know is
walked generically, so functions and tables inside it are still found; an unknown statement
type is kind ``other``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Final

from pglast import parse_plpgsql
from pglast.parser import normalize, parse_sql_json

from pgwarden.sql._nodes import (
    NODE_TYPES,
    as_node,
    field_hint,
    items,
    iter_nodes,
    string_list,
    sval,
)
from pgwarden.sql.constfold import UNKNOWN, fold, mentions_columns, parse_bool, truth, where_kind
from pgwarden.sql.functions import is_dangerous, normalize_function_name
from pgwarden.sql.idents import quote_ident
from pgwarden.sql.model import Classification, CopyOptions, KeyLookup, Operation, StatementInfo

__all__ = [
    "CACHE_MAX_ENTRIES",
    "CACHE_MAX_SQL_LENGTH",
    "SqlSyntaxError",
    "cache_clear",
    "cache_info",
    "classify",
    "classify_cached",
    "split_statements",
]

#: How many classifications ``classify_cached`` keeps (least recently used are dropped).
CACHE_MAX_ENTRIES: Final = 4096
#: Longer statements are classified every time rather than kept in the cache.
CACHE_MAX_SQL_LENGTH: Final = 64 * 1024
#: How deep SQL found inside strings (function bodies, DO blocks, dynamic SQL) is followed.
MAX_NESTED_PARSE_DEPTH: Final = 8

#: Procedural languages whose functions cannot reach outside the database.
TRUSTED_LANGUAGES: Final = frozenset(
    {"sql", "plpgsql", "plperl", "pltcl", "plv8", "pllua", "plrust"}
)

_TABLE_LIKE: Final = frozenset(
    {"table", "view", "materialized_view", "foreign_table", "sequence", "index", "temp_table"}
)
#: Statements that can be put after EXPLAIN as they are, for a row estimate.
_ESTIMATE_AS_IS: Final = frozenset({"select", "insert", "update", "delete", "merge", "execute"})

_TRANSACTION_KINDS: Final = {
    "TRANS_STMT_BEGIN": "begin",
    "TRANS_STMT_START": "begin",
    "TRANS_STMT_COMMIT": "commit",
    "TRANS_STMT_ROLLBACK": "rollback",
    "TRANS_STMT_SAVEPOINT": "savepoint",
    "TRANS_STMT_RELEASE": "release",
    "TRANS_STMT_ROLLBACK_TO": "rollback_to",
    "TRANS_STMT_PREPARE": "prepare_transaction",
    "TRANS_STMT_COMMIT_PREPARED": "commit_prepared",
    "TRANS_STMT_ROLLBACK_PREPARED": "rollback_prepared",
}


class SqlSyntaxError(ValueError):
    """The text is not valid SQL (PostgreSQL's parser rejected it)."""


@dataclass(frozen=True, slots=True)
class _Raw:
    """One statement of a parsed string: its tree and its text."""

    stmt: Any
    text: str


def _parse(sql: str, tree_json: str | None = None) -> list[_Raw]:
    """Parse SQL text (or read the tree already parsed from it); raises whatever pglast
    raises on a syntax error."""
    tree = json.loads(parse_sql_json(sql) if tree_json is None else tree_json)
    data = sql.encode("utf-8")
    return [
        _Raw(
            raw.get("stmt"),
            _statement_text(data, int(raw.get("stmt_location", 0)), int(raw.get("stmt_len", 0))),
        )
        for raw in tree.get("stmts", [])
    ]


def _statement_text(data: bytes, loc: int, length: int) -> str:
    chunk = data[loc : loc + length] if length else data[loc:]
    return chunk.decode("utf-8", "replace").strip().rstrip(";").strip()


def _object_type(name: Any) -> str | None:
    if not isinstance(name, str) or not name.startswith("OBJECT_"):
        return None
    short = name.removeprefix("OBJECT_").lower()
    return "materialized_view" if short == "matview" else short


def _rv_name(f: Any) -> str:
    """The name of a RangeVar (its fields), schema-qualified where given."""
    if not isinstance(f, dict):
        return ""
    rel = str(f.get("relname", ""))
    schema = f.get("schemaname")
    return f"{schema}.{rel}" if schema else rel


def _key_lookup(f: dict[str, Any], *, deletes: bool = False) -> KeyLookup | None:
    """The ``column = value`` terms of a one-table UPDATE/DELETE's WHERE (the WHERE itself or
    an argument of its top AND: whatever the other terms say, they only narrow it). A value
    is a literal or a parameter alone: a cast could compare through a type that maps several
    keys to one value (``int8_col = $1::float8``)."""
    rel = f.get("relation")
    if not isinstance(rel, dict) or not rel.get("relname") or rel.get("catalogname"):
        return None
    if _is_temp(rel):
        return None
    where = as_node(f.get("whereClause"))
    if where is None:
        return None
    tag, w = where
    terms = items(w.get("args")) if tag == "BoolExpr" and w.get("boolop") == "AND_EXPR" else []
    if not terms:
        terms = [f.get("whereClause")]
    alias = rel.get("alias")
    qualifier = str(alias.get("aliasname", "")) if isinstance(alias, dict) else str(rel["relname"])
    keys: list[tuple[str, int]] = []
    for term in terms:
        comparison = _binary_operator(term)
        if comparison is None or comparison[0] != "=":
            continue
        _op, lexpr, rexpr = comparison
        for col_side, value_side in ((lexpr, rexpr), (rexpr, lexpr)):
            column = _own_column(col_side, qualifier)
            value = as_node(value_side)
            if column is None or value is None:
                continue
            if value[0] == "A_Const":
                keys.append((column, 0))
                break
            if value[0] == "ParamRef" and isinstance(value[1].get("number"), int):
                keys.append((column, int(value[1]["number"])))
                break
    if not keys:
        return None
    schema = rel.get("schemaname")
    name = quote_ident(str(rel["relname"]))
    return KeyLookup(f"{quote_ident(str(schema))}.{name}" if schema else name, tuple(keys), deletes)


def _binary_operator(term: Any) -> tuple[str, Any, Any] | None:
    """(operator, left, right) of ``a <op> b`` with an unqualified operator, or None."""
    node = as_node(term)
    if node is None or node[0] != "A_Expr" or node[1].get("kind", "AEXPR_OP") != "AEXPR_OP":
        return None
    names = items(node[1].get("name"))
    if len(names) != 1:
        return None
    return sval(names[0]), node[1].get("lexpr"), node[1].get("rexpr")


def _own_column(value: Any, qualifier: str) -> str | None:
    """The column a ColumnRef names (``col`` or ``qualifier.col``), or None."""
    node = as_node(value)
    if node is None or node[0] != "ColumnRef":
        return None
    names = []
    for field in items(node[1].get("fields")):
        part = as_node(field)
        if part is None or part[0] != "String":  # t.* names no column
            return None
        names.append(sval(field))
    if len(names) == 1:
        return names[0]
    if len(names) == 2 and names[0] == qualifier:
        return names[1]
    return None


def _is_temp(f: Any) -> bool:
    return isinstance(f, dict) and (
        f.get("relpersistence") == "t" or str(f.get("schemaname", "")).lower() == "pg_temp"
    )


def _dotted(value: Any, hint: str | None = None) -> str:
    """A dotted name from the many ways object names appear in the tree."""
    if isinstance(value, list):
        return ".".join(_dotted(v) for v in value)
    node = as_node(value, hint)
    if node is None:
        return ""
    tag, f = node
    if tag == "String":
        return str(f.get("sval", ""))
    if tag == "List":
        return ".".join(_dotted(v) for v in f.get("items", []))
    if tag == "ObjectWithArgs":
        return ".".join(string_list(f.get("objname")))
    if tag == "TypeName":
        return ".".join(string_list(f.get("names")))
    if tag == "RangeVar":
        return _rv_name(f)
    if tag == "RoleSpec":
        return str(f.get("rolename", f.get("roletype", "")))
    if tag == "AccessPriv":
        return str(f.get("priv_name", ""))
    return ""


def _struct(f: dict[str, Any], field: str) -> dict[str, Any]:
    """A struct-typed field (never wrapped), or {} when absent."""
    value = f.get(field)
    return value if isinstance(value, dict) else {}


def _defelem_bool(arg: Any) -> bool:
    """The value of an option such as EXPLAIN's ANALYZE; unsure means true (the safe side)."""
    node = as_node(arg)
    if node is None:
        return True
    tag, f = node
    if tag == "Boolean":
        return bool(f.get("boolval", False))
    if tag == "Integer":
        return bool(f.get("ival", 0))
    if tag in ("String", "A_Const"):
        v = parse_bool(str(f.get("sval", "")) if tag == "String" else str(fold(arg)))
        return v if isinstance(v, bool) else True
    return True


@dataclass(frozen=True, slots=True)
class _Ctx:
    via: str | None = None  # how the current node is nested
    executes: bool = True  # does running the statement perform what is under this node?
    root: bool = True  # is this node a statement in its own right (not a subquery)?
    top: bool = True  # is this node the statement being classified itself?
    ctes: frozenset[str] = frozenset()  # CTE names in scope (they hide tables of that name)
    text: str = ""  # source text of the nearest enclosing parsed statement
    depth: int = 0  # how deep in SQL-inside-strings we are

    def inner(self) -> _Ctx:
        """The context for the parts of the current statement."""
        if not self.root and not self.top:
            return self
        return replace(self, root=False, top=False)


class _Walker:
    def __init__(self) -> None:
        self.ops: list[Operation] = []
        self.reads: set[str] = set()
        self.writes: set[str] = set()
        self.functions: set[str] = set()
        self.flags: set[str] = set()
        self.opaque = False
        self.setting: str | None = None
        self.setting_value: str | None = None
        self.setting_local = False
        self.prepared_name: str | None = None
        self.executes_prepared: list[str] = []
        self.body: Classification | None = None
        self.inner_sql: str | None = None  # the statement under EXPLAIN ANALYZE, COPY, ...
        self.copy: CopyOptions | None = None
        self.key_lookup: KeyLookup | None = None
        self.sets_search_path = False

    # -- results -----------------------------------------------------------------------------

    def build(self, text: str) -> StatementInfo:
        ops = tuple(self.ops) or (Operation("other"),)
        return StatementInfo(
            kind=ops[0].kind,
            text=text,
            operations=ops,
            tables_read=frozenset(self.reads),
            tables_written=frozenset(self.writes),
            functions=frozenset(self.functions),
            dangerous_functions=frozenset(f for f in self.functions if is_dangerous(f)),
            opaque=self.opaque,
            flags=frozenset(self.flags),
            setting=self.setting,
            setting_value=self.setting_value,
            setting_local=self.setting_local,
            prepared_name=self.prepared_name,
            executes_prepared=tuple(dict.fromkeys(self.executes_prepared)),
            body=self.body,
            estimate_sql=text if ops[0].kind in _ESTIMATE_AS_IS else self.inner_sql,
            copy=self.copy,
            key_lookup=self.key_lookup,
            sets_search_path=self.sets_search_path,
        )

    def op(
        self,
        ctx: _Ctx,
        kind: str,
        object_type: str | None = None,
        targets: tuple[str, ...] = (),
        where: Any = None,
        via: str | None = None,
    ) -> None:
        self.ops.append(
            Operation(
                kind=kind,
                object_type=object_type,
                targets=targets,
                where=where,
                via=via if via is not None else (None if ctx.top else ctx.via),
                executes=ctx.executes,
            )
        )

    def write(self, ctx: _Ctx, *names: str) -> None:
        if ctx.executes:
            self.writes.update(n for n in names if n)

    # -- traversal ---------------------------------------------------------------------------

    def walk(self, value: Any, ctx: _Ctx, hint: str | None = None) -> None:
        if type(value) is list:
            for item in value:
                self.walk(item, ctx)
            return
        if type(value) is not dict:
            return
        # inlined as_node(): this is the hot path
        tag: str | None = None
        f: Any = None
        if len(value) == 1:
            key = next(iter(value))
            if key in NODE_TYPES:
                tag, f = key, value[key]
        if tag is None:
            if hint is None:
                for v in value.values():
                    if type(v) is dict or type(v) is list:
                        self.walk(v, ctx)
                return
            tag, f = hint, value
        if tag in _LEAVES or type(f) is not dict:
            return
        handler = _HANDLERS.get(tag)
        if handler is not None:
            handler(self, f, ctx)
            return
        if tag.endswith("Stmt") and tag != "RawStmt":
            self.op(ctx, "other")
        self.rest(tag, f, ctx)

    def rest(self, tag: str, f: dict[str, Any], ctx: _Ctx, skip: tuple[str, ...] = ()) -> None:
        """Walk every field of a node but those in skip, as parts of the same statement."""
        inner = ctx.inner()
        for key, value in f.items():
            kind = type(value)
            if kind is list:
                if key not in skip:
                    self.walk(value, inner)
            elif kind is dict and key not in skip:
                self.walk(value, inner, field_hint(tag, key))

    def nested(self, value: Any, ctx: _Ctx, via: str, *, executes: bool | None = None) -> None:
        """Walk a node as a statement nested in the current one."""
        self.walk(
            value,
            replace(
                ctx,
                via=via,
                root=True,
                top=False,
                executes=ctx.executes if executes is None else (ctx.executes and executes),
            ),
        )

    def nested_sql(self, sql: str, ctx: _Ctx, via: str) -> bool:
        """Classify SQL text found inside a string; False if it does not parse."""
        if ctx.depth >= MAX_NESTED_PARSE_DEPTH:
            self.flags.add("unparsed_body")
            return False
        try:
            raws = _parse(sql)
        except Exception:
            return False
        for raw in raws:
            sub = replace(ctx, via=via, root=True, top=False, text=raw.text, depth=ctx.depth + 1)
            self.walk(raw.stmt, sub)
        return True

    def with_clause(self, wc: Any, ctx: _Ctx) -> _Ctx:
        """Walk a WITH clause; return the context (CTE names in scope) for the statement body."""
        if not isinstance(wc, dict):
            return ctx
        ctes = [
            n[1] for n in map(as_node, items(wc.get("ctes"))) if n and n[0] == "CommonTableExpr"
        ]
        names = [str(c.get("ctename", "")) for c in ctes]
        recursive = bool(wc.get("recursive"))
        for i, cte in enumerate(ctes):
            visible = ctx.ctes | frozenset(names if recursive else names[:i])
            inner = replace(ctx, via="cte", root=False, top=False, ctes=visible)
            self.walk(cte.get("ctequery"), inner)
        return replace(ctx, ctes=ctx.ctes | frozenset(names))

    # -- expressions -------------------------------------------------------------------------

    def v_range_var(self, f: dict[str, Any], ctx: _Ctx) -> None:
        if not f.get("schemaname") and f.get("relname") in ctx.ctes:
            return  # a reference to a CTE, not a table
        self.reads.add(_rv_name(f))

    def v_func_call(self, f: dict[str, Any], ctx: _Ctx) -> None:
        name = normalize_function_name(string_list(f.get("funcname")))
        self.functions.add(name)
        if name.rsplit(".", 1)[-1].lower() == "set_config":
            self.set_config(f, ctx)
        self.rest("FuncCall", f, ctx, skip=("funcname",))

    def set_config(self, f: dict[str, Any], ctx: _Ctx) -> None:
        arg: Any = None
        for i, a in enumerate(items(f.get("args"))):
            named = as_node(a)
            if named is not None and named[0] == "NamedArgExpr":
                if str(named[1].get("name", "")).lower() == "setting_name":
                    arg = named[1].get("arg")
            elif i == 0:
                arg = a
        value = fold(arg) if arg is not None else UNKNOWN
        if isinstance(value, str):
            setting = value.strip().lower()
            if setting == "role":
                self.op(ctx, "set_role", via="set_config")
            elif setting == "session_authorization":
                self.op(ctx, "set_session_authorization", via="set_config")
            elif setting == "search_path":
                self.sets_search_path = True
        else:
            self.flags.add("dynamic_set_config")
            self.op(ctx, "set_role", via="set_config")

    def add_function(self, names: Any) -> None:
        name = normalize_function_name(string_list(names))
        if name:
            self.functions.add(name)

    # -- queries and writes ------------------------------------------------------------------

    def v_select(self, f: dict[str, Any], ctx: _Ctx) -> None:
        if ctx.root:
            into = f.get("intoClause")
            rel = into.get("rel") if isinstance(into, dict) else None
            if isinstance(rel, dict):
                name = _rv_name(rel)
                self.op(ctx, "select_into", "temp_table" if _is_temp(rel) else "table", (name,))
                self.write(ctx, name)
            else:
                self.op(ctx, "select")
        if f.get("lockingClause"):
            self.flags.add("row_locks")
        body = self.with_clause(f.get("withClause"), ctx)
        self.rest("SelectStmt", f, body, skip=("withClause", "intoClause"))

    def v_insert(self, f: dict[str, Any], ctx: _Ctx) -> None:
        target = _rv_name(f.get("relation"))
        self.op(ctx, "insert", targets=(target,))
        self.write(ctx, target)
        body = self.with_clause(f.get("withClause"), ctx)
        inner = body.inner()
        self.walk(f.get("selectStmt"), inner)
        oc = f.get("onConflictClause")
        if isinstance(oc, dict) and oc.get("action") == "ONCONFLICT_UPDATE":
            where = "present"
            sel = as_node(f.get("selectStmt"))
            if sel is not None and sel[0] == "SelectStmt":
                sources = [as_node(x) for x in items(sel[1].get("fromClause"))]
                if any(s and s[0] == "RangeVar" and _rv_name(s[1]) == target for s in sources):
                    # INSERT INTO t SELECT ... FROM t ... ON CONFLICT DO UPDATE rewrites t's rows
                    where = where_kind(sel[1].get("whereClause"))
            self.op(ctx, "update", targets=(target,), where=where, via="on_conflict")
        self.walk(oc, inner, "OnConflictClause")
        self.rest(
            "InsertStmt", f, body, skip=("relation", "withClause", "selectStmt", "onConflictClause")
        )

    def v_update(self, f: dict[str, Any], ctx: _Ctx) -> None:
        target = _rv_name(f.get("relation"))
        self.op(ctx, "update", targets=(target,), where=where_kind(f.get("whereClause")))
        self.write(ctx, target)
        if ctx.top and not f.get("withClause") and not f.get("fromClause"):
            self.key_lookup = _key_lookup(f)
        body = self.with_clause(f.get("withClause"), ctx)
        self.rest("UpdateStmt", f, body, skip=("relation", "withClause"))

    def v_delete(self, f: dict[str, Any], ctx: _Ctx) -> None:
        target = _rv_name(f.get("relation"))
        self.op(ctx, "delete", targets=(target,), where=where_kind(f.get("whereClause")))
        self.write(ctx, target)
        if ctx.top and not f.get("withClause") and not f.get("usingClause"):
            self.key_lookup = _key_lookup(f, deletes=True)
        body = self.with_clause(f.get("withClause"), ctx)
        self.rest("DeleteStmt", f, body, skip=("relation", "withClause"))

    def v_merge(self, f: dict[str, Any], ctx: _Ctx) -> None:
        target = _rv_name(f.get("relation"))
        self.op(ctx, "merge", targets=(target,))
        self.write(ctx, target)
        body = self.with_clause(f.get("withClause"), ctx)
        join = f.get("joinCondition")
        join_truth = truth(join)
        join_all = join_truth is True or (join_truth is UNKNOWN and not mentions_columns(join))
        inner = body.inner()
        for clause in items(f.get("mergeWhenClauses")):
            node = as_node(clause)
            if node is None or node[0] != "MergeWhenClause":
                continue
            wc = node[1]
            command = wc.get("commandType")
            if command in ("CMD_UPDATE", "CMD_DELETE"):
                kind = "update" if command == "CMD_UPDATE" else "delete"
                if wc.get("matchKind") == "MERGE_WHEN_NOT_MATCHED_BY_SOURCE":
                    where = where_kind(wc.get("condition"))
                elif join_all:
                    w = where_kind(wc.get("condition"))
                    where = "tautology" if w == "absent" else w
                else:
                    where = "present"
                self.op(ctx, kind, targets=(target,), where=where, via="merge")
            elif command == "CMD_INSERT":
                self.op(ctx, "insert", targets=(target,), via="merge")
            self.walk(clause, inner)
        self.rest("MergeStmt", f, body, skip=("relation", "withClause", "mergeWhenClauses"))

    def v_truncate(self, f: dict[str, Any], ctx: _Ctx) -> None:
        names = tuple(
            _rv_name(n[1])
            for n in map(as_node, items(f.get("relations")))
            if n and n[0] == "RangeVar"
        )
        self.op(ctx, "truncate", "table", names)
        self.write(ctx, *names)
        if f.get("behavior") == "DROP_CASCADE":
            self.flags.add("cascade")

    def v_copy(self, f: dict[str, Any], ctx: _Ctx) -> None:
        name = _rv_name(f.get("relation"))
        is_from = bool(f.get("is_from"))
        self.op(ctx, "copy_from" if is_from else "copy_to", targets=(name,) if name else ())
        if name:
            if is_from:
                self.write(ctx, name)
            else:
                self.reads.add(name)
        if f.get("query") is not None:
            if ctx.top:
                self.inner_sql = _deparse_query(ctx.text)
            self.nested(f.get("query"), ctx, "copy")
        if ctx.top and not is_from and f.get("filename") is None and not f.get("is_program"):
            self.copy = _copy_options(f, name, self.inner_sql)
        if f.get("is_program"):
            self.op(ctx, "copy_program", targets=(str(f.get("filename", "")),), via="copy")
        elif f.get("filename") is not None:
            self.op(ctx, "copy_file", targets=(str(f.get("filename")),), via="copy")
        self.rest("CopyStmt", f, ctx, skip=("relation", "query"))

    # -- EXPLAIN, PREPARE, cursors -----------------------------------------------------------

    def v_explain(self, f: dict[str, Any], ctx: _Ctx) -> None:
        analyze = False
        for option in items(f.get("options")):
            node = as_node(option)
            if node is not None and node[0] == "DefElem":
                if str(node[1].get("defname", "")).lower() == "analyze":
                    analyze = analyze or _defelem_bool(node[1].get("arg"))
        self.op(ctx, "explain_analyze" if analyze else "explain")
        if ctx.top and analyze:
            self.inner_sql = _deparse_query(ctx.text)
        via = "explain_analyze" if analyze else "explain"
        self.nested(f.get("query"), ctx, via, executes=analyze)

    def v_prepare(self, f: dict[str, Any], ctx: _Ctx) -> None:
        name = str(f.get("name", ""))
        self.op(ctx, "prepare", targets=(name,))
        if ctx.top:
            self.prepared_name = name
        sub = _Walker()
        body_text = (_deparse_query(ctx.text) if ctx.top else None) or ctx.text
        sub.walk(f.get("query"), replace(ctx, via=None, root=True, top=True, ctes=frozenset()))
        info = sub.build(body_text)
        if ctx.top:
            self.body = Classification(sql=body_text, statements=(info,))
        for o in info.operations:
            self.ops.append(
                replace(o, via=o.via or "prepare", executes=o.executes and ctx.executes)
            )
        self.reads |= info.tables_read
        if ctx.executes:
            self.writes |= info.tables_written
        self.functions |= info.functions
        self.flags |= info.flags
        self.opaque = self.opaque or info.opaque

    def v_execute(self, f: dict[str, Any], ctx: _Ctx) -> None:
        name = str(f.get("name", ""))
        self.op(ctx, "execute", targets=(name,))
        if ctx.top:
            self.prepared_name = name
        if ctx.executes:
            self.executes_prepared.append(name)
        self.rest("ExecuteStmt", f, ctx)

    def v_deallocate(self, f: dict[str, Any], ctx: _Ctx) -> None:
        name = None if f.get("isall") else f.get("name")
        self.op(ctx, "deallocate", targets=(str(name),) if name is not None else ())
        if ctx.top:
            self.prepared_name = None if name is None else str(name)

    def v_declare_cursor(self, f: dict[str, Any], ctx: _Ctx) -> None:
        self.op(ctx, "declare_cursor", targets=(str(f.get("portalname", "")),))
        if ctx.top:
            self.inner_sql = _deparse_query(ctx.text)
        self.nested(f.get("query"), ctx, "cursor")

    # -- schema ------------------------------------------------------------------------------

    def v_create(self, f: dict[str, Any], ctx: _Ctx) -> None:
        rel = f.get("relation")
        name = _rv_name(rel)
        self.op(ctx, "create", "temp_table" if _is_temp(rel) else "table", (name,))
        self.write(ctx, name)
        self.rest("CreateStmt", f, ctx, skip=("relation",))

    def v_create_foreign_table(self, f: dict[str, Any], ctx: _Ctx) -> None:
        base = _struct(f, "base")
        name = _rv_name(base.get("relation"))
        self.op(ctx, "create", "foreign_table", (name,))
        self.write(ctx, name)
        self.rest("CreateStmt", base, ctx, skip=("relation",))

    def v_view(self, f: dict[str, Any], ctx: _Ctx) -> None:
        view = f.get("view")
        name = _rv_name(view)
        self.op(ctx, "create", "temp_view" if _is_temp(view) else "view", (name,))
        self.write(ctx, name)
        self.walk(f.get("query"), replace(ctx, via="view", root=False, top=False))
        self.rest("ViewStmt", f, ctx, skip=("view", "query"))

    def v_index(self, f: dict[str, Any], ctx: _Ctx) -> None:
        table = _rv_name(f.get("relation"))
        self.op(ctx, "create", "index", (str(f.get("idxname") or table),))
        self.write(ctx, table)
        self.rest("IndexStmt", f, ctx, skip=("relation",))

    def v_create_table_as(self, f: dict[str, Any], ctx: _Ctx) -> None:
        into = _struct(f, "into")
        rel = into.get("rel")
        name = _rv_name(rel)
        if _object_type(f.get("objtype")) == "materialized_view":
            obj = "materialized_view"
        else:
            obj = "temp_table" if _is_temp(rel) else "table"
        self.op(ctx, "create_table_as", obj, (name,))
        self.write(ctx, name)
        self.nested(f.get("query"), ctx, "create_table_as")

    def v_create_schema(self, f: dict[str, Any], ctx: _Ctx) -> None:
        self.op(ctx, "create", "schema", (str(f.get("schemaname", "")),))
        for elt in items(f.get("schemaElts")):
            self.nested(elt, ctx, "schema")

    def v_create_seq(self, f: dict[str, Any], ctx: _Ctx) -> None:
        seq = f.get("sequence")
        obj = "temp_sequence" if _is_temp(seq) else "sequence"
        self.op(ctx, "create", obj, (_rv_name(seq),))
        self.rest("CreateSeqStmt", f, ctx, skip=("sequence",))

    def v_alter_table(self, f: dict[str, Any], ctx: _Ctx) -> None:
        name = _rv_name(f.get("relation"))
        self.op(ctx, "alter", _object_type(f.get("objtype")) or "table", (name,))
        self.write(ctx, name)
        for cmd in items(f.get("cmds")):
            node = as_node(cmd)
            if node is None or node[0] != "AlterTableCmd":
                continue
            c = node[1]
            if c.get("subtype") == "AT_DropColumn":
                self.op(ctx, "drop", "column", (f"{name}.{c.get('name', '')}",), via="alter")
            if c.get("behavior") == "DROP_CASCADE":
                self.flags.add("cascade")
        self.rest("AlterTableStmt", f, ctx, skip=("relation",))

    def v_drop(self, f: dict[str, Any], ctx: _Ctx) -> None:
        obj = _object_type(f.get("removeType"))
        names = tuple(_dotted(o) for o in items(f.get("objects")))
        self.op(ctx, "drop", obj, names)
        if obj in _TABLE_LIKE:
            self.write(ctx, *names)
        if f.get("behavior") == "DROP_CASCADE":
            self.flags.add("cascade")
        if f.get("missing_ok"):
            self.flags.add("if_exists")

    def v_rename(self, f: dict[str, Any], ctx: _Ctx) -> None:
        obj = _object_type(f.get("renameType"))
        if obj == "role":
            self.op(ctx, "alter_role", "role", (str(f.get("subname", "")),))
            return
        relation = f.get("relation")
        target = (
            _rv_name(relation)
            if relation
            else (_dotted(f.get("object")) or str(f.get("subname", "")))
        )
        self.op(ctx, "alter", obj, (target,))
        if relation:
            self.write(ctx, target)

    def v_alter_generic(self, f: dict[str, Any], ctx: _Ctx) -> None:
        """ALTER ... SET SCHEMA and ALTER ... OWNER TO."""
        target = _rv_name(f.get("relation"))
        self.op(ctx, "alter", _object_type(f.get("objectType")), (target,) if target else ())
        if target:
            self.write(ctx, target)

    def v_rule(self, f: dict[str, Any], ctx: _Ctx) -> None:
        self.op(ctx, "create_rule", "rule", (str(f.get("rulename", "")),))
        self.write(ctx, _rv_name(f.get("relation")))
        self.walk(f.get("whereClause"), ctx.inner())
        for action in items(f.get("actions")):
            self.nested(action, ctx, "rule")

    def v_create_trigger(self, f: dict[str, Any], ctx: _Ctx) -> None:
        self.op(ctx, "create_trigger", "trigger", (str(f.get("trigname", "")),))
        self.write(ctx, _rv_name(f.get("relation")))
        self.add_function(f.get("funcname"))
        self.opaque = True
        self.rest("CreateTrigStmt", f, ctx, skip=("relation", "funcname"))

    def v_create_event_trigger(self, f: dict[str, Any], ctx: _Ctx) -> None:
        self.op(ctx, "create_trigger", "event_trigger", (str(f.get("trigname", "")),))
        self.add_function(f.get("funcname"))
        self.opaque = True

    def v_define(self, f: dict[str, Any], ctx: _Ctx) -> None:
        self.op(ctx, "create", _object_type(f.get("kind")), (_dotted(f.get("defnames")),))
        for d in items(f.get("definition")):
            node = as_node(d)
            if node is None or node[0] != "DefElem":
                continue
            # support functions of operators, aggregates and types run later on their own
            if str(node[1].get("defname", "")).lower() in _DEFINE_TYPE_OPTIONS:
                continue
            arg = as_node(node[1].get("arg"))
            if arg is not None and arg[0] in ("TypeName", "List", "String"):
                name = _dotted(node[1].get("arg"))
                if name:
                    self.functions.add(normalize_function_name(name.split(".")))
        self.rest("DefineStmt", f, ctx, skip=("definition",))

    def v_create_cast(self, f: dict[str, Any], ctx: _Ctx) -> None:
        self.op(ctx, "create", "cast")
        func = f.get("func")
        if isinstance(func, dict):
            self.add_function(func.get("objname"))

    def v_create_function(self, f: dict[str, Any], ctx: _Ctx) -> None:
        obj = "procedure" if f.get("is_procedure") else "function"
        self.op(ctx, "create_function", obj, (_dotted(f.get("funcname")),))
        language: str | None = None
        body: list[str] = []
        other_options = []
        for opt in items(f.get("options")):
            node = as_node(opt)
            if node is None or node[0] != "DefElem":
                continue
            defname = node[1].get("defname")
            if defname == "language":
                language = sval(node[1].get("arg")).lower()
            elif defname == "as":
                arg = node[1].get("arg")
                body = string_list(arg) or [sval(arg)]
                continue
            other_options.append(opt)
        language = language or "sql"
        inner = ctx.inner()
        self.walk(f.get("parameters"), inner)
        self.walk(other_options, inner)
        if language not in TRUSTED_LANGUAGES:
            self.flags.add("untrusted_language")
            self.opaque = True
            return
        if language == "sql":
            if f.get("sql_body") is not None:
                for stmt in _flatten(f.get("sql_body")):
                    self.nested(stmt, ctx, "function_body")
            elif body and not self.nested_sql(body[0], ctx, "function_body"):
                self.flags.add("unparsed_body")
                self.opaque = True
            return
        self.opaque = True
        if language == "plpgsql":
            self.plpgsql(ctx.text, ctx)

    def v_do(self, f: dict[str, Any], ctx: _Ctx) -> None:
        self.op(ctx, "do")
        self.opaque = True
        language = "plpgsql"
        for arg in items(f.get("args")):
            node = as_node(arg)
            if node is not None and node[0] == "DefElem" and node[1].get("defname") == "language":
                language = sval(node[1].get("arg")).lower()
        if language not in TRUSTED_LANGUAGES:
            self.flags.add("untrusted_language")
        elif language == "plpgsql":
            self.plpgsql(ctx.text, ctx)

    def v_call(self, f: dict[str, Any], ctx: _Ctx) -> None:
        call = _struct(f, "funccall")
        name = normalize_function_name(string_list(call.get("funcname")))
        self.op(ctx, "call", "procedure", (name,))
        self.opaque = True
        self.rest("CallStmt", f, ctx)

    def plpgsql(self, text: str, ctx: _Ctx) -> None:
        """Classify the SQL inside PL/pgSQL code (a DO block or CREATE FUNCTION text)."""
        if ctx.depth >= MAX_NESTED_PARSE_DEPTH:
            self.flags.add("unparsed_body")
            return
        try:
            tree = parse_plpgsql(text)
        except Exception:
            self.flags.add("unparsed_body")
            return
        for query, mode, dynamic in _plpgsql_exprs(tree):
            if mode == 0:
                if not self.nested_sql(query, ctx, "plpgsql"):
                    self.flags.add("unparsed_body")
                continue
            expr = _strip_assignment(query) if mode in (3, 4, 5) else query
            self.nested_expr(expr, ctx)
            if dynamic:
                self.flags.add("dynamic_sql")
                value = _fold_text(expr)
                if isinstance(value, str):
                    self.nested_sql(str(value), ctx, "dynamic_sql")

    def nested_expr(self, expr: str, ctx: _Ctx) -> None:
        """Collect functions and tables from a PL/pgSQL expression (e.g. ``x := f(1)``)."""
        if ctx.depth >= MAX_NESTED_PARSE_DEPTH:
            return
        try:
            raws = _parse(f"SELECT {expr}")
        except Exception:
            return
        sub = replace(ctx, via="plpgsql", root=False, top=False, depth=ctx.depth + 1)
        for raw in raws:
            self.walk(raw.stmt, sub)

    # -- privileges, roles, session ----------------------------------------------------------

    def v_grant(self, f: dict[str, Any], ctx: _Ctx) -> None:
        kind = "grant" if f.get("is_grant") else "revoke"
        names = tuple(_dotted(o) for o in items(f.get("objects")))
        self.op(ctx, kind, _object_type(f.get("objtype")), names)

    def v_grant_role(self, f: dict[str, Any], ctx: _Ctx) -> None:
        kind = "grant" if f.get("is_grant") else "revoke"
        self.op(ctx, kind, "role", tuple(_dotted(r) for r in items(f.get("granted_roles"))))

    def v_variable_set(self, f: dict[str, Any], ctx: _Ctx) -> None:
        name = str(f.get("name", "")).lower()
        mode = f.get("kind", "VAR_SET_VALUE")
        if name == "role":
            kind = "set_role"
        elif name == "session_authorization":
            kind = "set_session_authorization"
        elif mode in ("VAR_RESET", "VAR_RESET_ALL"):
            kind = "reset"
        else:
            kind = "set"
        setting = "all" if mode == "VAR_RESET_ALL" else name
        self.op(ctx, kind, targets=(setting,))
        if setting in ("search_path", "all"):
            self.sets_search_path = True
        if ctx.top:
            self.setting = setting
            self.setting_local = bool(f.get("is_local"))
            if mode == "VAR_SET_VALUE":
                self.setting_value = _set_value(items(f.get("args")))
        self.rest("VariableSetStmt", f, ctx)

    def v_show(self, f: dict[str, Any], ctx: _Ctx) -> None:
        name = str(f.get("name", "")).lower()
        self.op(ctx, "show", targets=(name,))
        if ctx.top:
            self.setting = name

    def v_transaction(self, f: dict[str, Any], ctx: _Ctx) -> None:
        self.op(ctx, _TRANSACTION_KINDS.get(str(f.get("kind", "TRANS_STMT_BEGIN")), "other"))

    def v_discard(self, f: dict[str, Any], ctx: _Ctx) -> None:
        mode = str(f.get("target", "DISCARD_ALL")).removeprefix("DISCARD_").lower()
        self.op(ctx, "discard", targets=(mode,))
        if ctx.top:
            self.setting = mode

    def v_vacuum(self, f: dict[str, Any], ctx: _Ctx) -> None:
        self.op(ctx, "vacuum" if f.get("is_vacuumcmd") else "analyze")
        self.rest("VacuumStmt", f, ctx)

    def v_lock(self, f: dict[str, Any], ctx: _Ctx) -> None:
        names = tuple(
            _rv_name(n[1])
            for n in map(as_node, items(f.get("relations")))
            if n and n[0] == "RangeVar"
        )
        self.op(ctx, "lock", "table", names)
        self.reads.update(names)

    def v_refresh(self, f: dict[str, Any], ctx: _Ctx) -> None:
        name = _rv_name(f.get("relation"))
        self.op(ctx, "refresh_matview", "materialized_view", (name,))
        self.write(ctx, name)

    def v_return(self, f: dict[str, Any], ctx: _Ctx) -> None:
        if ctx.root:
            self.op(ctx, "select")
        self.rest("ReturnStmt", f, ctx)


#: Nodes with no table, function or statement below them.
_LEAVES: Final = frozenset(
    {"A_Const", "ColumnRef", "String", "ParamRef", "Integer", "Float", "Boolean", "BitString",
     "A_Star", "SQLValueFunction", "TypeName", "RoleSpec", "Alias"}
)  # fmt: skip

_DEFINE_TYPE_OPTIONS: Final = frozenset(
    {"leftarg", "rightarg", "basetype", "stype", "mstype", "element", "commutator", "negator"}
)

Handler = Callable[[_Walker, dict[str, Any], _Ctx], None]


def _simple(kind: str, object_type: str | None = None) -> Handler:
    """A handler that records one operation and walks the rest of the node generically."""

    def handler(w: _Walker, f: dict[str, Any], ctx: _Ctx) -> None:
        w.op(ctx, kind, object_type)
        inner = ctx.inner()
        for value in f.values():
            if isinstance(value, dict | list):
                w.walk(value, inner)

    return handler


_HANDLERS: Final[dict[str, Handler]] = {
    "RangeVar": _Walker.v_range_var,
    "FuncCall": _Walker.v_func_call,
    "SelectStmt": _Walker.v_select,
    "InsertStmt": _Walker.v_insert,
    "UpdateStmt": _Walker.v_update,
    "DeleteStmt": _Walker.v_delete,
    "MergeStmt": _Walker.v_merge,
    "TruncateStmt": _Walker.v_truncate,
    "CopyStmt": _Walker.v_copy,
    "ExplainStmt": _Walker.v_explain,
    "PrepareStmt": _Walker.v_prepare,
    "ExecuteStmt": _Walker.v_execute,
    "DeallocateStmt": _Walker.v_deallocate,
    "DeclareCursorStmt": _Walker.v_declare_cursor,
    "CreateStmt": _Walker.v_create,
    "CreateForeignTableStmt": _Walker.v_create_foreign_table,
    "ViewStmt": _Walker.v_view,
    "IndexStmt": _Walker.v_index,
    "CreateTableAsStmt": _Walker.v_create_table_as,
    "CreateSchemaStmt": _Walker.v_create_schema,
    "CreateSeqStmt": _Walker.v_create_seq,
    "AlterTableStmt": _Walker.v_alter_table,
    "DropStmt": _Walker.v_drop,
    "RenameStmt": _Walker.v_rename,
    "AlterObjectSchemaStmt": _Walker.v_alter_generic,
    "AlterOwnerStmt": _Walker.v_alter_generic,
    "RuleStmt": _Walker.v_rule,
    "CreateTrigStmt": _Walker.v_create_trigger,
    "CreateEventTrigStmt": _Walker.v_create_event_trigger,
    "DefineStmt": _Walker.v_define,
    "CreateCastStmt": _Walker.v_create_cast,
    "CreateFunctionStmt": _Walker.v_create_function,
    "DoStmt": _Walker.v_do,
    "CallStmt": _Walker.v_call,
    "GrantStmt": _Walker.v_grant,
    "GrantRoleStmt": _Walker.v_grant_role,
    "VariableSetStmt": _Walker.v_variable_set,
    "VariableShowStmt": _Walker.v_show,
    "TransactionStmt": _Walker.v_transaction,
    "DiscardStmt": _Walker.v_discard,
    "VacuumStmt": _Walker.v_vacuum,
    "LockStmt": _Walker.v_lock,
    "RefreshMatViewStmt": _Walker.v_refresh,
    "ReturnStmt": _Walker.v_return,
    "CreateDomainStmt": _simple("create", "domain"),
    "CompositeTypeStmt": _simple("create", "type"),
    "CreateEnumStmt": _simple("create", "type"),
    "CreateRangeStmt": _simple("create", "type"),
    "CreatedbStmt": _simple("create", "database"),
    "CreatePolicyStmt": _simple("create", "policy"),
    "CreatePLangStmt": _simple("create", "language"),
    "CreateTableSpaceStmt": _simple("create", "tablespace"),
    "CreateFdwStmt": _simple("create", "fdw"),
    "CreateForeignServerStmt": _simple("create", "foreign_server"),
    "CreateUserMappingStmt": _simple("create", "user_mapping"),
    "CreatePublicationStmt": _simple("create", "publication"),
    "CreateSubscriptionStmt": _simple("create", "subscription"),
    "CreateStatsStmt": _simple("create", "statistic_ext"),
    "CreateConversionStmt": _simple("create", "conversion"),
    "CreateOpClassStmt": _simple("create", "opclass"),
    "CreateOpFamilyStmt": _simple("create", "opfamily"),
    "CreateAmStmt": _simple("create", "access_method"),
    "CreateTransformStmt": _simple("create", "transform"),
    "ImportForeignSchemaStmt": _simple("create", "foreign_table"),
    "CreateExtensionStmt": _simple("create_extension", "extension"),
    "AlterDomainStmt": _simple("alter", "domain"),
    "AlterEnumStmt": _simple("alter", "type"),
    "AlterSeqStmt": _simple("alter", "sequence"),
    "AlterFunctionStmt": _simple("alter", "function"),
    "AlterTypeStmt": _simple("alter", "type"),
    "AlterDatabaseStmt": _simple("alter", "database"),
    "AlterDatabaseSetStmt": _simple("alter", "database"),
    "AlterDatabaseRefreshCollStmt": _simple("alter", "database"),
    "AlterExtensionStmt": _simple("alter", "extension"),
    "AlterExtensionContentsStmt": _simple("alter", "extension"),
    "AlterPolicyStmt": _simple("alter", "policy"),
    "AlterPublicationStmt": _simple("alter", "publication"),
    "AlterSubscriptionStmt": _simple("alter", "subscription"),
    "AlterStatsStmt": _simple("alter", "statistic_ext"),
    "AlterTSConfigurationStmt": _simple("alter", "tsconfiguration"),
    "AlterTSDictionaryStmt": _simple("alter", "tsdictionary"),
    "AlterEventTrigStmt": _simple("alter", "event_trigger"),
    "AlterFdwStmt": _simple("alter", "fdw"),
    "AlterForeignServerStmt": _simple("alter", "foreign_server"),
    "AlterOpFamilyStmt": _simple("alter", "opfamily"),
    "AlterOperatorStmt": _simple("alter", "operator"),
    "AlterTableMoveAllStmt": _simple("alter", "table"),
    "AlterTableSpaceOptionsStmt": _simple("alter", "tablespace"),
    "AlterUserMappingStmt": _simple("alter", "user_mapping"),
    "AlterCollationStmt": _simple("alter", "collation"),
    "AlterObjectDependsStmt": _simple("alter", "extension"),
    "ReplicaIdentityStmt": _simple("alter", "table"),
    "DropdbStmt": _simple("drop", "database"),
    "DropTableSpaceStmt": _simple("drop", "tablespace"),
    "DropSubscriptionStmt": _simple("drop", "subscription"),
    "DropUserMappingStmt": _simple("drop", "user_mapping"),
    "DropOwnedStmt": _simple("drop", "owned"),
    "CreateRoleStmt": _simple("create_role", "role"),
    "AlterRoleStmt": _simple("alter_role", "role"),
    "AlterRoleSetStmt": _simple("alter_role", "role"),
    "DropRoleStmt": _simple("drop_role", "role"),
    "ReassignOwnedStmt": _simple("reassign_owned"),
    "AlterDefaultPrivilegesStmt": _simple("alter_default_privileges"),
    "AlterSystemStmt": _simple("alter_system"),
    "LoadStmt": _simple("load"),
    "CheckPointStmt": _simple("checkpoint"),
    "ReindexStmt": _simple("reindex"),
    "ClusterStmt": _simple("cluster"),
    "ListenStmt": _simple("listen"),
    "UnlistenStmt": _simple("unlisten"),
    "NotifyStmt": _simple("notify"),
    "ConstraintsSetStmt": _simple("set_constraints"),
    "FetchStmt": _simple("fetch"),
    "ClosePortalStmt": _simple("close"),
    "CommentStmt": _simple("comment"),
    "SecLabelStmt": _simple("security_label"),
}


def _flatten(value: Any) -> Iterator[Any]:
    """The statements of a BEGIN ATOMIC body (lists of lists) or a single RETURN."""
    if isinstance(value, list):
        for item in value:
            yield from _flatten(item)
        return
    node = as_node(value)
    if node is not None and node[0] == "List":
        yield from _flatten(node[1].get("items", []))
    elif value is not None:
        yield value


_DYNAMIC_KEYS: Final = {
    ("PLpgSQL_stmt_dynexecute", "query"),
    ("PLpgSQL_stmt_dynfors", "query"),
    ("PLpgSQL_stmt_open", "dynquery"),
    ("PLpgSQL_stmt_return_query", "dynquery"),
}


def _plpgsql_exprs(tree: Any) -> Iterator[tuple[str, int, bool]]:
    """(query, parseMode, is dynamic SQL) for every PLpgSQL_expr in a parse_plpgsql tree."""
    stack: list[tuple[Any, str, str]] = [(tree, "", "")]
    while stack:
        obj, stmt_type, key = stack.pop()
        if isinstance(obj, list):
            stack.extend((item, stmt_type, key) for item in reversed(obj))
        elif isinstance(obj, dict):
            expr = obj.get("PLpgSQL_expr")
            if isinstance(expr, dict) and isinstance(expr.get("query"), str):
                mode = expr.get("parseMode", 0)
                yield expr["query"], int(mode or 0), (stmt_type, key) in _DYNAMIC_KEYS
                continue
            for k, v in reversed(list(obj.items())):
                if k.startswith("PLpgSQL_stmt_"):
                    stack.append((v, k, ""))
                elif isinstance(v, dict | list):
                    stack.append((v, stmt_type, k))


_ASSIGNMENT: Final = re.compile(r"^\s*[^:=]+?\s*(?::=|=)\s*", re.DOTALL)


def _strip_assignment(query: str) -> str:
    m = _ASSIGNMENT.match(query)
    return query[m.end() :] if m else query


def _fold_text(expr: str) -> object:
    """The constant value of a PL/pgSQL expression (``'DELETE ' || 'FROM t'``), if any."""
    try:
        raws = _parse(f"SELECT {expr}")
    except Exception:
        return UNKNOWN
    if len(raws) != 1:
        return UNKNOWN
    node = as_node(raws[0].stmt)
    if node is None or node[0] != "SelectStmt":
        return UNKNOWN
    targets = items(node[1].get("targetList"))
    target = as_node(targets[0]) if len(targets) == 1 else None
    return fold(target[1].get("val")) if target is not None else UNKNOWN


def _copy_options(f: dict[str, Any], relation: str, inner_sql: str | None) -> CopyOptions:
    opts: dict[str, str] = {}
    for item in items(f.get("options")):
        node = as_node(item)
        if node is None or node[0] != "DefElem":
            continue
        name = str(node[1].get("defname", "")).lower()
        arg = as_node(node[1].get("arg"))
        value = str(arg[1].get("sval", "")) if arg and arg[0] == "String" else ""
        opts[name] = value
    fmt = opts.get("format", "text").lower()
    if "csv" in opts and fmt == "text":
        fmt = "csv"  # the pre-9.0 spelling COPY ... CSV
    if "binary" in opts:
        fmt = "binary"
    source = inner_sql
    if relation:
        cols = []
        for item in items(f.get("attlist")):
            node = as_node(item)
            if node and node[0] == "String":
                cols.append(quote_ident(str(node[1].get("sval", ""))))
        quoted = ".".join(quote_ident(p) for p in relation.split("."))
        source = f"SELECT {', '.join(cols) or '*'} FROM {quoted}"  # noqa: S608 - identifiers are quoted
    return CopyOptions(
        format=fmt if fmt in ("text", "csv", "binary") else "text",  # type: ignore[arg-type]
        delimiter=opts.get("delimiter"),
        quote=opts.get("quote"),
        escape=opts.get("escape"),
        source=source,
    )


def _deparse_query(statement: str) -> str | None:
    """The text of the query inside PREPARE / EXPLAIN / COPY / DECLARE (pglast's deparser)."""
    try:
        from pglast import parse_sql  # noqa: PLC0415 - the slow AST, only for these wrappers
        from pglast.stream import RawStream  # noqa: PLC0415

        (raw,) = parse_sql(statement)
        stmt: Any = raw.stmt
        return str(RawStream()(stmt.query)) or None
    except Exception:
        return None


def _classify_raw(raw: _Raw) -> StatementInfo:
    walker = _Walker()
    walker.walk(raw.stmt, _Ctx(text=raw.text))
    return walker.build(raw.text)


def classify(sql: object, tree_json: str | None = None) -> Classification:
    """Classify a query string (any number of statements). Never raises, also not for
    something other than text (typed ``object``: the compiled build checks declared types).

    Unparseable text, or text the classifier fails on, gives a Classification whose
    ``error`` is set and whose ``statements`` is empty: the caller must refuse it.
    ``tree_json`` is pglast's ``parse_sql_json(sql)`` when the caller has it already.
    """
    if not isinstance(sql, str):
        return Classification.failed(str(sql), "expected SQL text")
    if "\x00" in sql:
        return Classification.failed(sql, "SQL text contains a NUL character")
    try:
        raws = _parse(sql, tree_json)
    except RecursionError:
        return Classification.failed(sql, "statement is nested too deeply to classify")
    except Exception as exc:
        return Classification.failed(sql, f"syntax error: {exc}")
    try:
        infos = tuple(_classify_raw(raw) for raw in raws)
    except RecursionError:
        return Classification.failed(sql, "statement is nested too deeply to classify")
    except Exception as exc:
        return Classification.failed(sql, f"could not classify: {type(exc).__name__}: {exc}")
    return Classification(sql=sql, statements=infos)


# -- the shape cache -----------------------------------------------------------------------
#
# Agents and drivers send the same statement again and again with other constants in it
# (`... WHERE aid = 38629`, then `= 65626`): every text is new to an exact-text cache, and a
# full classification (the parse tree read into Python and walked) costs ~100 µs. The shape of
# a statement is its parse tree with constants and source positions blanked out; for shapes
# whose classification cannot depend on a constant (below), a new text of a known shape is
# classified by copying the first one's classification with the new text in it. The text is
# still parsed in full (PostgreSQL's parser, in C) for the shape, so a text that does not
# parse is never taken for a known one.

# Constants as libpg_query writes them in JSON: {"A_Const":{"ival":{"ival":5},"location":9}}.
# The patterns cannot match inside a JSON string: there every quote is escaped, and each
# pattern needs an unescaped quote right before its colon.
_CONST_VALUE: Final = re.compile(
    r'"A_Const":\{"(ival|fval|sval|bsval|boolval)":\{(?:"\w+":(?:"(?:[^"\\]|\\.)*"|[^{}",]*))?\}'
)
# Positions are left out when zero: they are removed, not zeroed, so both forms agree.
_POSITION_AFTER: Final = re.compile(r',"(?:location|stmt_location|stmt_len)":-?\d+')
_POSITION_FIRST: Final = re.compile(r'\{"(?:location|stmt_location|stmt_len)":-?\d+,?')
_STMT_LOCATION: Final = re.compile(r'"stmt_location":(\d+)')
_STMT_LEN: Final = re.compile(r'"stmt_len":(\d+)')
_SHAPES_KEPT: Final = 4096
_SHAPES: Final[dict[str, Classification | None]] = {}  # shape -> first classification, or None


_BLANK_CONSTS: Final = {
    kind: f'"A_Const":{{"{kind}":{{}}' for kind in ("ival", "fval", "sval", "bsval", "boolval")
}


def _blank_const(match: re.Match[str]) -> str:
    # A function, not a template: re expands a template in Python on every match.
    return _BLANK_CONSTS[match.group(1)]


def shape_of(tree_json: str) -> str:
    """The shape of a parsed text: its tree with every constant's value and every source
    position blanked (two texts have one shape iff they differ only in constants, spacing,
    comments and keyword case)."""
    blanked = _CONST_VALUE.sub(_blank_const, tree_json)
    return _POSITION_FIRST.sub("{", _POSITION_AFTER.sub("", blanked))


_REUSABLE_KINDS: Final = frozenset({"select", "insert", "update", "delete"})
_COMPARISONS: Final = frozenset({"=", "<>", "!=", "<", ">", "<=", ">="})


def _shape_reusable(c: Classification, tree_json: str) -> bool:
    """Can another text of this shape take this classification? Only a lone query or plain
    write whose classification reads no constant: the classifier folds constants for
    UPDATE/DELETE WHERE clauses, ON CONFLICT and MERGE conditions, SET values, set_config's
    setting, EXPLAIN options, COPY options and procedural bodies, and dangerous functions
    (dblink, query_to_xml, ...) take SQL in strings."""
    if c.error is not None or len(c.statements) != 1:
        return False
    (st,) = c.statements
    if not st.kinds <= _REUSABLE_KINDS:
        return False
    if st.kinds != {"select"} and _folds_constants(json.loads(tree_json)):
        return False
    return (
        not st.dangerous_functions
        and not st.opaque
        and not st.flags
        and st.setting is None
        and st.copy is None
        and st.body is None
        and not st.executes_prepared
        and st.estimate_sql in (None, st.text)
        and not any(f.rsplit(".", 1)[-1] == "set_config" for f in st.functions)
    )


def _folds_constants(tree: Any) -> bool:
    """Would classifying this write fold one of its constants? Yes for an ON CONFLICT, a
    MERGE, and an UPDATE/DELETE whose WHERE is more than an AND of comparisons between a column
    and a constant (`aid = 5`: present whatever the constant; `a = 5 OR a <> 5`, `1 = 1`:
    the constants decide)."""
    for tag, f in iter_nodes(tree):
        if tag in ("UpdateStmt", "DeleteStmt") and not _where_ignores_constants(
            f.get("whereClause")
        ):
            return True
        if tag == "MergeStmt" or (tag == "InsertStmt" and f.get("onConflictClause")):
            return True
    return False


def _where_ignores_constants(where: Any) -> bool:
    if where is None or not any(tag == "A_Const" for tag, _f in iter_nodes(where)):
        return True  # nothing to fold but the shape itself
    node = as_node(where)
    if node is None:
        return False
    tag, f = node
    if tag == "BoolExpr" and f.get("boolop") == "AND_EXPR":
        return all(_where_ignores_constants(arg) for arg in items(f.get("args")))
    comparison = _binary_operator(where)
    if comparison is None or comparison[0] not in _COMPARISONS:
        return False
    left, right = as_node(comparison[1]), as_node(comparison[2])
    sides = {left[0] if left else "", right[0] if right else ""}
    return "ColumnRef" in sides and sides <= {"ColumnRef", "A_Const", "ParamRef"}


# -- the normalized-text cache -------------------------------------------------------------
#
# A first look before the shape: libpg_query's normalize (C, ~3 µs against ~11 µs for the tree
# as JSON and its shape) parses the text and writes it back with every constant as $n. Texts
# with the same normalized text differ only in their constants, so a normalized text whose
# shape was reusable maps straight to that shape's classification. Normalizing also merges
# constants of different kinds (5, '5', NULL, true) that the shape keeps apart: a reusable
# classification reads no constant, so that cannot change it (test_sql_shape_cache checks
# texts of every kind against a full classification). A text with a $ in it (parameters,
# dollar quotes) takes the shape path: normalize writes constants as parameters, so
# `a = $1` and `a = 5` would read the same.
#
# Each entry keeps where the statement's text starts and how many bytes follow its end (the
# semicolon, spaces, a trailing comment): neither can hold a constant, so the same offsets
# cut the statement out of any text with that normalized text.
_NORMALIZED_KEPT: Final = 4096
_NORMALIZED: Final[dict[str, tuple[Classification, int, int]]] = {}  # -> (first, start, tail or -1)


# -- the integer key --------------------------------------------------------------------------
#
# A first look before normalize: the texts an application sends again and again mostly differ
# only in integers (ids, limits). ``integer_key`` (~0.2 µs compiled, against normalize's
# ~1.6 µs) puts a NUL (which no text classified here holds) in place of every run of up to nine
# ASCII digits that stands alone (no letter, digit, underscore, dot, $ or non-ASCII character
# on either side), and the key leads to the normalized text's entry. A key is kept only when
# normalize replaced exactly those runs of the text that made it, and nothing else: each run was
# then a whole integer constant (not inside a string, a comment or a quoted name, not folded
# with a sign, not an ORDER BY position or a type modifier, which normalize leaves alone). Any
# text with the same key is the same text with other such integers, which lex the same way
# (nine digits always fit an integer, so none becomes a numeric), so it has the same
# normalized text.


def _word_char(c: int) -> bool:
    """A character that makes a digit next to it part of a word or a number: a letter, a
    digit, ``_``, ``.``, ``$`` or anything beyond ASCII."""
    return c >= 128 or 48 <= c <= 57 or 97 <= (c | 32) <= 122 or c in (95, 46, 36)


def integer_key(sql: str) -> tuple[str, int]:
    """``sql`` with a NUL for each standalone run of one to nine ASCII digits, and how many.
    A loop rather than a regular expression: compiled, ~4x faster than the equivalent
    ``(?<![0-9A-Za-z_.$\x80-\U0010ffff])[0-9]{1,9}(?![0-9A-Za-z_.$\x80-\U0010ffff])``."""
    n = len(sql)
    parts: list[str] = []
    count = 0
    copied = 0  # sql[:copied] is in parts
    i = 0
    after_word = False
    while i < n:
        c = ord(sql[i])
        if 48 <= c <= 57:
            j = i + 1
            while j < n and 48 <= ord(sql[j]) <= 57:
                j += 1
            if not after_word and j - i <= 9 and (j == n or not _word_char(ord(sql[j]))):
                parts.append(sql[copied:i])
                parts.append("\x00")
                copied = j
                count += 1
            after_word = True
            i = j
            continue
        after_word = _word_char(c)
        i += 1
    if not count:
        return sql, 0
    parts.append(sql[copied:])
    return "".join(parts), count


_KEYED_KEPT: Final = 4096
_KEYED: Final[dict[str, tuple[Classification, int, int]]] = {}


def _keep_key(key: str, normalized: str, entry: tuple[Classification, int, int]) -> None:
    """Keep ``key`` for ``entry`` if normalize replaced exactly the key's integers."""
    parts = key.split("\x00")
    spelled = [parts[0]]
    for n, part in enumerate(parts[1:], 1):
        spelled.append(f"${n}")
        spelled.append(part)
    if "".join(spelled) != normalized:
        return
    if len(_KEYED) >= _KEYED_KEPT:
        _KEYED.clear()
    _KEYED[key] = entry


def _as_known(sql: str, entry: tuple[Classification, int, int]) -> Classification:
    """The classification of ``sql``, a text with the normalized text ``entry`` was kept for."""
    first, start, tail = entry
    data = sql.encode("utf-8")
    return first.retexted(
        sql, _statement_text(data, start, len(data) - tail - start if tail >= 0 else 0)
    )


def _classify_shaped(sql: str) -> Classification:
    if "\x00" in sql:
        return classify(sql)
    normalized = None
    key = ""
    if "$" not in sql:
        key, integers = integer_key(sql)
        if not integers:
            key = ""
        else:
            keyed = _KEYED.get(key)
            if keyed is not None:
                return _as_known(sql, keyed)
        try:
            normalized = normalize(sql)
        except Exception:
            return classify(sql)  # the error as the full path words it
        hit = _NORMALIZED.get(normalized)
        if hit is not None:
            if key:
                _keep_key(key, normalized, hit)
            return _as_known(sql, hit)
    try:
        tree_json = parse_sql_json(sql)
    except Exception:
        return classify(sql)  # the error as the full path words it
    shape = shape_of(tree_json)
    # One look-up (another thread may clear the cache between two); no sentinel default,
    # since compiled code checks that ``known`` is a Classification or None.
    known: Classification | None
    try:
        known, fresh = _SHAPES[shape], False
    except KeyError:
        known, fresh = None, True
    if known is None and not fresh:
        return classify(sql, tree_json)
    if fresh:
        known = classify(sql, tree_json)
        if len(_SHAPES) >= _SHAPES_KEPT:
            _SHAPES.clear()
        if not _shape_reusable(known, tree_json):
            _SHAPES[shape] = None
            return known
        _SHAPES[shape] = known
    assert known is not None
    loc_m = _STMT_LOCATION.search(tree_json)
    len_m = _STMT_LEN.search(tree_json)
    loc = int(loc_m.group(1)) if loc_m else 0
    length = int(len_m.group(1)) if len_m else 0
    data = sql.encode("utf-8")
    if normalized is not None:
        if len(_NORMALIZED) >= _NORMALIZED_KEPT:
            _NORMALIZED.clear()
        entry = (known, loc, len(data) - loc - length if length else -1)
        _NORMALIZED[normalized] = entry
        if key:
            _keep_key(key, normalized, entry)
    if fresh:
        return known
    return known.retexted(sql, _statement_text(data, loc, length))


@functools.lru_cache(maxsize=CACHE_MAX_ENTRIES)
def _classify_lru(sql: str) -> Classification:
    return _classify_shaped(sql)


def classify_cached(sql: str) -> Classification:
    """``classify`` with two caches: the exact text (an LRU; classifications are immutable),
    then the statement's shape (see above)."""
    if len(sql) > CACHE_MAX_SQL_LENGTH:
        return classify(sql)
    return _classify_lru(sql)


def cache_info() -> Any:
    """Hits, misses and size of the ``classify_cached`` cache (functools' CacheInfo)."""
    return _classify_lru.cache_info()


def cache_clear() -> None:
    _classify_lru.cache_clear()
    _SHAPES.clear()
    _NORMALIZED.clear()
    _KEYED.clear()


def split_statements(sql: str) -> tuple[str, ...]:
    """The statements of a query string, as text. Raises SqlSyntaxError if it does not parse."""
    try:
        raws = _parse(sql)
    except Exception as exc:
        raise SqlSyntaxError(str(exc)) from exc
    return tuple(raw.text for raw in raws)


def _set_value(args: Any) -> str | None:
    """The value of ``SET name = a, b`` as PostgreSQL shows it (``a, b``), from constants."""
    parts: list[str] = []
    for arg in args:
        const = arg.get("A_Const") if isinstance(arg, dict) else None
        if not isinstance(const, dict):
            return None
        for key in ("sval", "ival", "fval", "boolval"):
            inner = const.get(key)
            if isinstance(inner, dict):
                value = inner.get(key, 0 if key == "ival" else False if key == "boolval" else "")
                parts.append(str(value).lower() if key == "boolval" else str(value))
                break
        else:
            return None
    return ", ".join(parts) if parts else None
