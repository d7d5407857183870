"""Unit tests for pgwarden.sql.classify: kinds, nesting, tables, functions, WHERE, errors."""

from __future__ import annotations

import json

import pytest

from pgwarden.sql import (
    FLAGS,
    KINDS,
    OBJECT_TYPES,
    Classification,
    PreparedRegistry,
    SqlSyntaxError,
    cache_clear,
    cache_info,
    classify,
    classify_cached,
    is_dangerous,
    split_statements,
)
from pgwarden.sql.functions import may_be_users


def one(sql: str):
    c = classify(sql)
    assert c.error is None, c.error
    assert len(c.statements) == 1, c.statements
    return c.statements[0]


# ---------------------------------------------------------------------------------- kinds

KIND_CASES = [
    ("SELECT 1", "select"),
    ("VALUES (1)", "select"),
    ("TABLE orders", "select"),
    ("SELECT 1 INTO t", "select_into"),
    ("INSERT INTO orders VALUES (1)", "insert"),
    ("UPDATE orders SET a = 1 WHERE id = 1", "update"),
    ("DELETE FROM orders WHERE id = 1", "delete"),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DO NOTHING", "merge"),
    ("TRUNCATE orders", "truncate"),
    ("COPY orders TO STDOUT", "copy_to"),
    ("COPY orders FROM STDIN", "copy_from"),
    ("CREATE TABLE t (id int)", "create"),
    ("CREATE TABLE t AS SELECT 1", "create_table_as"),
    ("CREATE MATERIALIZED VIEW mv AS SELECT 1", "create_table_as"),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "create_function"),
    ("CREATE PROCEDURE p() LANGUAGE sql AS 'SELECT 1'", "create_function"),
    ("CREATE TRIGGER t AFTER INSERT ON x FOR EACH ROW EXECUTE FUNCTION f()", "create_trigger"),
    ("CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()", "create_trigger"),
    ("CREATE RULE r AS ON INSERT TO x DO INSTEAD NOTHING", "create_rule"),
    ("CREATE EXTENSION dblink", "create_extension"),
    ("CREATE ROLE r", "create_role"),
    ("CREATE USER u", "create_role"),
    ("ALTER ROLE r SUPERUSER", "alter_role"),
    ("ALTER ROLE r RENAME TO s", "alter_role"),
    ("DROP ROLE r", "drop_role"),
    ("ALTER TABLE orders ADD COLUMN x int", "alter"),
    ("ALTER TABLE orders RENAME TO o2", "alter"),
    ("ALTER TABLE orders SET SCHEMA s", "alter"),
    ("ALTER TABLE orders OWNER TO r", "alter"),
    ("ALTER SYSTEM SET work_mem = '1GB'", "alter_system"),
    ("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC", "alter_default_privileges"),
    ("DROP TABLE orders", "drop"),
    ("DROP DATABASE shop", "drop"),
    ("DROP OWNED BY r", "drop"),
    ("GRANT SELECT ON orders TO r", "grant"),
    ("REVOKE SELECT ON orders FROM r", "revoke"),
    ("GRANT admin TO r", "grant"),
    ("REASSIGN OWNED BY a TO b", "reassign_owned"),
    ("DO $$ BEGIN NULL; END $$", "do"),
    ("CALL p()", "call"),
    ("SET statement_timeout = 0", "set"),
    ("SET LOCAL search_path TO public", "set"),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "set"),
    ("SET ROLE admin", "set_role"),
    ("SET role TO admin", "set_role"),
    ("RESET ROLE", "set_role"),
    ("SET SESSION AUTHORIZATION admin", "set_session_authorization"),
    ("RESET SESSION AUTHORIZATION", "set_session_authorization"),
    ("RESET statement_timeout", "reset"),
    ("RESET ALL", "reset"),
    ("SHOW search_path", "show"),
    ("BEGIN", "begin"),
    ("START TRANSACTION", "begin"),
    ("COMMIT", "commit"),
    ("END", "commit"),
    ("ROLLBACK", "rollback"),
    ("ABORT", "rollback"),
    ("SAVEPOINT a", "savepoint"),
    ("RELEASE SAVEPOINT a", "release"),
    ("ROLLBACK TO SAVEPOINT a", "rollback_to"),
    ("PREPARE TRANSACTION 'x'", "prepare_transaction"),
    ("COMMIT PREPARED 'x'", "commit_prepared"),
    ("ROLLBACK PREPARED 'x'", "rollback_prepared"),
    ("PREPARE p AS SELECT 1", "prepare"),
    ("EXECUTE p", "execute"),
    ("DEALLOCATE p", "deallocate"),
    ("EXPLAIN SELECT 1", "explain"),
    ("EXPLAIN ANALYZE SELECT 1", "explain_analyze"),
    ("VACUUM orders", "vacuum"),
    ("ANALYZE orders", "analyze"),
    ("CLUSTER orders", "cluster"),
    ("REINDEX TABLE orders", "reindex"),
    ("CHECKPOINT", "checkpoint"),
    ("LOAD 'x'", "load"),
    ("LOCK TABLE orders", "lock"),
    ("LISTEN c", "listen"),
    ("UNLISTEN c", "unlisten"),
    ("NOTIFY c", "notify"),
    ("DISCARD ALL", "discard"),
    ("DECLARE c CURSOR FOR SELECT 1", "declare_cursor"),
    ("FETCH c", "fetch"),
    ("MOVE c", "fetch"),
    ("CLOSE c", "close"),
    ("REFRESH MATERIALIZED VIEW mv", "refresh_matview"),
    ("COMMENT ON TABLE orders IS 'x'", "comment"),
    ("SECURITY LABEL ON TABLE orders IS 'x'", "security_label"),
    ("SET CONSTRAINTS ALL DEFERRED", "set_constraints"),
    ("CREATE INDEX ON orders (id)", "create"),
    ("CREATE SCHEMA s", "create"),
    ("CREATE VIEW v AS SELECT 1", "create"),
    ("CREATE SEQUENCE s", "create"),
    ("CREATE TYPE t AS ENUM ('a')", "create"),
    ("ALTER EXTENSION e UPDATE", "alter"),
]


