"""`pgwarden serve` freezes what start-up built out of the cyclic garbage collector (its full
collections otherwise walk every module and cache again while results are masked): the
start-up objects stop being collected, anything made afterwards still is."""

from __future__ import annotations

import gc

from pgwarden.app import settle_garbage_collector


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_start_up_objects_are_frozen_and_later_cycles_still_collected() -> None:
    before = _Node()
    try:
        frozen = settle_garbage_collector()
        assert frozen > 1000  # this test process's modules, at the least
        # Not equal: a frozen object that dies leaves the count (another thread may drop one).
        assert 0 < gc.get_freeze_count() <= frozen
        assert not any(o is before for o in gc.get_objects())  # frozen: not tracked
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        del a, b
        assert gc.collect() >= 2  # a cycle made after the freeze is still freed
    finally:
        gc.unfreeze()
