"""Property tests for the classifier (hypothesis).

- Any text gives a Classification (with statements or an error), never an exception.
- Respelling (case, whitespace, comments) never changes what a statement is classified as.
- Wrapping an unfiltered UPDATE/DELETE in anything that runs it keeps it unfiltered, and the
  default policy never lets a denied statement through however it is spelled or wrapped.
- The constant evaluator agrees with a Python reference on random constant expressions.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from sqlmutate import load_corpus, mutable, respell, wrappers

from pgwarden.policy import PolicyIdentity, RowEstimate, default_policy, evaluate
from pgwarden.sql import Classification, PreparedRegistry, StatementInfo, classify

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CORPUS = load_corpus()
IDENTITY = PolicyIdentity("agent-7", ("agents",))


def _summary(st_: StatementInfo) -> tuple[Any, ...]:
    """Everything about a statement that does not depend on how it is spelled."""
    ops = tuple(
        (o.kind, o.object_type, o.targets, o.where, o.via, o.executes)
        for o in st_.operations
        if o.kind != "prepare"  # the PREPARE's own op is the same; targets are names anyway
    )
    return (
        st_.kind,
        ops,
        st_.tables_read,
        st_.tables_written,
        st_.functions,
        st_.dangerous_functions,
        st_.opaque,
        st_.flags,
        st_.setting,
        st_.prepared_name,
    )


def _decide(sql: str, estimate: RowEstimate | None = None) -> str:
    c = PreparedRegistry().resolve(classify(sql))
    return evaluate(default_policy(), c, IDENTITY, "shop", estimate).action


# ---------------------------------------------------------------------------- never raises

SQL_WORDS = [
    "SELECT", "DELETE", "FROM", "WHERE", "UPDATE", "SET", "INSERT", "INTO", "VALUES", "WITH",
    "AS", "(", ")", ",", ";", "'x'", '"y"', "$$", "$1", "1", "=", "OR", "AND", "NOT", "true",
    "orders", "EXPLAIN", "ANALYZE", "PREPARE", "EXECUTE", "DO", "BEGIN", "END", "CREATE",
    "FUNCTION", "TABLE", "DROP", "RETURNING", "*", "/*", "*/", "--", "\n", "::", "bool",
    "COPY", "TO", "STDOUT", "MERGE", "USING", "ON", "WHEN", "MATCHED", "THEN", "LANGUAGE",
]  # fmt: skip


@SETTINGS
@given(st.text())
def test_any_text_classifies_or_errors(sql: str) -> None:
    c = classify(sql)
    assert isinstance(c, Classification)
    assert (c.error is None) or (c.statements == ())


@SETTINGS
@given(st.lists(st.sampled_from(SQL_WORDS), max_size=30).map(" ".join))
def test_sqlish_text_classifies_or_errors(sql: str) -> None:
    c = classify(sql)
    assert isinstance(c, Classification)
    assert (c.error is None) or (c.statements == ())
    # and the policy always decides, failing closed on errors
    d = evaluate(default_policy(), c, IDENTITY, "shop")
    if c.error is not None:
        assert d.action == "deny"
        assert d.effective_action == "deny"


@SETTINGS
@given(st.binary().map(lambda b: b.decode("utf-8", "replace")))
def test_any_decoded_bytes_classify_or_error(sql: str) -> None:
    assert isinstance(classify(sql), Classification)


# ---------------------------------------------------------------------------- respelling

RESPELLABLE = [e for e in CORPUS if mutable(e["sql"])]


def test_most_of_the_corpus_is_respellable() -> None:
    assert len(RESPELLABLE) > 0.9 * len(CORPUS)


@SETTINGS
@given(st.data())
def test_respelling_never_changes_the_classification(data: st.DataObject) -> None:
    entry = data.draw(st.sampled_from(RESPELLABLE))
    original = classify(entry["sql"])
    variant = data.draw(respell(entry["sql"]))
    again = classify(variant)
    assert (original.error is None) == (again.error is None), (variant, again.error)
    assert [_summary(s) for s in original.statements] == [_summary(s) for s in again.statements], (
        variant
    )


@SETTINGS
@given(st.data())
def test_respelling_never_turns_a_refusal_into_an_allow(data: st.DataObject) -> None:
    entry = data.draw(st.sampled_from([e for e in RESPELLABLE if e["expect"] != "allow"]))
    variant = data.draw(respell(entry["sql"]))
    estimate = RowEstimate(**entry["estimate"]) if "estimate" in entry else None
    assert _decide(variant, estimate) == entry["expect"], variant


# ---------------------------------------------------------------------------- wrapping

UNFILTERED = [
    e
    for e in CORPUS
    if e["expect"] == "deny"
    and "$" not in e["sql"]
    and "RETURNING" not in e["sql"].upper()
    and len((c := classify(e["sql"])).statements) == 1
    and c.statements[0].kind in ("update", "delete")
    and c.statements[0].where in ("absent", "tautology")
]


def test_there_are_unfiltered_writes_to_wrap() -> None:
    assert len(UNFILTERED) >= 40


@pytest.mark.parametrize("entry", UNFILTERED, ids=lambda e: e["sql"][:60])
def test_wrapping_keeps_an_unfiltered_write_unfiltered(entry: dict[str, Any]) -> None:
    for wrapped in wrappers(entry["sql"]):
        c = PreparedRegistry().resolve(classify(wrapped))
        assert c.error is None, (wrapped, c.error)
        assert c.wheres & {"absent", "tautology"}, wrapped
        assert _decide(wrapped) == "deny", wrapped


@SETTINGS
@given(st.data())
def test_wrapping_and_respelling_together(data: st.DataObject) -> None:
    entry = data.draw(st.sampled_from(UNFILTERED))
    wrapped = data.draw(st.sampled_from(wrappers(entry["sql"])))
    assume(mutable(wrapped))
    variant = data.draw(respell(wrapped))
    assert _decide(variant) == "deny", variant


@SETTINGS
@given(
    st.lists(st.sampled_from([e["sql"] for e in CORPUS if e["expect"] == "allow"]), max_size=3),
    st.sampled_from([e for e in CORPUS if e["expect"] == "deny"]),
    st.lists(st.sampled_from([e["sql"] for e in CORPUS if e["expect"] == "allow"]), max_size=2),
)
def test_a_denied_statement_among_allowed_ones_denies_the_query(
    before: list[str], entry: dict[str, Any], after: list[str]
) -> None:
    sql = "; ".join([*before, entry["sql"], *after])
    assert _decide(sql) == "deny", sql


# ---------------------------------------------------------------------------- constant folding

Tri = bool | None  # SQL three-valued logic: True, False, None (NULL)


def _and(a: Tri, b: Tri) -> Tri:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _or(a: Tri, b: Tri) -> Tri:
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def _not(a: Tri) -> Tri:
    return None if a is None else not a


ints = st.integers(min_value=-5, max_value=5)
int_exprs = st.one_of(
    ints.map(lambda i: (str(i) if i >= 0 else f"({i})", i)),
    st.just(("NULL::int", None)),
    st.tuples(ints, ints).map(lambda t: (f"({t[0]} + {t[1]})", t[0] + t[1])),
    ints.map(lambda i: (f"'{i}'::int", i)),
    ints.map(lambda i: (f"coalesce(NULL, {i})", i)),
)

_CMP = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}


@st.composite
def comparisons(draw: st.DrawFn) -> tuple[str, Tri]:
    (ls, lv), (rs, rv) = draw(int_exprs), draw(int_exprs)
    op = draw(st.sampled_from(sorted(_CMP)))
    value = None if lv is None or rv is None else _CMP[op](lv, rv)
    return f"{ls} {op} {rs}", value


@st.composite
def in_lists(draw: st.DrawFn) -> tuple[str, Tri]:
    s, v = draw(int_exprs)
    items = draw(st.lists(ints, min_size=1, max_size=4))
    negate = draw(st.booleans())
    found: Tri = None if v is None else v in items
    value = _not(found) if negate else found
    return f"{s} {'NOT ' if negate else ''}IN ({', '.join(map(str, items))})", value


@st.composite
def betweens(draw: st.DrawFn) -> tuple[str, Tri]:
    s, v = draw(int_exprs)
    lo, hi = draw(ints), draw(ints)
    value: Tri = None if v is None else lo <= v <= hi
    return f"{s} BETWEEN {lo} AND {hi}", value


bool_atoms = st.one_of(
    st.sampled_from([("true", True), ("false", False), ("NULL::boolean", None)]),
    st.sampled_from([("'t'::bool", True), ("'off'::bool", False), ("1::boolean", True)]),
    comparisons(),
    in_lists(),
    betweens(),
)


def _extend(children: st.SearchStrategy[tuple[str, Tri]]) -> st.SearchStrategy[tuple[str, Tri]]:
    def binary(op: str) -> st.SearchStrategy[tuple[str, Tri]]:
        fn = _and if op == "AND" else _or
        return st.tuples(children, children).map(
            lambda t: (f"({t[0][0]} {op} {t[1][0]})", fn(t[0][1], t[1][1]))
        )

    def test(kind: str) -> st.SearchStrategy[tuple[str, Tri]]:
        fns = {
            "IS NULL": lambda v: v is None,
            "IS NOT NULL": lambda v: v is not None,
            "IS TRUE": lambda v: v is True,
            "IS NOT TRUE": lambda v: v is not True,
            "IS FALSE": lambda v: v is False,
            "IS UNKNOWN": lambda v: v is None,
        }
        return children.map(lambda c: (f"(({c[0]}) {kind})", fns[kind](c[1])))

    return st.one_of(
        binary("AND"),
        binary("OR"),
        children.map(lambda c: (f"(NOT {c[0]})", _not(c[1]))),
        st.sampled_from(
            ["IS NULL", "IS NOT NULL", "IS TRUE", "IS NOT TRUE", "IS FALSE", "IS UNKNOWN"]
        ).flatmap(test),
    )


bool_exprs = st.recursive(bool_atoms, _extend, max_leaves=8)


@SETTINGS
@given(bool_exprs)
def test_constant_where_matches_python_reference(expr: tuple[str, Tri]) -> None:
    sql, value = expr
    c = classify(f"DELETE FROM orders WHERE {sql}")
    assert c.error is None, (sql, c.error)
    expected = "tautology" if value is True else "present"
    assert c.where == expected, (sql, value)


@SETTINGS
@given(bool_exprs)
# Found by this test: the parser flattens the ORs into one list, where NOT x / NOT NOT x (both
# NULL) were paired as "x OR NOT x" and the whole WHERE taken for always true.
@example(
    (
        "((NOT ((-5 + 2) IN (-2, 4, 3) OR NULL::int BETWEEN 5 AND 5)) OR "
        "(NOT (NOT ((-5 + 2) IN (-2, 4, 3) OR NULL::int BETWEEN 5 AND 5))))",
        None,
    )
)
def test_constant_or_column_condition(expr: tuple[str, Tri]) -> None:
    sql, value = expr
    ored = classify(f"DELETE FROM orders WHERE ({sql}) OR id > 10")
    assert ored.where == ("tautology" if value is True else "present"), sql
    anded = classify(f"DELETE FROM orders WHERE ({sql}) AND id > 10")
    assert anded.where == "present", sql
