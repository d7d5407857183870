"""The statement corpus under the default policy (tests/data/corpus/statements.yaml).

The same file is run against a real database through the gateway by the integration tests;
here only the decisions are checked, with the row estimates the entries carry.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgwarden.policy import PolicyIdentity, RowEstimate, default_policy, evaluate, needs_estimate
from pgwarden.sql import KINDS, PreparedRegistry, classify

CORPUS_PATH = Path(__file__).resolve().parents[2] / "data" / "corpus" / "statements.yaml"
with CORPUS_PATH.open(encoding="utf-8") as _f:
    CORPUS: list[dict[str, Any]] = yaml.safe_load(_f)

IDENTITY = PolicyIdentity("agent-7", ("agents",))
ENTRY_KEYS = {
    "sql",
    "expect",
    "note",
    "check",
    "estimate",
    "requires",
    "tier",
    "min_server_version",
}
EFFECTS = {"deleted", "updated", "inserted", "truncated", "dropped", "altered"}


def test_corpus_shape() -> None:
    assert len(CORPUS) >= 200
    counts = Counter(e["expect"] for e in CORPUS)
    assert counts["allow"] >= 80
    assert counts["deny"] >= 80
    assert counts["review"] >= 20
    seen = set()
    for e in CORPUS:
        assert set(e) <= ENTRY_KEYS, e
        assert isinstance(e["sql"], str) and e["sql"].strip(), e
        assert e["expect"] in ("allow", "review", "deny"), e
        assert isinstance(e.get("note"), str) and e["note"], e
        assert e["sql"] not in seen, f"duplicate: {e['sql']!r}"
        seen.add(e["sql"])
        if "check" in e:
            assert set(e["check"]) == {"table", "effect"}, e
            assert e["check"]["table"] in ("orders", "customers", "products"), e
            assert e["check"]["effect"] in EFFECTS, e
            assert e["expect"] != "allow", e
        if "estimate" in e:
            RowEstimate(**e["estimate"])
        assert e.get("requires") in (None, "superuser"), e
        assert e.get("tier") in (None, "hard"), e


def test_corpus_covers_every_wrapping() -> None:
    text = "\n".join(e["sql"].upper() for e in CORPUS if e["expect"] == "deny")
    for needle in (
        "WITH ", "EXPLAIN ANALYZE", "EXPLAIN (ANALYZE", "PREPARE ", "EXECUTE ", "DO $",
        "CREATE FUNCTION", "CREATE PROCEDURE", "CREATE RULE", "CREATE TRIGGER", "MERGE ",
        "ON CONFLICT", "COPY (", "PROGRAM", "U&\"", "/*", "--", "PG_CATALOG.", "\"PG_",
        "; ", "BEGIN ATOMIC", "TRUNCATE", "DROP ", "1=1", "WHERE TRUE", "$$",
    ):  # fmt: skip
        assert needle in text, needle


@pytest.mark.parametrize("entry", CORPUS, ids=lambda e: e["sql"][:70])
def test_default_policy_decision(entry: dict[str, Any]) -> None:
    classification = PreparedRegistry().resolve(classify(entry["sql"]))
    estimate = RowEstimate(**entry["estimate"]) if "estimate" in entry else None
    decision = evaluate(default_policy(), classification, IDENTITY, "shop", estimate)
    assert decision.action == entry["expect"], (entry["note"], decision.rule, decision.reason)
    assert decision.reason
    if decision.action != "allow":
        assert decision.rule is not None
    for st in classification.statements:
        assert st.kinds <= KINDS


@pytest.mark.parametrize(
    "entry", [e for e in CORPUS if "estimate" in e], ids=lambda e: e["sql"][:70]
)
def test_blast_radius_entries_need_an_estimate(entry: dict[str, Any]) -> None:
    classification = PreparedRegistry().resolve(classify(entry["sql"]))
    assert needs_estimate(default_policy(), classification, IDENTITY, "shop")
    without = evaluate(default_policy(), classification, IDENTITY, "shop")
    assert without.action == "allow"
    assert without.estimate_missing


def test_audit_mode_blocks_nothing_but_reports_everything() -> None:
    audit = replace(default_policy(), mode="audit")
    for entry in CORPUS:
        classification = PreparedRegistry().resolve(classify(entry["sql"]))
        estimate = RowEstimate(**entry["estimate"]) if "estimate" in entry else None
        decision = evaluate(audit, classification, IDENTITY, "shop", estimate)
        assert decision.action == entry["expect"]
        if classification.error is None:
            assert decision.effective_action == "allow"
        else:
            assert decision.effective_action == "deny"
