"""The classifier's shape cache: a new text of a known shape gets exactly the classification a
full classification would give it, and nothing else shares a shape."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pglast.parser import parse_sql_json

from pgwarden.guard.recorder import _classification_dict
from pgwarden.recording.canonical import canonical_json
from pgwarden.sql import classifier
from pgwarden.sql.classifier import cache_clear, classify, classify_cached, shape_of
from pgwarden.sql.model import Classification, CopyOptions, KeyLookup, Operation, StatementInfo


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    cache_clear()
    yield
    cache_clear()


def _same_as_full(sql: str) -> None:
    assert classify_cached(sql) == classify(sql)
    assert classify_cached(sql).statements[0].text == classify(sql).statements[0].text


def _each_filling_same_as_full(template: str, values: list[str]) -> None:
    """Classify ``template`` filled with ``values`` rotated once per value, from a fresh cache
    (each text after the first finds the first's entries), against a full classification."""
    cache_clear()
    holes = template.count("{}")
    for i in range(len(values)):
        text = template.format(*(values[(i + k) % len(values)] for k in range(holes)))
        if classify(text).error is None:
            _same_as_full(text)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# Strings that look like the JSON the shape is made from, quotes, braces, backslashes, unicode.
_TRICKY = st.sampled_from(
    [
        '"},"relname":"customers',
        '{"A_Const":{"ival":{}}}',
        'location":5',
        "\\",
        "a'b",
        "}{",
        "é漢字😀",
        "",
        'stmt_len":9',
    ]
)
_TEXTS = st.one_of(_TRICKY, st.text(max_size=30).filter(lambda s: "\x00" not in s))
_CONSTANTS = st.one_of(
    st.integers(-(2**40), 2**40).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: repr(abs(f))),
    _TEXTS.map(_literal),
    st.sampled_from(["true", "false", "NULL", "B'1011'", "X'ff'", "DATE '2024-01-02'"]),
)

_TEMPLATES = [
    "SELECT abalance FROM pgbench_accounts WHERE aid = {}",
    "select * from customers where email = {} and id > 3 /*prompt='why'*/",
    "SELECT c.id, o.total FROM customers c JOIN orders o ON o.cid = c.id WHERE o.total > {}",
    "WITH recent AS (SELECT * FROM orders WHERE total > {}) SELECT count(*) FROM recent",
    "SELECT {} AS x",
    "SELECT * FROM orders WHERE note LIKE {} LIMIT 10",
    "/* leading */ SELECT id FROM orders WHERE total = {};  ",
    "UPDATE pgbench_accounts SET abalance = abalance + {} WHERE aid = {}",
    "UPDATE t SET note = {} WHERE id > {} AND status <> {} RETURNING id",
    "DELETE FROM t WHERE id = {}",
    "DELETE FROM t WHERE id = {} OR id <> {}",
    "DELETE FROM t WHERE {} = {} AND id > 0",
    "DELETE FROM t WHERE NOT (id = {})",
    "UPDATE t SET a = 1 WHERE id IN ({}, {})",
    "INSERT INTO pgbench_history (tid, bid, delta, mtime) VALUES (1, {}, {}, CURRENT_TIMESTAMP)",
    "INSERT INTO t (id, a) VALUES ({}, {}) ON CONFLICT (id) DO UPDATE SET a = {} WHERE t.a = {}",
    "WITH gone AS (DELETE FROM t WHERE id = {} RETURNING *) SELECT count(*) FROM gone",
    "UPDATE t SET x = {} WHERE id = {} OR true",
    "DELETE FROM t WHERE id = {} AND NOT (id = {})",
    "UPDATE t SET a = 1 WHERE id = {} AND {}",
    "SELECT set_config({}, {}, false)",
    "  SELECT id FROM orders WHERE total = {} -- trailing\n;",
]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_TEMPLATES), st.lists(_CONSTANTS, min_size=2, max_size=4))
def test_texts_of_one_shape_get_what_a_full_classification_gives(
    template: str, constants: list[str]
) -> None:
    _each_filling_same_as_full(template, constants)


def test_plain_writes_of_a_known_shape_are_reused() -> None:
    first = classify_cached("UPDATE pgbench_accounts SET abalance = abalance + -5 WHERE aid = 7")
    second = classify_cached("UPDATE pgbench_accounts SET abalance = abalance + 3 WHERE aid = 9")
    assert second.shape is first
    assert second == classify(second.sql)
    assert second.where == "present"
    assert second.statements[0].estimate_sql == second.sql  # the estimate is of this text


