"""Record real PostgreSQL wire traffic through a tiny TCP relay.

``capture(outdir)`` starts a throwaway ``DevCluster``, puts an asyncio relay in front of it and
runs psycopg, asyncpg and a hand-driven client (built from pgwarden's own ``build()``
constructors, for the messages libpq never sends: FunctionCall, Execute with a row limit,
Flush, NegotiateProtocolVersion, ...) through the relay. Every TCP connection is saved as two
files, ``pgwire_<name>_client.bin`` (frontend bytes, starting with the untyped start-up packet)
and ``pgwire_<name>_server.bin`` (backend bytes), exactly as they crossed the wire.

The checked-in files under tests/data were made with::

    .venv/bin/python tests/unit/protocol/pgwire_capture.py tests/data

Plain TCP only (sslmode=disable), so the first byte of each server file is a typed message.
The passwords below are throwaway test values for a cluster that lives for a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pgwarden.devcluster import DevCluster
from pgwarden.protocol import MessageReader
from pgwarden.protocol.messages import (
    CANCEL_REQUEST_CODE,
    Bind,
    Close,
    CopyData,
    CopyDone,
    CopyFail,
    Describe,
    Execute,
    Flush,
    Message,
    Parse,
    Query,
    ReadyForQuery,
    StartupMessage,
    Sync,
    Terminate,
    frame,
)

DATABASE = "wire"
PASSWORD = "wire-test-password"


@dataclass
class Conn:
    label: str
    number: int
    client: bytearray = field(default_factory=bytearray)
    server: bytearray = field(default_factory=bytearray)

    @property
    def name(self) -> str:
        if self.client[4:8] == struct.pack("!i", CANCEL_REQUEST_CODE):
            return f"{self.label}_cancel"
        return self.label if self.number == 1 else f"{self.label}{self.number}"


class Relay:
    """Forward 127.0.0.1:<port> to the cluster, recording both directions per connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.label = "unnamed"
        self.conns: list[Conn] = []
        self._counts: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 5)

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        n = self._counts.get(self.label, 0) + 1
        self._counts[self.label] = n
        conn = Conn(self.label, n)
        self.conns.append(conn)
        sreader, swriter = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, record: bytearray
        ) -> None:
            try:
                while data := await src.read(65536):
                    record += data
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        task = asyncio.ensure_future(
            asyncio.gather(pump(creader, swriter, conn.client), pump(sreader, cwriter, conn.server))
        )
        self._tasks.add(task)  # type: ignore[arg-type]
        await task


# ---------------------------------------------------------------------------------------------
# Sessions


async def _psycopg_session(relay: Relay, user: str) -> None:
    import psycopg  # noqa: PLC0415 - dev dependency, only needed while capturing

    dsn = (
        f"host=127.0.0.1 port={relay.port} dbname={DATABASE} user={user} password={PASSWORD} "
        "sslmode=disable gssencmode=disable application_name=pgwire-capture"
    )
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        if user != "wire_scram":
            await conn.execute("SELECT 1")
            return
        # simple query protocol (no parameters), several statements in one Query
        await conn.execute("DROP TABLE IF EXISTS items; SELECT 1")
        await conn.execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text, note text, price numeric)"
        )
        # extended protocol with a NULL parameter and an empty string
        await conn.execute(
            "INSERT INTO items VALUES (%s, %s, %s, %s), (%s, %s, %s, %s)",
            (1, "apple", None, 1.5, 2, "", "empty name", None),
        )
        cur = await conn.execute("SELECT id, name, note, price FROM items ORDER BY id")
        await cur.fetchall()
        cur = await conn.execute(
            "SELECT id, name, note FROM items WHERE id = %s", (1,), binary=True
        )
        await cur.fetchall()
        # named prepared statement (prepared on first use when prepare=True)
        for i in (1, 2):
            cur = await conn.execute("SELECT %s::int + 1, %s::text", (i, "x"), prepare=True)
            await cur.fetchall()
        # pipeline: several Parse/Bind/Describe/Execute and Sync in one batch
        async with conn.pipeline():
            await conn.execute("SELECT %s::int", (10,))
            await conn.execute("UPDATE items SET note = %s WHERE id = %s", ("n", 1))
            await conn.execute("SELECT name FROM items WHERE id = %s", (2,))
        # COPY FROM STDIN, COPY TO STDOUT, and a COPY that the client aborts (CopyFail)
        cur = conn.cursor()
        async with cur.copy("COPY items (id, name, note, price) FROM STDIN") as copy:
            for row in ((3, "cherry", None, 3), (4, "", "tab\there", None)):
                await copy.write_row(row)
        async with cur.copy("COPY items TO STDOUT") as copy:
            async for _ in copy:
                pass
        with contextlib.suppress(ZeroDivisionError):
            async with cur.copy("COPY items (id, name) FROM STDIN") as copy:
                await copy.write_row((9, "never"))
                raise ZeroDivisionError
        # errors: simple and extended protocol, and a failed transaction block
        with contextlib.suppress(psycopg.Error):
            await conn.execute("SELEC 1")
        with contextlib.suppress(psycopg.Error):
            await conn.execute("SELECT 1 / %s", (0,))
        with contextlib.suppress(psycopg.Error):
            async with conn.transaction():
                await conn.execute("INSERT INTO items VALUES (5, 'e', NULL, NULL)")
                await conn.execute("INSERT INTO items VALUES (5, 'dup', NULL, NULL)")
        # notices, notifications, the empty query
        await conn.execute("DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$")
        await conn.execute("LISTEN wire_channel")
        await conn.execute("NOTIFY wire_channel, 'payload ünïcode'")
        with contextlib.suppress(psycopg.Error):
            await conn.execute("")
        await conn.execute("SET application_name = 'renamed'")  # ParameterStatus mid-session


