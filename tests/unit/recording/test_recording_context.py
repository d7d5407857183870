"""sqlcommenter parsing (spec examples) and the context in force per statement."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgwarden.recording.context import ContextState, parse_sqlcommenter

SPEC = (
    "SELECT * FROM FOO /*action='%2Fparam*d',controller='index',framework='spring',"
    "traceparent='00-5bd66ef5095369c7b0d1f8f4bd33716a-c532cb4098ac3dd2-01',"
    "tracestate='congo%3Dt61rcWkgMzE%2Crojo%3D00f067aa0ba902b7'*/"
)


def test_spec_example() -> None:
    assert parse_sqlcommenter(SPEC) == {
        "action": "/param*d",
        "controller": "index",
        "framework": "spring",
        "traceparent": "00-5bd66ef5095369c7b0d1f8f4bd33716a-c532cb4098ac3dd2-01",
        "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
    }


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1 /*prompt='why%20I%20ask'*/", {"prompt": "why I ask"}),
        ("SELECT 1 /*prompt='a+b%2Bc'*/", {"prompt": "a+b+c"}),  # + is literal
        ("SELECT 1 /*prompt='caf%C3%A9'*/", {"prompt": "café"}),
        ("SELECT 1 /*prompt='it\\'s'*/", {"prompt": "it's"}),  # escaped meta character
        ("SELECT 1 /*prompt='it%27s'*/", {"prompt": "it's"}),
        ("SELECT 1 /*route%20param='x'*/", {"route param": "x"}),  # URL-encoded key
        ("SELECT 1 /*a='1', b='2'*/", {"a": "1", "b": "2"}),
        ("SELECT 1 /*a='1',b='2'*/;", {"a": "1", "b": "2"}),  # before the semicolon
        ("SELECT 1 /*a='1'*/ ;  \n", {"a": "1"}),
        ("SELECT 1 /*empty=''*/", {"empty": ""}),
        ("SELECT 1 /**/", {}),
        ("SELECT 1 /*a='1'*/ /*b='2'*/", {"b": "2"}),  # only the last comment counts
        ("SELECT /*a='1'*/ 1", {}),  # not at the end
        ("SELECT 1 /*a='1'*/ FROM t", {}),
        ("SELECT 1 /*just a comment*/", {}),  # malformed
        ("SELECT 1 /*a=1*/", {}),
        ("SELECT 1 /*a='1',*/", {}),
        ("SELECT 1 /*a='1' b='2'*/", {}),
        ("SELECT 1 /*a='unterminated*/", {}),
        ("SELECT 1 /*a='%E9'*/", {}),  # not UTF-8 once decoded
        ("SELECT '/*a=''1''*/'", {}),  # inside a string literal
        ("SELECT $$ /*a='1'*/ $$", {}),
        ("SELECT $q$ /*a='1'*/ $q$ /*b='2'*/", {"b": "2"}),
        ("SELECT E'\\' /*a=''1''*/'", {}),
        ("SELECT 1 AS \"/*a='1'*/\"", {}),
        ("SELECT 1 -- /*a='1'*/", {}),  # in a line comment
        ("SELECT 1 /*a='1'*/ -- trailing note", {}),
        ("SELECT 1 /* nested /* c */ */", {}),
        ("SELECT 1 /*a='1'", {}),
        ("", {}),
        ("SELECT $1 /*a='x'*/", {"a": "x"}),
    ],
)
def test_parse(sql: str, expected: dict[str, str]) -> None:
    assert parse_sqlcommenter(sql) == expected


def test_context_sources_and_precedence() -> None:
    ctx = ContextState(application_name="agent-app")
    assert ctx.session_context() == {"application_name": "agent-app"}
    ctx.apply_set("pgwarden.prompt", "from SET")
    ctx.apply_api({"intent": "from API", "prompt": "API prompt"})
    s = ctx.for_statement("SELECT 1")
    assert s.context == {
        "application_name": "agent-app",
        "prompt": "API prompt",
        "intent": "from API",
    }
    assert s.sources["prompt"] == "api"
    ctx.apply_set("prompt", "SET again")  # latest wins
    assert ctx.for_statement().context["prompt"] == "SET again"
    s = ctx.for_statement("SELECT 1 /*prompt='per%20statement',traceparent='00-ab-cd-01'*/")
    assert s.context["prompt"] == "per statement"
    assert s.sources == {
        "application_name": "application_name",
        "prompt": "comment",
        "intent": "api",
        "traceparent": "comment",
    }
    # comment keys are statement-scoped
    assert ctx.for_statement("SELECT 2").context["prompt"] == "SET again"
    assert "traceparent" not in ctx.session_context()


def test_reset_and_api_removal() -> None:
    ctx = ContextState()
    ctx.apply_set("pgwarden.a", "1")
    ctx.apply_set("pgwarden.b", "2")
    ctx.apply_api({"c": "3"})
    assert ctx.apply_reset("pgwarden.a") == {"a": None}
    assert ctx.session_context() == {"b": "2", "c": "3"}
    assert ctx.apply_reset() == {"b": None}
    assert ctx.session_context() == {"c": "3"}
    ctx.apply_api({"c": None})
    assert ctx.session_context() == {}
    with pytest.raises(ValueError):
        ctx.apply_set("pgwarden.session_id", "x")
    with pytest.raises(ValueError):
        ctx.apply_set("pgwarden.", "x")


def test_transactions() -> None:
    ctx = ContextState()
    ctx.apply_set("prompt", "before")
    ctx.begin()
    ctx.apply_set("prompt", "inside")
    ctx.apply_set("intent", "local", local=True)
    assert ctx.for_statement().context == {"prompt": "inside", "intent": "local"}
    assert ctx.for_statement().sources["intent"] == "set_local"
    assert ctx.rollback() == {"intent": None, "prompt": "before"}
    assert ctx.session_context() == {"prompt": "before"}
    ctx.begin()
    ctx.apply_set("prompt", "kept")
    ctx.apply_set("x", "local", local=True)
    assert ctx.commit() == {"x": None}
    assert ctx.session_context() == {"prompt": "kept"}
    ctx.set_application_name("psql")
    assert ctx.session_context()["application_name"] == "psql"


_WORDS = st.sampled_from(["a", "b", "it's", "x\ny", ""])
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.sampled_from(["intent", "task"]), _WORDS, st.booleans()),
        st.tuples(st.just("reset"), st.sampled_from(["intent", "task", None])),
        st.tuples(st.just("api"), st.sampled_from(["intent", "ticket"]), _WORDS | st.none()),
        st.tuples(st.just("app"), _WORDS | st.none()),
        st.tuples(st.sampled_from(["begin", "commit", "rollback"])),
        st.tuples(st.just("comment"), st.sampled_from(["intent", "task"]), _WORDS),
    ),
    max_size=14,
)


def _apply(ctx: ContextState, op: tuple[Any, ...]) -> str | None:
    """Apply one change; returns the SQL of a statement to read the context for."""
    kind = op[0]
    if kind == "set":
        ctx.apply_set(op[1], op[2], local=op[3])
    elif kind == "reset":
        ctx.apply_reset(op[1])
    elif kind == "api":
        ctx.apply_api({op[1]: op[2]})
    elif kind == "app":
        ctx.set_application_name(op[1])
    elif kind == "begin":
        ctx.begin()
    elif kind == "commit":
        ctx.commit()
    elif kind == "rollback":
        ctx.rollback()
    elif kind == "comment":
        return f"SELECT 1 /*{op[1]}='{quote(op[2])}'*/"
    return "SELECT 1"


def _uncached(state: ContextState) -> ContextState:
    """``state`` with its shared merged context dropped, so the next read merges afresh (a
    function, not a subclass: ContextState is compiled, see pgwarden._native)."""
    state._merged_cache = None
    return state


@given(_OPS)
def test_the_shared_context_is_never_stale(ops: list[tuple[Any, ...]]) -> None:
    """While nothing changes, statements share one merged context; any change drops it. After
    every kind of change, in any order, it must equal a context merged afresh, and a
    statement's comment keys must never leak into the one shared by the next statements."""
    cached, fresh = ContextState("app"), ContextState("app")
    for op in ops:
        sql = _apply(cached, op)
        _apply(fresh, op)
        for text in (sql, "SELECT 2"):
            got, want = cached.for_statement(text), _uncached(fresh).for_statement(text)
            assert (got.context, got.sources) == (want.context, want.sources), (op, text)
        assert cached.session_context() == _uncached(fresh).session_context()


def test_an_unchanged_context_is_shared() -> None:
    ctx = ContextState("psql")
    first = ctx.for_statement("SELECT 1")
    assert ctx.for_statement("SELECT 2") is first
    commented = ctx.for_statement("SELECT 3 /*intent='x'*/")
    assert commented is not first and "intent" not in first.context
    ctx.apply_set("intent", "y")
    assert ctx.for_statement("SELECT 4") is not first
