"""Throughput legs of `make bench` (imported by scripts/bench.py): bulk reads with masking on.

Four legs, each run alternately direct, through pgbouncer (when given) and through the gateway:

- ``COPY (SELECT * FROM pgbench_accounts) TO STDOUT`` read by psql (every row of the table:
  1M rows at pgbench scale 10). psql writes the stream to a pipe this process drains.
- ``SELECT * FROM pgbench_accounts ORDER BY aid LIMIT n`` fetched whole by psycopg in text
  format (values loaded as raw bytes, so client-side decoding stays small and equal on both
  sides).
- the same two on ``bench_customers``: a generated table where every row carries a
  Luhn-valid card number, an SSN and an e-mail, so every row is rewritten by the masker.

MB/s counts the bytes the client received: the COPY text stream for COPY, the sum of the value
lengths for SELECT. Timing starts before the client connects (psql's start-up and the gateway's
authentication are inside the COPY legs; a few tens of milliseconds against seconds).

Every run of a sensitive leg is checked, outside the timed part: the received bytes are
searched for raw e-mails, SSNs (NNN-NN-NNNN) and Luhn-valid card numbers with this module's
own patterns (not the masker's). Direct (and pgbouncer) must find one of each per row, the
gateway none, and the gateway must deliver every row with its e-mail in masked form; the
accounts legs must deliver the same rows and bytes through pgbouncer and the gateway as direct.
Any failed check is reported and makes the bench exit non-zero.

`run_legs` takes a `monitor`: a context manager wrapped around every timed run (the memory
sampler of scripts/bench_memory.py).
"""

from __future__ import annotations

import contextlib
import re
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.abc import Buffer
from psycopg.adapt import Loader

#: raw (unmasked) values, searched for in what the client received
_RAW_EMAIL = re.compile(rb"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_RAW_SSN = re.compile(rb"(?<![0-9])[0-9]{3}-[0-9]{2}-[0-9]{4}(?![0-9])")
_RAW_CARD = re.compile(rb"(?<![0-9])[2-6][0-9]{3}(?:[ -]?[0-9]{4}){3}(?![0-9])")
#: an e-mail as the default redact strategy leaves it (same shape, every character a star)
_MASKED_EMAIL = re.compile(rb"\*+@\*+(?:\.\*+)+")

SENSITIVE_TABLE = "bench_customers"

# Every row: id, name, a 16-digit Visa-like card number whose check digit is computed by the
# Luhn rule (every other row written in groups of four), an SSN (area 100-599, group 01-99,
# serial 0001-9999: all valid) and an e-mail.
_SENSITIVE_SQL = """
DROP TABLE IF EXISTS {table};
CREATE TABLE {table} AS
SELECT i AS id,
       'Customer ' || i AS name,
       CASE WHEN i % 2 = 0
            THEN substr(c, 1, 4) || ' ' || substr(c, 5, 4) || ' ' || substr(c, 9, 4) || ' '
                 || substr(c, 13, 4)
            ELSE c END AS card,
       lpad((100 + i % 500)::text, 3, '0') || '-' || lpad((1 + i % 99)::text, 2, '0') || '-'
           || lpad((1 + i % 9999)::text, 4, '0') AS ssn,
       'customer' || i || '@example.com' AS email
FROM (
    SELECT i, p || ((10 - (
               SELECT sum(CASE WHEN k % 2 = 1 THEN (2 * d) / 10 + (2 * d) % 10 ELSE d END)
               FROM (SELECT k, substr(p, 16 - k, 1)::int AS d
                     FROM generate_series(1, 15) AS k) AS digits
           ) % 10) % 10)::text AS c
    FROM (SELECT i, '4' || lpad(i::text, 14, '0') AS p
          FROM generate_series(1, {rows}) AS i) AS payload
) AS cards;
ANALYZE {table};
"""


def luhn_ok(digits: str) -> bool:
    total = 0
    for pos, ch in enumerate(reversed(digits)):
        d = int(ch)
        if pos % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def scan_raw(data: bytes) -> Counter[str]:
    """Raw sensitive values in `data`, by kind, plus how many e-mails arrived masked."""
    found: Counter[str] = Counter()
    found["email"] = sum(1 for _ in _RAW_EMAIL.finditer(data))
    found["ssn"] = sum(1 for _ in _RAW_SSN.finditer(data))
    found["card"] = sum(
        1
        for m in _RAW_CARD.finditer(data)
        if luhn_ok(m.group().decode().replace(" ", "").replace("-", ""))
    )
    found["masked email"] = sum(1 for _ in _MASKED_EMAIL.finditer(data))
    return found


@dataclass(frozen=True)
class Endpoint:
    name: str
    host: str
    port: int
    user: str
    password: str
    dbname: str
    masked: bool = False  # sensitive values must arrive masked (the gateway)

    def libpq_env(self, base: dict[str, str]) -> dict[str, str]:
        return dict(
            base,
            PGHOST=self.host,
            PGPORT=str(self.port),
            PGUSER=self.user,
            PGPASSWORD=self.password,
            PGDATABASE=self.dbname,
            PGSSLMODE="disable",
        )

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=self.dbname,
            sslmode="disable",
        )