@pytest.mark.parametrize(("sql", "kind"), KIND_CASES)
def test_kind(sql: str, kind: str) -> None:
    st = one(sql)
    assert st.kind == kind
    assert st.kind in KINDS
    assert st.operations[0].kind == kind
    assert st.operations[0].via is None


def test_vocabularies_cover_everything_the_classifier_emits() -> None:
    for sql, _ in KIND_CASES:
        st = one(sql)
        for op in st.operations:
            assert op.kind in KINDS, op
            assert op.object_type is None or op.object_type in OBJECT_TYPES, op
        assert st.flags <= FLAGS


OBJECT_CASES = [
    ("CREATE TABLE t (id int)", "table"),
    ("CREATE TEMP TABLE t (id int)", "temp_table"),
    ("CREATE TEMPORARY TABLE t (id int)", "temp_table"),
    ("CREATE TABLE pg_temp.t (id int)", "temp_table"),
    ("CREATE TEMP VIEW v AS SELECT 1", "temp_view"),
    ("CREATE TEMP SEQUENCE s", "temp_sequence"),
    ("CREATE TEMP TABLE t AS SELECT 1", "temp_table"),
    ("SELECT 1 INTO TEMP t", "temp_table"),
    ("CREATE MATERIALIZED VIEW mv AS SELECT 1", "materialized_view"),
    ("DROP TABLE t", "table"),
    ("DROP MATERIALIZED VIEW mv", "materialized_view"),
    ("DROP SCHEMA s", "schema"),
    ("DROP INDEX i", "index"),
    ("DROP FUNCTION f()", "function"),
    ("DROP DATABASE d", "database"),
    ("DROP OWNED BY r", "owned"),
    ("CREATE INDEX i ON t (a)", "index"),
    ("CREATE PROCEDURE p() LANGUAGE sql AS 'SELECT 1'", "procedure"),
    ("ALTER TABLE t ADD COLUMN a int", "table"),
    ("ALTER VIEW v RENAME TO w", "view"),
]


@pytest.mark.parametrize(("sql", "object_type"), OBJECT_CASES)
def test_object_type(sql: str, object_type: str) -> None:
    assert one(sql).operations[0].object_type == object_type


# ---------------------------------------------------------------------------------- nesting


def test_data_modifying_cte() -> None:
    st = one("WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d")
    assert st.kind == "select"
    assert st.nested_kinds == {"delete"}
    assert st.where == "absent"
    assert st.tables_written == {"orders"}
    assert "d" not in st.tables_read  # a CTE is not a table
    assert st.operations[1].via == "cte"


def test_cte_named_like_a_table_does_not_hide_the_dml_target() -> None:
    st = one("WITH orders AS (SELECT 1) DELETE FROM orders")
    assert st.tables_written == {"orders"}
    assert st.where == "absent"


def test_cte_scoping_non_recursive_sees_only_earlier_siblings() -> None:
    st = one("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a, b")
    assert st.tables_read == {"b"}  # the b inside a is the table b
    st = one("WITH RECURSIVE a AS (SELECT * FROM a) SELECT * FROM a")
    assert st.tables_read == frozenset()


def test_explain_analyze_runs_its_statement_but_plain_explain_does_not() -> None:
    st = one("EXPLAIN ANALYZE DELETE FROM orders")
    assert st.kind == "explain_analyze"
    assert st.nested_kinds == {"delete"}
    assert st.where == "absent"
    assert st.tables_written == {"orders"}
    st = one("EXPLAIN DELETE FROM orders")
    assert st.kind == "explain"
    assert st.nested_kinds == frozenset()
    assert st.where is None
    assert st.tables_written == frozenset()
    assert st.operations[1].kind == "delete"
    assert st.operations[1].executes is False


