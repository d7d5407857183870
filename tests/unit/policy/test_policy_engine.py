"""Evaluating policies: rule order, matching, identities, modes, estimates, explain."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pgwarden.policy import (
    Decision,
    Policy,
    PolicyIdentity,
    RowEstimate,
    default_policy,
    evaluate,
    explain,
    needs_estimate,
    parse_policy,
)
from pgwarden.sql import PreparedRegistry, classify

AGENT = PolicyIdentity("agent-7", ("agents", "team-a"))
ALICE = PolicyIdentity("alice@example.com", ("dba",))
NOBODY = PolicyIdentity("anon")


def policy(*rules: dict[str, Any], default: str = "allow", mode: str = "enforce") -> Policy:
    return parse_policy({"mode": mode, "default": default, "rules": list(rules)})


def decide(
    p: Policy,
    sql: str,
    who: PolicyIdentity = AGENT,
    target: str = "shop",
    estimate: Any = None,
) -> Decision:
    return evaluate(p, classify(sql), who, target, estimate)


# ------------------------------------------------------------------------- rule order, default


def test_first_matching_rule_wins() -> None:
    p = policy(
        {"name": "first", "when": {"kinds": ["delete"]}, "action": "review"},
        {"name": "second", "when": {"kinds": ["delete"]}, "action": "deny"},
    )
    d = decide(p, "DELETE FROM t WHERE id = 1")
    assert (d.action, d.rule) == ("review", "first")
    q = policy(
        {"name": "second", "when": {"kinds": ["delete"]}, "action": "deny"},
        {"name": "first", "when": {"kinds": ["delete"]}, "action": "review"},
    )
    assert decide(q, "DELETE FROM t WHERE id = 1").rule == "second"


def test_default_applies_when_nothing_matches() -> None:
    p = policy({"name": "x", "when": {"kinds": ["delete"]}, "action": "deny"}, default="review")
    d = decide(p, "SELECT 1")
    assert (d.action, d.rule) == ("review", "default")
    assert "no rule matched" in d.reason
    assert decide(policy(default="deny"), "SELECT 1").action == "deny"
    assert decide(policy(default="allow"), "SELECT 1").action == "allow"


def test_empty_when_matches_everything() -> None:
    p = policy({"name": "all", "action": "deny"})
    assert decide(p, "SELECT 1").rule == "all"


def test_message_is_in_the_reason() -> None:
    p = policy(
        {
            "name": "nw",
            "when": {"kinds": ["delete"], "where": "absent"},
            "action": "deny",
            "message": "add a WHERE",
        }
    )
    d = decide(p, "DELETE FROM public.orders")
    assert d.reason == "DELETE without WHERE on public.orders: add a WHERE"
    assert d.client_message == "DELETE without WHERE on public.orders: add a WHERE (rule nw)"


# ------------------------------------------------------------------------- severity over statements


def test_most_severe_statement_decides() -> None:
    p = policy(
        {"name": "deny-drop", "when": {"kinds": ["drop"]}, "action": "deny"},
        {"name": "review-create", "when": {"kinds": ["create"]}, "action": "review"},
    )
    d = decide(p, "SELECT 1; CREATE TABLE t (a int); DROP TABLE t; SELECT 2")
    assert (d.action, d.rule, d.statement_index) == ("deny", "deny-drop", 2)
    assert d.reason.startswith("statement 3 of 4: DROP TABLE t")
    d = decide(p, "CREATE TABLE a (x int); CREATE TABLE b (x int)")
    assert (d.action, d.statement_index) == ("review", 0)
    d = decide(p, "SELECT 1; SELECT 2")
    assert (d.action, d.statement_index) == ("allow", 0)


def test_unparseable_is_denied_even_in_audit_mode() -> None:
    for mode in ("enforce", "audit"):
        d = decide(policy(mode=mode), "DELETE FROM")
        assert (d.action, d.rule, d.effective_action) == ("deny", "unparseable", "deny")
        assert "syntax error" in d.reason


def test_empty_query_is_allowed() -> None:
    d = decide(policy(default="deny"), "  -- nothing  ")
    assert (d.action, d.rule) == ("allow", None)


# ------------------------------------------------------------------------- modes


def test_audit_mode_reports_but_does_not_block() -> None:
    p = policy({"name": "nd", "when": {"kinds": ["drop"]}, "action": "deny"}, mode="audit")
    d = decide(p, "DROP TABLE t")
    assert (d.action, d.effective_action, d.mode) == ("deny", "allow", "audit")
    e = decide(
        policy({"name": "nd", "when": {"kinds": ["drop"]}, "action": "deny"}), "DROP TABLE t"
    )
    assert (e.action, e.effective_action, e.mode) == ("deny", "deny", "enforce")


# ------------------------------------------------------------------------- identities and targets


@pytest.mark.parametrize(
    ("when", "who", "target", "matches"),
    [
        ({"subjects": ["agent-7"]}, AGENT, "shop", True),
        ({"subjects": ["agent-*"]}, AGENT, "shop", True),
        ({"subjects": ["agent-?"]}, AGENT, "shop", True),
        ({"subjects": "agent-7"}, ALICE, "shop", False),
        ({"subjects": ["*@example.com"]}, ALICE, "shop", True),
        ({"subjects": ["Agent-7"]}, AGENT, "shop", False),
        ({"groups": ["dba"]}, ALICE, "shop", True),
        ({"groups": ["dba"]}, AGENT, "shop", False),
        ({"groups": ["team-*"]}, AGENT, "shop", True),
        ({"groups": ["team-*"]}, NOBODY, "shop", False),
        ({"targets": ["shop"]}, AGENT, "shop", True),
        ({"targets": ["shop"]}, AGENT, "shop2", False),
        ({"targets": ["shop*"]}, AGENT, "shop2", True),
        ({"targets": ["prod-*", "staging"]}, AGENT, "staging", True),
        ({"subjects": ["agent-7"], "groups": ["dba"]}, AGENT, "shop", False),
        ({"subjects": ["agent-7"], "targets": ["shop"]}, AGENT, "shop", True),
    ],
)
def test_identity_and_target_matching(
    when: dict[str, Any], who: PolicyIdentity, target: str, matches: bool
) -> None:
    p = policy({"name": "r", "when": when, "action": "deny"}, default="allow")
    assert (decide(p, "SELECT 1", who, target).rule == "r") is matches


def test_identity_of_adapts_other_identity_objects() -> None:
    class Other:
        subject = "s"
        groups = ["a", "b"]

    assert PolicyIdentity.of(Other()) == PolicyIdentity("s", ("a", "b"))


# ------------------------------------------------------------------------- statement matching


@pytest.mark.parametrize(
    ("pattern", "sql", "matches"),
    [
        ("orders", "SELECT * FROM orders", True),
        ("orders", "SELECT * FROM public.orders", True),
        ("orders", "SELECT * FROM sales.orders", True),
        ("ORDERS", "SELECT * FROM orders", True),
        ("public.orders", "SELECT * FROM orders", True),
        ("public.orders", "SELECT * FROM public.orders", True),
        ("public.orders", "SELECT * FROM sales.orders", False),
        ("*.orders", "SELECT * FROM orders", True),
        ("*.orders", "SELECT * FROM x.orders", True),
        ("sales.*", "SELECT * FROM sales.orders", True),
        ("sales.*", "SELECT * FROM orders", False),
        ("order*", "SELECT * FROM orders_archive", True),
        ("customers", "SELECT * FROM orders", False),
        ("customers", "SELECT * FROM orders WHERE customer_id IN (SELECT id FROM customers)", True),
        ("customers", "WITH customers AS (SELECT 1) SELECT * FROM customers", False),
        ("orders", "DELETE FROM orders WHERE id = 1", True),
    ],
)
def test_table_globs_on_deny_rules(pattern: str, sql: str, matches: bool) -> None:
    p = policy({"name": "r", "when": {"tables": [pattern]}, "action": "deny"})
    assert (decide(p, sql).rule == "r") is matches


def test_tables_written() -> None:
    p = policy({"name": "r", "when": {"tables_written": ["orders"]}, "action": "deny"})
    assert decide(p, "UPDATE orders SET a = 1 WHERE id = 1").rule == "r"
    assert decide(p, "SELECT * FROM orders").rule == "default"
    assert decide(p, "INSERT INTO log SELECT * FROM orders").rule == "default"


@pytest.mark.parametrize(
    ("pattern", "sql", "matches"),
    [
        ("pg_sleep", "SELECT pg_sleep(1)", True),
        ("pg_sleep", "SELECT pg_catalog.pg_sleep(1)", True),
        ("pg_catalog.pg_sleep", "SELECT pg_sleep(1)", True),
        ("pg_*", "SELECT pg_backend_pid()", True),
        ("myschema.*", "SELECT myschema.f()", True),
        ("myschema.*", "SELECT f()", False),
        ("lower", "SELECT upper('a')", False),
        ("count", "SELECT * FROM t WHERE x IN (SELECT count(*) FROM u)", True),
    ],
)
def test_function_globs(pattern: str, sql: str, matches: bool) -> None:
    p = policy({"name": "r", "when": {"functions": [pattern]}, "action": "deny"})
    assert (decide(p, sql).rule == "r") is matches


def test_kinds_match_nested_operations_on_deny_rules() -> None:
    p = policy({"name": "r", "when": {"kinds": ["delete"]}, "action": "deny"})
    assert decide(p, "WITH d AS (DELETE FROM t WHERE a = 1 RETURNING 1) SELECT 1").rule == "r"
    assert decide(p, "EXPLAIN ANALYZE DELETE FROM t WHERE a = 1").rule == "r"
    assert decide(p, "EXPLAIN DELETE FROM t").rule == "default"  # not executed


def test_kinds_and_where_must_hold_for_the_same_operation() -> None:
    p = policy({"name": "r", "when": {"kinds": ["delete"], "where": "absent"}, "action": "deny"})
    sql = (
        "WITH a AS (DELETE FROM t WHERE id = 1 RETURNING 1), "
        "b AS (UPDATE u SET x = 1 RETURNING 1) SELECT 1"
    )
    assert decide(p, sql).rule == "default"  # the unfiltered one is the UPDATE
    q = policy({"name": "r", "when": {"where": "absent"}, "action": "deny"})
    assert decide(q, sql).rule == "r"


def test_objects() -> None:
    p = policy({"name": "r", "when": {"kinds": ["drop"], "objects": ["table"]}, "action": "deny"})
    assert decide(p, "DROP TABLE t").rule == "r"
    assert decide(p, "DROP INDEX i").rule == "default"
    assert decide(p, "ALTER TABLE t DROP COLUMN c").rule == "default"


def test_opaque_dangerous_and_flags() -> None:
    p = policy(
        {"name": "danger", "when": {"dangerous_functions": True}, "action": "deny"},
        {"name": "opaque", "when": {"opaque": True}, "action": "review"},
        {"name": "cascade", "when": {"flags": ["cascade"]}, "action": "deny"},
    )
    d = decide(p, "SELECT pg_read_file('/etc/passwd')")
    assert d.rule == "danger"
    assert "pg_read_file" in d.reason
    assert decide(p, "DO $$ BEGIN NULL; END $$").rule == "opaque"
    assert decide(p, "DROP TABLE t CASCADE").rule == "cascade"
    assert decide(p, "DROP TABLE t").rule == "default"
    q = policy({"name": "clean", "when": {"dangerous_functions": False}, "action": "allow"},
               default="deny")  # fmt: skip
    assert decide(q, "SELECT 1").rule == "clean"
    assert decide(q, "SELECT lo_import('x')").rule == "default"


def test_allow_rules_must_cover_every_operation() -> None:
    p = policy(
        {"name": "reads", "when": {"kinds": ["select"]}, "action": "allow"},
        default="deny",
    )
    assert decide(p, "SELECT * FROM t").rule == "reads"
    d = decide(p, "WITH d AS (DELETE FROM t WHERE id = 1 RETURNING 1) SELECT * FROM d")
    assert (d.action, d.rule) == ("deny", "default")
    assert decide(p, "SELECT set_config('role', 'x', false)").rule == "default"


def test_allow_rules_must_cover_every_table_and_function() -> None:
    p = policy(
        {"name": "reporting", "when": {"kinds": ["select"], "tables": ["reporting.*"]},
         "action": "allow"},
        {"name": "pure", "when": {"functions": ["count", "sum"]}, "action": "allow"},
        default="deny",
    )  # fmt: skip
    assert decide(p, "SELECT * FROM reporting.sales").rule == "reporting"
    assert decide(p, "SELECT * FROM reporting.sales, public.customers").rule == "default"
    assert decide(p, "SELECT 1").rule == "default"  # no table at all: not "every table"
    assert decide(p, "SELECT count(*), sum(a) FROM t").rule == "pure"
    assert decide(p, "SELECT count(*), pg_sleep(1) FROM t").rule == "default"


def test_allow_rule_where_and_objects_need_a_witness() -> None:
    p = policy(
        {"name": "targeted", "when": {"kinds": ["update", "delete", "select"], "where": "present"},
         "action": "allow"},
        {"name": "temp", "when": {"kinds": ["create"], "objects": ["temp_table"]},
         "action": "allow"},
        default="deny",
    )  # fmt: skip
    assert decide(p, "DELETE FROM t WHERE id = 1").rule == "targeted"
    assert decide(p, "DELETE FROM t").rule == "default"
    assert decide(p, "SELECT 1").rule == "default"
    assert decide(p, "CREATE TEMP TABLE x (a int)").rule == "temp"
    assert decide(p, "CREATE TABLE x (a int)").rule == "default"


# ------------------------------------------------------------------------- estimates


BLAST = policy(
    {"name": "big", "when": {"kinds": ["update", "delete", "merge"], "estimated_rows_over": 1000},
     "action": "review"},
    {"name": "most", "when": {"kinds": ["update", "delete"], "estimated_fraction_over": 0.5},
     "action": "review"},
    {"name": "ok", "when": {"kinds": ["select", "update", "delete", "merge", "insert"]},
     "action": "allow"},
    default="deny",
)  # fmt: skip


def test_estimate_rules() -> None:
    sql = "UPDATE t SET a = 1 WHERE b > 3"
    assert decide(BLAST, sql, estimate=RowEstimate(5000, 1_000_000)).rule == "big"
    assert decide(BLAST, sql, estimate=RowEstimate(600, 1000)).rule == "most"
    assert decide(BLAST, sql, estimate=RowEstimate(10, 1000)).rule == "ok"
    assert decide(BLAST, sql, estimate=RowEstimate(1000, 1000)).rule == "most"  # not over 1000
    assert decide(BLAST, sql, estimate=RowEstimate(600, None)).rule == "ok"  # no fraction
    assert decide(BLAST, sql, estimate=RowEstimate(600, 0)).rule == "ok"
    d = decide(BLAST, sql, estimate=RowEstimate(5000, 10000))
    assert "estimated to touch 5,000 rows (50% of the table)" in d.reason
    # A count (the WHERE was one the planner only guesses at) is worded as one: an approver
    # weighs a count and a guess differently.
    d = decide(BLAST, sql, estimate=RowEstimate(5000, 10000, counted=True))
    assert d.rule == "big" and "would touch 5,000 rows by count (50% of the table)" in d.reason
    assert "estimated" not in d.reason


def test_rows_through_foreign_keys_count_toward_rows_not_the_fraction() -> None:
    sql = "DELETE FROM tenants WHERE id = 1"
    d = decide(BLAST, sql, estimate=RowEstimate(1, 2, cascaded=4500))
    assert d.rule == "big"
    assert "estimated to touch 1 rows (50% of the table) and 4,500 more through foreign keys" in (
        d.reason
    )
    assert decide(BLAST, sql, estimate=RowEstimate(1, 100, cascaded=999)).rule == "ok"
    assert decide(BLAST, sql, estimate=RowEstimate(1, 100, cascaded=1000)).rule == "big"
    assert decide(BLAST, sql, estimate=RowEstimate(10, 100, cascaded=900)).rule == "ok"
    assert RowEstimate(10, 100, cascaded=900).fraction == 0.1


def test_missing_estimate_skips_the_rule_and_says_so() -> None:
    d = decide(BLAST, "UPDATE t SET a = 1 WHERE b > 3")
    assert (d.rule, d.estimate_missing) == ("ok", True)
    d = decide(BLAST, "SELECT 1")
    assert (d.rule, d.estimate_missing) == ("ok", False)


def test_needs_estimate() -> None:
    who, target = AGENT, "shop"
    assert needs_estimate(BLAST, classify("DELETE FROM t WHERE id = 1"), who, target)
    assert needs_estimate(BLAST, classify("SELECT 1; UPDATE t SET a = 1 WHERE b"), who, target)
    assert not needs_estimate(BLAST, classify("SELECT * FROM t"), who, target)
    assert not needs_estimate(BLAST, classify("INSERT INTO t VALUES (1)"), who, target)
    assert not needs_estimate(BLAST, classify("DELETE FROM"), who, target)
    # a rule that decides before the estimate rules makes the estimate moot
    p = parse_policy(
        {"rules": [{"name": "no-t", "when": {"tables": ["t"]}, "action": "review"},
                   *[{"name": r.name, "when": {}, "action": "allow"} for r in BLAST.rules[:0]]]}
    )  # fmt: skip
    assert not needs_estimate(p, classify("DELETE FROM t WHERE id = 1"), who, target)
    # a query refused anyway needs no EXPLAIN
    deny_drop = parse_policy(
        {"rules": [{"name": "nd", "when": {"kinds": ["drop"]}, "action": "deny"},
                   {"name": "big", "when": {"estimated_rows_over": 1}, "action": "review"}]}
    )  # fmt: skip
    assert needs_estimate(deny_drop, classify("DELETE FROM t WHERE id = 1"), who, target)
    assert not needs_estimate(
        deny_drop, classify("DELETE FROM t WHERE id = 1; DROP TABLE t"), who, target
    )
    assert BLAST.needs_estimate(classify("DELETE FROM t WHERE id = 1"), who, target)


def test_estimates_per_statement() -> None:
    c = classify("UPDATE t SET a = 1 WHERE id = 1; UPDATE t SET a = 1 WHERE b")
    small, large = RowEstimate(1, 100), RowEstimate(90, 100)
    assert evaluate(BLAST, c, AGENT, "shop", [small, large]).rule == "most"
    assert evaluate(BLAST, c, AGENT, "shop", [small, small]).rule == "ok"
    assert evaluate(BLAST, c, AGENT, "shop", {1: large}).statement_index == 1
    assert evaluate(BLAST, c, AGENT, "shop", [small]).estimate_missing


def test_row_estimate_fraction() -> None:
    assert RowEstimate(50, 100).fraction == 0.5
    assert RowEstimate(500, 100).fraction == 1.0
    assert RowEstimate(5, None).fraction is None


# ------------------------------------------------------------------------- default policy specifics


@pytest.mark.parametrize(
    ("sql", "action", "rule"),
    [
        ("DELETE FROM orders", "deny", "no-unfiltered-writes"),
        ("UPDATE orders SET a = 1 WHERE 1=1", "deny", "no-unfiltered-writes"),
        ("TRUNCATE orders", "deny", "no-truncate"),
        ("DROP TABLE orders", "deny", "no-drop-data"),
        ("DROP VIEW v CASCADE", "deny", "no-drop-cascade"),
        ("DROP INDEX i", "review", "review-drop"),
        ("SELECT pg_terminate_backend(1)", "deny", "no-dangerous-functions"),
        ("COPY t TO PROGRAM 'x'", "deny", "no-server-files-or-programs"),
        ("CREATE FUNCTION f() RETURNS int AS 'x', 'y' LANGUAGE c", "deny", "no-untrusted-code"),
        ("ALTER SYSTEM SET x = 1", "deny", "no-server-reconfiguration"),
        ("GRANT SELECT ON t TO u", "review", "review-roles-and-privileges"),
        ("SET ROLE admin", "review", "review-roles-and-privileges"),
        ("DO $$ BEGIN NULL; END $$", "review", "review-opaque-code"),
        ("CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING", "review", "review-code"),
        ("CREATE TEMP TABLE x (a int)", "allow", "allow-temporary-objects"),
        ("CREATE TABLE x (a int)", "review", "review-schema-changes"),
        ("VACUUM t", "review", "review-maintenance"),
        ("SELECT 1", "allow", "allow-ordinary-work"),
        ("PREPARE TRANSACTION 'x'", "review", "review-maintenance"),
        ("IMPORT FOREIGN SCHEMA s FROM SERVER f INTO public", "review", "review-schema-changes"),
    ],
)
def test_default_policy_rules(sql: str, action: str, rule: str) -> None:
    d = decide(default_policy(), sql)
    assert (d.action, d.rule) == (action, rule)


def test_default_policy_judges_execute_by_the_prepared_body() -> None:
    reg = PreparedRegistry()
    reg.observe(classify("PREPARE wipe AS DELETE FROM orders"))
    reg.observe(classify("PREPARE one(int) AS DELETE FROM orders WHERE id = $1"))
    p = default_policy()
    assert evaluate(p, reg.resolve(classify("EXECUTE wipe")), AGENT, "shop").action == "deny"
    assert evaluate(p, reg.resolve(classify("EXECUTE one(3)")), AGENT, "shop").action == "allow"
    c = reg.resolve(classify("EXECUTE one(3)"))
    assert needs_estimate(p, c, AGENT, "shop")
    assert c.statements[0].estimate_sql == "EXECUTE one(3)"


def test_default_policy_large_writes_are_held() -> None:
    p = default_policy()
    sql = "DELETE FROM orders WHERE created_at < '2024-01-01'"
    assert decide(p, sql, estimate=RowEstimate(1500, 100000)).rule == "review-large-writes"
    assert decide(p, sql, estimate=RowEstimate(300, 500)).rule == "review-most-of-a-table"
    assert decide(p, sql, estimate=RowEstimate(1, 1)).rule == "allow-ordinary-work"
    assert decide(p, sql, estimate=RowEstimate(10, 500)).rule == "allow-ordinary-work"


# ------------------------------------------------------------------------- explain


def test_explain_is_json_and_complete() -> None:
    out = explain(
        default_policy(),
        "SELECT 1; WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d",
        AGENT,
        "shop",
    )
    text = json.dumps(out)
    assert json.loads(text) == out
    assert out["decision"] == "deny"
    assert out["effective_action"] == "deny"
    assert out["rule"] == "no-unfiltered-writes"
    assert out["statement_index"] == 1
    assert "DELETE without WHERE on orders" in out["reason"]
    assert out["policy"] == "default"
    assert out["identity"] == {"subject": "agent-7", "groups": ["agents", "team-a"]}
    assert out["target"] == "shop"
    assert out["error"] is None
    assert [s["action"] for s in out["statements"]] == ["allow", "deny"]
    assert out["statements"][1]["nested_kinds"] == ["delete"]
    assert out["statements"][1]["where"] == "absent"


def test_explain_unparseable_and_estimates() -> None:
    out = explain(default_policy(), "DELETE FROM", AGENT, "shop")
    assert (out["decision"], out["rule"]) == ("deny", "unparseable")
    assert out["statements"] == []
    assert out["error"]
    out = explain(default_policy(), "DELETE FROM orders WHERE id > 0", AGENT, "shop")
    assert out["needs_estimate"] is True
    assert out["estimate_missing"] is True
    out = explain(
        default_policy(),
        classify("DELETE FROM orders WHERE id > 0"),
        AGENT,
        "shop",
        RowEstimate(300, 300),
    )
    assert (out["decision"], out["rule"]) == ("review", "review-most-of-a-table")


def test_decision_to_dict() -> None:
    d = decide(default_policy(), "TRUNCATE orders")
    assert d.to_dict() == {
        "action": "deny",
        "effective_action": "deny",
        "mode": "enforce",
        "rule": "no-truncate",
        "reason": d.reason,
        "statement_index": 0,
        "estimate_missing": False,
    }
    assert d.reason.startswith("TRUNCATE orders")


def test_decision_effective_action() -> None:
    assert Decision("deny", "r", "x", "audit").effective_action == "allow"
    assert Decision("deny", "r", "x", "audit", fail_closed=True).effective_action == "deny"
    assert Decision("review", "r", "x").effective_action == "review"
    assert Decision("allow", None, "x").effective_action == "allow"


def test_explain_with_a_registry() -> None:
    reg = PreparedRegistry()
    reg.observe(classify("PREPARE wipe AS DELETE FROM orders"))
    out = explain(default_policy(), "EXECUTE wipe", AGENT, "shop", registry=reg)
    assert (out["decision"], out["rule"]) == ("deny", "no-unfiltered-writes")
    assert "run by EXECUTE of a prepared statement" in out["reason"]
    out = explain(default_policy(), "EXECUTE unknown", AGENT, "shop", registry=reg)
    assert (out["decision"], out["rule"]) == ("deny", "unparseable")
    out = explain(default_policy(), "EXECUTE wipe", AGENT, "shop")
    assert out["decision"] == "allow"  # without the session's registry it cannot know
