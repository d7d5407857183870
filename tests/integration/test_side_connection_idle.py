"""The gateway's side connections (row estimates, catalog and function look-ups) close once
unused, so they do not hold a target's database: ``DROP DATABASE`` without FORCE, which waits
up to 5 s for other sessions to leave, succeeds after the sessions through the gateway end.
Before, they stayed connected for the gateway's lifetime and the DROP failed with "database
is being accessed by other users" (a real PostgreSQL)."""

from __future__ import annotations

import asyncio
import time

import psycopg

from pgwarden.config import TargetConfig
from pgwarden.guard import sideconn
from pgwarden.guard.sideconn import SideConnection
from tests.support.databases import TargetDb, fresh_database, side_backends
from tests.support.fixtures import MakeGateway

SCHEMA = """
CREATE TABLE items (id int, v int);
INSERT INTO items SELECT g, 0 FROM generate_series(1, 1000) g;
CREATE FUNCTION touch_items() RETURNS int LANGUAGE sql VOLATILE AS 'SELECT 1';
CREATE FUNCTION read_items() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM items';
ANALYZE;
"""


def drop(db: TargetDb) -> None:
    """DROP DATABASE without FORCE (PostgreSQL waits up to 5 s for other sessions)."""
    with psycopg.connect(db.cluster.admin_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{db.dbname}"'.encode())


def test_an_unused_side_connection_closes_and_one_in_use_does_not(shop: TargetDb) -> None:
    db = fresh_database(shop, "side_idle_direct", SCHEMA)
    loop = asyncio.new_event_loop()
    conn = SideConnection(TargetConfig.model_validate(db.target()), idle_close=0.3)
    try:
        ask = conn.query
        assert loop.run_until_complete(ask("SELECT current_database()", None, ())) == [
            "side_idle_direct"
        ]
        assert side_backends(db) == 1
        # a question that outlasts idle_close is not cut off by the last one's timer
        assert loop.run_until_complete(ask("SELECT pg_sleep(0.5)::text", None, ())) == [""]
        assert side_backends(db) == 1
        deadline = time.monotonic() + 5
        while side_backends(db) and time.monotonic() < deadline:
            loop.run_until_complete(asyncio.sleep(0.1))
        assert side_backends(db) == 0
        assert conn.up is None
        # used again, it connects again
        assert loop.run_until_complete(ask("SELECT 41 + 1", None, ())) == ["42"]
        assert side_backends(db) == 1
    finally:
        conn.close()
        loop.close()
    drop(db)
    assert db.dbname not in db.cluster.databases()


def test_a_target_database_can_be_dropped_after_its_sessions_end(
    shop: TargetDb, make_gateway: MakeGateway
) -> None:
    assert sideconn.IDLE_CLOSE < 4  # within DROP DATABASE's 5 s, with room to spare
    db = fresh_database(shop, "side_idle_gateway", SCHEMA)
    gw = make_gateway(targets={"idle": db.target()}, policy="default")
    dsn = gw.dsn(user="alice", dbname="idle", password=gw.token("alice"))
    with psycopg.connect(dsn, autocommit=True) as client:
        # a write estimated on the estimator's side connections, a call of the target's own
        # function looked up on the catalog's, and a result described there for masking
        assert client.execute("UPDATE items SET v = 1 WHERE id < 3").rowcount == 2
        assert client.execute("SELECT read_items()").fetchone() == (1000,)
        assert client.execute("SELECT id, v FROM items WHERE id = 1").fetchone() == (1, 1)
        assert side_backends(db) >= 1
    drop(db)
    assert db.dbname not in db.cluster.databases()
