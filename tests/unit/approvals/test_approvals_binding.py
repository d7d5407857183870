"""``statement_hash``: what an approval is bound to."""

from __future__ import annotations

import decimal
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgwarden.approvals import jsonable_params, statement_hash
from pgwarden.recording.events import statement_hash as recording_statement_hash

BASE = {"session_id": "s1", "target": "shop", "requester": "agent-7"}


def h(sql: str = "DELETE FROM t WHERE id = $1", params: list[object] | None = None, **kw: str):
    return statement_hash(sql, ["5"] if params is None else params, **{**BASE, **kw})


def test_shape_and_determinism() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", h())
    assert h() == h()
    # tuples and lists, key order of tagged values: the same statement
    tagged = {"encoding": "base64", "data": "AA==", "format": "binary"}
    assert h(params=[dict(reversed(list(tagged.items())))]) == h(params=[tagged])
    assert statement_hash("x", ("a",), **BASE) == statement_hash("x", ["a"], **BASE)


def test_every_part_is_bound() -> None:
    base = h()
    assert h(sql="DELETE FROM t WHERE id = $2") != base
    assert h(sql="delete from t where id = $1") != base  # a different text is a different approval
    assert h(params=["6"]) != base
    assert h(params=[]) != base
    assert h(params=["5", None]) != base
    assert h(params=[5]) != base  # the number 5 is not the text "5"
    assert h(session_id="s2") != base
    assert h(target="shop2") != base
    assert h(requester="agent-8") != base
    assert h(requester="Agent-7") != base


def test_no_ambiguity_between_fields() -> None:
    """Moving text from one field to the next never gives the same hash (canonical JSON)."""
    assert statement_hash("a", [], session_id="bc", target="d", requester="e") != statement_hash(
        "ab", [], session_id="c", target="d", requester="e"
    )
    assert h(params=["a", "b"]) != h(params=["a,b"])


def test_not_the_recording_hash() -> None:
    assert h() != recording_statement_hash("DELETE FROM t WHERE id = $1", ["5"]).split(":")[1]


def test_params_normalisation() -> None:
    assert jsonable_params([b"\x00\xff", bytearray(b"a"), None, 1, 1.5, True, ("x",)]) == [
        {"encoding": "base64", "data": "AP8="},
        {"encoding": "base64", "data": "YQ=="},
        None,
        1,
        1.5,
        True,
        ["x"],
    ]
    assert h(params=[b"\x00"]) == h(params=[{"encoding": "base64", "data": "AA=="}])
    with pytest.raises(TypeError):
        jsonable_params([decimal.Decimal("1.5")])
    with pytest.raises(ValueError):
        jsonable_params([float("nan")])
    with pytest.raises(TypeError):
        jsonable_params("abc")
    with pytest.raises(TypeError):
        jsonable_params([{1: "x"}])


@given(
    st.text(),
    st.lists(st.one_of(st.none(), st.text(), st.binary())),
    st.text(),
    st.text(),
    st.text(),
)
def test_distinct_inputs_distinct_hashes(sql, params, session_id, target, requester) -> None:
    one = statement_hash(sql, params, session_id=session_id, target=target, requester=requester)
    assert one == statement_hash(
        sql, list(params), session_id=session_id, target=target, requester=requester
    )
    assert one != statement_hash(
        sql + " ", params, session_id=session_id, target=target, requester=requester
    )
    assert one != statement_hash(
        sql, [*params, None], session_id=session_id, target=target, requester=requester
    )
