"""Small pieces shared by the masking modules."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NoReturn, TypeVar

from pgwarden.masking.config import ColumnRule
from pgwarden.masking.errors import MaskingFailure


class _Same:
    """Marker: the value is unchanged."""

    __slots__ = ()


SAME: Final = _Same()


class FrozenCounter(Counter[str]):
    """The shared empty count returned when nothing was masked. Read-only."""

    def __init__(self) -> None:
        dict.__init__(self)

    def copy(self) -> Counter[str]:  # type: ignore[override]
        return Counter(self)

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("FrozenCounter is read-only")

    __setitem__ = _refuse
    __delitem__ = _refuse
    update = _refuse  # type: ignore[assignment]
    subtract = _refuse  # type: ignore[assignment]
    clear = _refuse
    pop = _refuse
    popitem = _refuse
    setdefault = _refuse


#: returned as the count when nothing was masked; do not mutate (it refuses)
NO_COUNTS: Final[Counter[str]] = FrozenCounter()


def rule_counter_key(rule: ColumnRule) -> str:
    """The counter key of a column rule: ``column:<pattern>``."""
    return "column:" + rule.pattern


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """How one result column is masked."""

    index: int
    name: str
    type_oid: int
    kind: int
    binary: bool
    rule: ColumnRule | None = None
    ssn_hint: bool = False  # the column holds SSNs by name: bare nine digits are SSNs
    whole9: bool = False  # a computed text column: a value of exactly nine digits is an SSN
    always: bool = False  # must be looked at even when the row fails the pre-check
    joinable: bool = False  # plain content masking: scanned in one pass with the row's others
    # an SSN-named text column: its values scanned in one pass with others of such columns
    hint_joinable: bool = False

    @property
    def source(self) -> str:
        return "rule" if self.rule is not None else "content"


_R = TypeVar("_R")


def failure(exc: Exception) -> MaskingFailure:
    """The MaskingFailure that ``exc``, raised while masking, becomes."""
    return MaskingFailure(f"masking failed: {type(exc).__name__}: {exc}")


def guard(fn: Callable[..., _R], *args: Any) -> _R:
    """Run ``fn``; any failure becomes MaskingFailure (fail closed)."""
    try:
        return fn(*args)
    except MaskingFailure:
        raise
    except Exception as exc:
        raise failure(exc) from exc
