"""What a DELETE or UPDATE writes, as parts of a query (pgwarden.sql.writes): its scope, and
its WHERE moved onto a referencing column only where that means the same rows."""

from __future__ import annotations

import pytest

from pgwarden.sql.writes import WriteScope, merge_actions, where_onto, write_scope


@pytest.mark.parametrize(
    ("sql", "scope"),
    [
        ("DELETE FROM t", WriteScope(False, None, None, None, alone=True)),
        ("delete from only s.t x where x.a = $1", WriteScope(True, "x", "x.a = $1", None, True)),
        (
            'DELETE FROM "T" AS "Odd" WHERE a IN (1, 2)',
            WriteScope(False, "Odd", "a IN (1, 2)", None, True),
        ),
        ("DELETE FROM t WHERE a = 1 RETURNING *", WriteScope(False, None, "a = 1", None, True)),
        (
            "UPDATE ONLY t AS x SET a = 1, (b, c) = (2, 3), d[1] = 4, e.f = 5 WHERE x.a = 2",
            WriteScope(True, "x", "x.a = 2", frozenset("abcde"), True),
        ),
        ("UPDATE t SET a = a", WriteScope(False, None, None, frozenset("a"), True)),
        # what a query of the table alone cannot reproduce: the columns an UPDATE sets only
        ("DELETE FROM t USING u WHERE t.a = u.a", WriteScope(False, None, None, None, False)),
        (
            "WITH x AS (SELECT 1) DELETE FROM t WHERE a IN (SELECT * FROM x)",
            WriteScope(False, None, None, None, False),
        ),
        ("DELETE FROM t WHERE CURRENT OF c", WriteScope(False, None, None, None, False)),
        (
            "UPDATE t SET a = u.b FROM u WHERE t.id = u.id",
            WriteScope(False, None, None, frozenset("a"), False),
        ),
        (
            "UPDATE t SET b = 1 WHERE CURRENT OF c",
            WriteScope(False, None, None, frozenset("b"), False),
        ),
        # the write in a statement's only WITH query: no other WITH query's name in it
        (
            "WITH d AS (DELETE FROM t WHERE abs(a) > 0 RETURNING 1) SELECT count(*) FROM d",
            WriteScope(False, None, "abs(a) > 0", None, True),
        ),
        (
            "WITH d AS (UPDATE ONLY t x SET a = 1 WHERE x.a = 2 RETURNING *) INSERT INTO u "
            "SELECT * FROM d",
            WriteScope(True, "x", "x.a = 2", frozenset("a"), True),
        ),
    ],
)
def test_the_scope_of_a_write(sql: str, scope: WriteScope) -> None:
    found = write_scope(sql)
    assert found is not None
    assert (found.only, found.alias, found.where, found.sets, found.alone) == (
        scope.only,
        scope.alias,
        scope.where,
        scope.sets,
        scope.alone,
    )


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM t WHERE a = 1; DELETE FROM t WHERE a = 2",
        "INSERT INTO t VALUES (1)",
        "MERGE INTO t USING u ON t.a = u.a WHEN MATCHED THEN DELETE",
        "SELECT 1",
        "DELETE FROM",
        "WITH x AS (SELECT 1), d AS (DELETE FROM t WHERE a IN (SELECT * FROM x)) SELECT 1",
        "WITH d AS (SELECT 1) SELECT * FROM d",
        "WITH d AS (DELETE FROM t RETURNING 1), e AS (DELETE FROM u RETURNING 1) SELECT 1",
    ],
)
def test_what_is_not_one_delete_or_update_has_no_scope(sql: str) -> None:
    assert write_scope(sql) is None


@pytest.mark.parametrize(
    ("sql", "onto"),
    [
        ("DELETE FROM t WHERE id = 7", "r.cid = 7"),
        ("DELETE FROM t x WHERE x.id IN (7, 8) OR id < $1", "r.cid IN (7, 8) OR r.cid < $1"),
        ("DELETE FROM s.t WHERE s.t.id BETWEEN 1 AND 3", "r.cid BETWEEN 1 AND 3"),
        ("DELETE FROM t WHERE NOT id <> 7", "NOT r.cid <> 7"),
        ("DELETE FROM t WHERE id = ANY ($1)", "r.cid = ANY($1)"),
        ("UPDATE t SET id = id + 100, v = 1 WHERE id <= 7", "r.cid <= 7"),
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
        "UPDATE t SET id = 8 FROM u WHERE t.id = 7",
    ],
)
def test_other_conditions_stay_where_they_are(sql: str) -> None:
    assert where_onto(sql, "id", "r", "cid") is None


