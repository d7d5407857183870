"""The per-statement records with a hand-written ``__init__`` (native code when compiled, where
a frozen dataclass's generated one is interpreted): each sets every field it declares."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from pgwarden.protocol.messages import Bind
from pgwarden.proxy.hooks import Statement
from pgwarden.proxy.relay import _Portal

BIND = Bind.build("p1", "s1", [b"5"], param_formats=[0])


def test_statement_sets_every_field_by_name_and_by_position() -> None:
    values: dict[str, object] = {
        "sql": "select $1",
        "protocol": "extended",
        "statement_name": "s1",
        "portal": "p1",
        "bind": BIND,
        "param_types": (23,),
        "known": False,
        "extra": {"k": "v"},
    }
    assert list(values) == [f.name for f in dataclasses.fields(Statement)]
    by_name = Statement(**values)  # type: ignore[arg-type]
    for name, value in values.items():
        assert getattr(by_name, name) == value, name
    assert Statement(*values.values()) == by_name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        by_name.sql = "other"  # type: ignore[misc]
    assert dataclasses.replace(by_name, sql="other").sql == "other"


def test_statement_defaults() -> None:
    s = Statement("select 1", "simple")
    assert (s.statement_name, s.portal, s.bind, s.param_types, s.known, s.extra) == (
        None,
        None,
        None,
        (),
        True,
        {},
    )


def test_portal_sets_every_field() -> None:
    params = list(inspect.signature(_Portal).parameters)
    values: dict[str, object] = {
        "statement": "s1",
        "sql": "select $1",
        "param_types": (23,),
        "bind": BIND,
        "known": False,
    }
    assert params == list(values)
    portal = _Portal(**values)  # type: ignore[arg-type]
    for name, value in values.items():
        assert getattr(portal, name) == value, name
