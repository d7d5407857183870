"""Adversarial checks beyond the corpus: attempts to get a destructive effect past the gateway
with protocol tricks, session settings, code, transactions and psql. Every test is judged by
the data (the fingerprint of guardrails_support), and the gateway must stay alive.

Tests marked ``xfail(strict=True, reason="BUG: ...")`` reproduce holes that are reported: they
destroy data through the gateway today. A fix turns them into XPASS, which fails the run until
the mark is removed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from pgwarden.guard import catalog as catalog_mod
from tests.e2e.guardrails.guardrails_support import (
    OWNER,
    SUBJECT,
    TARGET,
    GuardEnv,
    Outcome,
    describe_difference,
    run_extended_unnamed,
    run_gexec,
    run_psql,
    run_psql_raw,
    run_simple,
)
from tests.support import wire

# ---------------------------------------------------------------------------------------------
# helpers


def assert_held_both_ways(guard: GuardEnv, sql: str) -> None:
    """``sql``, sent in simple and in extended protocol, is refused as opaque code (held:
    nobody approves here) and the data is as it was."""
    before = guard.fingerprint()
    for run in (run_simple, run_extended_unnamed):
        outcome = run(guard, sql)
        assert_unchanged(guard, before, f"{sql}: {outcome}")
        assert outcome.refused, outcome
        assert "opaque" in outcome.message or "held" in outcome.message, outcome


@pytest.fixture
def raw(guard: GuardEnv) -> Iterator[Callable[[], wire.RawConn]]:
    """``raw()`` -> a logged-in raw protocol connection to the gateway (closed afterwards)."""
    opened: list[wire.RawConn] = []

    def connect() -> wire.RawConn:
        c = wire.RawConn.connect(guard.gw.host, guard.gw.port, timeout=15)
        c.login(SUBJECT, TARGET, guard.token())
        opened.append(c)
        return c

    yield connect
    for c in opened:
        c.terminate()


def assert_unchanged(guard: GuardEnv, before: dict[str, Any], what: str, **kw: Any) -> None:
    after = guard.fingerprint(**kw)
    if after != before:
        pytest.fail(
            f"{what}\nTHE DATABASE CHANGED:\n{describe_difference(before, after)}", pytrace=False
        )


def refused(msgs: list[wire.Msg]) -> bool:
    errs = wire.errors(msgs)
    return (
        bool(errs)
        and errs[0].sqlstate in ("42501", "42601")
        and (errs[0].message.startswith("pgwarden:"))
    )


def status(msgs: list[wire.Msg]) -> bytes:
    assert msgs and msgs[-1].type == b"Z", msgs
    return msgs[-1].status


def one(c: wire.RawConn, *chunks: bytes) -> list[wire.Msg]:
    """Send messages ending in Sync; the replies up to ReadyForQuery."""
    c.send(*chunks)
    return c.until_ready()


INT4 = 23
ALL_BY_PARAM = "DELETE FROM orders WHERE id > $1"  # with $1 = 0: every row
TRUNCATE_IN_DO = "DO $$ BEGIN EXECUTE format('TRUNCATE %I', 'orders'); END $$"  # held (review)


# ---------------------------------------------------------------------------------------------
# extended protocol: Parse / Bind / Execute tricks


def test_denied_parse_then_bind_and_execute_in_later_syncs(
    guard: GuardEnv, before: dict[str, Any], raw: Callable[[], wire.RawConn]
) -> None:
    c = raw()
    r1 = one(c, wire.parse("s", "DELETE FROM orders"), wire.sync())
    r2 = one(c, wire.bind("", "s"), wire.sync())
    r3 = one(c, wire.execute(""), wire.sync())
    assert refused(r1), r1
    assert wire.errors(r2) and wire.errors(r3), (r2, r3)
    assert_unchanged(guard, before, "Parse / Bind / Execute of DELETE FROM orders, each synced")


def test_constants_in_place_of_parameters_are_judged_on_their_own(
    guard: GuardEnv, before: dict[str, Any], raw: Callable[[], wire.RawConn]
) -> None:
    # The classifier's caches key statements by their text with constants blanked: with
    # parameters the WHERE says nothing (present), with these constants it is always true.
    # A cache that took one for the other would let the second delete every row.
    c = raw()
    one(c, wire.parse("", "DELETE FROM orders WHERE id = $1 OR $2", [INT4, 16]), wire.sync())
    one(c, wire.parse("", "delete from orders where id = $1 or $2", [INT4, 16]), wire.sync())
    for sql in (
        "DELETE FROM orders WHERE id = 1 OR true",
        "delete from orders where id = 2 or true",
    ):
        c.send(wire.query(sql))
        r = c.until_ready()
        assert refused(r), (sql, r)
        # refused for what it is (its WHERE is always true), not only by the size estimate
        assert "no-unfiltered-writes" in wire.errors(r)[0].message, (sql, r)
    assert_unchanged(guard, before, "DELETE ... WHERE id = 1 OR true after its parameter form")


def test_held_statement_parsed_then_executed_later_is_judged_at_execute(
    guard: GuardEnv, before: dict[str, Any], raw: Callable[[], wire.RawConn]
) -> None:
    c = raw()
    assert status(one(c, wire.parse("s", TRUNCATE_IN_DO), wire.sync())) == b"I"
    r = one(c, wire.bind("", "s"), wire.execute(""), wire.sync())
    assert refused(r), r
    r = one(c, wire.parse("w", ALL_BY_PARAM, [INT4]), wire.sync())
    r = one(c, wire.bind("p", "w", ["0"]), wire.describe(b"P", "p"), wire.execute("p"), wire.sync())
    assert refused(r), r
    assert_unchanged(guard, before, "named statements judged at Execute")


def test_unnamed_statement_replaced_after_bind(
    guard: GuardEnv, before: dict[str, Any], raw: Callable[[], wire.RawConn]
) -> None:
    c = raw()
    r = one(
        c,
        wire.parse("", TRUNCATE_IN_DO),
        wire.bind("p", ""),
        wire.parse("", "SELECT 1"),
        wire.bind("", ""),
        wire.execute(""),
        wire.execute("p"),
        wire.sync(),
    )
    assert refused(r), r
    assert_unchanged(guard, before, "portal bound to the old unnamed statement")


def test_named_statement_closed_and_reparsed_after_bind(
    guard: GuardEnv, before: dict[str, Any], raw: Callable[[], wire.RawConn]
) -> None:
    c = raw()
    r = one(
        c,
        wire.parse("s", ALL_BY_PARAM, [INT4]),
        wire.bind("p", "s", ["0"]),
        wire.close(b"S", "s"),
        wire.parse("s", "SELECT $1::int", [INT4]),
        wire.execute("p"),
        wire.sync(),
    )
    assert refused(r), r
    assert_unchanged(guard, before, "portal outliving its closed and re-parsed statement")


def test_portal_executed_in_pieces(
    guard: GuardEnv, before: dict[str, Any], raw: Callable[[], wire.RawConn]
) -> None:
    c = raw()
    sql = "WITH d AS (DELETE FROM orders WHERE id > $1 RETURNING id) SELECT id FROM d"
    assert status(one(c, wire.query("BEGIN"))) == b"T"
    r = one(
        c,
        wire.parse("s", sql, [INT4]),
        wire.bind("p", "s", ["0"]),
        wire.execute("p", 1),
        wire.execute("p", 1),
        wire.sync(),
    )
    assert refused(r), r
    assert status(r) == b"E"
    r = one(c, wire.query("COMMIT"))
    assert [m.tag for m in r if m.type == b"C"] == ["ROLLBACK"], r
    assert_unchanged(guard, before, "portal executed row by row")


def test_protocol_bind_to_a_statement_prepared_in_sql(
    guard: GuardEnv, before: dict[str, Any], raw: Callable[[], wire.RawConn]
) -> None:
    """The relay never saw the text of a SQL-level PREPARE: Bind/Execute of it fails closed."""
    c = raw()
    c.simple("PREPARE s(int) AS UPDATE orders SET amount = 0 WHERE id > $1")
    r = one(c, wire.bind("", "s", ["0"]), wire.execute(""), wire.sync())
    assert wire.errors(r), r
    assert_unchanged(guard, before, "protocol Execute of a SQL-prepared statement")


def test_sql_execute_of_a_denied_protocol_statement(
    guard: GuardEnv, before: dict[str, Any], raw: Callable[[], wire.RawConn]
) -> None:
    c = raw()
    assert refused(one(c, wire.parse("p", "DELETE FROM orders"), wire.sync()))
    assert refused(c.simple("EXECUTE p"))
    assert refused(c.simple("EXPLAIN ANALYZE EXECUTE p"))
    assert_unchanged(guard, before, "SQL EXECUTE of a refused protocol statement")


def test_sql_execute_of_a_targeted_protocol_statement_runs(
    guard: GuardEnv, raw: Callable[[], wire.RawConn]
) -> None:
    c = raw()
    assert status(one(c, wire.parse("p", "DELETE FROM orders WHERE id = $1", [INT4]), wire.sync()))
    r = c.simple("EXECUTE p(5)")
    assert [m.tag for m in r if m.type == b"C"] == ["DELETE 1"], r
    assert guard.counts()["orders"] == 299


def test_function_call_message_is_refused(guard: GuardEnv, raw: Callable[[], wire.RawConn]) -> None:
    """The fast-path FunctionCall runs a function by OID, out of sight of SQL: lo_unlink."""
    (oid,) = guard.admin.execute("SELECT lo_from_bytea(0, 'keep me')").fetchone()
    try:
        before = guard.fingerprint()
        c = raw()
        (fn,) = guard.admin.execute("SELECT 'lo_unlink(oid)'::regprocedure::oid").fetchone()
        r = one(c, wire.function_call(int(fn), [str(oid).encode()]))
        assert refused(r), r
        assert_unchanged(guard, before, "FunctionCall lo_unlink")
    finally:
        guard.admin.execute("SELECT lo_unlink(%s)", [oid])


# --- the relay's idea of what a name means drifts from the server's --------------------------

DESYNC = (
    "BUG: the relay records a Parse's text under its statement name before the server "
    "accepts it; when the server refuses the Parse (42P05 prepared statement already exists) "
    "the relay keeps the new, harmless text while the server keeps the old statement, so "
    "Bind/Execute (or SQL EXECUTE) is judged as the harmless text and runs the old one"
)
SQL_NAME_REUSE = (
    "BUG: SQL DEALLOCATE / DISCARD ALL / PREPARE do not update the relay's protocol-level "
    "statement map: after `DEALLOCATE s; PREPARE s AS <write>`, a protocol Bind/Execute of s "
    "is judged as the statement the client once Parsed under that name"
)
PORTAL_DESYNC = (
    "BUG: the relay records a Bind's portal before the server accepts it; a Bind that fails "
    "(42P03 cursor already exists) inside a savepoint, rolled back, leaves the old portal on "
    "the server while the gateway judges Execute of it as the new statement"
)


@pytest.mark.parametrize(
    ("first", "types", "params"),
    [
        pytest.param(ALL_BY_PARAM, [INT4], ["0"], id="delete-by-param"),
        pytest.param(TRUNCATE_IN_DO, [], [], id="held-do-block"),
        pytest.param(
            "ALTER TABLE orders ALTER COLUMN amount TYPE int USING 0", [], [], id="held-alter-table"
        ),
    ],
)
def test_failed_reparse_of_a_named_statement(
    guard: GuardEnv,
    before: dict[str, Any],
    raw: Callable[[], wire.RawConn],
    first: str,
    types: list[int],
    params: list[str],
) -> None:
    c = raw()
    one(c, wire.parse("s", first, types), wire.sync())
    r = one(c, wire.parse("s", "SELECT 1" if not types else "SELECT $1::int", types), wire.sync())
    assert wire.errors(r), r  # 42P05: the server keeps the first statement
    one(c, wire.bind("", "s", params), wire.execute(""), wire.sync())
    assert_unchanged(guard, before, f"Parse s={first!r}; failed re-Parse; Bind/Execute s")


def test_failed_reparse_of_a_denied_statement_is_not_reachable(
    guard: GuardEnv, before: dict[str, Any], raw: Callable[[], wire.RawConn]
) -> None:
    """Control for the test above: a statement denied at Parse never reaches the server."""
    c = raw()
    assert refused(one(c, wire.parse("s", "DELETE FROM orders"), wire.sync()))
    one(c, wire.parse("s", "SELECT 1"), wire.sync())
    one(c, wire.bind("", "s"), wire.execute(""), wire.sync())
    assert_unchanged(guard, before, "denied Parse, then re-Parse, then Execute")


def test_sql_execute_after_a_failed_reparse(
    guard: GuardEnv, before: dict[str, Any], raw: Callable[[], wire.RawConn]
) -> None:
    c = raw()
    one(c, wire.parse("s", TRUNCATE_IN_DO), wire.sync())
    one(c, wire.parse("s", "SELECT 1"), wire.sync())
    c.simple("EXECUTE s")
    assert_unchanged(guard, before, "Parse s=<DO block>; failed re-Parse; SQL EXECUTE s")


def test_protocol_parse_colliding_with_a_sql_prepare(
    guard: GuardEnv, before: dict[str, Any], raw: Callable[[], wire.RawConn]
) -> None:
    c = raw()
    c.simple("PREPARE s(int) AS UPDATE orders SET amount = 0 WHERE id > $1")
    one(c, wire.parse("s", "SELECT $1::int", [INT4]), wire.sync())
    one(c, wire.bind("", "s", ["0"]), wire.execute(""), wire.sync())
    assert_unchanged(guard, before, "SQL PREPARE s; protocol Parse s (fails); Bind/Execute s")


@pytest.mark.parametrize("reset", ["DEALLOCATE s", "DEALLOCATE ALL", "DISCARD ALL"])
def test_sql_reset_then_prepare_under_a_protocol_name(
    guard: GuardEnv, before: dict[str, Any], raw: Callable[[], wire.RawConn], reset: str
) -> None:
    c = raw()
    one(c, wire.parse("s", "SELECT $1::int", [INT4]), wire.sync())
    c.simple(reset)
    c.simple("PREPARE s(int) AS DELETE FROM orders WHERE id > $1")
    one(c, wire.bind("", "s", ["0"]), wire.execute(""), wire.sync())
    assert_unchanged(guard, before, f"Parse s; {reset}; PREPARE s AS DELETE; Bind/Execute s")


def test_failed_bind_inside_a_savepoint(
    guard: GuardEnv, before: dict[str, Any], raw: Callable[[], wire.RawConn]
) -> None:
    c = raw()
    c.simple("BEGIN")
    one(
        c,
        wire.parse("s1", TRUNCATE_IN_DO),
        wire.parse("s2", "SELECT 1"),
        wire.bind("p", "s1"),
        wire.sync(),
    )
    c.simple("SAVEPOINT a")
    one(c, wire.bind("p", "s2"), wire.sync())  # 42P03: portal p already exists
    c.simple("ROLLBACK TO SAVEPOINT a")
    one(c, wire.execute("p"), wire.sync())
    c.simple("COMMIT")
    assert_unchanged(guard, before, "Bind p=<DO>; SAVEPOINT; Bind p=SELECT fails; Execute p")


# ---------------------------------------------------------------------------------------------
# session settings that change how the server reads the same text

SMUGGLED = "SELECT 'x\\''; DELETE FROM orders; --'"  # one string literal, unless scs is off
SCS = (
    "BUG: standard_conforming_strings=off is allowed (SET, set_config, startup option), but "
    "the classifier always lexes with it on: `SELECT 'x\\''; DELETE FROM orders; --'` is one "
    "string literal to the gateway and a SELECT plus DELETE FROM orders to the server"
)


@pytest.mark.parametrize(
    "how",
    [
        "SET standard_conforming_strings = off",
        "SET standard_conforming_strings TO 'off'",
        "SELECT set_config('standard_conforming_strings', 'off', false)",
        "startup-option",
    ],
)
def test_standard_conforming_strings_off_smuggles_a_statement(
    guard: GuardEnv, before: dict[str, Any], how: str
) -> None:
    extra = {"options": "-c standard_conforming_strings=off"} if how == "startup-option" else {}
    try:
        conn_cm = guard.connect(**extra)
    except psycopg.Error:
        assert how == "startup-option"
        assert_unchanged(guard, before, how)  # refused at connect: nothing could run
        return
    with conn_cm as conn:
        if how != "startup-option":
            with pytest.raises(psycopg.Error):  # refused: the gateway reads SQL with it on
                conn.execute(how)
        try:
            conn.execute(SMUGGLED)
        except psycopg.Error:
            pass
    assert_unchanged(guard, before, f"{how}; then {SMUGGLED!r}")


def test_smuggled_string_is_harmless_with_standard_conforming_strings(
    guard: GuardEnv, before: dict[str, Any]
) -> None:
    """Control: the same text, default settings, is one harmless SELECT."""
    assert run_simple(guard, SMUGGLED).ok
    assert_unchanged(guard, before, SMUGGLED)


@pytest.mark.parametrize(
    ("setting", "sql"),
    [
        ("SET transform_null_equals = on", "DELETE FROM orders WHERE NULL = NULL"),
        (
            "SELECT set_config('transform_null_equals', 'on', false)",
            "UPDATE customers SET phone = NULL WHERE NULL = NULL",
        ),
    ],
)
def test_transform_null_equals_turns_no_rows_into_every_row(
    guard: GuardEnv, before: dict[str, Any], setting: str, sql: str
) -> None:
    with guard.connect() as conn:
        with pytest.raises(psycopg.Error):  # refused: NULL = NULL must keep meaning no row
            conn.execute(setting)
        try:
            conn.execute(sql)
        except psycopg.Error:
            pass
    assert_unchanged(guard, before, f"{setting}; {sql}")


def test_pipelined_query_after_client_encoding_change(
    guard: GuardEnv, before: dict[str, Any], raw: Callable[[], wire.RawConn]
) -> None:
    payload = b"SELECT E'\xc2\x81\x5c'; DELETE FROM orders; --'"
    assert payload.decode("utf-8")  # valid UTF-8: one string literal to the gateway
    c = raw()
    c.send(
        wire.frame(b"Q", b"SET client_encoding TO 'SJIS'\x00"),
        wire.frame(b"Q", payload + b"\x00"),
    )
    refused = c.until_ready()  # the SET is refused before it reaches the server
    assert wire.errors(refused) and wire.errors(refused)[0].sqlstate == "42501"
    c.until_ready()  # the query stays UTF-8: one harmless string literal
    time.sleep(0.3)
    assert_unchanged(guard, before, "SET client_encoding SJIS + pipelined query")


def test_client_encoding_sjis_is_refused_when_not_pipelined(
    guard: GuardEnv, before: dict[str, Any], raw: Callable[[], wire.RawConn]
) -> None:
    c = raw()
    c.send(wire.query("SET client_encoding TO 'SJIS'"))
    refused = c.until_ready()  # refused; the session goes on in UTF-8
    assert wire.errors(refused) and wire.errors(refused)[0].sqlstate == "42501"
    assert_unchanged(guard, before, "SET client_encoding SJIS")
    guard.assert_gateway_alive()


IDENTITY_CHANGES = [
    "SET ROLE postgres",
    "SET ROLE NONE",
    "SET SESSION AUTHORIZATION postgres",
    "SET SESSION AUTHORIZATION DEFAULT",
    "RESET SESSION AUTHORIZATION",
    "SET LOCAL ROLE postgres",
    "SELECT set_config('role', 'postgres', false)",
    "SELECT set_config('session_authorization', 'postgres', false)",
    "SELECT set_config('ro' || 'le', 'postgres', false)",
    "SELECT pg_catalog.set_config(setting_name => 'role', new_value => 'postgres', "
    "is_local => false)",
    "SELECT * FROM set_config('role', 'postgres', false)",
    "ALTER ROLE CURRENT_USER SUPERUSER",
    "GRANT postgres TO CURRENT_USER",
    "ALTER SYSTEM SET log_statement = 'none'",
    "ALTER SYSTEM RESET ALL",
    "SELECT pg_reload_conf()",
]


@pytest.mark.parametrize("sql", IDENTITY_CHANGES)
def test_identity_and_server_changes_are_refused(
    guard: GuardEnv, before: dict[str, Any], sql: str
) -> None:
    with guard.connect() as conn:
        with pytest.raises(psycopg.Error) as err:
            conn.execute(sql)
        assert err.value.sqlstate in ("42501", "42601"), err.value
        assert str(err.value).startswith("pgwarden:"), err.value
        assert conn.execute("SELECT current_user, session_user").fetchone() == (OWNER, OWNER)
    assert_unchanged(guard, before, sql)


@pytest.mark.parametrize(
    "options", ["-c role=postgres", "-c session_authorization=postgres", "--role=postgres"]
)
def test_identity_changes_in_startup_options_are_refused(guard: GuardEnv, options: str) -> None:
    with pytest.raises(psycopg.OperationalError, match="pgwarden"):
        psycopg.connect(guard.dsn(options=options)).close()


# ---------------------------------------------------------------------------------------------
# code, functions, server files and SQL strings

DANGEROUS = [
    "COPY orders FROM PROGRAM 'true'",
    "COPY (SELECT 1) TO PROGRAM 'cat > /dev/null'",
    "COPY orders TO '/tmp/gr_orders.csv'",
    "COPY orders FROM '/dev/null'",
    "SELECT lo_import('/etc/hostname')",
    "SELECT pg_catalog.lo_import('/etc/hostname', 424242)",
    "SELECT * FROM lo_import('/etc/hostname')",
    "SELECT lo_unlink(l.oid) FROM pg_largeobject_metadata l",
    "SELECT dblink_connect('dbname=guardrails_shop')",
    "SELECT * FROM dblink('dbname=guardrails_shop', 'DELETE FROM orders RETURNING 1') AS t(x int)",
    "SELECT query_to_xml('delete from orders returning 1', true, true, '')",
    "SELECT * FROM query_to_xml('delete from orders returning 1', true, true, '')",
    "SELECT \"query_to_xml\"('delete from orders returning 1', true, true, '')",
    "SELECT xmlelement(name x, pg_catalog.query_to_xml('delete from orders returning 1', true, "
    "true, ''))",
    "SELECT 1 FROM orders WHERE id = 1 AND query_to_xml('truncate orders', true, true, '') IS NOT "
    "NULL",
    "SELECT query_to_xml_and_xmlschema('delete from orders returning 1', true, true, '')",
    "SELECT ts_stat('delete from orders returning to_tsvector(status)')",
    "ALTER SYSTEM SET archive_command = 'rm -rf /'",
    "LOAD 'plpgsql'",
    "DO $$ BEGIN DELETE FROM orders WHERE id > 0; END $$",
    "DO $do$ BEGIN EXECUTE 'DEL' || 'ETE FROM orders'; END $do$",
    "DO $$ BEGIN EXECUTE (SELECT 'TRUNCATE orders'); END $$",
    "DO $$ DECLARE q text := 'DELETE FROM orders'; BEGIN EXECUTE q; END $$",
    "DO LANGUAGE sql $$ DELETE FROM orders $$",
    "CALL pg_catalog.pg_sleep(0)",
    "CREATE FUNCTION pg_temp.wipe() RETURNS void LANGUAGE sql AS $$ DELETE FROM orders $$",
    "CREATE PROCEDURE pg_temp.wipe() LANGUAGE sql AS $$ TRUNCATE orders $$",
    "CREATE OR REPLACE FUNCTION public.harmless() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE RULE wipe AS ON SELECT TO orders DO INSTEAD SELECT * FROM customers",
    "CREATE RULE wipe AS ON INSERT TO products DO ALSO TRUNCATE orders",
    "CREATE TRIGGER t BEFORE INSERT ON orders FOR EACH STATEMENT EXECUTE FUNCTION "
    "suppress_redundant_updates_trigger()",
    "ALTER TABLE orders DISABLE TRIGGER ALL",
    "ALTER TABLE orders ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY nothing ON orders USING (false)",
    "ALTER TABLE orders RENAME TO orders_gone",
    "ALTER TABLE orders ALTER COLUMN amount SET DEFAULT 0",
    "ALTER TABLE orders ALTER COLUMN amount TYPE int USING 0",
    "COMMENT ON TABLE orders IS NULL",
    "CREATE TABLE orders_copy AS SELECT * FROM orders",
    "SELECT * INTO orders_copy FROM orders",
    "CREATE INDEX ON orders ((1/0))",
    "REFRESH MATERIALIZED VIEW orders",
    "VACUUM FULL orders",
    "CLUSTER orders USING orders_pkey",
    "DROP TABLE IF EXISTS orders CASCADE",
    "DROP SCHEMA public",
    "DROP OWNED BY guardrails_app",
    "REASSIGN OWNED BY guardrails_app TO postgres",
    "TRUNCATE pg_temp.nope, orders",
    "PREPARE TRANSACTION 'x'",
    "SECURITY LABEL ON TABLE orders IS 'x'",
    "GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC",
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
    "'pgwarden-estimator'",
    "SELECT pg_cancel_backend(pg_backend_pid())",
    "SELECT setval('orders_id_seq', 1, false), pg_catalog.lo_creat(-1)",
    "EXPLAIN ANALYZE SELECT query_to_xml('delete from orders returning 1', true, true, '')",
    "WITH x AS MATERIALIZED (DELETE FROM orders RETURNING 1) SELECT 1 WHERE false",
    "SELECT 1 FROM (SELECT 1) s, LATERAL (SELECT query_to_xml('truncate orders', true, true, "
    "'')) q",
]
DANGEROUS_PROTOCOLS: dict[str, Callable[[GuardEnv, str], Outcome]] = {
    "simple": run_simple,
    "extended": run_extended_unnamed,
    "psql": run_psql,
}


@pytest.mark.parametrize("protocol", list(DANGEROUS_PROTOCOLS))
@pytest.mark.parametrize("sql", DANGEROUS)
def test_code_files_and_sql_strings_are_refused(
    guard: GuardEnv, before: dict[str, Any], protocol: str, sql: str
) -> None:
    outcome = DANGEROUS_PROTOCOLS[protocol](guard, sql)
    assert_unchanged(guard, before, f"{sql!r} via {protocol}: {outcome}")
    assert not outcome.ok, f"{sql!r} via {protocol}: succeeded"
    assert outcome.refused or (
        # a held statement is parsed by the server before the gateway judges it at Execute
        protocol == "extended" and (outcome.sqlstate or "").startswith("42")
    ), f"{sql!r} via {protocol}: {outcome}"


def test_function_created_in_an_earlier_statement(guard: GuardEnv, before: dict[str, Any]) -> None:
    with guard.connect() as conn:
        for sql in (
            "CREATE FUNCTION pg_temp.wipe() RETURNS void LANGUAGE sql AS $$ DELETE FROM orders $$",
            "CREATE FUNCTION public.wipe() RETURNS void LANGUAGE plpgsql AS "
            "$$ BEGIN DELETE FROM orders; END $$",
        ):
            with pytest.raises(psycopg.Error):
                conn.execute(sql)
        for sql in ("SELECT pg_temp.wipe()", "SELECT public.wipe()", "SELECT wipe()"):
            with pytest.raises(psycopg.Error):
                conn.execute(sql)
    assert_unchanged(guard, before, "CREATE FUNCTION wipe(); SELECT wipe()")


def test_rule_and_trigger_on_a_temporary_view_are_refused(
    guard: GuardEnv, before: dict[str, Any]
) -> None:
    with guard.connect() as conn:
        conn.execute("CREATE TEMP VIEW v AS SELECT id FROM products")  # allowed scratch object
        conn.execute("CREATE TEMP TABLE t (x int)")
        for sql in (
            "CREATE RULE r AS ON INSERT TO v DO INSTEAD DELETE FROM orders WHERE id > 0",
            "CREATE RULE r AS ON INSERT TO t DO ALSO UPDATE orders SET amount = 0 WHERE id > 0",
            "CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION "
            "suppress_redundant_updates_trigger()",
        ):
            with pytest.raises(psycopg.Error) as err:
                conn.execute(sql)
            assert str(err.value).startswith("pgwarden:"), err.value
        conn.execute("INSERT INTO t VALUES (1)")
        hooks = conn.execute(
            "SELECT (SELECT count(*) FROM pg_rewrite WHERE rulename = 'r'), "
            "(SELECT count(*) FROM pg_trigger WHERE tgname = 'tr')"
        ).fetchone()
        assert hooks == (0, 0)
    assert_unchanged(guard, before, "rules and triggers on scratch objects")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT purge_orders()",
        "SELECT public.purge_orders()",
        'SELECT "PURGE_ORDERS"()',  # another function, same name up to case: counted too
        "SELECT 1 FROM products WHERE purge_orders() IS NULL",
        "SELECT * FROM purge_orders()",
        "INSERT INTO orders SELECT * FROM orders WHERE purge_orders() IS NOT NULL",
    ],
)
def test_existing_function_that_writes_called_through_select(
    guard: GuardEnv, before: dict[str, Any], sql: str
) -> None:
    """A user's VOLATILE function may write (PostgreSQL refuses writes in STABLE and
    IMMUTABLE ones): a statement that calls one runs code the gateway cannot see, as a CALL
    does, and is held (refused here: nobody approves)."""
    guard.admin.execute(
        "CREATE FUNCTION public.purge_orders() RETURNS void LANGUAGE sql "
        "AS 'DELETE FROM orders WHERE id > 0'; "
        'CREATE FUNCTION public."PURGE_ORDERS"() RETURNS void LANGUAGE sql '
        "AS 'DELETE FROM orders WHERE id > 0'; "
        f"ALTER FUNCTION public.purge_orders() OWNER TO {OWNER}"
    )
    try:
        assert_held_both_ways(guard, sql)
    finally:
        guard.admin.execute(
            "DROP FUNCTION IF EXISTS public.purge_orders(); "
            'DROP FUNCTION IF EXISTS public."PURGE_ORDERS"()'
        )


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT initcap(5)",
        "SELECT 1 FROM products WHERE initcap(5) IS NULL",
        "SELECT * FROM initcap(5)",
    ],
)
def test_a_users_overload_of_a_built_in_name_is_looked_up(
    guard: GuardEnv, sql: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL calls a user's function in place of the built-in of the same name when its
    arguments match better: ``initcap(5)`` runs ``public.initcap(int)``, not pg_catalog's
    ``initcap(text)`` (there is no implicit cast from int to text). Taking every built-in
    name for the built-in let such a call through as an ordinary read."""
    monkeypatch.setattr(catalog_mod, "FUNCTIONS_TTL", 0.0)  # as if the last look-up were old
    guard.admin.execute(
        "CREATE FUNCTION public.initcap(i int) RETURNS int LANGUAGE sql "
        "AS 'DELETE FROM orders WHERE id > 0 RETURNING 1'; "
        f"ALTER FUNCTION public.initcap(int) OWNER TO {OWNER}"
    )
    try:
        assert_held_both_ways(guard, sql)
    finally:
        guard.admin.execute("DROP FUNCTION IF EXISTS public.initcap(int)")


