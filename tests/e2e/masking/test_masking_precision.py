"""Precision: ordinary values (names, amounts, dates, ids, phone numbers, ZIP codes, UUIDs,
timestamps, order references) come back through the gateway exactly as they do directly,
in text and binary formats and with several clients; and what was masked is counted in the
recording (detector names and counts, never the value)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import psycopg
import pytest

from tests.e2e.masking.masking_support import MaskEnv
from tests.e2e.recording_support import read_recording, wait_for
from tests.support.databases import run_psql

ORDINARY = [
    "SELECT id, name, phone, created_at FROM customers ORDER BY id",
    "SELECT * FROM products ORDER BY id",
    "SELECT * FROM orders ORDER BY id",
    "SELECT sum(amount), count(*), avg(amount), max(created_at) FROM orders",
    "SELECT name, email IS NOT NULL AS has_email, length(ssn), length(card_number), "
    "count(*) OVER () FROM customers ORDER BY id",
    "SELECT customer_id, sum(amount) FROM orders GROUP BY customer_id ORDER BY customer_id",
    # numbers and strings that look a little like sensitive values but are not
    "SELECT 1234567890123456789::bigint AS id, 4111111111111112::bigint AS not_luhn, "
    "1700000000000::bigint AS epoch_ms, 9007199254740993::bigint AS big, "
    "123456789::int AS nine_digits",
    # (a computed *text* value of exactly nine digits is taken as an SSN by design: that is
    # how replace(ssn, '-', '') arrives; see pgwarden.masking)
    "SELECT '12345-6789' AS zip4, '+1-202-555-0100' AS phone, '978-3-16-148410-0' AS isbn, "
    "'ORD-2023-000123' AS ref, '192.168.1.1'::inet AS ip, '1234.56'::numeric AS amount",
    "SELECT md5(name)::uuid AS id, '2024-02-29'::date AS d, '12:34:56'::time AS t, "
    "'2023-01-01 00:00:00+00'::timestamptz AS ts, interval '1 day' AS iv FROM customers",
    """SELECT '{"amount": 12.5, "sku": "SKU-123", "qty": 3}'::jsonb AS doc,
              ARRAY[1, 2, 3] AS arr, 'user at example dot com' AS not_email,
              'a@b' AS no_tld, '000-12-3456' AS invalid_area, '666-12-3456' AS invalid_666,
              '900-12-3456' AS invalid_9xx""",
    "SELECT g, g * 1000003 AS product FROM generate_series(1, 500) g",
]


def _psycopg(dsn: str, sql: str, binary: bool) -> list[Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.cursor(binary=binary).execute(sql).fetchall()


async def _asyncpg(kwargs: dict[str, Any], sql: str) -> list[Any]:
    conn = await asyncpg.connect(**kwargs)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


def _asyncpg_direct(env: MaskEnv) -> dict[str, Any]:
    return {
        "host": str(env.cluster.sockdir),
        "port": env.cluster.port,
        "user": env.cluster.superuser,
        "database": "mask_shop",
    }


@pytest.mark.parametrize("sql", ORDINARY)
@pytest.mark.parametrize("client", ["psycopg", "psycopg-binary", "asyncpg", "psql"])
def test_ordinary_values_unchanged(mask_env: MaskEnv, sql: str, client: str) -> None:
    if client == "psql":
        direct = run_psql(mask_env.direct_dsn(), "-A", "-c", sql)
        through = run_psql(mask_env.dsn(), "-A", "-c", sql)
        assert through.returncode == 0, through.stderr
        assert through.stdout == direct.stdout
        return
    if client == "asyncpg":
        want = asyncio.run(_asyncpg(_asyncpg_direct(mask_env), sql))
        got = asyncio.run(_asyncpg(mask_env.asyncpg_kwargs(), sql))
    else:
        binary = client == "psycopg-binary"
        want = _psycopg(mask_env.direct_dsn(), sql, binary)
        got = _psycopg(mask_env.dsn(), sql, binary)
    assert got == want


def test_copy_of_ordinary_data_unchanged(mask_env: MaskEnv) -> None:
    for sql in (
        "COPY orders TO STDOUT",
        "COPY products TO STDOUT (FORMAT csv, HEADER)",
        "COPY orders TO STDOUT (FORMAT binary)",
    ):
        out: list[bytes] = []
        for dsn in (mask_env.direct_dsn(), mask_env.dsn()):
            with psycopg.connect(dsn) as conn, conn.cursor().copy(sql) as cp:
                out.append(b"".join(bytes(b) for b in cp))
        assert out[0] == out[1], sql


def test_masked_values_are_counted_in_the_recording(mask_env: MaskEnv) -> None:
    script = "SHOW pgwarden.session_id;\nSELECT email, ssn, card_number, name FROM customers;\n"
    r = run_psql(mask_env.dsn(), "-A", "-t", input=script)
    assert r.returncode == 0, r.stderr
    session_id = r.stdout.splitlines()[0].strip()

    def result() -> dict[str, Any] | None:
        events = read_recording(mask_env.data_dir, session_id, strict=False)
        return next((e for e in events if e["type"] == "result" and e.get("masked")), None)

    event = wait_for(result, what="a result event with masked counts")
    assert event["masked"] == {"email": 50, "ssn": 50, "card": 50}
    rows = event["rows"]
    assert rows and all("*" in str(row[0]) for row in rows)
    assert [row[3] for row in rows[:2]] == ["Ada Lovelace", "Alan Turing"]
