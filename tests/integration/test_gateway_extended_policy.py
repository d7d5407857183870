"""The statement a portal runs is the one it was bound to: the gateway must judge that one
at Execute, whatever happened to the statement's name since the Bind.

PostgreSQL ties a portal to the statement at Bind time; re-parsing the unnamed statement,
or closing and re-parsing a named one, does not change what an already bound portal runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support import wire
from tests.support.databases import TargetDb
from tests.support.fixtures import MakeGateway
from tests.support.gateway import RunningGateway


@pytest.fixture
def gw(make_gateway: MakeGateway) -> RunningGateway:
    """A gateway with the built-in default policy (schema changes need approval; nobody
    approves here, so a held statement is refused when its short timeout passes)."""
    return make_gateway(policy="default", approvals={"timeout": "200ms"})


@pytest.fixture
def conn(gw: RunningGateway) -> Iterator[wire.RawConn]:
    with wire.RawConn.connect(gw.host, gw.port) as c:
        c.login("alice", "shop", gw.token("alice"))
        yield c


@pytest.fixture
def name(shop: TargetDb, unique: Callable[[str], str]) -> Iterator[str]:
    n = unique("bypass")
    yield n
    shop.execute(f"drop table if exists {n}")


def exists(shop: TargetDb, table: str) -> bool:
    return bool(shop.query("select 1 from pg_class where relname = %s", [table]))


def test_ddl_is_held_then_refused_when_nobody_approves(
    conn: wire.RawConn, shop: TargetDb, name: str
) -> None:
    reply = conn.simple(f"create table {name} (id int)")
    assert wire.types(reply) == [b"N", b"E", b"Z"]  # the hold notice, then the refusal
    assert reply[0].message.startswith("pgwarden: statement held for approval apr_")
    assert reply[1].sqlstate == "42501"
    assert reply[1].message.startswith("pgwarden:")
    conn.send(wire.extended(f"create table {name} (id int)"), wire.sync())
    reply = conn.until_ready()
    assert wire.errors(reply)[0].sqlstate == "42501"
    assert not exists(shop, name)


def test_portal_outliving_its_closed_statement_still_runs(conn: wire.RawConn) -> None:
    """Legitimate: Bind, Close the statement, Execute the portal (it stays valid)."""
    conn.send(
        wire.parse("s", "select 'bound' as v"),
        wire.bind("p", "s"),
        wire.close(b"S", "s"),
        wire.execute("p"),
        wire.sync(),
    )
    reply = conn.until_ready()
    assert wire.types(reply) == [b"1", b"2", b"3", b"D", b"C", b"Z"], reply
    assert wire.rows(reply) == [("bound",)]


def test_reparsing_the_unnamed_statement_does_not_change_what_is_judged(
    conn: wire.RawConn, shop: TargetDb, name: str
) -> None:
    conn.send(
        wire.parse("", f"create table {name} (id int)"),
        wire.bind("p", ""),
        wire.parse("", "select 1"),
        wire.execute("p"),
        wire.sync(),
    )
    reply = conn.until_ready()
    assert not exists(shop, name)
    assert wire.errors(reply) and wire.errors(reply)[0].sqlstate == "42501"


def test_closing_and_reparsing_a_named_statement_does_not_change_what_is_judged(
    conn: wire.RawConn, shop: TargetDb, name: str
) -> None:
    conn.send(
        wire.parse("s", f"create table {name} (id int)"),
        wire.bind("p", "s"),
        wire.close(b"S", "s"),
        wire.parse("s", "select 1"),
        wire.execute("p"),
        wire.sync(),
    )
    reply = conn.until_ready()
    assert not exists(shop, name)
    assert wire.errors(reply) and wire.errors(reply)[0].sqlstate == "42501"