# A SQL function that deletes every order and returns how many it deleted.
_PURGE = (
    "LANGUAGE sql AS 'WITH d AS (DELETE FROM orders WHERE id > 0 RETURNING 1) "
    "SELECT count(*)::int FROM d'"
)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM purging_view",
        "SELECT 1 FROM products WHERE EXISTS (SELECT 1 FROM purging_view)",
        "SELECT * FROM outer_view",  # a view over the view
        "SELECT * FROM public.purging_view",
    ],
)
def test_a_view_that_calls_a_users_volatile_function_is_held(
    guard: GuardEnv, sql: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a view runs its query, and with it the functions the view calls: a view over a
    user's VOLATILE function writes as the function does."""
    monkeypatch.setattr(catalog_mod, "FUNCTIONS_TTL", 0.0)  # as if the last look-up were old
    guard.admin.execute(
        f"CREATE FUNCTION public.purge_all() RETURNS int {_PURGE}; "
        "CREATE VIEW public.purging_view AS SELECT public.purge_all() AS n; "
        "CREATE VIEW public.outer_view AS SELECT n FROM public.purging_view; "
        f"ALTER FUNCTION public.purge_all() OWNER TO {OWNER}; "
        f"ALTER VIEW public.purging_view OWNER TO {OWNER}; "
        f"ALTER VIEW public.outer_view OWNER TO {OWNER}"
    )
    try:
        assert_held_both_ways(guard, sql)
    finally:
        guard.admin.execute(
            "DROP VIEW IF EXISTS public.outer_view; DROP VIEW IF EXISTS public.purging_view; "
            "DROP FUNCTION IF EXISTS public.purge_all()"
        )


def test_a_held_read_stays_held_for_the_session(guard: GuardEnv) -> None:
    """The catalog's answers are kept per statement shape and session only when it found
    nothing: a statement it found a writer in is asked about every time, so the same read,
    repeated in one session with new constants, is held every time."""
    guard.admin.execute(
        f"CREATE FUNCTION public.purge_all() RETURNS int {_PURGE}; "
        "CREATE VIEW public.purging_view_again AS SELECT public.purge_all() AS n; "
        f"ALTER FUNCTION public.purge_all() OWNER TO {OWNER}; "
        f"ALTER VIEW public.purging_view_again OWNER TO {OWNER}"
    )
    before = guard.fingerprint()
    try:
        with guard.connect() as conn:
            for n in range(3):
                with pytest.raises(psycopg.Error) as err:
                    conn.execute(f"SELECT n + {n} FROM purging_view_again")
                assert str(err.value).startswith("pgwarden:"), err.value
            assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
        assert_unchanged(guard, before, "a view over a writer, read three times")
    finally:
        guard.admin.execute(
            "DROP VIEW IF EXISTS public.purging_view_again; "
            "DROP FUNCTION IF EXISTS public.purge_all()"
        )


@pytest.mark.parametrize(
    "sql", ["SELECT * FROM guarded_rows", "SELECT count(*) FROM public.guarded_rows"]
)
def test_a_row_security_policy_that_calls_a_users_volatile_function_is_held(
    guard: GuardEnv, sql: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row security policy's expression runs for the rows a statement reads: one that calls
    a user's VOLATILE function writes as the function does."""
    monkeypatch.setattr(catalog_mod, "FUNCTIONS_TTL", 0.0)  # as if the last look-up were old
    guard.admin.execute(
        f"CREATE FUNCTION public.purge_all() RETURNS int {_PURGE}; "
        "CREATE TABLE public.guarded_rows (id int); "
        "INSERT INTO public.guarded_rows VALUES (1); "
        "ALTER TABLE public.guarded_rows ENABLE ROW LEVEL SECURITY; "
        "ALTER TABLE public.guarded_rows FORCE ROW LEVEL SECURITY; "
        "CREATE POLICY purging ON public.guarded_rows USING (public.purge_all() >= 0); "
        f"ALTER FUNCTION public.purge_all() OWNER TO {OWNER}; "
        f"ALTER TABLE public.guarded_rows OWNER TO {OWNER}"
    )
    try:
        assert_held_both_ways(guard, sql)
    finally:
        guard.admin.execute(
            "DROP TABLE IF EXISTS public.guarded_rows; DROP FUNCTION IF EXISTS public.purge_all()"
        )


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 #^# 2",
        "SELECT 1 FROM products WHERE id #^# 1 > 0",
        "SELECT 1 OPERATOR(public.#^#) 2",
        "SELECT (1 #^# 2) + 1",
    ],
)
def test_an_operator_over_a_users_volatile_function_is_held(
    guard: GuardEnv, sql: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator runs the function behind it: one of the target's over a VOLATILE
    function writes as the function does."""
    monkeypatch.setattr(catalog_mod, "FUNCTIONS_TTL", 0.0)  # as if the last look-up were old
    guard.admin.execute(
        f"CREATE FUNCTION public.purge_pair(a int, b int) RETURNS int {_PURGE}; "
        "CREATE OPERATOR public.#^# (LEFTARG = int, RIGHTARG = int, FUNCTION = public.purge_pair); "
        f"ALTER FUNCTION public.purge_pair(int, int) OWNER TO {OWNER}; "
        f"ALTER OPERATOR public.#^# (int, int) OWNER TO {OWNER}"
    )
    try:
        assert_held_both_ways(guard, sql)
    finally:
        guard.admin.execute(
            "DROP OPERATOR IF EXISTS public.#^# (int, int); "
            "DROP FUNCTION IF EXISTS public.purge_pair(int, int)"
        )


# A composite type, casts to and from it over functions that delete every order, and a
# table and a view that hold a value of it.
_CASTS = (
    "CREATE TYPE public.purging AS (n int); "
    "CREATE FUNCTION public.purge_to(i int) RETURNS public.purging LANGUAGE sql AS "
    "'WITH d AS (DELETE FROM orders WHERE id > 0 RETURNING 1) "
    "SELECT ROW(count(*)::int)::public.purging FROM d'; "
    f"CREATE FUNCTION public.purge_from(p public.purging) RETURNS int {_PURGE}; "
    "CREATE CAST (int AS public.purging) WITH FUNCTION public.purge_to(int) AS ASSIGNMENT; "
    "CREATE CAST (public.purging AS int) WITH FUNCTION public.purge_from(public.purging); "
    "CREATE TABLE public.casted (id int, p public.purging); "
    "INSERT INTO public.casted VALUES (1, ROW(1)); "
    "CREATE VIEW public.casted_view AS SELECT p AS q FROM public.casted; "
    f"ALTER TYPE public.purging OWNER TO {OWNER}; "
    f"ALTER TABLE public.casted OWNER TO {OWNER}; "
    f"ALTER VIEW public.casted_view OWNER TO {OWNER}; "
    f"ALTER FUNCTION public.purge_to(int) OWNER TO {OWNER}; "
    f"ALTER FUNCTION public.purge_from(public.purging) OWNER TO {OWNER}"
)
_DROP_CASTS = (
    "DROP VIEW IF EXISTS public.casted_view; DROP TABLE IF EXISTS public.casted; "
    "DROP TYPE IF EXISTS public.purging CASCADE; "
    "DROP FUNCTION IF EXISTS public.purge_to(int)"
)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1::purging",
        "SELECT CAST(1 AS public.purging)",
        "SELECT 1::public.PURGING",
        "SELECT p::int FROM casted",  # the type is not named: the table holding it is
        "SELECT q::int FROM casted_view",
        "INSERT INTO casted VALUES (2, 5)",  # an assignment cast
        "UPDATE casted SET p = 3 WHERE id = 1",
    ],
)
def test_a_cast_over_a_users_volatile_function_is_held(
    guard: GuardEnv, sql: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cast runs its function: one of the target's over a VOLATILE function writes as the
    function does, where the statement names the type and, through an assignment cast, where
    it writes a column of it."""
    monkeypatch.setattr(catalog_mod, "FUNCTIONS_TTL", 0.0)
    guard.admin.execute(_CASTS)
    try:
        assert_held_both_ways(guard, sql)
    finally:
        guard.admin.execute(_DROP_CASTS)


@pytest.mark.parametrize("typname", ["purging", "casted"])
def test_a_parameter_declared_as_a_type_of_a_writing_cast_is_held(
    guard: GuardEnv, raw: Callable[[], wire.RawConn], typname: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client may give a parameter's type by OID in Parse: ``SELECT $1::int`` with $1
    declared as the cast's type (or a row type holding it) runs the cast over a writer
    without naming the type in the text."""
    monkeypatch.setattr(catalog_mod, "FUNCTIONS_TTL", 0.0)
    guard.admin.execute(_CASTS)
    try:
        oid = guard.admin.execute(
            "SELECT oid FROM pg_type WHERE typname = %s AND typnamespace = 'public'::regnamespace",
            [typname],
        ).fetchone()[0]
        value, sql = (
            ("(1)", "SELECT $1::int")
            if typname == "purging"
            else ('(1,"(1)")', "SELECT ($1).p::int")
        )
        before = guard.fingerprint()
        c = raw()
        c.send(wire.parse("", sql, [oid]), wire.bind(params=[value]), wire.execute(), wire.sync())
        replies = c.until_ready()
        assert_unchanged(guard, before, f"{sql} with $1 of type {typname}")
        errors = [m for m in replies if m.type == b"E"]
        assert errors and errors[0].message.startswith("pgwarden:"), replies
        # a parameter of a type no writing cast concerns passes
        c.send(
            wire.parse("", "SELECT $1::int + 1", [23]),
            wire.bind(params=["1"]),
            wire.execute(),
            wire.sync(),
        )
        assert [m.values for m in c.until_ready() if m.type == b"D"] == [(b"2",)]
    finally:
        guard.admin.execute(_DROP_CASTS)


def test_casts_that_cannot_write_are_used_freely(
    guard: GuardEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the cast look-up must not hold: a cast over an IMMUTABLE function, and a table
    with a column of a type whose only casts cannot write."""
    monkeypatch.setattr(catalog_mod, "FUNCTIONS_TTL", 0.0)
    guard.admin.execute(
        "CREATE TYPE public.boxed AS (n int); "
        "CREATE FUNCTION public.box(i int) RETURNS public.boxed IMMUTABLE LANGUAGE sql "
        "AS 'SELECT ROW(i)::public.boxed'; "
        "CREATE CAST (int AS public.boxed) WITH FUNCTION public.box(int) AS ASSIGNMENT; "
        "CREATE TABLE public.boxes (id int, b public.boxed); "
        f"ALTER TYPE public.boxed OWNER TO {OWNER}; "
        f"ALTER TABLE public.boxes OWNER TO {OWNER}"
    )
    try:
        with guard.connect() as conn:
            assert conn.execute("SELECT (2::boxed).n").fetchone() == (2,)
            conn.execute("INSERT INTO boxes VALUES (1, 7)")
            assert conn.execute("SELECT (b).n FROM boxes").fetchone() == (7,)
    finally:
        guard.admin.execute(
            "DROP TABLE IF EXISTS public.boxes; DROP TYPE IF EXISTS public.boxed CASCADE; "
            "DROP FUNCTION IF EXISTS public.box(int)"
        )


_PURGE_ON_WRITE = (
    "CREATE FUNCTION public.purge_on_write() RETURNS trigger LANGUAGE plpgsql AS "
    "$$BEGIN DELETE FROM orders WHERE id > 0; RETURN NULL; END$$; "
    f"ALTER FUNCTION public.purge_on_write() OWNER TO {OWNER}; "
)
_TRIGGERED = {
    "trigger": _PURGE_ON_WRITE
    + (
        "CREATE TRIGGER purge AFTER INSERT OR UPDATE OR DELETE ON public.hooked "
        "FOR EACH STATEMENT EXECUTE FUNCTION public.purge_on_write()"
    ),
    # written through an updatable view: the table's trigger runs
    "view": _PURGE_ON_WRITE
    + (
        "CREATE TRIGGER purge AFTER INSERT OR UPDATE OR DELETE ON public.hooked "
        "FOR EACH STATEMENT EXECUTE FUNCTION public.purge_on_write(); "
        "CREATE VIEW public.hooked_view AS SELECT * FROM public.hooked; "
        f"ALTER VIEW public.hooked_view OWNER TO {OWNER}"
    ),
    # written through the partitioned table: the partition's row trigger runs
    "partition": _PURGE_ON_WRITE
    + (
        "CREATE TABLE public.hooked_parts (id int) PARTITION BY RANGE (id); "
        "CREATE TABLE public.hooked_part PARTITION OF public.hooked_parts "
        "FOR VALUES FROM (0) TO (100); "
        "CREATE TRIGGER purge AFTER INSERT ON public.hooked_part "
        "FOR EACH ROW EXECUTE FUNCTION public.purge_on_write(); "
        f"ALTER TABLE public.hooked_parts OWNER TO {OWNER}; "
        f"ALTER TABLE public.hooked_part OWNER TO {OWNER}"
    ),
    "rule": "CREATE RULE purge AS ON INSERT TO public.hooked DO ALSO DELETE FROM orders",
    # a column default, a CHECK constraint and a domain's CHECK run for the rows written (set
    # up so that the existing row does not run them)
    "default": (
        f"CREATE FUNCTION public.purge_all() RETURNS int {_PURGE}; "
        "ALTER TABLE public.hooked ADD COLUMN n int; "
        "ALTER TABLE public.hooked ALTER COLUMN n SET DEFAULT public.purge_all(); "
        f"ALTER FUNCTION public.purge_all() OWNER TO {OWNER}"
    ),
    "check": (
        f"CREATE FUNCTION public.purge_all() RETURNS int {_PURGE}; "
        "ALTER TABLE public.hooked ADD CONSTRAINT purge CHECK (public.purge_all() >= 0) "
        "NOT VALID; "
        f"ALTER FUNCTION public.purge_all() OWNER TO {OWNER}"
    ),
    "domain": (
        f"CREATE FUNCTION public.purge_all() RETURNS int {_PURGE}; "
        "CREATE DOMAIN public.purging_int AS int; "
        "CREATE DOMAIN public.purging_int2 AS public.purging_int; "  # a domain over it
        "ALTER TABLE public.hooked ADD COLUMN d public.purging_int2; "
        "ALTER DOMAIN public.purging_int ADD CONSTRAINT purge CHECK (public.purge_all() >= 0) "
        "NOT VALID; "
        f"ALTER FUNCTION public.purge_all() OWNER TO {OWNER}; "
        f"ALTER DOMAIN public.purging_int OWNER TO {OWNER}; "
        f"ALTER DOMAIN public.purging_int2 OWNER TO {OWNER}"
    ),
    "default-operator": (
        f"CREATE FUNCTION public.purge_pair(a int, b int) RETURNS int {_PURGE}; "
        "CREATE OPERATOR public.#^# (LEFTARG = int, RIGHTARG = int, FUNCTION = public.purge_pair); "
        "ALTER TABLE public.hooked ADD COLUMN n int; "
        "ALTER TABLE public.hooked ALTER COLUMN n SET DEFAULT 1 OPERATOR(public.#^#) 2; "
        f"ALTER FUNCTION public.purge_pair(int, int) OWNER TO {OWNER}"
    ),
}


@pytest.mark.parametrize(
    ("hook", "sql"),
    [
        ("trigger", "INSERT INTO hooked VALUES (2)"),
        ("trigger", "UPDATE hooked SET id = 3 WHERE id = 1"),
        ("rule", "INSERT INTO hooked VALUES (2)"),
        ("view", "INSERT INTO hooked_view VALUES (2)"),
        ("partition", "INSERT INTO hooked_parts VALUES (2)"),
        ("default", "INSERT INTO hooked VALUES (2)"),
        ("default", "INSERT INTO public.hooked (id) SELECT 2"),
        ("default-operator", "INSERT INTO hooked (id) VALUES (2)"),
        (
            "default",
            "MERGE INTO hooked h USING (SELECT 2 AS id) s ON h.id = s.id "
            "WHEN NOT MATCHED THEN INSERT (id) VALUES (s.id)",
        ),
        ("check", "INSERT INTO hooked VALUES (2)"),
        ("check", "UPDATE hooked SET id = 3 WHERE id = 1"),
        ("domain", "INSERT INTO hooked VALUES (2, 5)"),
        ("domain", "UPDATE hooked SET d = 5 WHERE id = 1"),
    ],
)
def test_a_write_whose_trigger_or_rule_destroys_is_held(
    guard: GuardEnv, sql: str, hook: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write runs its table's triggers and rules, column defaults, CHECK constraints and
    its columns' domains' CHECKs: one that deletes elsewhere deletes as part of an INSERT
    the policy would allow."""
    monkeypatch.setattr(catalog_mod, "FUNCTIONS_TTL", 0.0)
    guard.admin.execute(
        "CREATE TABLE public.hooked (id int); INSERT INTO public.hooked VALUES (1); "
        f"ALTER TABLE public.hooked OWNER TO {OWNER}; " + _TRIGGERED[hook]
    )
    try:
        assert_held_both_ways(guard, sql)
    finally:
        guard.admin.execute(
            "DROP VIEW IF EXISTS public.hooked_view; DROP TABLE IF EXISTS public.hooked_parts; "
            "DROP TABLE IF EXISTS public.hooked; DROP FUNCTION IF EXISTS public.purge_on_write(); "
            "DROP DOMAIN IF EXISTS public.purging_int2; DROP DOMAIN IF EXISTS public.purging_int; "
            "DROP FUNCTION IF EXISTS public.purge_all(); "
            "DROP OPERATOR IF EXISTS public.#^# (int, int); "
            "DROP FUNCTION IF EXISTS public.purge_pair(int, int)"
        )


def test_a_write_whose_trigger_only_adds_rows_passes(
    guard: GuardEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the write look-up must not hold: an audit trigger that sets a column and adds a
    row to a log (PostgreSQL's own trigger functions pass too), an id generator as a
    column's default, CHECKs of a table and of a domain that only read; written directly,
    through a view and through a partitioned table."""
    monkeypatch.setattr(catalog_mod, "FUNCTIONS_TTL", 0.0)
    guard.admin.execute(
        "CREATE TABLE public.audited (id int, at timestamptz); "
        "CREATE TABLE public.audit_log (id int); "
        "CREATE FUNCTION public.audit() RETURNS trigger LANGUAGE plpgsql AS "
        "$$BEGIN NEW.at := now(); INSERT INTO public.audit_log VALUES (NEW.id); "
        "RETURN NEW; END$$; "
        "CREATE TRIGGER audit BEFORE INSERT ON public.audited "
        "FOR EACH ROW EXECUTE FUNCTION public.audit(); "
        # a default from a user's id generator, a CHECK and a domain's CHECK over a user's
        # VOLATILE function that only reads, a view and a partitioned table over them
        "CREATE SEQUENCE public.audit_ids; "
        "CREATE FUNCTION public.next_audit_id() RETURNS int LANGUAGE sql "
        "AS $$SELECT nextval('public.audit_ids')::int$$; "
        "CREATE FUNCTION public.known_product(i int) RETURNS bool LANGUAGE sql "
        "AS 'SELECT i IS NULL OR i < 1000 OR EXISTS (SELECT 1 FROM products)'; "
        "CREATE DOMAIN public.product_ref AS int CHECK (public.known_product(VALUE)); "
        "ALTER TABLE public.audited ADD COLUMN seq int DEFAULT public.next_audit_id(), "
        "ADD COLUMN product public.product_ref, "
        "ADD CONSTRAINT known CHECK (public.known_product(id)); "
        "CREATE VIEW public.audited_view AS SELECT id, product FROM public.audited; "
        "CREATE TABLE public.audited_parts (id int, product public.product_ref "
        "DEFAULT 1) PARTITION BY RANGE (id); "
        "CREATE TABLE public.audited_part PARTITION OF public.audited_parts "
        "FOR VALUES FROM (0) TO (100); "
        f"ALTER TABLE public.audited OWNER TO {OWNER}; "
        f"ALTER TABLE public.audit_log OWNER TO {OWNER}; "
        f"ALTER VIEW public.audited_view OWNER TO {OWNER}; "
        f"ALTER TABLE public.audited_parts OWNER TO {OWNER}; "
        f"ALTER TABLE public.audited_part OWNER TO {OWNER}; "
        f"ALTER SEQUENCE public.audit_ids OWNER TO {OWNER}; "
        f"ALTER FUNCTION public.audit() OWNER TO {OWNER}"
    )
    try:
        with guard.connect() as conn:
            conn.execute("INSERT INTO audited (id, product) VALUES (7, 3)")
            conn.execute("INSERT INTO audited_view (id) VALUES (8)")
            conn.execute("UPDATE audited SET product = 4 WHERE id = 7")
            conn.execute("INSERT INTO audited_parts (id) VALUES (9)")
            assert conn.execute("SELECT id FROM audit_log ORDER BY id").fetchall() == [(7,), (8,)]
            assert conn.execute("SELECT id, seq, product FROM audited ORDER BY id").fetchall() == [
                (7, 1, 4),
                (8, 2, None),
            ]
            assert conn.execute("SELECT id, product FROM audited_parts").fetchall() == [(9, 1)]
    finally:
        guard.admin.execute(
            "DROP VIEW IF EXISTS public.audited_view; DROP TABLE IF EXISTS public.audited_parts; "
            "DROP TABLE IF EXISTS public.audited; DROP TABLE IF EXISTS public.audit_log; "
            "DROP FUNCTION IF EXISTS public.audit(); DROP DOMAIN IF EXISTS public.product_ref; "
            "DROP FUNCTION IF EXISTS public.known_product(int); "
            "DROP FUNCTION IF EXISTS public.next_audit_id(); "
            "DROP SEQUENCE IF EXISTS public.audit_ids"
        )


def test_views_and_operators_that_cannot_write_are_read_freely(
    guard: GuardEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the lookups above must not hold: a plain view, a view over a STABLE function and
    over a built-in volatile one, an operator over a STABLE function."""
    monkeypatch.setattr(catalog_mod, "FUNCTIONS_TTL", 0.0)
    guard.admin.execute(
        "CREATE FUNCTION public.doubled(i int) RETURNS int STABLE LANGUAGE sql "
        "AS 'SELECT i * 2'; "
        "CREATE FUNCTION public.times(a int, b int) RETURNS int STABLE LANGUAGE sql "
        "AS 'SELECT a * b'; "
        "CREATE OPERATOR public.*** (LEFTARG = int, RIGHTARG = int, FUNCTION = public.times); "
        "CREATE VIEW public.plain_view AS SELECT id FROM products; "
        "CREATE VIEW public.stable_view AS SELECT public.doubled(id) AS d, random() AS r, "
        "id *** 2 AS t FROM products; "
        f"ALTER VIEW public.plain_view OWNER TO {OWNER}; "
        f"ALTER VIEW public.stable_view OWNER TO {OWNER}"
    )
    try:
        with guard.connect() as conn:
            assert conn.execute("SELECT count(*) > 0 FROM plain_view").fetchone() == (True,)
            assert conn.execute("SELECT count(*) > 0 FROM stable_view").fetchone() == (True,)
            assert conn.execute("SELECT 2 *** 3").fetchone() == (6,)
    finally:
        guard.admin.execute(
            "DROP VIEW IF EXISTS public.stable_view; DROP VIEW IF EXISTS public.plain_view; "
            "DROP OPERATOR IF EXISTS public.*** (int, int); "
            "DROP FUNCTION IF EXISTS public.times(int, int); "
            "DROP FUNCTION IF EXISTS public.doubled(int)"
        )


def test_functions_that_cannot_write_are_called_freely(guard: GuardEnv) -> None:
    """STABLE and IMMUTABLE user functions (PostgreSQL refuses writes in them), built-in
    volatile ones (random, now) and an extension's (uuid-ossp's uuid_generate_v4, installed
    by an administrator) are ordinary reads."""
    available = guard.admin.execute(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'uuid-ossp'"
    ).fetchone()
    if available != (1,):
        pytest.skip("uuid-ossp (PostgreSQL's contrib) is not installed")
    guard.admin.execute(
        "CREATE FUNCTION public.order_total(i int) RETURNS numeric STABLE LANGUAGE sql "
        "AS 'SELECT amount FROM orders WHERE id = i'; "
        'CREATE EXTENSION IF NOT EXISTS "uuid-ossp" SCHEMA public'
    )
    try:
        with guard.connect() as conn:
            assert conn.execute("SELECT order_total(1) IS NOT NULL").fetchone() == (True,)
            assert conn.execute("SELECT random() < 2, now() IS NOT NULL").fetchone() == (
                True,
                True,
            )
            assert conn.execute("SELECT uuid_generate_v4() IS NOT NULL").fetchone() == (True,)
    finally:
        guard.admin.execute(
            'DROP FUNCTION IF EXISTS public.order_total(int); DROP EXTENSION IF EXISTS "uuid-ossp"'
        )


def test_existing_procedure_called_is_held(guard: GuardEnv) -> None:
    guard.admin.execute(
        "CREATE PROCEDURE public.purge_orders_proc() LANGUAGE sql "
        "AS 'DELETE FROM orders WHERE id > 0'; "
        f"ALTER PROCEDURE public.purge_orders_proc() OWNER TO {OWNER}"
    )
    before = guard.fingerprint()
    try:
        for run in (run_simple, run_extended_unnamed, run_psql):
            outcome = run(guard, "CALL purge_orders_proc()")
            assert outcome.refused, outcome
        assert_unchanged(guard, before, "CALL purge_orders_proc()")
    finally:
        guard.admin.execute("DROP PROCEDURE IF EXISTS public.purge_orders_proc()")


# ---------------------------------------------------------------------------------------------
# transactions

INSERT_ONE = "INSERT INTO orders (id, customer_id, amount, status) VALUES (5000, 1, 1, 'paid')"
INSERT_TWO = "INSERT INTO orders (id, customer_id, amount, status) VALUES (5001, 2, 2, 'paid')"


def order_ids(guard: GuardEnv, *ids: int) -> list[int]:
    rows = guard.admin.execute(
        "SELECT id FROM orders WHERE id = ANY(%s) ORDER BY id", [list(ids)]
    ).fetchall()
    return [r[0] for r in rows]


@pytest.mark.parametrize(
    "destructive",
    ["DELETE FROM orders", "TRUNCATE orders", "DELETE FROM orders WHERE id > 0",
     "DO $$ BEGIN DELETE FROM orders; END $$"],
)  # fmt: skip
def test_refusal_inside_a_transaction_leaves_it_failed_and_commit_rolls_back(
    guard: GuardEnv, before: dict[str, Any], raw: Callable[[], wire.RawConn], destructive: str
) -> None:
    c = raw()
    assert status(c.simple("BEGIN")) == b"T"
    assert status(c.simple(INSERT_ONE)) == b"T"
    r = c.simple(destructive)
    assert refused(r), r
    assert status(r) == b"E"  # the transaction is failed, as if the statement had failed
    r = c.simple(INSERT_TWO)
    assert wire.errors(r)[0].sqlstate == "25P02", r  # current transaction is aborted
    r = c.simple("COMMIT")
    assert [m.tag for m in r if m.type == b"C"] == ["ROLLBACK"], r
    assert status(r) == b"I"
    assert order_ids(guard, 5000, 5001) == []
    assert_unchanged(guard, before, f"BEGIN; INSERT; {destructive}; COMMIT")
    assert wire.rows(c.simple("SELECT 42")) == [("42",)]  # the session goes on


def test_refusal_in_an_extended_transaction(
    guard: GuardEnv, before: dict[str, Any], raw: Callable[[], wire.RawConn]
) -> None:
    c = raw()
    r = one(
        c,
        wire.extended("BEGIN"),
        wire.extended(INSERT_ONE),
        wire.sync(),
    )
    assert status(r) == b"T"
    r = one(c, wire.extended("DELETE FROM orders"), wire.extended(INSERT_TWO), wire.sync())
    assert refused(r), r
    assert status(r) == b"E"
    r = one(c, wire.extended("COMMIT"), wire.sync())
    assert [m.tag for m in r if m.type == b"C"] == ["ROLLBACK"], r
    assert order_ids(guard, 5000, 5001) == []
    assert_unchanged(guard, before, "extended BEGIN; INSERT; DELETE; COMMIT")


def test_psycopg_transaction_with_a_refused_statement_commits_nothing(
    guard: GuardEnv, before: dict[str, Any]
) -> None:
    with guard.connect(autocommit=False) as conn:
        conn.execute(INSERT_ONE)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE orders SET amount = 0")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        conn.commit()  # the server answers ROLLBACK
    assert order_ids(guard, 5000) == []
    assert_unchanged(guard, before, "psycopg transaction: INSERT; UPDATE without WHERE; commit")


def test_rollback_to_savepoint_after_a_refusal_keeps_the_good_work(guard: GuardEnv) -> None:
    before = guard.counts()
    with guard.connect() as conn:
        conn.execute("BEGIN")
        conn.execute(INSERT_ONE)
        conn.execute("SAVEPOINT s")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM orders")
        conn.execute("ROLLBACK TO SAVEPOINT s")
        conn.execute(INSERT_TWO)
        conn.execute("COMMIT")
    assert order_ids(guard, 5000, 5001) == [5000, 5001]
    assert guard.counts() == {**before, "orders": before["orders"] + 2}


def test_refused_query_inside_a_transaction_opened_by_an_earlier_query(
    guard: GuardEnv, before: dict[str, Any], raw: Callable[[], wire.RawConn]
) -> None:
    c = raw()
    assert status(c.simple(f"BEGIN; {INSERT_ONE}")) == b"T"
    r = c.simple("DELETE FROM orders; COMMIT")  # refused whole: the COMMIT does not run either
    assert refused(r), r
    assert status(r) == b"E"
    c.simple("COMMIT")
    assert order_ids(guard, 5000) == []
    assert_unchanged(guard, before, "BEGIN; INSERT | DELETE FROM orders; COMMIT | COMMIT")


@pytest.mark.parametrize(
    "sql",
    [f"SELECT 1; {INSERT_ONE}; DELETE FROM orders",
     f"{INSERT_ONE}; TRUNCATE orders",
     f"BEGIN; {INSERT_ONE}; COMMIT; DELETE FROM orders WHERE true",
     f"{INSERT_ONE}; SELECT pg_terminate_backend(0)"],
)  # fmt: skip
def test_multi_statement_query_is_refused_whole(
    guard: GuardEnv, before: dict[str, Any], raw: Callable[[], wire.RawConn], sql: str
) -> None:
    c = raw()
    r = c.simple(sql)
    assert wire.types(r) == [b"E", b"Z"], r  # nothing of it ran, not even the first statement
    assert refused(r)
    assert_unchanged(guard, before, sql)


def test_extended_pipeline_with_a_refused_statement_commits_nothing(
    guard: GuardEnv, before: dict[str, Any], raw: Callable[[], wire.RawConn]
) -> None:
    c = raw()
    r = one(
        c,
        wire.extended(INSERT_ONE),
        wire.extended("SELECT 1"),
        wire.extended("DELETE FROM orders WHERE 1 = 1"),
        wire.extended(INSERT_TWO),
        wire.sync(),
    )
    tags = [m.tag for m in r if m.type == b"C"]
    assert tags == ["INSERT 0 1", "SELECT 1"], r  # ran, then rolled back with the pipeline
    assert refused(r) and len(wire.errors(r)) == 1, r
    assert [m.type for m in r].count(b"Z") == 1
    assert order_ids(guard, 5000, 5001) == []
    assert_unchanged(guard, before, "pipeline INSERT; SELECT; DELETE ... 1=1; INSERT; Sync")


def test_pipeline_without_a_refusal_commits(
    guard: GuardEnv, raw: Callable[[], wire.RawConn]
) -> None:
    """Control for the pipeline tests: the same INSERT commits when nothing is refused."""
    c = raw()
    r = one(c, wire.extended(INSERT_ONE), wire.extended("SELECT 1"), wire.sync())
    assert not wire.errors(r), r
    assert order_ids(guard, 5000) == [5000]


def test_psycopg_pipeline_without_a_refusal_commits(guard: GuardEnv) -> None:
    with guard.connect() as conn, conn.pipeline():
        conn.execute(INSERT_ONE)
        conn.execute("SELECT 1")
    assert order_ids(guard, 5000) == [5000]


# ---------------------------------------------------------------------------------------------
# psql


@pytest.mark.parametrize(
    "script",
    [
        "SELECT 'DELETE FROM orders' \\gexec",
        "SELECT format('TRUNCATE %I', tablename) FROM pg_tables WHERE schemaname = 'public' "
        "\\gexec",
        "SELECT 'SELECT 1', 'DELETE FROM orders', 'SELECT 2' \\gexec",
        "SELECT 'UPDATE ' || relname || ' SET amount = 0' FROM pg_class WHERE relname = 'orders' "
        "\\gexec",
        "SELECT 'DELETE FROM orders WHERE id ' || '> 0' \\gexec",
        "SELECT 'DO $$ BEGIN DELETE FROM orders; END $$' \\gexec",
        "\\set t orders\nDELETE FROM :t;",
        "\\set w 'WHERE 1=1'\nUPDATE orders SET amount = 0 :w;",
        "BEGIN;\nINSERT INTO orders (id, customer_id, amount, status) VALUES (5000, 1, 1, 'paid');"
        "\nDELETE FROM orders;\nCOMMIT;",
        "SELECT 'DELETE FROM orders' AS q \\gset\n:q;",
    ],
)
def test_psql_scripts_and_gexec_are_refused(
    guard: GuardEnv, before: dict[str, Any], script: str
) -> None:
    proc = run_psql_raw(guard, input=script + "\n")
    assert proc.returncode != 0, proc.stdout
    assert "pgwarden:" in proc.stderr, proc.stderr
    assert_unchanged(guard, before, f"psql script {script!r}: {proc.stderr}")


def test_gexec_of_targeted_work_runs(guard: GuardEnv) -> None:
    outcome = run_gexec(guard, "DELETE FROM orders WHERE id = 7")
    assert outcome.ok, outcome
    assert order_ids(guard, 7) == []
    assert guard.counts()["orders"] == 299


# ---------------------------------------------------------------------------------------------


def test_the_gateway_is_alive_after_the_attempts(guard_env: GuardEnv) -> None:
    guard_env.assert_gateway_alive()