@pytest.mark.parametrize(
    ("option", "analyze"),
    [
        ("ANALYZE", True),
        ("ANALYZE true", True),
        ("ANALYZE on", True),
        ("ANALYZE 1", True),
        ("ANALYZE 'yes'", True),
        ("ANALYZE false", False),
        ("ANALYZE off", False),
        ("ANALYZE 0", False),
        ("COSTS off, ANALYZE", True),
        ("VERBOSE", False),
    ],
)
def test_explain_analyze_option_spellings(option: str, analyze: bool) -> None:
    st = one(f"EXPLAIN ({option}) UPDATE orders SET a = 1")
    assert (st.kind == "explain_analyze") is analyze
    assert ("update" in st.nested_kinds) is analyze


def test_prepare_exposes_its_body_and_is_judged_by_it() -> None:
    st = one("PREPARE p(int) AS DELETE FROM orders WHERE id = $1")
    assert st.kind == "prepare"
    assert st.prepared_name == "p"
    assert st.nested_kinds == {"delete"}
    assert st.where == "present"
    assert st.body is not None
    assert st.body.statements[0].kind == "delete"
    assert "orders" in st.body.sql.lower()


def test_execute_names_the_prepared_statement() -> None:
    st = one("EXECUTE p(1, 'x')")
    assert st.kind == "execute"
    assert st.prepared_name == "p"
    assert st.executes_prepared == ("p",)
    st = one("EXPLAIN ANALYZE EXECUTE q")
    assert st.executes_prepared == ("q",)
    st = one("EXPLAIN EXECUTE q")
    assert st.executes_prepared == ()  # plain EXPLAIN does not run it
    st = one("CREATE TABLE t AS EXECUTE q")
    assert st.executes_prepared == ("q",)


def test_copy_query_and_program() -> None:
    st = one("COPY (DELETE FROM orders RETURNING *) TO STDOUT")
    assert st.kind == "copy_to"
    assert st.nested_kinds == {"delete"}
    st = one("COPY orders TO PROGRAM 'gzip > /tmp/x'")
    assert st.nested_kinds == {"copy_program"}
    assert st.tables_read == {"orders"}
    st = one("COPY orders FROM '/tmp/x'")
    assert st.kind == "copy_from"
    assert st.nested_kinds == {"copy_file"}
    assert st.tables_written == {"orders"}
    st = one("COPY orders FROM STDIN")
    assert st.nested_kinds == frozenset()


def test_merge_actions() -> None:
    st = one(
        "MERGE INTO orders o USING src s ON o.id = s.id "
        "WHEN MATCHED AND s.gone THEN DELETE "
        "WHEN MATCHED THEN UPDATE SET amount = s.amount "
        "WHEN NOT MATCHED THEN INSERT (id) VALUES (s.id)"
    )
    assert st.kind == "merge"
    assert st.nested_kinds == {"delete", "update", "insert"}
    assert st.wheres == {"present"}
    assert st.tables_read == {"src"}
    assert st.tables_written == {"orders"}


@pytest.mark.parametrize(
    ("sql", "where"),
    [
        ("MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", "tautology"),
        ("MERGE INTO t USING s ON 1 = 1 WHEN MATCHED THEN UPDATE SET a = 1", "tautology"),
        ("MERGE INTO t USING s ON false WHEN NOT MATCHED BY SOURCE THEN DELETE", "absent"),
        ("MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE", "absent"),
        (
            "MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED BY SOURCE AND t.a > 1 "
            "THEN DELETE",
            "present",
        ),
        ("MERGE INTO t USING s ON false WHEN MATCHED THEN DELETE", "present"),
        ("MERGE INTO t USING s ON true WHEN MATCHED AND t.a = 1 THEN DELETE", "present"),
    ],
)
def test_merge_where(sql: str, where: str) -> None:
    assert one(sql).where == where


def test_on_conflict_do_update_counts_as_update() -> None:
    st = one("INSERT INTO t (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 1")
    assert st.kind == "insert"
    assert st.nested_kinds == {"update"}
    assert st.where == "present"
    st = one("INSERT INTO t (id) VALUES (1) ON CONFLICT DO NOTHING")
    assert st.nested_kinds == frozenset()
    st = one("INSERT INTO t SELECT * FROM t ON CONFLICT (id) DO UPDATE SET a = 0")
    assert st.where == "absent"  # re-inserting every row rewrites every row


def test_create_table_as_and_select_into() -> None:
    st = one("CREATE TABLE x AS SELECT * FROM orders")
    assert st.kind == "create_table_as"
    assert st.nested_kinds == {"select"}
    assert st.tables_read == {"orders"}
    assert st.tables_written == {"x"}
    st = one("SELECT * INTO x FROM orders")
    assert st.kind == "select_into"
    assert st.tables_written == {"x"}


def test_rule_actions_are_nested() -> None:
    st = one("CREATE RULE r AS ON INSERT TO products DO ALSO DELETE FROM orders")
    assert st.kind == "create_rule"
    assert st.nested_kinds == {"delete"}
    assert st.where == "absent"
    st = one("CREATE RULE r AS ON INSERT TO t DO INSTEAD (UPDATE a SET x = 1; SELECT 1)")
    assert st.nested_kinds == {"update", "select"}


