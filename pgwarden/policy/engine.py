"""Evaluate a Policy: (Classification, identity, target, row estimate) -> Decision. Pure.

Each statement of a query is decided by the first rule that matches it (or the policy's
default); the query's decision is the most severe of its statements' (deny > review > allow),
so one denied statement refuses the whole string. SQL that cannot be classified is denied
with rule ``unparseable``, in audit mode too (it is never forwarded).

Row estimates (blast radius): a rule with ``estimated_rows_over`` or
``estimated_fraction_over`` only applies to statements that UPDATE, DELETE or MERGE, and only
when the caller supplies an estimate; without one the rule is skipped (``Decision.estimate_missing``
says so). ``needs_estimate`` tells the caller beforehand whether an estimate could change the
decision, so that it asks PostgreSQL (``EXPLAIN``, never ``EXPLAIN ANALYZE``) only then.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from pgwarden.policy.model import (
    SEVERITY,
    Action,
    Decision,
    Policy,
    PolicyIdentity,
    RowEstimate,
    Rule,
    When,
)
from pgwarden.sql import (
    Classification,
    Operation,
    PreparedRegistry,
    StatementInfo,
    classify_cached,
)

__all__ = [
    "EstimateInput",
    "describe_operation",
    "describe_statement",
    "evaluate",
    "explain",
    "needs_estimate",
]

#: A single estimate (applied to every statement), one per statement, or by statement index.
EstimateInput = RowEstimate | Sequence[RowEstimate | None] | Mapping[int, RowEstimate] | None

#: Operations a row estimate is about.
ESTIMABLE_KINDS = frozenset({"update", "delete", "merge"})

_KIND_TEXT = {
    "select_into": "SELECT INTO",
    "create_table_as": "CREATE TABLE AS",
    "explain_analyze": "EXPLAIN ANALYZE",
    "copy_to": "COPY TO",
    "copy_from": "COPY FROM",
    "copy_program": "COPY to/from a server program",
    "copy_file": "COPY to/from a server file",
    "do": "DO block",
    "declare_cursor": "DECLARE CURSOR",
    "rollback_to": "ROLLBACK TO SAVEPOINT",
    "prepare_transaction": "PREPARE TRANSACTION",
    "commit_prepared": "COMMIT PREPARED",
    "rollback_prepared": "ROLLBACK PREPARED",
    "refresh_matview": "REFRESH MATERIALIZED VIEW",
    "create_function": "CREATE",
    "create_trigger": "CREATE",
    "create_rule": "CREATE RULE",
}

_FLAG_TEXT = {
    "cascade": "with CASCADE",
    "if_exists": "with IF EXISTS",
    "untrusted_language": "in an untrusted language (it can run anything on the server)",
    "unparsed_body": "with a body the gateway cannot parse",
    "dynamic_sql": "running SQL built at run time",
    "row_locks": "locking rows",
    "dynamic_set_config": "with a computed set_config() name",
}

_VIA_TEXT = {
    "cte": "in a WITH clause",
    "explain": "under EXPLAIN, not run",
    "explain_analyze": "run by EXPLAIN ANALYZE",
    "prepare": "in a prepared statement",
    "execute": "run by EXECUTE of a prepared statement",
    "copy": "in COPY",
    "create_table_as": "in CREATE TABLE AS",
    "view": "in a view",
    "cursor": "in a cursor",
    "rule": "in a rule action",
    "function_body": "in a function body",
    "plpgsql": "in procedural code",
    "dynamic_sql": "in dynamic SQL",
    "merge": "in a MERGE action",
    "on_conflict": "by INSERT ... ON CONFLICT DO UPDATE",
    "alter": "in ALTER TABLE",
    "schema": "in CREATE SCHEMA",
    "set_config": "via set_config()",
}


def _words(name: str) -> str:
    return name.replace("_", " ").upper()


def describe_operation(op: Operation) -> str:
    """Human text for one operation, e.g. ``DELETE without WHERE on orders (in a WITH clause)``."""
    targets = ", ".join(t for t in op.targets if t)
    kind = op.kind
    if kind in ("update", "delete"):
        text = kind.upper()
        if op.where == "absent":
            text += " without WHERE"
        if targets:
            text += f" on {targets}"
        if op.where == "tautology":
            text += " with a WHERE that is always true"
    elif kind == "create_table_as":
        obj = _words(op.object_type or "table").replace("TEMP ", "TEMPORARY ")
        text = f"CREATE {obj} {targets} AS".replace("  ", " ")
    elif kind == "call":
        text = f"CALL {targets}" if targets else "CALL"
    elif kind in ("set", "reset", "show", "discard", "set_role", "prepare", "execute"):
        text = f"{_words(kind)} {targets}".strip()
    else:
        text = _KIND_TEXT.get(kind, _words(kind))
        if op.object_type and kind in (
            "create", "alter", "drop", "create_function", "create_trigger", "create_table_as",
            "grant", "revoke",
        ):  # fmt: skip
            text += (" on " if kind in ("grant", "revoke") else " ") + _words(op.object_type)
        if targets and kind not in ("copy_program", "copy_file"):
            text += f" {targets}"
        elif targets:
            text += f" ({targets})"
    if op.via is not None:
        text += f" ({_VIA_TEXT.get(op.via, op.via)})"
    return text


def describe_statement(st: StatementInfo) -> str:
    """Human text for a statement: its own operation, and the tables it reads."""
    text = describe_operation(st.operations[0]) if st.operations else _words(st.kind)
    if st.tables_read and not st.operations[0].targets:
        text += f" reading {', '.join(sorted(st.tables_read))}"
    return text


# -- matching ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Match:
    op: Operation | None
    facts: tuple[str, ...] = ()


class _NeedsEstimate:
    pass


_NEEDS_ESTIMATE = _NeedsEstimate()


def _glob_any(patterns: tuple[str, ...], value: str) -> bool:
    return any(fnmatchcase(value, p) for p in patterns)


def _table_matches(pattern: str, name: str) -> bool:
    p, n = pattern.lower(), name.lower()
    if "." not in p:
        return fnmatchcase(n.rsplit(".", 1)[-1], p)
    candidates = (n,) if "." in n else (n, f"public.{n}")
    return any(fnmatchcase(c, p) for c in candidates)


def _function_matches(pattern: str, name: str) -> bool:
    p, n = pattern.lower(), name.lower()
    if p.startswith("pg_catalog."):
        p = p.removeprefix("pg_catalog.")
    if "." not in p:
        return fnmatchcase(n.rsplit(".", 1)[-1], p)
    return fnmatchcase(n, p)


def _names_match(
    patterns: tuple[str, ...], names: frozenset[str], universal: bool, matcher: Any
) -> bool:
    if universal:
        return bool(names) and all(any(matcher(p, n) for p in patterns) for n in names)
    return any(matcher(p, n) for n in names for p in patterns)


def _op_ok(op: Operation, w: When) -> bool:
    if w.kinds is not None and op.kind not in w.kinds:
        return False
    if w.objects is not None and op.object_type not in w.objects:
        return False
    return w.where is None or op.where in w.where


def _ops_match(st: StatementInfo, w: When, universal: bool) -> tuple[bool, Operation | None]:
    ops = st.executed_operations
    if w.kinds is None and w.objects is None and w.where is None:
        return True, None
    if not universal:
        for op in ops:
            if _op_ok(op, w):
                return True, op
        return False, None
    if w.kinds is not None and not all(op.kind in w.kinds for op in ops):
        return False, None
    if w.objects is not None:
        with_objects = [op for op in ops if op.object_type is not None]
        if not with_objects or not all(op.object_type in w.objects for op in with_objects):
            return False, None
    if w.where is not None:
        filtered = [op for op in ops if op.where is not None]
        if not filtered or not all(op.where in w.where for op in filtered):
            return False, None
    return True, ops[0] if ops else None


def _match(
    rule: Rule,
    st: StatementInfo,
    identity: PolicyIdentity,
    target: str,
    estimate: RowEstimate | None,
) -> _Match | _NeedsEstimate | None:
    w = rule.when
    universal = rule.action == "allow"
    # Cheap refusals first (most rules name kinds): st.kinds holds every executed kind.
    if w.kinds is not None and (
        not st.kinds <= w.kinds if universal else w.kinds.isdisjoint(st.kinds)
    ):
        return None
    if w.subjects is not None and not _glob_any(w.subjects, identity.subject):
        return None
    if w.groups is not None and not any(_glob_any(w.groups, g) for g in identity.groups):
        return None
    if w.targets is not None and not _glob_any(w.targets, target):
        return None
    facts: list[str] = []
    if w.opaque is not None:
        if st.opaque != w.opaque:
            return None
        if st.opaque:
            facts.append("runs code the gateway cannot see into")
    if w.dangerous_functions is not None:
        if bool(st.dangerous_functions) != w.dangerous_functions:
            return None
        if st.dangerous_functions:
            names = ", ".join(sorted(st.dangerous_functions))
            facts.append(f"calls dangerous function {names}")
    if w.flags is not None:
        if not w.flags <= st.flags:
            return None
        facts.extend(_FLAG_TEXT.get(f, f"with {f}") for f in sorted(w.flags))
    if w.tables is not None and not _names_match(
        w.tables, st.tables_read | st.tables_written, universal, _table_matches
    ):
        return None
    if w.tables_written is not None and not _names_match(
        w.tables_written, st.tables_written, universal, _table_matches
    ):
        return None
    if w.functions is not None and not _names_match(
        w.functions, st.functions, universal, _function_matches
    ):
        return None
    ok, witness = _ops_match(st, w, universal)
    if not ok:
        return None
    if w.needs_estimate:
        if not any(op.kind in ESTIMABLE_KINDS for op in st.executed_operations):
            return None
        if estimate is None:
            return _NEEDS_ESTIMATE
        if w.estimated_rows_over is not None and not estimate.total > w.estimated_rows_over:
            return None
        if w.estimated_fraction_over is not None:
            fraction = estimate.fraction
            if fraction is None or not fraction > w.estimated_fraction_over:
                return None
        if estimate.counted:  # an approver reads a count and a guess differently
            text = f"would touch {estimate.rows:,.0f} rows by count"
        else:
            text = f"estimated to touch {estimate.rows:,.0f} rows"
        if estimate.fraction is not None:
            text += f" ({estimate.fraction:.0%} of the table)"
        if estimate.cascaded:
            text += f" and {estimate.cascaded:,.0f} more through foreign keys"
        facts.append(text)
        if witness is None:
            witness = next(
                (op for op in st.executed_operations if op.kind in ESTIMABLE_KINDS), None
            )
    return _Match(witness, tuple(facts))


@dataclass(frozen=True, slots=True)
class _StatementDecision:
    action: Action
    rule: str
    reason: str
    estimate_missing: bool


def _reason(rule: Rule, st: StatementInfo, m: _Match) -> str:
    if m.op is None or (st.operations and m.op is st.operations[0]):
        head = describe_statement(st)
    else:
        head = describe_operation(m.op)
    text = " ".join((head, *m.facts))
    if rule.message:
        text += f": {rule.message}"
    return text


def _decide(
    policy: Policy,
    st: StatementInfo,
    identity: PolicyIdentity,
    target: str,
    estimate: RowEstimate | None,
) -> _StatementDecision:
    missing = False
    for rule in policy.rules:
        m = _match(rule, st, identity, target, estimate)
        if m is None:
            continue
        if isinstance(m, _NeedsEstimate):
            missing = True
            continue
        return _StatementDecision(rule.action, rule.name, _reason(rule, st, m), missing)
    reason = f"{describe_statement(st)}: no rule matched, the default is {policy.default}"
    return _StatementDecision(policy.default, "default", reason, missing)


def _estimate_for(estimate: EstimateInput, index: int) -> RowEstimate | None:
    if estimate is None or isinstance(estimate, RowEstimate):
        return estimate
    if isinstance(estimate, Mapping):
        return estimate.get(index)
    if 0 <= index < len(estimate):
        return estimate[index]
    return None


# -- public -----------------------------------------------------------------------------------


def evaluate(
    policy: Policy,
    classification: Classification,
    identity: PolicyIdentity,
    target: str,
    estimate: EstimateInput = None,
) -> Decision:
    """The decision on a classified query string (pure; never raises on valid inputs)."""
    if classification.error is not None:
        return Decision(
            "deny",
            "unparseable",
            f"the statement cannot be classified ({classification.error})",
            policy.mode,
            fail_closed=True,
        )
    statements = classification.statements
    if not statements:
        return Decision("allow", None, "empty query", policy.mode)
    decisions = [
        _decide(policy, st, identity, target, _estimate_for(estimate, i))
        for i, st in enumerate(statements)
    ]
    worst = max(range(len(decisions)), key=lambda i: (SEVERITY[decisions[i].action], -i))
    d = decisions[worst]
    reason = d.reason
    if len(statements) > 1:
        reason = f"statement {worst + 1} of {len(statements)}: {reason}"
    return Decision(
        d.action,
        d.rule,
        reason,
        policy.mode,
        statement_index=worst,
        estimate_missing=any(x.estimate_missing for x in decisions),
    )


def needs_estimate(
    policy: Policy, classification: Classification, identity: PolicyIdentity, target: str
) -> bool:
    """True if a row estimate could change the decision on this query.

    False when the query is refused anyway (a statement is denied without an estimate), when
    it cannot be classified, and when no estimate rule applies before the deciding rule.
    """
    if classification.error is not None:
        return False
    needed = False
    for st in classification.statements:
        d = _decide(policy, st, identity, target, None)
        if d.action == "deny":
            return False
        needed = needed or d.estimate_missing
    return needed


def explain(
    policy: Policy,
    sql: str | Classification,
    identity: PolicyIdentity,
    target: str,
    estimate: EstimateInput = None,
    *,
    registry: PreparedRegistry | None = None,
) -> dict[str, Any]:
    """The decision and why, as a JSON-able dict (for ``pgwarden policy explain``).

    With a ``registry``, ``EXECUTE`` of a prepared statement is judged by its body.
    """
    classification = classify_cached(sql) if isinstance(sql, str) else sql
    if registry is not None:
        classification = registry.resolve(classification)
    decision = evaluate(policy, classification, identity, target, estimate)
    statements = []
    for i, st in enumerate(classification.statements):
        d = _decide(policy, st, identity, target, _estimate_for(estimate, i))
        entry: dict[str, Any] = {
            "index": i,
            "action": d.action,
            "rule": d.rule,
            "reason": d.reason,
        }
        entry.update(st.to_dict())
        statements.append(entry)
    return {
        "decision": decision.action,
        "effective_action": decision.effective_action,
        "mode": decision.mode,
        "rule": decision.rule,
        "reason": decision.reason,
        "statement_index": decision.statement_index,
        "needs_estimate": needs_estimate(policy, classification, identity, target),
        "estimate_missing": decision.estimate_missing,
        "policy": policy.name,
        "identity": {"subject": identity.subject, "groups": list(identity.groups)},
        "target": target,
        "sql": classification.sql,
        "error": classification.error,
        "statements": statements,
    }
