"""The statement corpus (tests/data/corpus/statements.yaml) run THROUGH THE GATEWAY against a
real demo-shop database, under the default policy, in every client protocol, and judged by the
effect on the data:

- every ``deny``/``review`` entry must leave the database exactly as it was (fingerprint of
  data, sequences and catalog) and the client must get the gateway's refusal;
- every ``allow`` entry must succeed (and change nothing but rows).

Protocols (see guardrails_support.PROTOCOLS): ``simple`` (psycopg, no parameters, autocommit),
``psql`` (psql -X -c), ``multi`` (``SELECT 1; <sql>`` in one Query), ``gexec`` (psql
``SELECT '<sql>' \\gexec``), ``asyncpg_execute`` (simple protocol), ``extended_unnamed``
(psycopg binary: unnamed Parse/Bind/Execute), ``extended_named`` (psycopg prepare=True),
``asyncpg_fetch`` and ``asyncpg_prepare`` (named statements), ``sql_prepare`` (``PREPARE`` then
``EXECUTE`` as two Queries) and ``pipeline`` (psycopg pipeline: a harmless INSERT, then the
statements, one Sync; the INSERT must not commit either).

Entries a protocol cannot carry (several statements in one extended-protocol Parse, COPY
through a driver's query API, PREPARE of a non-DML statement) are not generated for it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.guardrails.guardrails_support import (
    CORPUS,
    PROTOCOLS,
    Entry,
    GuardEnv,
    describe_difference,
    without_sequences,
)

REFUSED_PROTOCOLS = (
    "simple",
    "psql",
    "multi",
    "gexec",
    "asyncpg_execute",
    "extended_unnamed",
    "extended_named",
    "asyncpg_fetch",
    "asyncpg_prepare",
    "sql_prepare",
    "pipeline",
)
ALLOWED_PROTOCOLS = (
    "simple",
    "psql",
    "asyncpg_execute",
    "extended_unnamed",
    "asyncpg_fetch",
    "sql_prepare",
)


PREPARE_SKIPS_BLAST_RADIUS = (
    "BUG: blast radius is never applied to SQL-level prepared statements: `PREPARE p AS "
    "<write>` gets no row estimate (estimate_sql is None for kind prepare) and `EXECUTE p` is "
    "estimated as `EXPLAIN EXECUTE p` on the estimator's side connection, where p does not "
    "exist, so the estimate is missing and the review rules do not match: the write runs"
)


def known_hole(protocol: str, entry: Entry) -> str | None:
    """Holes found by these tests and reported (strict xfail: a fix turns them into XPASS)."""
    return None


def _params(protocols: tuple[str, ...], allow: bool) -> list[Any]:
    out = []
    for proto in protocols:
        p = PROTOCOLS[proto]
        for e in CORPUS:
            if (e.expect == "allow") != allow or not p.applies(e):
                continue
            marks = []
            reason = known_hole(proto, e) if not allow else None
            if reason:
                marks.append(pytest.mark.xfail(strict=True, reason=reason))
            out.append(pytest.param(proto, e, id=f"{proto}-{e.id}", marks=marks))
    return out


@pytest.mark.parametrize(("protocol", "entry"), _params(REFUSED_PROTOCOLS, allow=False))
def test_refused_statement_leaves_the_database_unchanged(
    guard: GuardEnv, protocol: str, entry: Entry
) -> None:
    proto = PROTOCOLS[protocol]
    sequences = not proto.sequences_may_advance
    before = guard.baseline if sequences else without_sequences(guard.baseline)
    outcome = proto.run(guard, entry.sql)
    after = guard.fingerprint(sequences=sequences)
    if after != before:
        pytest.fail(
            f"{entry.describe()}\nvia {protocol}: {outcome}\nTHE DATABASE CHANGED:\n"
            + describe_difference(before, after),
            pytrace=False,
        )
    assert not outcome.ok, f"{entry.describe()}\nvia {protocol}: no error reached the client"
    if proto.parses_before_judging and entry.expect == "review" and not outcome.refused:
        # a held statement is parsed by the server (never run) before the gateway judges it
        # at Execute: the server's own analysis error (no such procedure, ...) may come first
        assert outcome.sqlstate and outcome.sqlstate.startswith("42"), (
            f"{entry.describe()}\nvia {protocol}: unexpected error {outcome}"
        )
        return
    assert outcome.refused, (
        f"{entry.describe()}\nvia {protocol}: the error is not the gateway's refusal: {outcome}"
    )


@pytest.mark.parametrize(("protocol", "entry"), _params(ALLOWED_PROTOCOLS, allow=True))
def test_allowed_statement_succeeds(guard: GuardEnv, protocol: str, entry: Entry) -> None:
    if entry.min_server_version and guard.server_version < entry.min_server_version:
        pytest.skip(f"needs PostgreSQL {entry.min_server_version}")
    before = guard.baseline
    outcome = PROTOCOLS[protocol].run(guard, entry.sql)
    after = guard.fingerprint()
    assert outcome.ok, f"{entry.describe()}\nvia {protocol}: {outcome}"
    # ordinary work changes rows at most, never the schema, roles or server settings
    if (after["catalog"], after["cluster"]) != (before["catalog"], before["cluster"]):
        pytest.fail(
            f"{entry.describe()}\nvia {protocol} changed the schema:\n"
            + describe_difference(before, after),
            pytrace=False,
        )


def test_the_gateway_is_alive_after_the_corpus(guard_env: GuardEnv) -> None:
    guard_env.assert_gateway_alive()