def test_sql_function_bodies_are_classified() -> None:
    st = one("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DELETE FROM orders'")
    assert st.kind == "create_function"
    assert st.nested_kinds == {"delete"}
    assert st.where == "absent"
    assert not st.opaque
    st = one("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC UPDATE t SET a = 1; END")
    assert st.nested_kinds == {"update"}
    assert not st.opaque
    st = one("CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN pg_read_file('x')::int")
    assert st.dangerous_functions == {"pg_read_file"}


def test_unparseable_sql_function_body_is_opaque() -> None:
    st = one("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'this is not sql'")
    assert st.opaque
    assert "unparsed_body" in st.flags


def test_plpgsql_bodies_are_opaque_but_their_sql_is_seen() -> None:
    st = one(
        "CREATE FUNCTION f(a int) RETURNS void LANGUAGE plpgsql AS $$ "
        "DECLARE n int; BEGIN SELECT count(*) INTO n FROM customers; "
        "UPDATE orders SET amount = 0 WHERE id = a; PERFORM pg_cancel_backend(1); "
        "n := lo_unlink(a); END $$"
    )
    assert st.opaque
    assert {"select", "update"} <= st.nested_kinds
    assert st.where == "present"
    assert st.tables_read >= {"customers"}
    assert st.dangerous_functions == {"pg_cancel_backend", "lo_unlink"}


def test_do_blocks() -> None:
    st = one("DO $$ BEGIN DELETE FROM orders; END $$")
    assert st.kind == "do"
    assert st.opaque
    assert st.nested_kinds == {"delete"}
    st = one("DO $x$ BEGIN EXECUTE 'TRUNCATE ' || 'orders'; END $x$")
    assert "truncate" in st.nested_kinds
    assert "dynamic_sql" in st.flags
    st = one("DO $$ BEGIN EXECUTE format('DELETE FROM %I', 'orders'); END $$")
    assert st.opaque
    assert "dynamic_sql" in st.flags
    st = one("DO LANGUAGE plpython3u $$ import os $$")
    assert "untrusted_language" in st.flags


def test_call_and_triggers_are_opaque() -> None:
    st = one("CALL myproc(1)")
    assert st.opaque
    assert st.functions == {"myproc"}
    st = one("CREATE TRIGGER t AFTER INSERT ON x FOR EACH ROW EXECUTE FUNCTION audit.f()")
    assert st.opaque
    assert st.functions == {"audit.f"}
    assert st.tables_written == {"x"}


def test_c_functions_are_untrusted() -> None:
    st = one("CREATE FUNCTION s() RETURNS int AS 'libc.so.6', 'system' LANGUAGE C")
    assert "untrusted_language" in st.flags
    assert st.opaque


def test_alter_table_drop_column_is_a_nested_drop() -> None:
    st = one("ALTER TABLE orders DROP COLUMN amount, ADD COLUMN b int")
    assert st.kind == "alter"
    assert st.nested_kinds == {"drop"}
    drop = st.operations[1]
    assert (drop.object_type, drop.targets) == ("column", ("orders.amount",))


def test_set_config_role_changes() -> None:
    assert one("SELECT set_config('role', 'admin', false)").nested_kinds == {"set_role"}
    assert one("SELECT pg_catalog.set_config('ROLE', 'a', true)").nested_kinds == {"set_role"}
    assert one("SELECT set_config('session_authorization', 'a', false)").nested_kinds == {
        "set_session_authorization"
    }
    assert one("SELECT set_config('search_path', 'public', false)").nested_kinds == frozenset()
    st = one("SELECT set_config(x, 'a', false) FROM t")
    assert st.nested_kinds == {"set_role"}
    assert "dynamic_set_config" in st.flags
    st = one("SELECT set_config(is_local => false, new_value => 'a', setting_name => 'role')")
    assert st.nested_kinds == {"set_role"}


def test_settings_are_exposed() -> None:
    assert one("SET statement_timeout = '5s'").setting == "statement_timeout"
    assert one("SET pgwarden.prompt = 'x'").setting == "pgwarden.prompt"
    assert one("RESET ALL").setting == "all"
    assert one("SHOW pgwarden.session_id").setting == "pgwarden.session_id"


# ---------------------------------------------------------------------------------- tables