async def _asyncpg_session(relay: Relay) -> None:
    import asyncpg  # noqa: PLC0415 - dev dependency, only needed while capturing

    conn = await asyncpg.connect(
        host="127.0.0.1",
        port=relay.port,
        user="wire_scram",
        password=PASSWORD,
        database=DATABASE,
        ssl=False,
    )
    try:
        await conn.fetch("SELECT $1::int + 1 AS n, $2::text AS t, $3::text AS z", 41, "x", None)
        async with conn.transaction():
            # a cursor with prefetch: Execute with a row limit, answered by PortalSuspended
            async for _ in conn.cursor("SELECT g FROM generate_series(1, 7) g", prefetch=3):
                pass
        await conn.copy_records_to_table(
            "items", records=[(10, "binary", None, None)], columns=["id", "name", "note", "price"]
        )
        await conn.executemany(
            "INSERT INTO items (id, name) VALUES ($1, $2)", [(11, "a"), (12, "b")]
        )
        with contextlib.suppress(asyncpg.PostgresError):
            await conn.fetch("SELECT * FROM no_such_table")
        # a statement cancelled by a timeout: asyncpg opens a second connection (CancelRequest)
        with contextlib.suppress(TimeoutError, asyncpg.QueryCanceledError):
            await conn.execute("SELECT pg_sleep(30)", timeout=0.5)
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