ESTIMATED = [  # conditions on bare columns: the planner reads the columns' statistics
    "id = 7",
    "5 < id",
    "id IN (1, 2) OR name LIKE 'a%'",
    "created < now() - interval '1 day' AND NOT done",
    "id BETWEEN $1 AND $2",
    "id = ANY($1)",
    "id IS NULL",
    "flag",
    "flag IS NOT TRUE",
    "true",
    "1 = 0",
    "id > 0 AND 1 = 1",
    "NOT (2 < 1) OR id = $1",
]
GUESSED = [  # a column inside an expression, or a subquery: a fixed guess
    "abs(id) > 0",
    "id % 1 = 0",
    "id + 0 > 0",
    "coalesce(id, 0) > 0",
    "id::text = '5'",
    "lower(email) = 'x'",
    "id = other_id",
    "id IN (SELECT id FROM u)",
    "EXISTS (SELECT 1)",
    "(id = 1) = true",
    "CASE WHEN id > 0 THEN true END",
    "id = 7 AND abs(v) > 0",
]


@pytest.mark.parametrize(
    ("where", "guessed"), [(w, False) for w in ESTIMATED] + [(w, True) for w in GUESSED]
)
def test_which_conditions_the_planner_guesses_at(where: str, guessed: bool) -> None:
    for sql in (f"DELETE FROM t WHERE {where}", f"UPDATE t SET v = 1 WHERE {where}"):
        scope = write_scope(sql)
        assert scope is not None and scope.guessed is guessed, sql


@pytest.mark.parametrize(
    ("where", "runnable"),
    [
        ("abs(id) > 0 AND lower(name) = 'x'", True),
        ("pg_catalog.length(name) > 3", True),
        ("now() > created", True),
        ("pg_sleep(1) IS NULL", False),
        ("pg_catalog.pg_sleep_for('1 s') IS NULL", False),
        ("pg_advisory_lock(1) IS NULL", False),
        ("pg_try_advisory_xact_lock(1)", False),
        ("set_config('search_path', 'x', false) IS NULL", False),
        ("pg_notify('c', 'x') IS NULL", False),
        ("pg_logical_emit_message(true, 'p', 'x') IS NULL", False),
        ("pg_terminate_backend(1)", False),  # dangerous
        ("my_function(id)", False),  # the target's own: out of sight
        ("public.lower(name) = 'x'", False),
    ],
)
def test_only_functions_that_act_on_nothing_else_may_run_to_count(
    where: str, runnable: bool
) -> None:
    scope = write_scope(f"DELETE FROM t WHERE {where}")
    assert scope is not None and scope.runnable is runnable


@pytest.mark.parametrize(
    ("sql", "actions"),
    [
        (
            "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED AND u.x THEN DELETE "
            "WHEN MATCHED THEN UPDATE SET a = 1, b = 2 WHEN NOT MATCHED THEN INSERT VALUES (1)",
            (True, frozenset("ab")),
        ),
        ("MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DO NOTHING", (False, frozenset())),
        (
            "MERGE INTO t USING u ON true WHEN NOT MATCHED THEN INSERT VALUES (1)",
            (False, frozenset()),
        ),
        ("DELETE FROM t", None),
        ("MERGE INTO", None),
    ],
)
def test_what_a_merge_deletes_and_sets(
    sql: str, actions: tuple[bool, frozenset[str]] | None
) -> None:
    assert merge_actions(sql) == actions


@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        ("DELETE FROM t", '"s"."t"'),
        ("DELETE FROM ONLY t AS x WHERE x.a = $1", 'ONLY "s"."t" AS "x" WHERE x.a = $1'),
        ('UPDATE t "Odd" SET a = 1 WHERE "Odd".a > 2', '"s"."t" AS "Odd" WHERE "Odd".a > 2'),
    ],
)
def test_the_rows_written_as_a_from(sql: str, rows: str) -> None:
    scope = write_scope(sql)
    assert scope is not None and scope.rows('"s"."t"') == rows
