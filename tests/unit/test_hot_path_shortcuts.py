"""The data path's shortcuts around coroutines give the same answers as the long way.

Each shortcut skips an ``await`` for the common case (a statement that copies nothing, one
that changes no context, a write the socket took whole); these tests hold each to the path it
stands in for, so a statement the shortcut misjudges fails here rather than going unmasked or
unrecorded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from pgwarden.guard.masking import SessionMasking, plain_scope
from pgwarden.guard.recorder import changes_context
from pgwarden.masking import Masker, load_masking
from pgwarden.proxy.channel import Channel
from pgwarden.sql import classify

STATEMENTS = [
    "SELECT abalance FROM pgbench_accounts WHERE aid = 5",
    "SELECT * FROM customers; SELECT * FROM orders",
    "COPY customers TO STDOUT",
    "COPY (SELECT email FROM customers) TO STDOUT WITH (FORMAT csv)",
    "COPY customers FROM STDIN",
    "COPY customers TO STDOUT WITH (FORMAT binary)",
    "SELECT 1; COPY orders TO STDOUT",
    "WITH x AS (SELECT * FROM customers) SELECT * FROM x",
    "INSERT INTO orders SELECT * FROM orders",
    "EXPLAIN SELECT * FROM customers",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SET pgwarden.intent = 'clean up'",
    "RESET pgwarden.intent",
    "SET application_name = 'agent'",
    "SELECT 1; BEGIN",
    "UPDATE orders SET amount = 0 WHERE id = 1",
    "this is not sql",
]


@pytest.mark.parametrize("masking", ["default", {"columns": ["customers.email"]}])
@pytest.mark.parametrize("sql", STATEMENTS)
def test_plain_scope_is_the_scope_of_what_copies_nothing(sql: str, masking: object) -> None:
    c = classify(sql)
    masker = Masker(load_masking(masking), b"unit-test-masking-key-0123456789")
    session = SessionMasking(masker, None, "shop")
    full = asyncio.run(session.scope(c))
    quick = plain_scope(c)
    if any(st.copy is not None for st in c.statements):
        assert quick is None  # a COPY's columns are looked up: the long way
    elif c.kinds.isdisjoint({"copy_to", "copy_from"}):
        assert quick == full  # most statements: the shortcut, with the same answer
    else:
        assert quick is None or quick == full  # COPY FROM STDIN: either way, the same


@pytest.mark.parametrize("sql", STATEMENTS)
def test_changes_context_says_when_apply_settings_has_work(sql: str) -> None:
    c = classify(sql)
    acts = any(st.kind in ("begin", "commit", "rollback", "set", "reset") for st in c.statements)
    assert changes_context(c) is acts


@dataclass
class _Transport:
    buffered: int
    closing: bool

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str) -> object:
        return None


@pytest.mark.parametrize(
    ("buffered", "closing", "drain"),
    [(0, False, False), (1, False, True), (1 << 20, False, True), (0, True, True)],
)
def test_drain_is_skipped_only_when_nothing_waits(
    buffered: int, closing: bool, drain: bool
) -> None:
    # Bytes left in the transport must be waited for (backpressure on a slow reader), and a
    # closing connection must reach drain() so that its error ends the session.
    assert Channel(_Transport(buffered, closing)).backlogged() is drain