async def _raw_session(relay: Relay, int4abs_oid: int) -> None:
    """Messages that libpq clients never send, built with pgwarden's own constructors."""
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    parser = MessageReader("server")

    async def send(*msgs: Message | bytes) -> None:
        writer.write(b"".join(m if isinstance(m, bytes) else m.raw for m in msgs))
        await writer.drain()

    async def until(pred: Callable[[Message], bool]) -> None:
        while True:
            msg = parser.next()
            if msg is None:
                data = await asyncio.wait_for(reader.read(65536), 10)
                if not data:
                    raise ConnectionError("server closed")
                parser.feed(data)
                continue
            if isinstance(msg, Message) and pred(msg):
                return

    async def ready(n: int = 1) -> None:
        for _ in range(n):
            await until(lambda m: isinstance(m, ReadyForQuery))

    # protocol 3.1 plus an unknown _pq_ option: a 3.0 server answers NegotiateProtocolVersion
    startup = StartupMessage.build(
        {
            "user": "wire_trust",
            "database": DATABASE,
            "application_name": "pgwire-raw",
            "_pq_.pgwarden_test": "on",
        },
        version=196609,
    )
    await send(startup)
    await ready()
    await send(Query.build("SELECT 1 AS one, NULL AS nothing, '' AS empty"))
    await ready()
    await send(Query.build(""))
    await ready()
    # named statement with declared parameter types; portal run 2 rows at a time
    await send(
        Parse.build("s1", "SELECT g, g::text AS t FROM generate_series(1, $1) g", [23]),
        Describe.build(b"S", "s1"),
        Bind.build("p1", "s1", [b"5"], [0], [0, 1]),
        Describe.build(b"P", "p1"),
        Execute.build("p1", 2),
        Execute.build("p1", 2),
        Execute.build("p1", 0),
        Close.build(b"P", "p1"),
        Close.build(b"S", "s1"),
        Sync.build(),
    )
    await ready()
    # Flush: the server answers ParseComplete before any Sync
    await send(Parse.build("s2", "SELECT $1::text IS NULL, $2::int4", [25, 0]), Flush.build())
    await until(lambda m: m.raw[:1] == b"1")
    await send(
        Describe.build(b"S", "s2"),
        Bind.build("", "s2", [None, struct.pack("!i", -3)], [0, 1], [1]),
        Execute.build(),
        Sync.build(),
    )
    await ready()
    # NoData for a statement without result columns; CommandComplete for DDL
    await send(
        Parse.build("", "CREATE TEMP TABLE raw_t (a int, b text)"),
        Describe.build(b"S", ""),
        Bind.build("", ""),
        Execute.build(),
        Sync.build(),
    )
    await ready()
    # an error in the middle of a pipeline: everything up to Sync is skipped
    await send(
        Parse.build("", "SELECT nonsense FROM"),
        Bind.build("", ""),
        Execute.build(),
        Sync.build(),
        Query.build("SELECT 2"),
    )
    await ready(2)
    # COPY FROM STDIN completed, then one failed by the client
    await send(Query.build("COPY raw_t FROM STDIN"))
    await until(lambda m: m.raw[:1] == b"G")
    await send(CopyData.build(b"1\tone\n2\t\\N\n"), CopyData.build(b"3\t\n"), CopyDone.build())
    await ready()
    await send(Query.build("COPY raw_t FROM STDIN"))
    await until(lambda m: m.raw[:1] == b"G")
    await send(CopyData.build(b"4\tfour\n"), CopyFail.build("client changed its mind"))
    await ready()
    await send(Query.build("COPY raw_t TO STDOUT WITH (FORMAT binary)"))
    await ready()
    # the legacy fast-path function call: abs(-7) with a text argument and a text result
    body = struct.pack("!IhhhI", int4abs_oid, 1, 0, 1, 2) + b"-7" + struct.pack("!h", 0)
    await send(frame(b"F", body))
    await ready()
    await send(Query.build("LISTEN raw_chan; NOTIFY raw_chan, 'hi'"))
    await ready()
    await send(Query.build("BEGIN; SELECT 1/0"))
    await ready()
    await send(Query.build("ROLLBACK"))
    await ready()
    await send(Terminate.build())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(reader.read(), 5)
    writer.close()


async def _run(cluster: DevCluster, int4abs_oid: int) -> list[Conn]:
    relay = Relay(cluster.port)
    await relay.start()
    try:
        relay.label = "scram_psycopg"
        await _psycopg_session(relay, "wire_scram")
        relay.label = "md5"
        await _psycopg_session(relay, "wire_md5")
        relay.label = "cleartext"
        await _psycopg_session(relay, "wire_password")
        relay.label = "asyncpg"
        await _asyncpg_session(relay)
        relay.label = "raw"
        await _raw_session(relay, int4abs_oid)
    finally:
        await relay.close()
    return relay.conns


def capture(outdir: Path, cluster: DevCluster | None = None) -> list[Path]:
    """Record the sessions into ``outdir``; returns the files written."""
    own = cluster is None
    if cluster is None:
        cluster = DevCluster().start()
    try:
        cluster.create_role("wire_scram", PASSWORD, auth="scram-sha-256")
        cluster.create_role("wire_md5", PASSWORD, auth="md5")
        cluster.create_role("wire_password", PASSWORD, auth="password")
        cluster.create_role("wire_trust", None, auth="trust")
        cluster.create_database(DATABASE, owner="wire_scram", replace=True)
        cluster.execute("GRANT ALL ON SCHEMA public TO PUBLIC", dbname=DATABASE)
        oid = int(cluster.execute("SELECT 'int4abs'::regproc::oid").strip())
        conns = asyncio.run(_run(cluster, oid))
    finally:
        if own:
            cluster.stop()
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for conn in conns:
        for side, data in (("client", conn.client), ("server", conn.server)):
            path = outdir / f"pgwire_{conn.name}_{side}.bin"
            path.write_bytes(bytes(data))
            written.append(path)
    return written


if __name__ == "__main__":
    for p in capture(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data")):
        print(p, p.stat().st_size)