@dataclass
class Run:
    seconds: float
    nbytes: int
    rows: int
    found: Counter[str] | None = None  # scan_raw() of what arrived (sensitive legs only)


def copy_with_psql(psql: str, ep: Endpoint, query: str, env: dict[str, str], scan: bool) -> Run:
    """`psql -c "COPY (...) TO STDOUT"`, the stream drained from a pipe and counted."""
    chunks: list[bytes] = []
    nbytes = rows = 0
    start = time.perf_counter()
    proc = subprocess.Popen(
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", f"COPY ({query}) TO STDOUT"],
        env=ep.libpq_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    assert proc.stdout is not None
    while chunk := proc.stdout.read(1 << 20):
        nbytes += len(chunk)
        rows += chunk.count(b"\n")
        if scan:
            chunks.append(chunk)
    _, err = proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{ep.name}: psql COPY failed: {err.decode(errors='replace')}")
    return Run(seconds, nbytes, rows, scan_raw(b"".join(chunks)) if scan else None)


class _RawText(Loader):
    """Text-format values as the bytes that arrived (no decoding to int/str)."""

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


_RAW_TYPES = ("int2", "int4", "int8", "numeric", "text", "varchar", "bpchar")


def select_with_psycopg(ep: Endpoint, query: str, scan: bool) -> Run:
    """`cursor.execute(query)` + `fetchall()` in text format; connecting is not timed."""
    with ep.connect() as conn:
        for name in _RAW_TYPES:
            conn.adapters.register_loader(name, _RawText)
        with conn.cursor() as cur:
            start = time.perf_counter()
            cur.execute(query)
            rows = cur.fetchall()
            seconds = time.perf_counter() - start
    values: Iterable[bytes] = (v for row in rows for v in row if v is not None)
    nbytes = sum(len(v) for v in values)
    found = None
    if scan:
        found = scan_raw(b"\n".join(b"\t".join(v or b"" for v in row) for row in rows))
    return Run(seconds, nbytes, len(rows), found)


def create_sensitive_table(ep: Endpoint, rows: int) -> None:
    """The table of sensitive rows, created over the direct connection (the default policy
    sends CREATE TABLE to review)."""
    with ep.connect() as conn:
        conn.execute(_SENSITIVE_SQL.format(table=SENSITIVE_TABLE, rows=int(rows)).encode())
        conn.commit()


@dataclass
class Leg:
    name: str
    run: Callable[[Endpoint], Run]
    expect_rows: int
    sensitive: bool
    runs: dict[str, list[Run]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _check(leg: Leg, ep: Endpoint, run: Run, direct_bytes: int | None) -> None:
    where = f"{leg.name}, {ep.name}"
    if run.rows != leg.expect_rows:
        leg.problems.append(f"{where}: {run.rows} rows, expected {leg.expect_rows}")
    if not leg.sensitive:
        if ep.name != "direct" and direct_bytes is not None and run.nbytes != direct_bytes:
            leg.problems.append(f"{where}: {run.nbytes} bytes, direct sent {direct_bytes}")
        return
    assert run.found is not None
    raw = {k: run.found[k] for k in ("email", "ssn", "card")}
    if not ep.masked:
        short = {k: n for k, n in raw.items() if n != leg.expect_rows}
        if short:
            leg.problems.append(f"{where}: expected {leg.expect_rows} raw values each, got {raw}")
    else:
        if any(raw.values()):
            leg.problems.append(f"{where}: UNMASKED values reached the client: {raw}")
        if run.found["masked email"] != leg.expect_rows:
            leg.problems.append(
                f"{where}: {run.found['masked email']} masked e-mails, expected {leg.expect_rows}"
            )


Monitor = Callable[[Leg, Endpoint], AbstractContextManager[object]]


def run_legs(
    legs: Sequence[Leg],
    endpoints: Sequence[Endpoint],
    rounds: int,
    monitor: Monitor | None = None,
) -> None:
    """Each leg: one untimed direct warm-up, then `rounds` x (each endpoint in turn); the first
    endpoint must be "direct"."""
    for leg in legs:
        leg.runs = {ep.name: [] for ep in endpoints}
        try:
            leg.run(endpoints[0])
            for _ in range(rounds):
                for ep in endpoints:
                    with monitor(leg, ep) if monitor else contextlib.nullcontext():
                        run = leg.run(ep)
                    direct = leg.runs["direct"][-1].nbytes if leg.runs["direct"] else None
                    _check(leg, ep, run, direct)
                    leg.runs[ep.name].append(run)
        except (RuntimeError, psycopg.Error) as exc:
            leg.problems.append(f"{leg.name}: {type(exc).__name__}: {exc}".strip())
            leg.runs = {}
            print(f"  {leg.name}: FAILED: {exc}", flush=True)
            continue
        print(leg_summary(leg), flush=True)


def _median_rates(runs: Sequence[Run]) -> tuple[float, float, float]:
    seconds = statistics.median(r.seconds for r in runs)
    mb_s = statistics.median(r.nbytes / r.seconds / 1e6 for r in runs)
    rows_s = statistics.median(r.rows / r.seconds for r in runs)
    return seconds, mb_s, rows_s


def leg_summary(leg: Leg) -> str:
    rates = {name: _median_rates(runs) for name, runs in leg.runs.items()}
    last_d = leg.runs["direct"][-1]
    lines = [f"  {leg.name}: {last_d.rows} rows, {last_d.nbytes / 1e6:.1f} MB"]
    for name, (sec, mb, rows) in rates.items():
        line = f"    {name:9s} {sec:7.2f} s  {mb:8.1f} MB/s  {rows:10.0f} rows/s"
        if name != "direct":
            line += f"   x{mb / rates['direct'][1]:.2f} direct"
        if name == "gateway" and "pgbouncer" in rates:
            line += f", x{mb / rates['pgbouncer'][1]:.2f} pgbouncer"
        lines.append(line)
    last = {name: runs[-1].found for name, runs in leg.runs.items()}
    if leg.sensitive and all(found is not None for found in last.values()):
        keys = ("email", "ssn", "card")
        lines.append(
            "    raw values received (e-mail/SSN/card): "
            + ", ".join(
                f"{name} " + "/".join(str(found[k]) for k in keys)
                for name, found in last.items()
                if found is not None
            )
            + "; masked e-mails through the gateway: "
            + str((last.get("gateway") or Counter())["masked email"])
            + ("  [checked on every run]" if not leg.problems else "")
        )
    lines += [f"    CHECK FAILED: {p}" for p in leg.problems]
    return "\n".join(lines)


@dataclass
class Row:
    """A line of the final table: medians by endpoint name."""

    leg: str
    unit: str
    values: dict[str, float]


def table_rows(legs: Sequence[Leg]) -> list[Row]:
    """MB/s and rows/s per leg, for the final table."""
    out: list[Row] = []
    for leg in legs:
        if not leg.runs:
            continue  # the leg failed; its error was printed
        rates = {name: _median_rates(runs) for name, runs in leg.runs.items()}
        out.append(Row(leg.name, "MB/s", {name: r[1] for name, r in rates.items()}))
        out.append(Row(leg.name, "rows/s", {name: r[2] for name, r in rates.items()}))
    return out


def build_legs(psql: Path, env: dict[str, str], copy_rows: int, select_rows: int) -> list[Leg]:
    psql_exe = str(psql)
    accounts_copy = "SELECT * FROM pgbench_accounts"
    # ORDER BY: a bare LIMIT may return other rows each time (synchronized sequential scans),
    # and the gateway's bytes are compared with direct's
    limit = int(select_rows)
    accounts_select = f"SELECT * FROM pgbench_accounts ORDER BY aid LIMIT {limit}"  # noqa: S608
    sensitive = f"SELECT * FROM {SENSITIVE_TABLE}"  # noqa: S608

    def copy_leg(query: str, scan: bool) -> Callable[[Endpoint], Run]:
        return lambda ep: copy_with_psql(psql_exe, ep, query, env, scan)

    def select_leg(query: str, scan: bool) -> Callable[[Endpoint], Run]:
        return lambda ep: select_with_psycopg(ep, query, scan)

    return [
        Leg("COPY accounts (psql)", copy_leg(accounts_copy, False), copy_rows, False),
        Leg(
            "SELECT accounts (psycopg)",
            select_leg(accounts_select, False),
            min(select_rows, copy_rows),
            False,
        ),
        Leg("COPY sensitive (psql)", copy_leg(sensitive, True), select_rows, True),
        Leg("SELECT sensitive (psycopg)", select_leg(sensitive, True), select_rows, True),
    ]