def test_a_known_shape_is_reused_with_the_new_text() -> None:
    first = classify_cached("SELECT abalance FROM pgbench_accounts WHERE aid = 1;")
    second = classify_cached("select abalance from pgbench_accounts where aid = 22 -- again")
    assert second.shape is first
    assert second.sql == "select abalance from pgbench_accounts where aid = 22 -- again"
    assert second.statements[0].text == second.sql  # a trailing comment is part of it
    assert second == classify(second.sql)
    assert second.statements[0].estimate_sql == second.statements[0].text


def test_constants_are_blanked_identifiers_are_not() -> None:
    def shape(sql: str) -> str:
        return shape_of(parse_sql_json(sql))

    assert shape("SELECT 1 FROM t WHERE a = 'x'") == shape("SELECT 1 FROM t WHERE a = 'y\"}'")
    assert shape("SELECT 1 FROM t") != shape('SELECT 1 FROM "T"')
    assert shape("SELECT a FROM t") != shape("SELECT b FROM t")
    assert shape("SELECT 1 FROM t WHERE a = 1") != shape("SELECT 1 FROM t WHERE a = '1'")
    assert shape("SELECT 1 FROM t WHERE a = $1") != shape("SELECT 1 FROM t WHERE a = $2")


def test_a_cte_named_like_a_table_is_another_shape() -> None:
    # Reads nothing (the CTE), then reads customers: must not take the first classification.
    cte = classify_cached("WITH customers AS (SELECT 1) SELECT * FROM customers")
    real = classify_cached("WITH other AS (SELECT 1) SELECT * FROM customers")
    assert cte.tables_read == frozenset()
    assert real.tables_read == {"customers"}


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # set_config's setting is a constant: the kind follows it
        (
            "SELECT set_config('work_mem', '1MB', false)",
            "SELECT set_config('role', 'admin', false)",
        ),
        ("SELECT set_config('role', 'admin', false)", "SELECT set_config('x.y', '1', false)"),
        # the WHERE clause of a write is folded
        ("UPDATE t SET a = 1 WHERE id = 5", "UPDATE t SET a = 1 WHERE 1 = 1"),
        ("DELETE FROM t WHERE id = 5", "DELETE FROM t WHERE 'a' = 'a'"),
        # the constants decide whether a WHERE restricts anything
        ("DELETE FROM t WHERE id = 5 OR id <> 6", "DELETE FROM t WHERE id = 5 OR id <> 5"),
        ("UPDATE t SET a = 1 WHERE 1 = 2 AND id > 0", "UPDATE t SET a = 1 WHERE 1 = 1 AND id > 0"),
        ("DELETE FROM t WHERE NOT (id = 5 AND 1 = 2)", "DELETE FROM t WHERE NOT (id = 5 AND 1 = 1)"),  # noqa: E501
        (
            "INSERT INTO t (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 1 WHERE 1 = 2",
            "INSERT INTO t (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 1 WHERE 1 = 1",
        ),
        # SET values, EXPLAIN options and procedural bodies are constants too
        ("SET pgwarden.prompt = 'a'", "SET pgwarden.prompt = 'b'"),
        ("EXPLAIN (ANALYZE false) DELETE FROM t", "EXPLAIN (ANALYZE true) DELETE FROM t"),
        ("DO 'BEGIN PERFORM 1; END'", "DO 'BEGIN DELETE FROM t; END'"),
        # dangerous functions take SQL or names in strings
        ("SELECT * FROM dblink('c', 'SELECT 1') AS x(a int)",
         "SELECT * FROM dblink('c', 'DELETE FROM t') AS x(a int)"),
        # more than one statement
        ("SELECT 1; SELECT 2", "SELECT 3; SELECT 4"),
        ("COPY (SELECT 1) TO STDOUT (FORMAT csv)", "COPY (SELECT 1) TO STDOUT (FORMAT text)"),
        ("SELECT * FROM t FOR UPDATE SKIP LOCKED", "SELECT * FROM t FOR UPDATE"),
    ],
)  # fmt: skip
def test_shapes_that_read_constants_are_classified_in_full(first: str, second: str) -> None:
    classify_cached(first)
    got = classify_cached(second)
    assert got == classify(second)
    assert got.shape is None


def test_a_text_that_does_not_parse_is_never_taken_for_a_known_shape() -> None:
    classify_cached("SELECT abalance FROM pgbench_accounts WHERE aid = 1")
    bad = classify_cached("SELECT abalance FROM pgbench_accounts WHERE aid = 1 1")
    assert bad.error is not None
    assert bad.statements == ()


