"""Parsing policies from their YAML/JSON form: values, defaults and errors that name the key."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from pgwarden.policy import (
    Policy,
    PolicyError,
    Rule,
    When,
    default_policy,
    default_policy_text,
    load_policy,
    parse_policy,
)


def test_full_policy() -> None:
    policy = parse_policy(
        yaml.safe_load(
            """
            mode: audit
            default: deny
            rules:
              - name: analysts-read
                when:
                  groups: [analysts, "data-*"]
                  subjects: agent-7
                  targets: [shop, "reporting_*"]
                  kinds: [SELECT, explain]
                  tables: ["public.*", "*.orders"]
                action: allow
              - name: no-bulk
                when:
                  kinds: [update, delete]
                  where: [absent, tautology]
                  estimated_rows_over: 100
                  estimated_fraction_over: 0.25
                  objects: [table]
                  functions: ["pg_*"]
                  tables_written: [orders]
                  opaque: false
                  dangerous_functions: true
                  flags: [cascade]
                action: deny
                message: "  be careful  "
            """
        )
    )
    assert policy.mode == "audit"
    assert policy.default == "deny"
    first, second = policy.rules
    assert first == Rule(
        name="analysts-read",
        action="allow",
        when=When(
            subjects=("agent-7",),
            groups=("analysts", "data-*"),
            targets=("shop", "reporting_*"),
            kinds=frozenset({"select", "explain"}),
            tables=("public.*", "*.orders"),
        ),
    )
    assert second.when.where == {"absent", "tautology"}
    assert second.when.estimated_rows_over == 100
    assert second.when.estimated_fraction_over == 0.25
    assert second.when.needs_estimate
    assert second.when.opaque is False
    assert second.when.flags == {"cascade"}
    assert second.message == "be careful"


def test_defaults() -> None:
    assert parse_policy({}) == Policy(mode="enforce", default="review", rules=())
    assert parse_policy({"rules": None}).rules == ()
    rule = parse_policy({"rules": [{"name": "r", "action": "allow"}]}).rules[0]
    assert rule.when == When()
    assert rule.message is None


def test_json_input() -> None:
    doc = json.loads('{"mode": "enforce", "rules": [{"name": "x", "action": "deny"}]}')
    assert parse_policy(doc).rules[0].action == "deny"


def test_where_accepts_a_single_string() -> None:
    rule = parse_policy({"rules": [{"name": "r", "action": "deny", "when": {"where": "absent"}}]})
    assert rule.rules[0].when.where == {"absent"}


@pytest.mark.parametrize(
    ("doc", "key", "fragment"),
    [
        ([], "policy", "expected a mapping"),
        ({"mod": "audit"}, "policy.mod", "did you mean 'mode'"),
        ({"mode": "strict"}, "policy.mode", "enforce, audit"),
        ({"mode": 1}, "policy.mode", "expected one of"),
        ({"default": "block"}, "policy.default", "allow, review, deny"),
        ({"rules": {}}, "policy.rules", "expected a list"),
        ({"rules": ["x"]}, "policy.rules[0]", "expected a mapping"),
        ({"rules": [{"action": "deny"}]}, "policy.rules[0].name", "missing"),
        ({"rules": [{"name": "", "action": "deny"}]}, "policy.rules[0].name", "non-empty"),
        ({"rules": [{"name": "default", "action": "deny"}]}, "policy.rules[0].name", "reserved"),
        ({"rules": [{"name": "a"}]}, "policy.rules[0].action", "missing"),
        ({"rules": [{"name": "a", "action": "block"}]}, "policy.rules[0].action", "allow"),
        ({"rules": [{"name": "a", "action": "deny", "wen": {}}]}, "policy.rules[0].wen", "when"),
        (
            {"rules": [{"name": "a", "action": "deny"}, {"name": "a", "action": "allow"}]},
            "policy.rules[1].name",
            "duplicate",
        ),
        (
            {"rules": [{"name": "a", "action": "deny", "message": 3}]},
            "policy.rules[0].message",
            "expected a string",
        ),
        (
            {"rules": [{"name": "a", "action": "deny", "when": []}]},
            "policy.rules[0].when",
            "expected a mapping",
        ),
        (
            {"rules": [{"name": "a", "action": "deny", "when": {"kind": ["delete"]}}]},
            "policy.rules[0].when.kind",
            "did you mean 'kinds'",
        ),
        (
            {"rules": [{"name": "a", "action": "deny", "when": {"kinds": ["delet"]}}]},
            "policy.rules[0].when.kinds[0]",
            "did you mean 'delete'",
        ),
        (
            {"rules": [{"name": "a", "action": "deny", "when": {"kinds": []}}]},
            "policy.rules[0].when.kinds",
            "non-empty list",
        ),
        (
            {"rules": [{"name": "a", "action": "deny", "when": {"kinds": ["select", 3]}}]},
            "policy.rules[0].when.kinds[1]",
            "non-empty string",
        ),
        (
            {"rules": [{"name": "a", "action": "deny", "when": {"objects": ["tabel"]}}]},
            "policy.rules[0].when.objects[0]",
            "did you mean 'table'",
        ),
        (
            {"rules": [{"name": "a", "action": "deny", "when": {"where": "missing"}}]},
            "policy.rules[0].when.where[0]",
            "unknown where value",
        ),
        (
            {"rules": [{"name": "a", "action": "deny", "when": {"flags": ["cascad"]}}]},
            "policy.rules[0].when.flags[0]",
            "did you mean 'cascade'",
        ),
        (
            {"rules": [{"name": "a", "action": "deny", "when": {"opaque": "yes"}}]},
            "policy.rules[0].when.opaque",
            "true or false",
        ),
        (
            {"rules": [{"name": "a", "action": "deny", "when": {"estimated_rows_over": "10"}}]},
            "policy.rules[0].when.estimated_rows_over",
            "expected a number",
        ),
        (
            {"rules": [{"name": "a", "action": "deny", "when": {"estimated_rows_over": True}}]},
            "policy.rules[0].when.estimated_rows_over",
            "expected a number",
        ),
        (
            {"rules": [{"name": "a", "action": "deny", "when": {"estimated_rows_over": -1}}]},
            "policy.rules[0].when.estimated_rows_over",
            "at least 0",
        ),
        (
            {"rules": [{"name": "a", "action": "deny", "when": {"estimated_fraction_over": 1.5}}]},
            "policy.rules[0].when.estimated_fraction_over",
            "between 0 and 1",
        ),
        (
            {"rules": [{"name": "a", "action": "deny", "when": {"subjects": [""]}}]},
            "policy.rules[0].when.subjects[0]",
            "non-empty string",
        ),
        (
            {"rules": [{"name": "a", "action": "deny", "when": {"tables": 5}}]},
            "policy.rules[0].when.tables",
            "list of strings",
        ),
    ],
)
def test_errors_name_the_key(doc: Any, key: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(doc)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")
    assert fragment in str(info.value)


def test_error_path_prefix() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy({"mode": "x"}, "config.policy")
    assert info.value.key == "config.policy.mode"


def test_load_policy() -> None:
    assert load_policy("default") is default_policy()
    assert load_policy(" Default ") is default_policy()
    assert load_policy(None) is default_policy()
    assert load_policy({"default": "allow"}).default == "allow"
    with pytest.raises(PolicyError) as info:
        load_policy("strict")
    assert info.value.key == "policy"
    with pytest.raises(PolicyError):
        load_policy(42)


def test_default_policy_is_the_shipped_yaml() -> None:
    policy = default_policy()
    assert policy.name == "default"
    assert policy.mode == "enforce"
    assert policy.default == "review"
    assert parse_policy(yaml.safe_load(default_policy_text())).rules == policy.rules
    names = [r.name for r in policy.rules]
    assert names[0] == "no-unfiltered-writes"
    assert names[-1] == "allow-ordinary-work"
    # deny rules come before review rules, which come before the final allow
    actions = [r.action for r in policy.rules if r.name != "allow-temporary-objects"]
    assert actions == sorted(actions, key={"deny": 0, "review": 1, "allow": 2}.__getitem__)
