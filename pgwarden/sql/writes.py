"""The rows a DELETE or UPDATE writes, as the parts of a query that selects them.

The estimator asks the planner how many rows of another table reference the written ones
(foreign keys with ON DELETE / ON UPDATE CASCADE, SET NULL or SET DEFAULT). When the
statement's WHERE reads only the referenced column (``id = 7``, ``id IN (7, 8)``, ``id <
$1``), the same condition is put on the referencing column (``customer_id IN (7, 8)``), whose
statistics the planner then reads for those values: deleting the one customer who holds most
of the orders counts as such, not as an average customer. Otherwise the question is a
semi-join on the statement's own table and WHERE (counted: the planner estimates joins with
an average per referenced row).

It also tells a WHERE the planner can only guess at (a column inside an expression) from one
it estimates from statistics, and whether such a WHERE may run to count its rows; and what a
MERGE deletes and sets.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import pglast
from pglast import ast, enums
from pglast.stream import RawStream
from pglast.visitors import Visitor

from pgwarden.sql.functions import is_dangerous, may_be_users, normalize_function_name
from pgwarden.sql.idents import quote_ident


@dataclass(frozen=True, slots=True)
class WriteScope:
    """``DELETE FROM`` or ``UPDATE [ONLY] table [AS alias] [SET ...] [WHERE where]``.

    ``sets``: the columns an UPDATE sets (None: a DELETE). ``alone``: the rows written are
    those a query of the table alone selects with ``only``, ``alias`` (None when the table
    is not renamed) and ``where`` (SQL; None: every row); False with WITH, USING or FROM,
    WHERE CURRENT OF, or a WHERE that cannot be printed back.

    ``guessed``: the WHERE has a condition the planner has no statistics for (a column
    inside an expression, ``abs(id) > 0``, ``id + 0 > 0``, ``coalesce(id, 0) > 0``; a
    subquery), whose selectivity it takes from a fixed default (a third for an inequality,
    0.5 % for an equality) whatever the rows hold. ``runnable``: the WHERE calls only
    PostgreSQL's own functions that neither reach outside the rows nor leave anything
    behind in a read-only transaction that is rolled back (not ``pg_sleep``, advisory
    locks, ``set_config``...), so that its rows may be counted.
    """

    only: bool
    alias: str | None
    where: str | None
    sets: frozenset[str] | None
    alone: bool
    guessed: bool = False
    runnable: bool = False

    def rows(self, table: str) -> str:
        """``[ONLY] table [AS alias] [WHERE where]``: the rows written, for a FROM (with
        ``table`` the written table's qualified, quoted name)."""
        alias = f" AS {quote_ident(self.alias)}" if self.alias is not None else ""
        where = f" WHERE {self.where}" if self.where is not None else ""
        return f"{'ONLY ' if self.only else ''}{table}{alias}{where}"


def _one_statement(sql: str) -> ast.Node | None:
    """The statement ``sql`` holds, if it parses and holds exactly one."""
    try:
        statements = pglast.parse_sql(sql)
    except pglast.parser.ParseError:
        return None
    return statements[0].stmt if len(statements) == 1 else None


def _the_write(sql: str) -> ast.DeleteStmt | ast.UpdateStmt | None:
    """The DELETE or UPDATE ``sql`` is, or the one it runs in its only WITH query
    (``WITH d AS (DELETE ... RETURNING ...) SELECT ...``): none of its names can then be
    another WITH query's."""
    st = _one_statement(sql)
    if st is not None and not isinstance(st, ast.DeleteStmt | ast.UpdateStmt):
        with_clause = getattr(st, "withClause", None)
        ctes: tuple[ast.CommonTableExpr, ...] = tuple(with_clause.ctes or ()) if with_clause else ()
        if len(ctes) != 1:
            return None
        st = ctes[0].ctequery
    return st if isinstance(st, ast.DeleteStmt | ast.UpdateStmt) else None


@functools.lru_cache(maxsize=256)
def write_scope(sql: str) -> WriteScope | None:
    """The scope of ``sql`` when it is one DELETE or UPDATE, or runs one in its only WITH
    query; None otherwise, and when it does not parse."""
    st = _the_write(sql)
    if isinstance(st, ast.DeleteStmt):
        sets = None
        alone = not st.withClause and not st.usingClause
    elif isinstance(st, ast.UpdateStmt):
        sets = frozenset(str(t.name) for t in st.targetList or () if t.name)
        alone = not st.withClause and not st.fromClause
    else:
        return None
    relation = st.relation
    if relation is None:
        return None
    where = st.whereClause
    text = None
    if isinstance(where, ast.CurrentOfExpr):
        alone = False
    elif where is not None and alone:
        try:
            text = RawStream()(where)
        except Exception:  # a node pglast cannot print back: the caller estimates without it
            alone = False
    alias = relation.alias.aliasname if relation.alias is not None else None
    guessed = runnable = False
    if text is not None and where is not None:
        guessed = not _estimable(where)
        runnable = all(map(_runnable, _Calls.of(where)))
    return WriteScope(not relation.inh, alias, text, sets, alone, guessed, runnable)


#: Built-in functions that act outside the statement's rows even in a read-only transaction
#: that is rolled back: they wait, take session locks, signal other sessions or write WAL
#: (the dangerous ones, which reach further, are excluded as such).
_NOT_RUN = frozenset(
    {
        "pg_logical_emit_message",
        "pg_notify",
        "pg_sleep",
        "pg_sleep_for",
        "pg_sleep_until",
        "set_config",
    }
)
_NOT_RUN_PREFIXES = ("pg_advisory", "pg_try_advisory")


def _runnable(name: str) -> bool:
    base = name.rsplit(".", 1)[-1]
    return (
        not may_be_users(name)
        and not is_dangerous(name)
        and base not in _NOT_RUN
        and not base.startswith(_NOT_RUN_PREFIXES)
    )


class _Calls(Visitor):  # type: ignore[misc]  # pglast's visitors are untyped
    """The (normalized) names of the functions an expression calls."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    @classmethod
    def of(cls, node: ast.Node) -> set[str]:
        visitor = cls()
        visitor(node)
        return visitor.names

    def visit_FuncCall(self, ancestors: object, node: ast.FuncCall) -> None:
        parts = [str(getattr(n, "sval", "")) for n in node.funcname or ()]
        self.names.add(normalize_function_name(parts))


class _Columns(Visitor):  # type: ignore[misc]
    """Whether an expression reads a column or holds a subquery."""

    def __init__(self) -> None:
        self.found = False

    @classmethod
    def in_(cls, node: Any) -> bool:
        if node is None:
            return False
        visitor = cls()
        visitor(node)
        return visitor.found

    def _found(self, ancestors: object, node: object) -> None:
        self.found = True

    visit_ColumnRef = _found
    visit_SubLink = _found


_COMPARED = frozenset(
    {
        enums.A_Expr_Kind.AEXPR_OP,
        enums.A_Expr_Kind.AEXPR_OP_ANY,
        enums.A_Expr_Kind.AEXPR_OP_ALL,
        enums.A_Expr_Kind.AEXPR_DISTINCT,
        enums.A_Expr_Kind.AEXPR_NOT_DISTINCT,
        enums.A_Expr_Kind.AEXPR_IN,
        enums.A_Expr_Kind.AEXPR_LIKE,
        enums.A_Expr_Kind.AEXPR_ILIKE,
        enums.A_Expr_Kind.AEXPR_BETWEEN,
        enums.A_Expr_Kind.AEXPR_NOT_BETWEEN,
    }
)


def _estimable(node: object) -> bool:
    """A condition the planner estimates from a column's statistics: ANDs, ORs and NOTs of a
    bare column compared with values that read no column (``id > $1``, ``day < now() -
    interval '1 day'``, ``id IN (1, 2)``, ``name LIKE 'a%'``), a column IS [NOT] NULL, a
    boolean column, or a constant (``1 = 0``: the planner folds it)."""
    if not _Columns.in_(node):
        return True
    if isinstance(node, ast.BoolExpr):
        return all(_estimable(arg) for arg in node.args or ())
    if isinstance(node, ast.A_Expr):
        if node.kind not in _COMPARED:
            return False
        left, right = node.lexpr, node.rexpr
        if isinstance(left, ast.ColumnRef):
            return not _Columns.in_(right)
        if isinstance(right, ast.ColumnRef) and node.kind == enums.A_Expr_Kind.AEXPR_OP:
            return not _Columns.in_(left)
        return False
    if isinstance(node, ast.NullTest | ast.BooleanTest):
        return isinstance(node.arg, ast.ColumnRef)
    return isinstance(node, ast.ColumnRef)


@functools.lru_cache(maxsize=256)
def merge_actions(sql: str) -> tuple[bool, frozenset[str]] | None:
    """Whether the MERGE ``sql`` deletes rows (a WHEN ... THEN DELETE) and the columns its
    WHEN ... THEN UPDATE actions set; None when ``sql`` is no single MERGE."""
    st = _one_statement(sql)
    if not isinstance(st, ast.MergeStmt):
        return None
    deletes = False
    sets: set[str] = set()
    for when in st.mergeWhenClauses or ():
        if when.commandType == enums.CmdType.CMD_DELETE:
            deletes = True
        elif when.commandType == enums.CmdType.CMD_UPDATE:
            sets.update(str(t.name) for t in when.targetList or () if t.name)
    return deletes, frozenset(sets)


_NULL_AWARE = frozenset({enums.A_Expr_Kind.AEXPR_DISTINCT, enums.A_Expr_Kind.AEXPR_NOT_DISTINCT})


class _OntoColumn(Visitor):  # type: ignore[misc]  # pglast's visitors are untyped
    """Every column reference made to ``replacement``; ``other`` once one names anything but
    ``column``, or the WHERE holds a subquery (whose references are its own) or something
    that can be true of NULL (IS NULL, IS DISTINCT FROM, COALESCE, CASE, a function call):
    a referencing row whose column is NULL references nothing, so the condition moved onto
    it must be false there, as comparisons and IN are."""

    def __init__(self, column: str, replacement: ast.ColumnRef) -> None:
        self.column = column
        self.replacement = replacement
        self.other = False

    def _other(self, ancestors: object, node: object) -> None:
        self.other = True

    visit_SubLink = _other
    visit_NullTest = _other
    visit_BooleanTest = _other
    visit_CoalesceExpr = _other
    visit_CaseExpr = _other
    visit_MinMaxExpr = _other
    visit_FuncCall = _other

    def visit_A_Expr(self, ancestors: object, node: ast.A_Expr) -> None:
        if node.kind in _NULL_AWARE:
            self.other = True

    def visit_ColumnRef(self, ancestors: object, node: ast.ColumnRef) -> ast.ColumnRef:
        last = node.fields[-1] if node.fields else None
        if not isinstance(last, ast.String) or last.sval != self.column:
            self.other = True
        return self.replacement


@functools.lru_cache(maxsize=256)
def where_onto(sql: str, column: str, alias: str, onto: str) -> str | None:
    """The WHERE of the DELETE or UPDATE ``sql`` (``alone``) with each reference to
    ``column`` (its only column) made a reference to ``alias.onto``; None when it reads
    another column, holds a subquery, or ``sql`` has no such WHERE."""
    scope = write_scope(sql)
    if scope is None or not scope.alone or scope.where is None:
        return None
    st = _the_write(sql)
    assert st is not None and st.whereClause is not None
    visitor = _OntoColumn(
        column, ast.ColumnRef(fields=(ast.String(sval=alias), ast.String(sval=onto)))
    )
    where = visitor(st.whereClause)  # the root itself is replaced in what this returns
    if visitor.other:
        return None
    try:
        return str(RawStream()(where))
    except Exception:  # as in write_scope
        return None