def test_the_recorded_classification_of_a_shaped_text_is_its_own() -> None:
    classify_cached("SELECT abalance FROM pgbench_accounts WHERE aid = 1")
    shaped = classify_cached("SELECT abalance FROM pgbench_accounts WHERE aid = 4242")
    assert shaped.shape is not None
    recorded, encoded = _classification_dict(shaped)
    assert recorded == classify(shaped.sql).to_dict()
    assert "4242" in str(recorded)
    assert encoded == canonical_json(classify(shaped.sql).to_dict())


@pytest.mark.parametrize(
    ("skipped", "first", "second", "text"),
    [
        # a known normalized text: the tree as JSON is not read
        (
            "parse_sql_json",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1; -- a;b",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 'x22'; -- a;b",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 'x22'",
        ),
        # a known integer key: not even normalize runs
        (
            "normalize",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1;  ",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 98765;  ",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 98765",
        ),
    ],
)
def test_a_known_text_skips_the_slower_stages(
    monkeypatch: pytest.MonkeyPatch, skipped: str, first: str, second: str, text: str
) -> None:
    known = classify_cached(first)

    def must_not_run(sql: str) -> str:
        raise AssertionError(f"{skipped} ran for a text of a known key")

    monkeypatch.setattr(classifier, skipped, must_not_run)
    got = classify_cached(second)
    assert got.shape is known
    assert got.statements[0].text == text
    monkeypatch.undo()
    assert got == classify(got.sql)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # normalize writes constants as $n: both normalize to `... WHERE id = $1 OR $2`, and
        # the parameters say nothing of the WHERE (present) while the constants make it true
        ("DELETE FROM t WHERE id = $1 OR $2", "DELETE FROM t WHERE id = 1 OR true"),
        ("UPDATE t SET a = $1 WHERE id = $2 OR $3", "UPDATE t SET a = 0 WHERE id = 1 OR true"),
        ("SELECT $1", "SELECT 5"),
    ],
)
def test_a_parameter_never_stands_for_a_constant(first: str, second: str) -> None:
    classify_cached(first)
    got = classify_cached(second)
    assert got == classify(second)
    assert got.shape is None or got.shape.sql != first


def test_a_text_that_does_not_normalize_is_classified_in_full() -> None:
    classify_cached("SELECT abalance FROM pgbench_accounts WHERE aid = 1")
    bad = classify_cached("SELECT abalance FROM pgbench_accounts WHERE aid = 'a' 'b'")
    assert bad == classify("SELECT abalance FROM pgbench_accounts WHERE aid = 'a' 'b'")
    assert bad.error is not None


def test_retexted_carries_every_field_but_the_texts() -> None:
    """Compiled, ``retexted`` lists the fields it copies by hand: a field added to the model
    and not to that list would come out unset, or stale, in every statement of a known shape.
    Every field is given a value of its own here (init fields by hand, derived ones through
    ``__post_init__``), so a missed one fails."""
    body = classify("SELECT 1")
    op = Operation(kind="update", where="present", executes=True)
    st = StatementInfo(
        kind="update",
        text="UPDATE t SET a = 1 WHERE k = 2",
        operations=(op, Operation(kind="set_role", executes=True)),
        tables_read=frozenset({"r"}),
        tables_written=frozenset({"t"}),
        functions=frozenset({"f"}),
        dangerous_functions=frozenset({"pg_read_file"}),
        opaque=True,
        flags=frozenset({"cascade"}),
        setting="search_path",
        setting_value="x",
        setting_local=True,
        prepared_name="p",
        executes_prepared=("q",),
        body=body,
        estimate_sql="UPDATE t SET a = 1 WHERE k = 2",
        copy=CopyOptions(format="csv"),
        key_lookup=KeyLookup(relation='"t"', columns=(("k", 0),)),
        sets_search_path=True,
    )
    first = Classification(sql=st.text, statements=(st,))
    out = first.retexted("update t set a = 5 where k = 6;", "update t set a = 5 where k = 6")
    (new,) = out.statements
    for f in fields(StatementInfo):
        expect = "update t set a = 5 where k = 6" if f.name in ("text", "estimate_sql") else None
        value = getattr(new, f.name)  # unset, this raises AttributeError
        assert value == (expect or getattr(st, f.name)), f.name
    for f in fields(Classification):
        value = getattr(out, f.name)
        if f.name == "sql":
            assert value == "update t set a = 5 where k = 6;"
        elif f.name == "statements":
            assert value == (new,)
        elif f.name == "shape":
            assert value is first
        else:
            assert value == getattr(first, f.name), f.name


