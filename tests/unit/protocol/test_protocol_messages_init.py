"""The messages with a hand-written __init__ (pgwarden.protocol.messages, ``_set``): each
must set every field it declares, stay frozen, compare by value and work with replace()."""

from __future__ import annotations

import dataclasses

import pytest

from pgwarden.protocol import messages as m

# A value for every field of each such message, none of them its default.
HAND_WRITTEN: dict[type[m.Message], dict[str, object]] = {
    m.Query: {"sql": "select 1"},
    m.Parse: {"name": "s1", "sql": "select $1", "param_types": (23,)},
    m.Bind: {
        "portal": "p1",
        "statement": "s1",
        "param_formats": (1,),
        "params": (b"\x00\x00\x00\x05", None),
        "result_formats": (0,),
    },
    m.Describe: {"kind": b"P", "name": "p1"},
    m.Execute: {"portal": "p1", "max_rows": 10},
    m.Sync: {},
    m.ParseComplete: {},
    m.BindComplete: {},
    m.DataRow: {},
    m.NoData: {},
    m.CommandComplete: {"tag": "SELECT 1"},
    m.ReadyForQuery: {"status": b"T"},
    m.MessageRun: {"parts": (b"D1", b"D2"), "kind": b"D"},
}


def test_every_class_with_its_own_init_is_listed() -> None:
    own = {
        cls
        for cls in vars(m).values()
        if isinstance(cls, type)
        and issubclass(cls, m.Message)
        and dataclasses.is_dataclass(cls)
        and not cls.__dataclass_params__.init  # type: ignore[attr-defined]
    }
    assert own == set(HAND_WRITTEN)


@pytest.mark.parametrize("cls", list(HAND_WRITTEN), ids=lambda c: c.__name__)
def test_the_hand_written_init_sets_every_field(cls: type[m.Message]) -> None:
    values = {"raw": b"raw bytes", **HAND_WRITTEN[cls]}
    assert set(values) == {f.name for f in dataclasses.fields(cls)}
    msg = cls(**values)  # type: ignore[arg-type]
    for name, value in values.items():
        assert getattr(msg, name) == value, name
    positional = cls(*values.values())  # type: ignore[arg-type]
    assert positional == msg
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.raw = b"other"  # type: ignore[misc]
    changed = dataclasses.replace(msg, raw=b"other")
    assert changed.raw == b"other" and changed != msg


@pytest.mark.parametrize("cls", list(HAND_WRITTEN), ids=lambda c: c.__name__)
def test_defaults_are_the_declared_ones(cls: type[m.Message]) -> None:
    msg = cls(b"raw")  # type: ignore[call-arg]
    for f in dataclasses.fields(cls):
        if f.name != "raw":
            assert getattr(msg, f.name) == f.default, f.name
