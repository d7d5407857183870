"""The messages with a hand-written __init__ (pgwarden.protocol.messages, ``_set``): each
must set every field it declares, stay frozen, compare by value and work with replace()."""

from __future__ import annotations

import dataclasses

import pytest

from pgwarden.protocol import messages as m
from pgwarden.protocol.frozen import assign_in_init

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
    assert own == set(HAND_WRITTEN) == set(m.OWN_INIT)


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


# The same kind of class as the compiled messages, interpreted (this module is not compiled).
@dataclasses.dataclass(frozen=True, slots=True, init=False)
class _Interpreted:
    a: int
    b: str = "b"

    def __init__(self, a: int, b: str = "b") -> None:
        self.a = a  # type: ignore[misc]
        self.b = b  # type: ignore[misc]


def test_an_interpreted_own_init_assigns_once_and_stays_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        _Interpreted(1)  # the frozen __setattr__ refuses the __init__'s assignments
    assign_in_init(_Interpreted)
    x = _Interpreted(1, "x")
    assert (
        (x.a, x.b) == (1, "x")
        and x == _Interpreted(1, "x")
        and hash(x) == hash(_Interpreted(1, "x"))
    )
    for name in ("a", "b"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(x, name, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        del x.a
    assert dataclasses.replace(x, b="y") == _Interpreted(1, "y")


def test_assign_in_init_refuses_a_class_that_is_not_frozen_with_slots() -> None:
    @dataclasses.dataclass(slots=True)
    class Mutable:
        a: int

    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    for cls in (Mutable, NoSlots):
        with pytest.raises(TypeError, match="not a frozen dataclass with slots"):
            assign_in_init(cls)
