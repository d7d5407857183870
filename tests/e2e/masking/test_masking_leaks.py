"""The leak corpus: every way we could think of to get a card number, SSN or e-mail of the
sample customers out through the gateway, with several clients. Nothing raw may appear in
the bytes the client receives (checked on the wire by a tap) nor in what the client library
shows (decoded values, notices, errors, notifications) — nor in any file the gateway writes
(recordings, session index).

Each way is first run directly against PostgreSQL to prove it really does leak there (a way
that leaks nothing directly tests nothing)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import psycopg
import pytest

from tests.e2e.masking.masking_support import MaskEnv
from tests.support.databases import run_psql


@dataclass(frozen=True)
class Way:
    name: str
    sql: str
    multi: bool = False  # several statements: simple protocol only
    clients: tuple[str, ...] = ("psql", "psycopg", "psycopg-binary", "asyncpg")


_ROW = "SELECT * FROM customers WHERE id = 2"
WAYS: list[Way] = [
    # plain and renamed
    Way("star", "SELECT * FROM customers"),
    Way("aliases", "SELECT email AS contact, ssn AS tax_id, card_number AS pan FROM customers"),
    Way(
        "quoted-alias",
        'SELECT email AS "Name", ssn AS "id", card_number AS "amount" FROM customers',
    ),
    Way("view", "SELECT * FROM customer_contacts"),
    Way("materialized-view", "SELECT * FROM customer_cards"),
    Way("sql-function", "SELECT customer_email(id) FROM customers"),
    Way("cte", "WITH x AS (SELECT * FROM customers) SELECT * FROM x"),
    Way("subquery", "SELECT (SELECT email FROM customers c2 WHERE c2.id = c.id) FROM customers c"),
    Way(
        "union",
        "SELECT email FROM customers UNION ALL SELECT ssn FROM customers "
        "UNION ALL SELECT card_number FROM customers",
    ),
    # expressions
    Way("case-changed", "SELECT upper(email), initcap(email), upper(card_number) FROM customers"),
    Way(
        "separators-removed",
        "SELECT regexp_replace(card_number, '[^0-9]', '', 'g') AS pan, "
        "replace(ssn, '-', '') AS tax FROM customers",
    ),
    Way(
        "rebuilt-ssn",
        "SELECT substr(ssn, 1, 3) || substr(ssn, 5, 2) || substr(ssn, 8, 4) FROM customers",
    ),
    Way("bigint-card", "SELECT pan FROM card_numbers"),
    Way("numeric-card", "SELECT pan_numeric FROM card_numbers"),
    Way(
        "cast-to-bigint",
        "SELECT regexp_replace(card_number, '[^0-9]', '', 'g')::bigint FROM customers",
    ),
    Way("concat", "SELECT concat_ws(' | ', name, email, ssn, card_number) FROM customers"),
    Way("glued", "SELECT email || ssn || card_number FROM customers"),
    Way("format", "SELECT format('%s/%s/%s', email, ssn, card_number) FROM customers"),
    Way(
        "padded",
        "SELECT lpad(ssn, 20, '*'), rpad(card_number, 30, '.'), '<' || email || '>' FROM customers",
    ),
    Way(
        "quoted",
        "SELECT quote_literal(email), quote_ident(ssn), quote_nullable(card_number) FROM customers",
    ),
    Way("typed", "SELECT email::varchar(100), ssn::char(11), card_number::name FROM customers"),
    Way(
        "bytea",
        "SELECT convert_to(email || ' ' || ssn || ' ' || card_number, 'UTF8') FROM customers",
    ),
    Way("tsvector", "SELECT to_tsvector('simple', email || ' ' || ssn) FROM customers"),
    # JSON, XML, arrays, rows, aggregates
    Way("row-to-json", "SELECT row_to_json(c) FROM customers c"),
    Way("json-agg", "SELECT json_agg(c) FROM customers c"),
    Way(
        "jsonb-object",
        "SELECT jsonb_build_object('e', email, 's', ssn, 'c', card_number) FROM customers",
    ),
    Way("jsonb-agg", "SELECT jsonb_agg(to_jsonb(c)) FROM customers c"),
    Way("jsonpath", "SELECT jsonb_path_query(to_jsonb(c), '$.email') FROM customers c"),
    Way(
        "xml",
        "SELECT xmlelement(name c, xmlattributes(email AS e), ssn, card_number) FROM customers",
    ),
    Way(
        "query-to-xml",
        "SELECT query_to_xml('SELECT email, ssn, card_number FROM customers', true, false, '')",
    ),
    Way(
        "string-agg",
        "SELECT string_agg(email || ',' || ssn || ',' || card_number, ';') FROM customers",
    ),
    Way(
        "array-agg",
        "SELECT array_agg(email), array_agg(ssn), array_agg(card_number) FROM customers",
    ),
    Way("array", "SELECT ARRAY[email, ssn, card_number] FROM customers"),
    Way("unnest", "SELECT v FROM customers, unnest(ARRAY[email, ssn, card_number]) v"),
    Way("whole-row", "SELECT c FROM customers c"),
    Way("row-constructor", "SELECT ROW(email, ssn, card_number) FROM customers"),
    Way("min-max", "SELECT min(email), max(ssn), min(card_number) FROM customers"),
    # several statements, cursors, writes with RETURNING
    Way(
        "multi-statement",
        "SELECT 1; SELECT email, ssn FROM customers; SELECT card_number FROM customers",
        multi=True,
    ),
    Way(
        "cursor",
        "BEGIN; DECLARE cur CURSOR FOR SELECT * FROM customers; FETCH 3 FROM cur; "
        "FETCH ALL FROM cur; COMMIT",
        multi=True,
    ),
    Way(
        "temp-view",
        "CREATE TEMP VIEW tv AS SELECT id, email AS a, ssn AS b, card_number AS c "
        "FROM customers; SELECT * FROM tv",
        multi=True,
    ),
    Way(
        "update-returning",
        "BEGIN; UPDATE customers SET name = name WHERE id > 0 RETURNING email, ssn, card_number; "
        "ROLLBACK",
        multi=True,
    ),
    Way(
        "insert-returning",
        "BEGIN; INSERT INTO customers (id, name, email, ssn, card_number) "
        "SELECT id + 1000, name, 'x' || email, ssn, card_number FROM customers RETURNING *; "
        "ROLLBACK",
        multi=True,
    ),
    # COPY
    Way("copy-text", "COPY customers TO STDOUT", clients=("psql", "psycopg-copy", "asyncpg-copy")),
    Way(
        "copy-csv",
        "COPY customers TO STDOUT WITH (FORMAT csv, HEADER)",
        clients=("psql", "psycopg-copy", "asyncpg-copy"),
    ),
    Way(
        "copy-query-csv-quoted",
        "COPY (SELECT email, ssn, card_number FROM customers) TO STDOUT "
        "(FORMAT csv, FORCE_QUOTE *)",
        clients=("psql", "psycopg-copy", "asyncpg-copy"),
    ),
    Way(
        "copy-delimiter",
        "COPY customers TO STDOUT (DELIMITER '|')",
        clients=("psql", "psycopg-copy", "asyncpg-copy"),
    ),
    Way(
        "copy-binary",
        "COPY customers TO STDOUT (FORMAT binary)",
        clients=("psycopg-copy", "asyncpg-copy"),
    ),
    Way(
        "copy-binary-bigint",
        "COPY card_numbers TO STDOUT (FORMAT binary)",
        clients=("psycopg-copy", "asyncpg-copy"),
    ),
    # errors, notices, notifications, settings
    Way("cast-error-ssn", "SELECT ssn::int FROM customers WHERE id = 1"),
    Way("cast-error-card", "SELECT card_number::bigint FROM customers WHERE id = 3"),
    Way("cast-error-email", "SELECT email::numeric FROM customers WHERE id = 1"),
    Way(
        "unique-violation",
        "INSERT INTO customers (id, name, email, ssn, card_number) "
        "SELECT 100, 'x', email, ssn, card_number FROM customers WHERE id = 1",
    ),
    Way("not-null-violation", "UPDATE customers SET email = NULL WHERE id = 5"),
    Way(
        "raise-exception",
        "DO $$ DECLARE r record; BEGIN SELECT * INTO r FROM customers WHERE id = 2; "
        "RAISE EXCEPTION 'leak % % %', r.email, r.ssn, r.card_number "
        "USING DETAIL = r.email, HINT = r.ssn; END $$",
    ),
    Way(
        "raise-notice",
        "DO $$ DECLARE r record; BEGIN FOR r IN SELECT * FROM customers LOOP "
        "RAISE NOTICE '% % %', r.email, r.ssn, r.card_number; END LOOP; END $$",
    ),
    Way(
        "notify",
        "LISTEN leak; SELECT pg_notify('leak', email || ' ' || ssn || ' ' || card_number) "
        "FROM customers; SELECT 1",
        multi=True,
        clients=("psql", "psycopg", "asyncpg"),
    ),
    Way(
        "application-name",
        "SELECT set_config('application_name', email, false) FROM customers WHERE id = 1; "
        "SHOW application_name",
        multi=True,
    ),
]


# ---- clients ---------------------------------------------------------------------------------


def _psql(dsn: str, way: Way) -> str:
    r = run_psql(dsn, "-A", "-c", way.sql)
    return r.stdout + r.stderr


def _psycopg(dsn: str, way: Way, *, binary: bool = False, copy: bool = False) -> str:
    seen: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: seen.append(f"{d.message_primary} {d.message_detail}"))
        conn.add_notify_handler(lambda n: seen.append(n.payload))
        try:
            if copy:
                with conn.cursor().copy(way.sql) as cp:
                    for block in cp:
                        seen.append(bytes(block).decode("utf-8", "surrogateescape"))
            else:
                cur = conn.cursor(binary=binary)
                cur.execute(way.sql, prepare=False)
                while True:
                    if cur.description is not None:
                        seen.append(repr(cur.fetchall()))
                    if not cur.nextset():
                        break
        except psycopg.Error as exc:
            diag = exc.diag
            seen.append(f"{exc} {diag.message_detail} {diag.message_hint} {diag.context}")
        time.sleep(0.05)
        conn.execute("SELECT 1")  # drain notifications that arrived after the last reply
    return "\n".join(seen)


async def _asyncpg(kwargs: dict[str, Any], way: Way, *, copy: bool = False) -> str:
    seen: list[str] = []
    conn = await asyncpg.connect(**kwargs)
    try:
        conn.add_log_listener(lambda _c, m: seen.append(f"{m} {getattr(m, 'detail', '')}"))
        await conn.add_listener("leak", lambda *a: seen.append(str(a[-1])))
        try:
            if copy:
                buf: list[bytes] = []

                async def sink(chunk: bytes) -> None:
                    buf.append(chunk)

                inner = way.sql.removeprefix("COPY ").split(" TO STDOUT", 1)
                options = inner[1].strip().removeprefix("WITH").strip()
                fmt = (
                    "binary"
                    if "binary" in options.lower()
                    else ("csv" if "csv" in options.lower() else "text")
                )
                if inner[0].startswith("("):
                    await conn.copy_from_query(inner[0][1:-1], output=sink, format=fmt)
                else:
                    await conn.copy_from_table(inner[0], output=sink, format=fmt)
                seen.append(b"".join(buf).decode("utf-8", "surrogateescape"))
            elif way.multi:
                seen.append(await conn.execute(way.sql))
            else:
                seen.append(repr(await conn.fetch(way.sql)))
        except asyncpg.PostgresError as exc:
            seen.append(f"{exc} {exc.as_dict()}")
        await asyncio.sleep(0.05)
        await conn.execute("SELECT 1")
    finally:
        await conn.close()
    return "\n".join(seen)


def _run(env: MaskEnv, way: Way, client: str) -> str:
    if client == "psql":
        return _psql(env.dsn(), way)
    if client == "psycopg":
        return _psycopg(env.dsn(), way)
    if client == "psycopg-binary":
        return _psycopg(env.dsn(), way, binary=True)
    if client == "psycopg-copy":
        return _psycopg(env.dsn(), way, copy=True)
    if client == "asyncpg":
        return asyncio.run(_asyncpg(env.asyncpg_kwargs(), way))
    if client == "asyncpg-copy":
        return asyncio.run(_asyncpg(env.asyncpg_kwargs(), way, copy=True))
    raise AssertionError(client)


CASES = [
    pytest.param(way, client, id=f"{way.name}-{client}")
    for way in WAYS
    for client in way.clients
    if not (way.multi and client == "psycopg-binary")
]


@pytest.mark.parametrize("way", [pytest.param(w, id=w.name) for w in WAYS])
def test_each_way_leaks_directly(mask_env: MaskEnv, way: Way) -> None:
    """Without the gateway the way really does show raw values (else it proves nothing)."""
    copy = "TO STDOUT" in way.sql
    shown = _psycopg(mask_env.direct_dsn(), way, copy=copy)
    assert mask_env.secrets.leaks(shown), f"{way.name} shows no raw value even directly"


@pytest.mark.parametrize(("way", "client"), CASES)
def test_nothing_raw_reaches_the_client(mask_env: MaskEnv, way: Way, client: str) -> None:
    mask_env.tap.take()
    shown = _run(mask_env, way, client)
    wire = mask_env.tap.take()
    assert wire, "the tap saw no traffic: the client did not go through the gateway"
    assert not mask_env.secrets.leaks(wire), (
        f"raw values on the wire: {mask_env.secrets.leaks(wire)}"
    )
    assert not mask_env.secrets.leaks(shown), f"raw values shown: {mask_env.secrets.leaks(shown)}"
    # it ran (a refusal or a session ended by the gateway would trivially leak nothing)
    assert "pgwarden:" not in shown, shown[:500]


def test_nothing_raw_in_any_recording(mask_env: MaskEnv) -> None:
    """Run every way in one session, then read its recording and every other file the gateway
    keeps (the session index); other tests' sessions (the hard tier's known limits) aside."""
    script = "SHOW pgwarden.session_id;\n" + "\n".join(
        w.sql.rstrip(";") + ";" for w in WAYS if "binary" not in w.sql
    )
    r = run_psql(mask_env.dsn(), "-A", "-t", input=script, timeout=120)
    session_id = r.stdout.splitlines()[0].strip()
    assert len(session_id) == 36, r.stdout[:200] + r.stderr[:200]
    recording = mask_env.data_dir / "recordings" / f"{session_id}.jsonl"
    deadline = time.time() + 20
    while b"pg_notify" not in (recording.read_bytes() if recording.exists() else b""):
        if time.time() > deadline:
            pytest.fail("the session's recording never showed its statements")
        time.sleep(0.2)
    found = [
        f"{path.name}: {mask_env.secrets.leaks(data)}"
        for path, data in mask_env.recorded_bytes()
        if (path == recording or "recordings" not in path.parts) and mask_env.secrets.leaks(data)
    ]
    assert not found, f"raw values in files the gateway wrote: {found}"
    assert b'"masked"' in recording.read_bytes()


def test_bind_parameters_are_masked_in_the_recording(mask_env: MaskEnv) -> None:
    """A client's own parameters (text and binary format) are kept masked too: the binary
    one would otherwise sit in the recording as base64 of the raw value."""
    email, ssn, card = mask_env.secrets.emails[0], mask_env.secrets.ssns[0], "4111111111111111"
    with psycopg.connect(mask_env.dsn(), autocommit=True) as conn:
        session_id = str(conn.execute("SHOW pgwarden.session_id").fetchone()[0])  # type: ignore[index]
        conn.execute("SELECT %s::text, %s::text", [email, ssn])
        conn.execute("SELECT %b::text, %b::bigint", [email, int(card)], binary=True)
    recording = mask_env.data_dir / "recordings" / f"{session_id}.jsonl"
    deadline = time.time() + 20
    while recording.read_bytes().count(b'"type":"statement"') < 2:
        assert time.time() < deadline, "the statements never reached the recording"
        time.sleep(0.1)
    data = recording.read_bytes()
    leaks = mask_env.secrets.leaks(data)
    assert not leaks, leaks
    for value in (email.encode(), card.encode()):
        assert base64.b64encode(value) not in data


def test_agent_context_is_masked_in_the_recording_as_it_changes(mask_env: MaskEnv) -> None:
    """The recorded context is masked once while it stays the same: a prompt that changes
    from holding an e-mail to holding none, and back, is recorded masked each time it holds
    one and as sent when it does not."""
    first, second = mask_env.secrets.emails[0], mask_env.secrets.emails[1]
    with psycopg.connect(mask_env.dsn(), autocommit=True) as conn:
        session_id = str(conn.execute("SHOW pgwarden.session_id").fetchone()[0])  # type: ignore[index]
        prompts = [f"write to {first}", f"write to {first}", "no one in particular", f"cc {second}"]
        for prompt in prompts:
            conn.execute(f"SET pgwarden.prompt = '{prompt}'")
            conn.execute("SELECT 1")
    recording = mask_env.data_dir / "recordings" / f"{session_id}.jsonl"
    deadline = time.time() + 20
    while recording.read_bytes().count(b'"sql":"SELECT 1"') < len(prompts):
        assert time.time() < deadline, "the statements never reached the recording"
        time.sleep(0.1)
    data = recording.read_bytes()
    assert not mask_env.secrets.leaks(data), mask_env.secrets.leaks(data)
    recorded = [
        json.loads(line)["context"].get("prompt")
        for line in data.splitlines()
        if b'"sql":"SELECT 1"' in line
    ]
    assert len(recorded) == len(prompts)
    assert recorded[2] == "no one in particular"
    for i in (0, 1, 3):
        assert recorded[i] is not None
        assert first not in recorded[i] and second not in recorded[i]
        assert recorded[i].startswith(("write to ", "cc "))
