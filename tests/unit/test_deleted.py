"""What a DELETE deletes, as parts of a query (pgwarden.sql.deleted): the scope of a plain
DELETE, and its WHERE moved onto a referencing column only where that means the same rows."""

from __future__ import annotations

import pytest

from pgwarden.sql.deleted import DeleteScope, delete_scope, where_onto


@pytest.mark.parametrize(
    ("sql", "scope"),
    [
        ("DELETE FROM t", DeleteScope(only=False, alias=None, where=None)),
        ("delete from only s.t x where x.a = $1", DeleteScope(True, "x", "x.a = $1")),
        ('DELETE FROM "T" AS "Odd" WHERE a IN (1, 2)', DeleteScope(False, "Odd", "a IN (1, 2)")),
        ("DELETE FROM t WHERE a = 1 RETURNING *", DeleteScope(False, None, "a = 1")),
    ],
)
def test_the_scope_of_a_plain_delete(sql: str, scope: DeleteScope) -> None:
    assert delete_scope(sql) == scope


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM t USING u WHERE t.a = u.a",
        "WITH x AS (SELECT 1) DELETE FROM t WHERE a IN (SELECT * FROM x)",
        "DELETE FROM t WHERE CURRENT OF c",
        "DELETE FROM t WHERE a = 1; DELETE FROM t WHERE a = 2",
        "UPDATE t SET a = 1",
        "SELECT 1",
        "DELETE FROM",
    ],
)
def test_what_a_query_of_the_table_cannot_reproduce_has_no_scope(sql: str) -> None:
    assert delete_scope(sql) is None


@pytest.mark.parametrize(
    ("sql", "onto"),
    [
        ("DELETE FROM t WHERE id = 7", "r.cid = 7"),
        ("DELETE FROM t x WHERE x.id IN (7, 8) OR id < $1", "r.cid IN (7, 8) OR r.cid < $1"),
        ("DELETE FROM s.t WHERE s.t.id BETWEEN 1 AND 3", "r.cid BETWEEN 1 AND 3"),
        ("DELETE FROM t WHERE NOT id <> 7", "NOT r.cid <> 7"),
        ("DELETE FROM t WHERE id = ANY ($1)", "r.cid = ANY($1)"),
    ],
)
def test_a_where_on_the_referenced_column_moves_onto_the_referencing_one(
    sql: str, onto: str
) -> None:
    assert where_onto(sql, "id", "r", "cid") == onto


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM t",  # every row: no condition to move
        "DELETE FROM t WHERE id = 7 AND name = 'x'",  # another column
        "DELETE FROM t WHERE flag",
        "DELETE FROM t WHERE id IN (SELECT id FROM u)",  # a subquery's names are its own
        "DELETE FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = 1)",
        # true of NULL, which a referencing row's NULL column is not
        "DELETE FROM t WHERE id IS NULL",
        "DELETE FROM t WHERE id IS DISTINCT FROM 7",
        "DELETE FROM t WHERE id IS NOT DISTINCT FROM NULL",
        "DELETE FROM t WHERE coalesce(id, 7) = 7",
        "DELETE FROM t WHERE (id = 7) IS NOT FALSE",
        "DELETE FROM t WHERE CASE WHEN id = 1 THEN false ELSE true END",
        "DELETE FROM t WHERE greatest(id, 7) = 7",
        "DELETE FROM t WHERE nullif(id, 3) IS NULL",
        "DELETE FROM t WHERE abs(id) = 7",
        "DELETE FROM t USING u WHERE t.id = 7",
    ],
)
def test_other_conditions_stay_where_they_are(sql: str) -> None:
    assert where_onto(sql, "id", "r", "cid") is None
