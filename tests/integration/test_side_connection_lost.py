"""A side connection that died while unused (its backend terminated, its database dropped
and made again, the server restarted) is replaced, and the question is asked again on the
new one. Before, the question went to the dead connection and failed, and the statement
that needed it was refused (fail closed): one client statement refused for nothing after
every such event, e.g. ``SELECT 41 + 1`` after the target's database was rebuilt."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from pgwarden.config import TargetConfig
from pgwarden.guard import catalog as catalog_mod
from pgwarden.guard.sideconn import SideConnection
from pgwarden.proxy.upstream import UpstreamError
from tests.support.databases import TargetDb, fresh_database, side_backends
from tests.support.fixtures import MakeGateway
from tests.support.tcpproxy import TcpProxy

SCHEMA = """
CREATE TABLE items (id int, v int);
INSERT INTO items SELECT g, 0 FROM generate_series(1, 100) g;
ANALYZE;
"""


def kill_side_backends(db: TargetDb) -> None:
    """Terminate the gateway's side connections and wait until they are gone."""
    killed = db.cluster.query(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = %s AND application_name = 'pgwarden-estimator'",
        (db.dbname,),
    )
    assert int(killed[0][0]) >= 1
    deadline = time.monotonic() + 5
    while side_backends(db) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert side_backends(db) == 0


def test_a_question_on_a_terminated_connection_is_asked_again(shop: TargetDb) -> None:
    db = fresh_database(shop, "side_lost_direct", SCHEMA)
    loop = asyncio.new_event_loop()
    conn = SideConnection(TargetConfig.model_validate(db.target()), idle_close=60)
    try:
        ask = conn.query
        assert loop.run_until_complete(ask("SELECT 1", None, ())) == ["1"]
        first = conn.up
        kill_side_backends(db)
        loop.run_until_complete(asyncio.sleep(0.1))  # the FATAL and the EOF have arrived
        assert loop.run_until_complete(ask("SELECT 41 + 1", None, ())) == ["42"]
        assert conn.up is not None and conn.up is not first
        assert side_backends(db) == 1
        # an error of the question itself is not asked again: it is the answer
        with pytest.raises(UpstreamError) as err:
            loop.run_until_complete(ask("SELECT 1/0", None, ()))
        assert err.value.sqlstate == "22012"
    finally:
        conn.close()
        loop.close()


def test_within_a_sequence_only_its_first_question_is_asked_again(shop: TargetDb) -> None:
    """After BEGIN READ ONLY (or PREPARE) the session's state is part of the question: a new
    connection would run the rest outside the transaction, so the failure stands."""
    db = fresh_database(shop, "side_lost_sequence", SCHEMA)
    loop = asyncio.new_event_loop()
    conn = SideConnection(TargetConfig.model_validate(db.target()), idle_close=60)

    async def first_question_after_a_kill() -> str:
        async with conn.sequence():
            kill_side_backends(db)
            await asyncio.sleep(0.1)
            await conn.query("BEGIN TRANSACTION READ ONLY", None, ())
            out = await conn.query("SELECT current_setting('transaction_read_only')", None, ())
            await conn.query("ROLLBACK", None, ())
            return out[0]

    async def later_question_after_a_kill() -> None:
        async with conn.sequence():
            await conn.query("BEGIN TRANSACTION READ ONLY", None, ())
            kill_side_backends(db)
            await asyncio.sleep(0.1)
            await conn.query("SELECT 1", None, ())

    try:
        assert loop.run_until_complete(conn.query("SELECT 1", None, ())) == ["1"]
        assert loop.run_until_complete(first_question_after_a_kill()) == "on"
        with pytest.raises(UpstreamError):
            loop.run_until_complete(later_question_after_a_kill())
        assert conn.up is None
    finally:
        conn.close()
        loop.close()


def test_a_statement_after_the_side_connections_died_is_answered(
    shop: TargetDb, make_gateway: MakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog_mod, "FUNCTIONS_TTL", 0.0)  # every statement looks up
    db = fresh_database(shop, "side_lost_gateway", SCHEMA)
    # a held statement (a look-up that failed) is refused after 200 ms instead of waiting
    gw = make_gateway(
        targets={"lost": db.target()}, policy="default", approvals={"timeout": "200ms"}
    )
    dsn = gw.dsn(user="alice", dbname="lost", password=gw.token("alice"))
    with psycopg.connect(dsn, autocommit=True) as client:
        assert client.execute("SELECT 41 + 1").fetchone() == (42,)  # opens a side connection
        assert client.execute("UPDATE items SET v = 1 WHERE id < 3").rowcount == 2
        kill_side_backends(db)
        time.sleep(0.1)
        assert client.execute("SELECT 41 + 1").fetchone() == (42,)
        # estimated again (a write without an estimate would be held, and wait for a human)
        assert client.execute("UPDATE items SET v = 2 WHERE id < 3").rowcount == 2
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            client.execute("TRUNCATE items")  # still judged
    assert client.closed


def test_without_the_catalog_only_statements_that_evaluate_nothing_pass(
    shop: TargetDb, make_gateway: MakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When no side connection can be opened, a statement the catalog must be asked about
    is held (fail closed); one that evaluates no expression (BEGIN, SAVEPOINT, ROLLBACK,
    SHOW) runs no cast or function and passes, so a client can still end its transaction."""
    monkeypatch.setattr(catalog_mod, "FUNCTIONS_TTL", 0.0)
    with TcpProxy(shop.cluster.host, shop.cluster.port) as proxy:
        gw = make_gateway(
            targets={"shop": shop.target(port=proxy.port)},
            policy="default",
            approvals={"timeout": "200ms"},
        )
        dsn = gw.dsn(user="alice", dbname="shop", password=gw.token("alice"))
        with psycopg.connect(dsn, autocommit=True) as client:
            proxy.refuse = True  # the session is connected; no side connection can be
            client.execute("BEGIN")
            client.execute("SAVEPOINT a")
            client.execute("ROLLBACK TO SAVEPOINT a")
            assert client.execute("SHOW application_name").fetchone() is not None
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
                client.execute("SELECT 1::int")
            assert "review-opaque-code" in str(err.value)
            client.execute("ROLLBACK")
        assert proxy.accepted >= 2  # the session, and side connections cut at once
