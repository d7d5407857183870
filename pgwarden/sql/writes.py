"""The rows a DELETE or UPDATE writes, as the parts of a query that selects them.

The estimator asks the planner how many rows of another table reference the written ones
(foreign keys with ON DELETE / ON UPDATE CASCADE, SET NULL or SET DEFAULT). When the
statement's WHERE reads only the referenced column (``id = 7``, ``id IN (7, 8)``, ``id <
$1``), the same condition is put on the referencing column (``customer_id IN (7, 8)``), whose
statistics the planner then reads for those values: deleting the one customer who holds most
of the orders counts as such, not as an average customer. Otherwise the question is a
semi-join on the statement's own table and WHERE, estimated as the planner estimates joins.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pglast
from pglast import ast, enums
from pglast.stream import RawStream
from pglast.visitors import Visitor


@dataclass(frozen=True, slots=True)
class WriteScope:
    """``DELETE FROM`` or ``UPDATE [ONLY] table [AS alias] [SET ...] [WHERE where]``.

    ``sets``: the columns an UPDATE sets (None: a DELETE). ``alone``: the rows written are
    those a query of the table alone selects with ``only``, ``alias`` (None when the table
    is not renamed) and ``where`` (SQL; None: every row); False with WITH, USING or FROM,
    WHERE CURRENT OF, or a WHERE that cannot be printed back.
    """

    only: bool
    alias: str | None
    where: str | None
    sets: frozenset[str] | None
    alone: bool


@functools.lru_cache(maxsize=256)
def write_scope(sql: str) -> WriteScope | None:
    """The scope of ``sql`` when it is one DELETE or UPDATE; None otherwise, and when it
    does not parse."""
    try:
        statements = pglast.parse_sql(sql)
    except pglast.parser.ParseError:
        return None
    if len(statements) != 1:
        return None
    st = statements[0].stmt
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
    return WriteScope(not relation.inh, alias, text, sets, alone)


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
    st = pglast.parse_sql(sql)[0].stmt
    assert isinstance(st, ast.DeleteStmt | ast.UpdateStmt) and st.whereClause is not None
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
