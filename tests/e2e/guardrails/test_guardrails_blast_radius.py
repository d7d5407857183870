"""Blast radius through the gateway: an UPDATE/DELETE/MERGE that passes the WHERE checks is held
when PostgreSQL's estimate (EXPLAIN on the gateway's side connection) says it touches more than
1,000 rows or more than half of a table. The tables are ANALYZEd (the environment does it after
every load and restore), so the estimates are the planner's real ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import psycopg
import pytest

from tests.e2e.guardrails.guardrails_support import (
    DBNAME,
    PROTOCOLS,
    SUBJECT,
    TARGET,
    GuardEnv,
    Outcome,
    describe_difference,
    run_extended_unnamed,
    run_simple,
    run_sql_prepare,
    without_sequences,
)
from tests.support import wire


def assert_unchanged(guard: GuardEnv, before: dict[str, Any], what: str, **kw: Any) -> None:
    after = guard.fingerprint(**kw)
    if after != before:
        pytest.fail(
            f"{what}\nTHE DATABASE CHANGED:\n{describe_difference(before, after)}", pytrace=False
        )


def order_ids(guard: GuardEnv) -> set[int]:
    return {r[0] for r in guard.admin.execute("SELECT id FROM orders").fetchall()}


HELD_PROTOCOLS = [
    "simple",
    "psql",
    "multi",
    "gexec",
    "asyncpg_execute",
    "extended_unnamed",
    "extended_named",
    "asyncpg_fetch",
    "asyncpg_prepare",
    "pipeline",
]


@pytest.mark.parametrize("protocol", HELD_PROTOCOLS)
@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM orders WHERE id > 0",
        "DELETE FROM orders WHERE id <= 200",
        "UPDATE orders SET amount = 0 WHERE amount > 0",
        "UPDATE products SET price = 0 WHERE id <= 15",
        "WITH d AS (DELETE FROM orders WHERE id > 0 RETURNING id) SELECT count(*) FROM d",
        "EXPLAIN ANALYZE DELETE FROM orders WHERE id > 0",
        "MERGE INTO orders o USING (SELECT id FROM orders WHERE id > 10) s ON o.id = s.id "
        "WHEN MATCHED THEN DELETE",
        "INSERT INTO orders SELECT * FROM public.orders ON CONFLICT (id) DO UPDATE SET amount = 0",
    ],
)
def test_writes_to_most_of_a_table_are_held(guard: GuardEnv, protocol: str, sql: str) -> None:
    proto = PROTOCOLS[protocol]
    before = (
        guard.baseline if not proto.sequences_may_advance else without_sequences(guard.baseline)
    )
    outcome = proto.run(guard, sql)
    assert_unchanged(
        guard, before, f"{sql} via {protocol}: {outcome}", sequences=not proto.sequences_may_advance
    )
    assert outcome.refused, f"{sql} via {protocol}: {outcome}"


TARGETED_PROTOCOLS = [
    "simple",
    "psql",
    "gexec",
    "asyncpg_execute",
    "extended_unnamed",
    "extended_named",
    "asyncpg_fetch",
    "asyncpg_prepare",
    "sql_prepare",
]


@pytest.mark.parametrize("protocol", TARGETED_PROTOCOLS)
def test_targeted_delete_passes_and_deletes_exactly_its_row(guard: GuardEnv, protocol: str) -> None:
    ids = order_ids(guard)
    counts = guard.counts()
    outcome = PROTOCOLS[protocol].run(guard, "DELETE FROM orders WHERE id = 5")
    assert outcome.ok, outcome
    assert order_ids(guard) == ids - {5}
    assert guard.counts() == {**counts, "orders": counts["orders"] - 1}


@pytest.mark.parametrize(
    ("sql", "deleted"),
    [
        ("DELETE FROM orders WHERE id <= 100", 100),  # a third of the table
        ("DELETE FROM orders WHERE customer_id = 3", 6),
        ("DELETE FROM orders WHERE id IN (SELECT id FROM orders WHERE status = 'paid' "
         "ORDER BY id LIMIT 10)", 10),
    ],
)  # fmt: skip
def test_writes_to_less_than_half_a_table_pass(guard: GuardEnv, sql: str, deleted: int) -> None:
    counts = guard.counts()
    outcome = run_simple(guard, sql)
    assert outcome.ok, outcome
    assert guard.counts()["orders"] == counts["orders"] - deleted


def test_bind_parameters_are_part_of_the_estimate(guard: GuardEnv, before: dict[str, Any]) -> None:
    with guard.connect() as conn:
        for params in ([0], [-1000]):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="pgwarden:"):
                conn.execute("DELETE FROM orders WHERE id > %s", params)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="pgwarden:"):
            conn.execute("UPDATE orders SET amount = 0 WHERE id = ANY(%s)", [list(range(1, 301))])
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="pgwarden:"):
            conn.execute("DELETE FROM orders WHERE id > %s", [0], prepare=True)  # named statement
    assert_unchanged(guard, before, "parameterised writes to every row")
    with guard.connect() as conn:
        assert conn.execute("DELETE FROM orders WHERE id > %s", [299]).rowcount == 1
        assert (
            conn.execute("UPDATE orders SET amount = 1 WHERE id = ANY(%s)", [[1, 2, 3]]).rowcount
            == 3
        )


def test_asyncpg_bind_parameters_are_part_of_the_estimate(
    guard: GuardEnv, before: dict[str, Any]
) -> None:
    async def main() -> list[str]:
        conn = await asyncpg.connect(**guard.asyncpg_kwargs())
        out = []
        try:
            for call in (
                lambda: conn.execute("DELETE FROM orders WHERE id > $1", 0),
                lambda: conn.fetch("DELETE FROM orders WHERE id > $1 RETURNING id", 0),
                lambda: conn.executemany("DELETE FROM orders WHERE id > $1", [(0,), (1,)]),
            ):
                try:
                    await call()
                    out.append("ran")
                except asyncpg.PostgresError as exc:
                    out.append(f"{exc.sqlstate}")
        finally:
            await conn.close()
        return out

    assert asyncio.run(main()) == ["42501", "42501", "42501"]
    assert_unchanged(guard, before, "asyncpg parameterised writes to every row")


# ---------------------------------------------------------------------------------------------
# holes: estimates the planner gets wrong, objects the estimator cannot see, and a dead
# estimator connection (replaced and asked again)

# A WHERE the planner has no statistics for (a column inside an expression) gets a fixed
# guess from it (a third for an inequality, 0.5 % for an equality): the gateway counts those
# rows instead (a read-only transaction, rolled back, up to 10,001 rows).
GUESSED_WHERES = [
    "DELETE FROM orders WHERE abs(id) > 0",
    "DELETE FROM orders WHERE id % 1 = 0",
    "DELETE FROM orders WHERE id + 0 > 0",
    "UPDATE orders SET amount = 0 WHERE coalesce(id, 0) > 0",
    "DELETE FROM orders WHERE id::text <> 'x'",
    "DELETE FROM orders o WHERE lower(o.status) <> 'no such status'",
    "DELETE FROM orders WHERE id IN (SELECT id FROM orders WHERE amount >= 0)",
    "WITH d AS (DELETE FROM orders WHERE abs(id) > 0 RETURNING 1) SELECT count(*) FROM d",
]


@pytest.mark.parametrize(
    "run",
    [run_simple, run_extended_unnamed, run_sql_prepare],
    ids=["simple", "extended", "sql-prepare"],
)
@pytest.mark.parametrize("sql", GUESSED_WHERES)
def test_a_where_the_planner_guesses_at_is_counted(
    guard: GuardEnv, before: dict[str, Any], sql: str, run: Callable[[GuardEnv, str], Outcome]
) -> None:
    outcome = run(guard, sql)
    assert_unchanged(guard, before, f"{sql}: {outcome}")


def test_a_guessed_where_with_parameters_is_counted_with_them(
    guard: GuardEnv, before: dict[str, Any]
) -> None:
    with guard.connect() as conn:
        for sql in (
            "DELETE FROM orders WHERE abs(id) > %s",
            "DELETE FROM orders WHERE id + %s > 0",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="pgwarden:"):
                conn.execute(sql, [0])
    assert_unchanged(guard, before, "guessed WHEREs with parameters")
    with guard.connect() as conn:  # counted: one row, allowed
        assert conn.execute("DELETE FROM orders WHERE abs(id) = %s", [299]).rowcount == 1
        assert conn.execute("UPDATE orders SET amount = 1 WHERE id + 0 < 3").rowcount == 2


ESTIMATE_IS_A_GUESS_IN_WITH = (
    "BUG (blast radius): a write among several WITH queries whose WHERE the planner has no "
    "statistics for is estimated with the planner's fixed guess (a third of the table for an "
    "inequality): its rows are counted only for a DELETE or UPDATE that is the statement itself "
    "or its only WITH query (another one's name could be a table's in a count without it)"
)


@pytest.mark.xfail(strict=True, reason=ESTIMATE_IS_A_GUESS_IN_WITH)
def test_a_guessed_where_among_with_queries(guard: GuardEnv, before: dict[str, Any]) -> None:
    sql = (
        "WITH n AS (SELECT 0 AS z), d AS (DELETE FROM orders WHERE abs(id) > 0 RETURNING 1) "
        "SELECT count(*) FROM d, n"
    )
    outcome = run_simple(guard, sql)
    assert_unchanged(guard, before, f"{sql}: {outcome}")


ESTIMATOR_BLIND = (
    "BUG (blast radius): the estimator's side connection cannot see the session's temporary "
    "objects (or sees other objects under their names); EXPLAIN fails or estimates another "
    "table, the estimate is missing or wrong, and the write to every row is allowed"
)


@pytest.mark.parametrize(
    ("setup", "sql"),
    [
        ("CREATE TEMP VIEW v AS SELECT * FROM orders", "DELETE FROM v WHERE id > 0"),
        (
            "CREATE TEMP VIEW products AS SELECT * FROM public.orders",
            "DELETE FROM products WHERE id > 20",
        ),
        (
            "CREATE TEMP TABLE ids AS SELECT id FROM orders",
            "DELETE FROM orders WHERE id IN (SELECT id FROM ids)",
        ),
        (
            "CREATE TEMP TABLE src AS SELECT * FROM orders",
            "MERGE INTO orders o USING src s ON o.id = s.id WHEN MATCHED THEN DELETE",
        ),
        (
            "CREATE TEMP TABLE src AS SELECT * FROM orders",
            "INSERT INTO orders SELECT * FROM src ON CONFLICT (id) DO UPDATE SET amount = 0",
        ),
    ],
)
def test_writes_through_temporary_objects(
    guard: GuardEnv, before: dict[str, Any], setup: str, sql: str
) -> None:
    with guard.connect() as conn:
        conn.execute(setup)  # scratch objects are allowed by the default policy
        try:
            conn.execute(sql)
        except psycopg.Error:
            pass
    assert_unchanged(guard, before, f"{setup}; {sql}")


PREPARED_BLIND = (
    "BUG (blast radius): `PREPARE p AS <write>` gets no estimate, and `EXECUTE p(...)` (or "
    "EXPLAIN ANALYZE EXECUTE p) is estimated on the side connection, where p does not exist: "
    "the estimate is missing and the write to every row is allowed"
)


@pytest.mark.parametrize(
    "queries",
    [
        ["PREPARE d(int) AS DELETE FROM orders WHERE id > $1", "EXECUTE d(0)"],
        ["PREPARE d AS UPDATE orders SET amount = 0 WHERE amount > 0", "EXECUTE d"],
        ["PREPARE d(int) AS DELETE FROM orders WHERE id > $1", "EXPLAIN ANALYZE EXECUTE d(0)"],
        ["PREPARE d(int) AS DELETE FROM orders WHERE id > $1; EXECUTE d(0)"],
    ],
    ids=["prepare-execute", "no-params", "explain-analyze-execute", "one-query"],
)
def test_writes_through_sql_prepared_statements(
    guard: GuardEnv, before: dict[str, Any], queries: list[str]
) -> None:
    with guard.connect() as conn:
        for q in queries:
            try:
                conn.execute(q)
            except psycopg.Error:
                pass
    assert_unchanged(guard, before, "; ".join(queries))


def test_sql_execute_of_a_protocol_prepared_write(guard: GuardEnv, before: dict[str, Any]) -> None:
    """Protocol-level and SQL-level statement names share one namespace."""
    with wire.RawConn.connect(guard.gw.host, guard.gw.port) as c:
        c.login(SUBJECT, TARGET, guard.token())
        c.send(wire.parse("p", "DELETE FROM orders WHERE id > $1", [23]), wire.sync())
        c.until_ready()
        c.simple("EXECUTE p(0)")
        c.terminate()
    assert_unchanged(guard, before, "Parse p = DELETE ... WHERE id > $1; EXECUTE p(0)")


def test_a_dead_estimator_connection_is_replaced(guard: GuardEnv) -> None:
    """A side connection killed while idle is replaced and the estimate asked again. Before,
    the estimate was lost once (the write was held by rule estimate-unavailable), and so was
    a plain read that needed a catalog look-up."""
    assert run_simple(guard, "DELETE FROM orders WHERE id = -1").ok  # opens the side connection
    killed = guard.admin.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = 'pgwarden-estimator' AND datname = %s",
        [DBNAME],
    ).fetchone()[0]
    assert killed >= 1
    deadline = time.monotonic() + 5
    while (
        guard.admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgwarden-estimator' "
            "AND datname = %s",
            [DBNAME],
        ).fetchone()[0]
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    before = guard.fingerprint()
    outcome: Outcome = run_simple(guard, "DELETE FROM orders WHERE id > 0")
    assert outcome.refused, outcome
    assert "review-most-of-a-table" in outcome.message, outcome  # the estimate was had
    assert_unchanged(guard, before, f"DELETE FROM orders WHERE id > 0 after the kill: {outcome}")


def test_the_estimator_recovers_after_its_connection_died(guard: GuardEnv) -> None:
    """Whatever happened to the side connection, statements after it are judged again."""
    guard.warm_estimator()
    before = guard.fingerprint()
    outcome = run_simple(guard, "DELETE FROM orders WHERE id > 0")
    assert outcome.refused, outcome
    assert_unchanged(guard, before, "DELETE FROM orders WHERE id > 0")


def test_the_gateway_is_alive_after_the_blast_radius_tests(guard_env: GuardEnv) -> None:
    guard_env.assert_gateway_alive()


def test_concurrent_estimates_of_prepared_writes_do_not_collide(
    guard: GuardEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PREPARE pgwarden_estimate .. DEALLOCATE on a shared side connection: two sessions'
    estimates at once once made the second PREPARE fail (name taken), leaving it without an
    estimate. One pooled connection forces them onto the same connection."""
    from pgwarden.guard import estimator as estimator_mod  # noqa: PLC0415

    monkeypatch.setattr(estimator_mod, "POOL_SIZE", 1)
    assert guard.gw.server is not None
    est = estimator_mod.Estimator(guard.gw.server.config.targets)

    async def both() -> list[Any]:
        try:
            return await asyncio.gather(
                *(
                    est.estimate_prepared(
                        TARGET, "DELETE FROM orders WHERE id > $1", f"EXECUTE p{i}(0)", f"p{i}"
                    )
                    for i in range(4)
                )
            )
        finally:
            await est.close()

    estimates = guard.gw.call(both())
    assert all(e is not None and e.rows > 0 for e in estimates), estimates