@pytest.mark.parametrize(
    ("sql", "read", "written"),
    [
        ("SELECT * FROM Orders", {"orders"}, set()),
        ('SELECT * FROM "Orders"', {"Orders"}, set()),
        ('SELECT * FROM "public"."orders"', {"public.orders"}, set()),
        ('DELETE FROM U&"\\006frders" WHERE id = 1', set(), {"orders"}),
        ("SELECT * FROM shop.public.orders", {"public.orders"}, set()),
        ("SELECT * FROM a JOIN b ON a.id = b.id", {"a", "b"}, set()),
        (
            "SELECT (SELECT max(x) FROM c) FROM a WHERE EXISTS (SELECT 1 FROM b)",
            {"a", "b", "c"},
            set(),
        ),
        ("INSERT INTO t SELECT * FROM s", {"s"}, {"t"}),
        ("UPDATE t SET a = s.a FROM s WHERE t.id = s.id", {"s"}, {"t"}),
        ("DELETE FROM t USING s WHERE t.id = s.id", {"s"}, {"t"}),
        ("TRUNCATE a, b.c", set(), {"a", "b.c"}),
        ("DROP TABLE a, s.b", set(), {"a", "s.b"}),
        ("DROP SCHEMA s", set(), set()),
        ("CREATE TABLE t (LIKE s)", {"s"}, {"t"}),
        ("SELECT * FROM ONLY orders", {"orders"}, set()),
        ("LOCK TABLE orders", {"orders"}, set()),
        (
            "SELECT * FROM orders, LATERAL (SELECT * FROM customers) c",
            {"orders", "customers"},
            set(),
        ),
    ],
)
def test_tables(sql: str, read: set[str], written: set[str]) -> None:
    st = one(sql)
    assert st.tables_read == read
    assert st.tables_written == written


# ---------------------------------------------------------------------------------- functions


@pytest.mark.parametrize(
    ("sql", "functions", "dangerous"),
    [
        ("SELECT pg_read_file('x')", {"pg_read_file"}, {"pg_read_file"}),
        ("SELECT pg_catalog.pg_read_file('x')", {"pg_read_file"}, {"pg_read_file"}),
        ('SELECT "pg_catalog"."pg_read_file"(\'x\')', {"pg_read_file"}, {"pg_read_file"}),
        ("SELECT PG_READ_FILE('x')", {"pg_read_file"}, {"pg_read_file"}),
        ("SELECT \"PG_READ_FILE\"('x')", {"PG_READ_FILE"}, {"PG_READ_FILE"}),
        (
            "SELECT evil.pg_terminate_backend(1)",
            {"evil.pg_terminate_backend"},
            {"evil.pg_terminate_backend"},
        ),
        ("SELECT * FROM pg_ls_dir('.')", {"pg_ls_dir"}, {"pg_ls_dir"}),
        ("SELECT * FROM dblink('a', 'b') AS t(x int)", {"dblink"}, {"dblink"}),
        ("SELECT lo_import('/x')", {"lo_import"}, {"lo_import"}),
        ("SELECT count(*), max(a) FROM t", {"count", "max"}, set()),
        ("SELECT pg_sleep(1)", {"pg_sleep"}, set()),
        ("SELECT 1 FROM t WHERE a = lower(b)", {"lower"}, set()),
        ("INSERT INTO t VALUES (now())", {"now"}, set()),
        ("CREATE TABLE t (a text DEFAULT pg_read_file('x'))", {"pg_read_file"}, {"pg_read_file"}),
        ("SELECT rank() OVER (ORDER BY a) FROM t", {"rank"}, set()),
        ("EXECUTE p(pg_read_file('x'))", {"pg_read_file"}, {"pg_read_file"}),
        (
            "CREATE OPERATOR ### (LEFTARG = text, RIGHTARG = text, FUNCTION = pg_read_file)",
            {"pg_read_file"},
            {"pg_read_file"},
        ),
    ],
)
def test_functions(sql: str, functions: set[str], dangerous: set[str]) -> None:
    st = one(sql)
    assert st.functions == functions
    assert st.dangerous_functions == dangerous


@pytest.mark.parametrize(
    "name",
    [
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_ls_waldir",
        "pg_stat_file",
        "lo_import",
        "lo_export",
        "lo_unlink",
        "loread",
        "dblink",
        "dblink_exec",
        "dblink_connect",
        "query_to_xml",
        "query_to_xml_and_xmlschema",
        "cursor_to_xml",
        "table_to_xml",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_switch_wal",
        "pg_promote",
        "pg_create_restore_point",
        "pg_file_write",
        "pg_catalog.pg_read_file",
        "PG_READ_FILE",
    ],
)
def test_dangerous(name: str) -> None:
    assert is_dangerous(name)


@pytest.mark.parametrize(
    "name", ["pg_sleep", "count", "lower", "now", "set_config", "pg_advisory_lock", "xpath"]
)
def test_not_dangerous(name: str) -> None:
    assert not is_dangerous(name)


# ---------------------------------------------------------------------------------- WHERE


