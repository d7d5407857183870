"""asyncpg through the gateway: its binary extended-protocol path, prepared statements,
executemany pipelines, COPY, cursors (portals with row limits) and cancellation."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import io
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import asyncpg
import pytest

from tests.support.databases import TargetDb
from tests.support.gateway import RunningGateway

T = TypeVar("T")


def run(fn: Callable[[asyncpg.Connection], Awaitable[T]], gw: RunningGateway, **kwargs: Any) -> T:
    """Connect through the gateway, run `fn(conn)` on a fresh event loop, close."""

    async def main() -> T:
        conn = await asyncpg.connect(
            **gw.connect_kwargs("alice"), ssl=kwargs.pop("ssl", False), **kwargs
        )
        try:
            return await fn(conn)
        finally:
            await conn.close(timeout=5)

    return asyncio.run(main())


@pytest.fixture
def table(shop: TargetDb, unique: Callable[[str], str]) -> Iterator[str]:
    name = unique("apg")
    shop.execute(
        f"create table {name} (id int primary key, name text, price numeric(10,2), "
        "seen timestamptz);"
        f"alter table {name} owner to app;"
    )
    yield name
    shop.execute(f"set lock_timeout = '10s'; drop table if exists {name}")


def test_fetch_and_types(gateway: RunningGateway) -> None:
    async def fn(conn: asyncpg.Connection) -> list[asyncpg.Record]:
        return await conn.fetch(
            "select 42::int4 a, 9000000000::int8 b, 1.25::float8 c, 12.345::numeric(10,3) d, "
            "'ünï'::text e, '\\x0102'::bytea f, true g, '2024-02-29T12:00:00Z'::timestamptz h, "
            "array[1,null,3]::int[] i, '{\"k\": 1}'::jsonb j, "
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid k, '1 day 2 hours'::interval l, "
            "null::int m"
        )

    [row] = run(fn, gateway)
    assert dict(row) == {
        "a": 42,
        "b": 9000000000,
        "c": 1.25,
        "d": decimal.Decimal("12.345"),
        "e": "ünï",
        "f": b"\x01\x02",
        "g": True,
        "h": dt.datetime(2024, 2, 29, 12, tzinfo=dt.UTC),
        "i": [1, None, 3],
        "j": '{"k": 1}',
        "k": uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        "l": dt.timedelta(days=1, hours=2),
        "m": None,
    }


def test_over_tls(gateway: RunningGateway) -> None:
    async def fn(conn: asyncpg.Connection) -> Any:
        return await conn.fetchval("select 'secure'"), conn.get_server_version()

    value, version = run(fn, gateway, ssl="require")
    assert value == "secure"
    assert version.major >= 13


def test_prepared_statement(gateway: RunningGateway) -> None:
    async def fn(conn: asyncpg.Connection) -> Any:
        stmt = await conn.prepare("select $1::int * 2 as doubled, $2::text as label")
        attrs = [(a.name, a.type.name) for a in stmt.get_attributes()]
        params = [t.name for t in stmt.get_parameters()]
        results = [await stmt.fetchrow(i, f"n{i}") for i in range(5)]
        return attrs, params, [tuple(r) for r in results]

    attrs, params, results = run(fn, gateway)
    assert attrs == [("doubled", "int4"), ("label", "text")]
    assert params == ["int4", "text"]
    assert results == [(i * 2, f"n{i}") for i in range(5)]


def test_executemany(gateway: RunningGateway, shop: TargetDb, table: str) -> None:
    data = [(i, f"item {i}", decimal.Decimal(f"{i}.50")) for i in range(200)]

    async def fn(conn: asyncpg.Connection) -> None:
        await conn.executemany(f"insert into {table} (id, name, price) values ($1, $2, $3)", data)

    run(fn, gateway)
    assert shop.query(f"select count(*), sum(price) from {table}") == [
        (200, sum(p for _, _, p in data))
    ]


def test_executemany_error_rolls_back_everything(
    gateway: RunningGateway, shop: TargetDb, table: str
) -> None:
    async def fn(conn: asyncpg.Connection) -> None:
        await conn.executemany(
            f"insert into {table} (id, name) values ($1, $2)",
            [(1, "a"), (2, "b"), (1, "duplicate"), (3, "c")],
        )

    with pytest.raises(asyncpg.UniqueViolationError) as info:
        run(fn, gateway)
    assert info.value.sqlstate == "23505"
    assert shop.query(f"select count(*) from {table}") == [(0,)]


def test_copy_records_and_copy_to_table(
    gateway: RunningGateway, shop: TargetDb, table: str
) -> None:
    when = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

    async def fn(conn: asyncpg.Connection) -> Any:
        r1 = await conn.copy_records_to_table(
            table,
            records=[(i, f"rec {i}", decimal.Decimal(i), when) for i in range(1, 301)],
            columns=["id", "name", "price", "seen"],
        )
        source = io.BytesIO(b"".join(f"{i},csv {i},{i}\n".encode() for i in range(301, 401)))
        r2 = await conn.copy_to_table(
            table, source=source, columns=["id", "name", "price"], format="csv"
        )
        return r1, r2

    assert run(fn, gateway) == ("COPY 300", "COPY 100")
    assert shop.query(f"select count(*), count(seen), max(id) from {table}") == [(400, 300, 400)]


def test_copy_from_query_and_table(gateway: RunningGateway, shop: TargetDb, table: str) -> None:
    shop.execute(
        f"insert into {table} (id, name, price) "
        "select g, 'n' || g, g from generate_series(1, 1000) g"
    )

    async def fn(conn: asyncpg.Connection) -> tuple[str, bytes, str, bytes]:
        out1, out2 = io.BytesIO(), io.BytesIO()
        s1 = await conn.copy_from_query(
            f"select id, name from {table} where id <= $1 order by id", 3, output=out1, format="csv"
        )
        s2 = await conn.copy_from_table(table, columns=["id"], output=out2)
        return s1, out1.getvalue(), s2, out2.getvalue()

    s1, csv, s2, ids = run(fn, gateway)
    assert s1 == "COPY 3"
    assert csv == b"1,n1\n2,n2\n3,n3\n"
    assert s2 == "COPY 1000"
    assert sorted(int(x) for x in ids.split()) == list(range(1, 1001))


def test_cursor_in_transaction(gateway: RunningGateway) -> None:
    """asyncpg cursors are portals read with row limits: Execute(n) -> PortalSuspended."""

    async def fn(conn: asyncpg.Connection) -> Any:
        async with conn.transaction():
            iterated = [
                r[0]
                async for r in conn.cursor("select g from generate_series(1, 95) g", prefetch=10)
            ]
            cur = await conn.cursor("select g from generate_series($1::int, $2::int) g", 1, 50)
            first = [r[0] for r in await cur.fetch(5)]
            moved = await cur.forward(10)
            nxt = await cur.fetchrow()
            rest = [r[0] for r in await cur.fetch(100)]
        return iterated, first, moved, nxt[0], rest

    iterated, first, moved, nxt, rest = run(fn, gateway)
    assert iterated == list(range(1, 96))
    assert first == [1, 2, 3, 4, 5]
    assert moved == 10
    assert nxt == 16
    assert rest == list(range(17, 51))


def test_transaction_rollback(gateway: RunningGateway, shop: TargetDb, table: str) -> None:
    async def fn(conn: asyncpg.Connection) -> str:
        with pytest.raises(asyncpg.DivisionByZeroError):
            async with conn.transaction():
                await conn.execute(f"insert into {table} (id, name) values (1, 'rolled back')")
                await conn.fetchval("select 1 / (select count(*) from pg_class where false)::int")
        async with conn.transaction(isolation="serializable"):
            await conn.execute(f"insert into {table} (id, name) values (2, 'committed')")
        return await conn.fetchval("show transaction_isolation")

    assert run(fn, gateway) == "read committed"
    assert shop.query(f"select id, name from {table}") == [(2, "committed")]


def test_timeout_cancels_the_statement(gateway: RunningGateway) -> None:
    async def fn(conn: asyncpg.Connection) -> Any:
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await conn.fetchval("select pg_sleep(30)", timeout=0.5)
        elapsed = time.monotonic() - started
        after = await conn.fetchval("select 'usable after cancel'")
        # The backend really stopped: no pg_sleep left running for this role.
        running = await conn.fetchval(
            "select count(*) from pg_stat_activity "
            "where query = 'select pg_sleep(30)' and state = 'active'"
        )
        return elapsed, after, running

    elapsed, after, running = run(fn, gateway)
    assert elapsed < 5
    assert after == "usable after cancel"
    assert running == 0


def test_listener(gateway: RunningGateway) -> None:
    async def fn(conn: asyncpg.Connection) -> list[tuple[str, str]]:
        got: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        await conn.add_listener(
            "apg_chan", lambda _c, _pid, ch, payload: got.put_nowait((ch, payload))
        )
        other = await asyncpg.connect(**gateway.connect_kwargs("bob"), ssl=False)
        try:
            await other.execute("notify apg_chan, 'one'")
            await other.execute("select pg_notify('apg_chan', 'two')")
        finally:
            await other.close()
        return [await asyncio.wait_for(got.get(), 5) for _ in range(2)]

    assert run(fn, gateway) == [("apg_chan", "one"), ("apg_chan", "two")]


def test_custom_types_introspection(
    gateway: RunningGateway, shop: TargetDb, unique: Callable[[str], str]
) -> None:
    mood = unique("mood")
    shop.execute(
        f"create type {mood} as enum ('sad', 'ok', 'happy'); alter type {mood} owner to app;"
    )
    try:

        async def fn(conn: asyncpg.Connection) -> Any:
            return await conn.fetchval(f"select array['ok', 'happy']::{mood}[]")

        assert run(fn, gateway) == ["ok", "happy"]
    finally:
        shop.execute(f"drop type if exists {mood}")


def test_pool(gateway: RunningGateway) -> None:
    async def main() -> list[int]:
        async with asyncpg.create_pool(
            **gateway.connect_kwargs("alice"), ssl=False, min_size=2, max_size=4
        ) as pool:
            return list(
                await asyncio.gather(
                    *(pool.fetchval("select $1::int + 0 from pg_sleep(0.05)", i) for i in range(20))
                )
            )

    assert asyncio.run(main()) == list(range(20))
