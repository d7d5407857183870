"""pgwarden.guard.kept: catalog answers kept for a while, bounded."""

from __future__ import annotations

import pytest

from pgwarden.guard import kept as kept_mod
from pgwarden.guard.kept import Kept


def test_an_answer_is_kept_for_its_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(kept_mod.time, "monotonic", lambda: now[0])
    k: Kept[str, int | None] = Kept()
    assert k.get("a", 5.0) is None
    assert k.put("a", 1) == 1
    assert k.put("none", None) is None
    now[0] = 104.9
    assert k.get("a", 5.0) == (1,)
    assert k.get("none", 5.0) == (None,)  # a kept None is an answer, not a miss
    assert k.get("a", 0.0) is None  # the ttl is the caller's, read per call
    now[0] = 105.0
    assert k.get("a", 5.0) is None


def test_a_full_map_starts_over() -> None:
    k: Kept[int, int] = Kept(limit=3)
    for i in range(3):
        k.put(i, i)
    assert [k.get(i, 60.0) for i in range(3)] == [(0,), (1,), (2,)]
    k.put(3, 3)
    assert [k.get(i, 60.0) for i in range(4)] == [None, None, None, (3,)]