@pytest.mark.parametrize(
    "where",
    [
        "true",
        "TRUE",
        "1=1",
        "1 = 1 AND true",
        "'a' = 'a'",
        "x OR true",
        "true OR x",
        "NOT false",
        "NOT NOT true",
        "id IS NOT NULL OR 1=1",
        "1 IN (1)",
        "1 IN (2, 1)",
        "3 NOT IN (1, 2)",
        "coalesce(true)",
        "coalesce(null, true)",
        "'t'",
        "'yes'",
        "'on'",
        "' TRUE '",
        "'1'",
        "'yes'::boolean",
        "1::boolean",
        "CAST(1 AS bool)",
        "'1'::int = 1",
        "(((true)))",
        "id = id",
        "t.id = t.id",
        "id >= id",
        "2 > 1",
        "1 <> 2",
        "1 != 2",
        "-1 < 0",
        "1.5 > 1",
        "1 = 1.0",
        "1 BETWEEN 0 AND 2",
        "1 BETWEEN SYMMETRIC 2 AND 0",
        "id BETWEEN id AND id",
        "id IN (id)",
        "lower(status) = lower(status)",
        "id::text = id::text",
        "5 NOT BETWEEN 0 AND 2",
        "'x' LIKE '%'",
        "'abc' LIKE 'a_c'",
        "'ABC' ILIKE 'abc'",
        "'abc' NOT LIKE 'x%'",
        "status LIKE '%'",
        "'abc' ~ 'b'",
        "NULL IS NULL",
        "1 IS NOT NULL",
        "true IS TRUE",
        "false IS NOT TRUE",
        "NULL IS UNKNOWN",
        "EXISTS (SELECT 1)",
        "(SELECT true)",
        "1 = ANY(ARRAY[1, 2])",
        "1 < ALL(ARRAY[2, 3])",
        "length('abc') = 3",
        "upper('a') = 'A'",
        "1 + 1 = 2",
        "7 / 2 = 3",
        "7 % 2 = 1",
        "'a' || 'b' = 'ab'",
        "concat('a', 1) = 'a1'",
        "greatest(1, 2) = 2",
        "least(1, 2) = 1",
        "nullif(1, 2) = 1",
        "1 IS DISTINCT FROM 2",
        "NULL IS NOT DISTINCT FROM NULL",
        "id IS NOT DISTINCT FROM id",
        "CASE WHEN true THEN true END",
        "CASE 1 WHEN 1 THEN true ELSE false END",
        "CASE WHEN x > 1 THEN true ELSE true END",
        "true::text = 'true'",
        "current_user = current_user",
        "ctid IS NOT NULL",
        "id = 5 OR id <> 5",
        "a < 1 OR a >= 1",
        "status IS NULL OR status IS NOT NULL",
        "x IS TRUE OR x IS NOT TRUE",
        "NOT (id = 1 AND id <> 1)",
        "flag OR NOT flag",
        # no column at all: every row or none
        "now() IS NOT NULL",
        "random() < 2",
        "random() < 0.5",  # a random half: not a constant, but not a filter either
        "$1",
        "$1 = $1",
        "EXISTS (SELECT 1 FROM customers)",
        "(SELECT count(*) FROM customers) > 0",
        "current_setting('x') = 'y'",
    ],
)
def test_tautologies(where: str) -> None:
    assert one(f"DELETE FROM orders WHERE {where}").where == "tautology"
    assert one(f"UPDATE orders SET a = 1 WHERE {where}").where == "tautology"


@pytest.mark.parametrize(
    "where",
    [
        "id = 1",
        "id > 0",
        "id IS NOT NULL",
        "false",
        "1 = 0",
        "NULL",
        "NULL = NULL",
        "'a' = 'b'",
        "id = 1 AND true",
        "id = 1 OR false",
        "x AND NOT x",
        "id = $1",
        "id = (SELECT max(id) FROM orders)",
        "EXISTS (SELECT 1 FROM customers c WHERE c.id = orders.customer_id)",
        "CURRENT OF c",
        "status LIKE 'p%'",
        "o.id = c.id",
        "random() < x",
        "id = random()",
        "CASE WHEN x > 1 THEN true ELSE false END",
        "1 IN (2, 3)",
        "'off'::bool",
        "0::bool",
        "x IS TRUE",
    ],
)
def test_not_tautologies(where: str) -> None:
    assert one(f"DELETE FROM orders WHERE {where}").where == "present"


def test_where_absent() -> None:
    assert one("DELETE FROM orders").where == "absent"
    assert one("UPDATE orders SET a = 1").where == "absent"
    assert one("DELETE FROM orders USING customers").where == "absent"
    assert one("SELECT * FROM orders").where is None


def test_worst_where_wins() -> None:
    st = one(
        "WITH a AS (DELETE FROM t WHERE id = 1 RETURNING 1), "
        "b AS (UPDATE u SET x = 1 WHERE true RETURNING 1) SELECT 1"
    )
    assert st.wheres == {"present", "tautology"}
    assert st.where == "tautology"


# ------------------------------------------------------------------ errors, aggregation


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM",
        "delete from orders where",
        "SELEC 1",
        "SELECT 'unterminated",
        "SELECT 1 /* unterminated",
        "DROP TABLE orders;; garbage(",
        "SELECT 1\x00; DROP TABLE orders",
        "EXPLAIN TRUNCATE orders",
        "PREPARE p AS TRUNCATE orders",
    ],
)
def test_unparseable(sql: str) -> None:
    c = classify(sql)
    assert c.error is not None
    assert c.statements == ()
    assert not c.ok


def test_empty_and_comment_only() -> None:
    for sql in ("", "   ", "-- nothing", "/* x */", ";;"):
        c = classify(sql)
        assert c.error is None
        assert c.statements == ()


