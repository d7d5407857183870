"""Answers from the target's catalog kept for a few seconds (table sizes, unique keys, foreign
keys, functions): they change with DDL and ANALYZE, not with each statement, and asking again
for every statement would double its round trips."""

from __future__ import annotations

import time
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

__all__ = ["Kept"]


class Kept(Generic[K, V]):
    """A map whose entries are good for ``ttl`` seconds, emptied when it holds ``limit``."""

    def __init__(self, limit: int = 4096) -> None:
        self._items: dict[K, tuple[V, float]] = {}
        self._limit = limit

    def get(self, key: K, ttl: float) -> tuple[V] | None:
        """``(value,)`` if kept less than ``ttl`` seconds ago (the value itself may be None),
        else None. ``ttl`` is read per call, so a module constant can be patched in tests."""
        hit = self._items.get(key)
        if hit is None or time.monotonic() - hit[1] >= ttl:
            return None
        return (hit[0],)

    def put(self, key: K, value: V) -> V:
        if len(self._items) >= self._limit:
            self._items.clear()
        self._items[key] = (value, time.monotonic())
        return value