# -- the integer key: texts that differ only in integers skip normalize ----------------------

# {} takes an integer. Around each hole, contexts where a run of digits is not an integer
# constant normalize replaces (a comment, a string, a quoted name, a sign, an ORDER BY
# position, a type modifier, part of a name or of a numeric).
_INTEGER_TEMPLATES = [
    "SELECT abalance FROM pgbench_accounts WHERE aid = {}",
    "select * from orders where id >= {} and id < {} limit {}",
    "SELECT a FROM t WHERE b = {} ORDER BY {}",
    "SELECT a FROM t ORDER BY {} LIMIT {}",
    "SELECT CAST(a AS varchar({})) FROM t WHERE b = {}",
    "SELECT CAST(a AS float({})) FROM t WHERE b = {}",
    "SELECT a FROM t WHERE b = -{}",
    "SELECT a FROM t WHERE b = {} -- the {} th",
    "SELECT a FROM t WHERE b = {} /* {} */",
    "SELECT a FROM t WHERE b = '{}'",
    'SELECT "c{}" FROM t WHERE b = {}',
    "SELECT a FROM t{} WHERE b = {}",
    "SELECT a FROM té WHERE b = {}",
    "SELECT a FROM t WHERE b = {}.5 OR b = {}e3",
    "SELECT a FROM t WHERE b = 1{}",
    "SELECT a[{}:{}] FROM t",
    "UPDATE pgbench_accounts SET abalance = abalance + {} WHERE aid = {}",
    "DELETE FROM t WHERE id = {} OR id <> {}",
    "SELECT a FROM t WHERE b IN ({}, {}, {});",
    "SELECT a FROM t FETCH FIRST {} ROWS ONLY",
]
_INTEGERS = st.one_of(
    st.integers(0, 9),
    st.integers(0, 999_999_999),
    st.integers(1_000_000_000, 10**12),
    st.sampled_from(["007", "0", "2147483647", "2147483648", "999999999"]),
).map(str)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_INTEGER_TEMPLATES), st.lists(_INTEGERS, min_size=2, max_size=4))
def test_texts_that_differ_in_integers_get_what_a_full_classification_gives(
    template: str, integers: list[str]
) -> None:
    _each_filling_same_as_full(template, integers)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT a FROM t ORDER BY 1",  # a position: normalize leaves it
        "SELECT CAST(a AS varchar(10)) FROM t",  # a type modifier
        "SELECT a FROM t WHERE b = -5",  # the sign is part of the constant
        "SELECT a FROM t WHERE b = 5 -- 6",  # digits in a comment
        "SELECT a FROM t WHERE b = 5 AND c = 'x'",  # another kind of constant
        "SELECT a FROM t WHERE b = 1234567890",  # ten digits: may not fit an integer
    ],
)
def test_no_integer_key_unless_normalize_replaced_exactly_its_integers(sql: str) -> None:
    got = classify_cached(sql)
    assert got == classify(sql)
    assert got.shape is None  # the first of its shape
    assert classifier._NORMALIZED  # reusable: its normalized text is kept
    assert not classifier._KEYED


# What integer_key does, as a regular expression (the loop is ~4x faster compiled).
_STANDALONE_INTEGER = re.compile(
    r"(?<![0-9A-Za-z_.$\x80-\U0010ffff])[0-9]{1,9}(?![0-9A-Za-z_.$\x80-\U0010ffff])"
)
_NEAR_DIGITS = st.text(
    alphabet=st.sampled_from(list("0123456789 aZ_.$-'\"(),;=é\n")), max_size=40
) | st.text(max_size=20)


@settings(max_examples=500, deadline=None)
@given(_NEAR_DIGITS)
def test_the_integer_key_is_the_standalone_integers_blanked(text: str) -> None:
    assert classifier.integer_key(text) == _STANDALONE_INTEGER.subn("\x00", text)


def test_the_integer_key_of_pgbench_texts() -> None:
    key = classifier.integer_key
    assert key("SELECT a FROM t WHERE aid = 12345;") == ("SELECT a FROM t WHERE aid = \x00;", 1)
    assert key("x IN (1,22, 333)") == ("x IN (\x00,\x00, \x00)", 3)
    assert key("t1 = 1.5 OR b = 1e5 OR c = $1 OR d = é2") == (
        "t1 = 1.5 OR b = 1e5 OR c = $1 OR d = é2",
        0,
    )
    assert key("a = 123456789 OR b = 1234567890") == ("a = \x00 OR b = 1234567890", 1)
    assert key("7") == ("\x00", 1)
