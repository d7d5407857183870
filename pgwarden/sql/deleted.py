"""The rows a DELETE deletes, as the parts of a query that selects them.

The estimator asks the planner how many rows of another table reference the deleted ones
(foreign keys with ON DELETE CASCADE / SET NULL / SET DEFAULT). When the DELETE's WHERE reads
only the referenced column (``id = 7``, ``id IN (7, 8)``, ``id < $1``), the same condition is
put on the referencing column (``customer_id IN (7, 8)``), whose statistics the planner then
reads for those values: deleting the one customer who holds most of the orders counts as
such, not as an average customer. Otherwise the question is a semi-join on the DELETE's own
table and WHERE, estimated as the planner estimates joins.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pglast
from pglast import ast, enums
from pglast.stream import RawStream
from pglast.visitors import Visitor


@dataclass(frozen=True, slots=True)
class DeleteScope:
    """``DELETE FROM [ONLY] table [AS alias] [WHERE where]``: ``only``, ``alias`` (None
    when the table is not renamed) and ``where`` as SQL (None: every row)."""

    only: bool
    alias: str | None
    where: str | None


@functools.lru_cache(maxsize=256)
def delete_scope(sql: str) -> DeleteScope | None:
    """The scope of ``sql`` when it is one plain DELETE (no WITH, USING or WHERE CURRENT
    OF, which a query of the table alone cannot reproduce); None otherwise, and when it does
    not parse."""
    try:
        statements = pglast.parse_sql(sql)
    except pglast.parser.ParseError:
        return None
    if len(statements) != 1:
        return None
    st = statements[0].stmt
    if not isinstance(st, ast.DeleteStmt) or st.withClause or st.usingClause:
        return None
    where = st.whereClause
    if isinstance(where, ast.CurrentOfExpr):
        return None
    relation = st.relation
    if relation is None:
        return None
    alias = relation.alias.aliasname if relation.alias is not None else None
    try:
        text = RawStream()(where) if where is not None else None
    except Exception:  # a node pglast cannot print back: the caller estimates without it
        return None
    return DeleteScope(only=not relation.inh, alias=alias, where=text)


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
    """The WHERE of the plain DELETE ``sql`` with each reference to ``column`` (its only
    column) made a reference to ``alias.onto``; None when it reads another column, holds a
    subquery, or ``sql`` is no plain DELETE with a WHERE."""
    scope = delete_scope(sql)
    if scope is None or scope.where is None:
        return None
    st = pglast.parse_sql(sql)[0].stmt
    assert isinstance(st, ast.DeleteStmt) and st.whereClause is not None
    visitor = _OntoColumn(
        column, ast.ColumnRef(fields=(ast.String(sval=alias), ast.String(sval=onto)))
    )
    where = visitor(st.whereClause)  # the root itself is replaced in what this returns
    if visitor.other:
        return None
    try:
        return str(RawStream()(where))
    except Exception:  # as in delete_scope
        return None