def test_multi_statement_aggregates() -> None:
    c = classify("SELECT * FROM a; DELETE FROM b WHERE true; SELECT pg_read_file('x')")
    assert [s.kind for s in c.statements] == ["select", "delete", "select"]
    assert c.kinds == {"select", "delete"}
    assert c.tables_read == {"a"}
    assert c.tables_written == {"b"}
    assert c.where == "tautology"
    assert c.dangerous_functions == {"pg_read_file"}
    assert [s.text for s in c.statements] == [
        "SELECT * FROM a",
        "DELETE FROM b WHERE true",
        "SELECT pg_read_file('x')",
    ]


def test_statement_text_with_non_ascii() -> None:
    c = classify("SELECT 'é'; DELETE FROM orders WHERE name = 'ü'")
    assert [s.text for s in c.statements] == [
        "SELECT 'é'",
        "DELETE FROM orders WHERE name = 'ü'",
    ]


def test_split_statements() -> None:
    assert split_statements("SELECT 1; /* c */ SELECT 'a;b'; ") == ("SELECT 1", "SELECT 'a;b'")
    assert split_statements("") == ()
    with pytest.raises(SqlSyntaxError):
        split_statements("SELEC 1")


def test_to_dict_is_json() -> None:
    c = classify(
        "WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d; PREPARE p AS SELECT 1"
    )
    data = json.loads(json.dumps(c.to_dict()))
    assert data["kinds"] == ["delete", "prepare", "select"]
    assert data["statements"][0]["operations"][1] == {
        "kind": "delete",
        "targets": ["orders"],
        "where": "absent",
        "via": "cte",
    }


def test_estimate_sql() -> None:
    assert one("UPDATE t SET a = 1 WHERE b").estimate_sql == "UPDATE t SET a = 1 WHERE b"
    inner = one("EXPLAIN ANALYZE DELETE FROM t WHERE id > 0").estimate_sql
    assert inner is not None
    assert inner.upper().startswith("DELETE FROM T")
    assert one("EXECUTE p(1)").estimate_sql == "EXECUTE p(1)"
    assert one("DO $$ BEGIN NULL; END $$").estimate_sql is None


def test_classification_is_immutable_and_comparable() -> None:
    a, b = classify("DELETE FROM orders"), classify("DELETE FROM orders")
    assert a == b
    with pytest.raises(AttributeError):
        a.error = "x"  # type: ignore[misc]


def test_cache() -> None:
    cache_clear()
    sql = "SELECT * FROM orders WHERE id = 42"
    first = classify_cached(sql)
    second = classify_cached(sql)
    assert first is second
    assert first == classify(sql)
    info = cache_info()
    assert info.hits >= 1
    assert info.maxsize == 4096
    long_sql = "SELECT " + "1 + " * 20000 + "1"
    assert classify_cached(long_sql) is not classify_cached(long_sql)  # not cached


def test_deep_nesting_fails_closed() -> None:
    sql = "SELECT " + "(" * 5000 + "1" + ")" * 5000
    c = classify(sql)
    assert c.error is not None or c.statements


def test_never_raises_on_non_str() -> None:
    c = classify(None)  # type: ignore[arg-type]
    assert isinstance(c, Classification)
    assert c.error is not None


# ------------------------------------------------------------------ prepared statements


def test_registry_resolves_execute_with_the_prepared_body() -> None:
    reg = PreparedRegistry()
    reg.observe(classify("PREPARE wipe AS DELETE FROM orders"))
    assert "wipe" in reg
    c = reg.resolve(classify("EXECUTE wipe"))
    st = c.statements[0]
    assert st.kind == "execute"
    assert st.nested_kinds == {"delete"}
    assert st.where == "absent"
    assert st.tables_written == {"orders"}
    c = reg.resolve(classify("EXPLAIN ANALYZE EXECUTE wipe"))
    assert c.where == "absent"
    c = reg.resolve(classify("EXPLAIN EXECUTE wipe"))
    assert c.where is None  # not run


def test_registry_unknown_name_fails_closed() -> None:
    c = PreparedRegistry().resolve(classify("EXECUTE nope"))
    assert c.error is not None
    assert "nope" in c.error


def test_registry_in_query_order_and_deallocate() -> None:
    reg = PreparedRegistry()
    c = reg.resolve(classify("PREPARE p AS UPDATE t SET a = 1; EXECUTE p"))
    assert c.statements[1].where == "absent"
    assert "p" not in reg  # resolve never changes the registry
    c = reg.resolve(classify("PREPARE p AS SELECT 1; DEALLOCATE p; EXECUTE p"))
    assert c.error is not None
    reg.observe(classify("PREPARE a AS SELECT 1; PREPARE b AS SELECT 2"))
    assert len(reg) == 2
    reg.observe(classify("DEALLOCATE a"))
    assert "a" not in reg
    assert "b" in reg
    reg.observe(classify("DISCARD ALL"))
    assert len(reg) == 0
    reg.observe(classify("PREPARE a AS SELECT 1"))
    reg.observe(classify("DEALLOCATE ALL"))
    assert len(reg) == 0


