"""Verdict: with_ref (the hot path's copy) keeps every field; compiled, a verdict is immutable."""

from __future__ import annotations

import inspect

import pytest

from pgwarden import _native
from pgwarden.proxy.hooks import ALLOW, VERDICT_FIELDS, Verdict


class _Hold:
    notice = "held"

    async def wait(self) -> Verdict:
        return Verdict.allow()

    async def withdraw(self, reason: str) -> None:
        return None


def test_with_ref_equals_replace_for_every_field() -> None:
    verdicts = [
        Verdict.allow(),
        Verdict.allow(rewrite="SELECT 1", rule="r", ref="old"),
        Verdict.deny("no", rule="deny-rule", sqlstate="42601"),
        Verdict.held(_Hold(), rule="review"),
    ]
    assert set(VERDICT_FIELDS) == set(inspect.signature(Verdict).parameters)
    # a new field must be carried by with_ref, compared and shown too
    for v in verdicts:
        ref = object()
        moved = v.with_ref(ref)
        assert moved.ref is ref
        for name in VERDICT_FIELDS:
            if name != "ref":
                assert getattr(moved, name) == getattr(v, name), name
        assert moved == Verdict(**{n: getattr(moved, n) for n in VERDICT_FIELDS})
        assert moved != v
        assert hash(moved) == hash(Verdict(**{n: getattr(moved, n) for n in VERDICT_FIELDS}))
        assert all(f"{n}=" in repr(moved) for n in VERDICT_FIELDS)


def test_a_verdict_is_immutable_when_compiled() -> None:
    # Shared by every session (ALLOW, cached verdicts). mypy refuses the assignment anywhere;
    # compiled, the attribute refuses it at run time too.
    if not _native.active():
        pytest.skip("plain Python: immutability is mypy's (Final), not enforced at run time")
    with pytest.raises(AttributeError):
        ALLOW.action = "deny"  # type: ignore[misc]
    assert ALLOW.action == "allow"


def test_every_field_takes_part_in_equality_and_hash() -> None:
    # Verdict's equality, hash and repr read its fields from one tuple (_values): a field
    # missing there would make two different verdicts compare equal.
    base = Verdict("allow")
    others: dict[str, object] = {
        "action": "deny",
        "message": "m",
        "sqlstate": "42601",
        "rule": "r",
        "rewrite": "SELECT 1",
        "ref": object(),
        "hold": _Hold(),
    }
    assert set(others) == set(VERDICT_FIELDS)
    for name, value in others.items():
        changed = Verdict(**{"action": "allow", name: value})  # type: ignore[arg-type]
        assert changed != base, name
        assert hash(changed) != hash(base), name
