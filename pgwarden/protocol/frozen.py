"""Frozen dataclasses whose own ``__init__`` assigns its fields as ``self.field = value``.

Compiled (pgwarden._native), such an assignment is a native store into the instance, a few
nanoseconds; ``object.__setattr__(self, "field", value)``, the usual way past a frozen
dataclass's ``__setattr__``, is a generic call that builds an argument tuple and looks the
field's descriptor up (~50 ns). An extended-protocol statement builds about forty fields of
messages and statements. Interpreted, the frozen ``__setattr__`` refuses the assignment, so
``assign_in_init`` gives such classes one that lets each field be assigned once (while its
slot is empty, i.e. in ``__init__``) and refuses any later assignment as the frozen one does.
Compiled classes are left as they are: their ``__setattr__`` is the frozen one for every
assignment from outside their own compiled code.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from types import FunctionType
from typing import Any

__all__ = ["assign_in_init"]


def _assign_once(self: Any, name: str, value: Any) -> None:
    try:
        object.__getattribute__(self, name)
    except AttributeError:  # an empty slot: the class's own __init__ is setting it
        object.__setattr__(self, name, value)
        return
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def assign_in_init(*classes: type) -> None:
    """Let the interpreted ``__init__`` of these frozen, slotted dataclasses assign fields."""
    for cls in classes:
        if not isinstance(cls.__dict__.get("__init__"), FunctionType):
            continue  # compiled: its own assignments never reach __setattr__
        params = getattr(cls, "__dataclass_params__", None)
        if params is None or not params.frozen or "__slots__" not in cls.__dict__:
            raise TypeError(f"{cls.__name__} is not a frozen dataclass with slots")
        cls.__setattr__ = _assign_once  # type: ignore[method-assign,assignment]
