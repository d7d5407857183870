"""Verdict.with_ref: the hot path's replacement for dataclasses.replace keeps every field."""

from __future__ import annotations

import dataclasses

from pgwarden.proxy.hooks import Verdict


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
    assert {f.name for f in dataclasses.fields(Verdict)} == {
        "action",
        "message",
        "sqlstate",
        "rule",
        "rewrite",
        "ref",
        "hold",
    }  # a new field must be carried by with_ref too
    for v in verdicts:
        ref = object()
        assert v.with_ref(ref) == dataclasses.replace(v, ref=ref)
        assert v.with_ref(ref).ref is ref