def test_registry_protocol_level_statements_and_bound() -> None:
    reg = PreparedRegistry(max_entries=2)
    reg.remember("", classify("DELETE FROM t WHERE true"))
    reg.remember("s1", classify("SELECT 1"))
    reg.remember("s2", classify("SELECT 2"))
    assert len(reg) == 2
    assert reg.get("") is None  # the oldest was dropped
    got = reg.get("s2")
    assert got is not None
    assert got.statements[0].kind == "select"
    reg.forget("s2")
    assert reg.get("s2") is None


# ------------------------------------------------------------------ writes by a key (estimates)

KEY_CASES = [
    ("UPDATE orders SET a = 1 WHERE id = 5", '"orders"', (("id", 0),)),
    ("DELETE FROM orders WHERE 5 = id", '"orders"', (("id", 0),)),
    (
        "UPDATE public.orders o SET a = 1 WHERE o.id = $2 AND a > 0",
        '"public"."orders"',
        (("id", 2),),
    ),
    (
        "UPDATE orders SET a = 1 WHERE orders.id = NULL AND (a = 1 OR b = 2)",
        '"orders"',
        (("id", 0),),
    ),
    ("DELETE FROM ONLY orders WHERE id = 1 AND k = 'x'", '"orders"', (("id", 0), ("k", 0))),
    ('UPDATE "Odd""Name" SET a = 1 WHERE "Id" = 1', '"Odd""Name"', (("Id", 0),)),
    # not a bound on the rows: no WHERE, OR, no equality, a cast, another column, a join
    ("UPDATE orders SET a = 1", None, None),
    ("UPDATE orders SET a = 1 WHERE id = 1 OR id = 2", None, None),
    ("UPDATE orders SET a = 1 WHERE id >= 1", None, None),
    ("UPDATE orders SET a = 1 WHERE id = 1::float8", None, None),
    ("UPDATE orders SET a = 1 WHERE id = $1::float8", None, None),
    ("UPDATE orders SET a = 1 WHERE id = other_id", None, None),
    ("UPDATE orders SET a = 1 WHERE id OPERATOR(public.=) 1", None, None),
    ("UPDATE orders o SET a = 1 WHERE orders.id = 1", None, None),
    ("UPDATE orders SET a = 1 WHERE orders.* = 1", None, None),
    ("UPDATE orders SET a = 1 FROM other WHERE orders.id = 1", None, None),
    ("DELETE FROM orders USING other WHERE orders.id = 1", None, None),
    # a data-modifying WITH writes rows of its own (EXPLAIN counts them)
    ("WITH x AS (DELETE FROM other RETURNING 1) DELETE FROM orders WHERE id = 1", None, None),
    ("WITH x AS (DELETE FROM other RETURNING 1) UPDATE orders SET a = 1 WHERE id = 1", None, None),
    ("EXPLAIN ANALYZE DELETE FROM orders WHERE id = 1", None, None),
    ("DELETE FROM pg_temp.orders WHERE id = 1", None, None),
    ("DELETE FROM db.public.orders WHERE id = 1", None, None),
    ("SELECT * FROM orders WHERE id = 1", None, None),
]


@pytest.mark.parametrize(("sql", "relation", "columns"), KEY_CASES)
def test_key_lookup_of_a_write(sql: str, relation: str | None, columns: object) -> None:
    st = one(sql)
    if relation is None:
        assert st.key_lookup is None
    else:
        assert st.key_lookup is not None
        assert (st.key_lookup.relation, st.key_lookup.columns) == (relation, columns)
    assert "key_lookup" not in json.dumps(st.to_dict())  # a hint for the estimator only


def test_key_lookup_is_the_same_for_another_text_of_the_shape() -> None:
    cache_clear()
    first = classify_cached("UPDATE orders SET a = 1 WHERE id = 5")
    again = classify_cached("UPDATE orders SET a = 2 WHERE id = 6")
    assert again.shape is first  # taken from the shape, not classified again
    fresh = classify("UPDATE orders SET a = 2 WHERE id = 6").statements[0].key_lookup
    assert fresh is not None
    assert again.statements[0].key_lookup == fresh


# ------------------------------------------------------- functions a user may have defined


@pytest.mark.parametrize(
    ("name", "users"),
    [
        ("now", False),
        ("current_database", False),
        ("pg_catalog.now", False),  # normalized to "now"
        ("information_schema._pg_truetypid", False),
        ("INFORMATION_SCHEMA._pg_truetypid", False),
        ("purge_orders", True),
        ("public.now", True),  # a user's function of a built-in's name, called by schema
        ("Lower", True),  # "Lower"() is not lower()
        ("uuid_generate_v4", True),  # an extension's: the catalog says so
    ],
)
def test_may_be_users(name: str, users: bool) -> None:
    assert may_be_users(name) is users


def test_function_names_are_normalized_as_may_be_users_expects() -> None:
    c = classify("SELECT pg_catalog.now(), lower('A'), public.lower('A'), purge()")
    assert sorted(filter(may_be_users, c.functions)) == ["public.lower", "purge"]
