"""Column rules (``masking.columns``) through the gateway: matched by lineage (the table OID
and attribute number RowDescription carries), so aliases, views and COPY do not escape;
computed text over a protected table is masked whole; other columns pass unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.e2e.masking.masking_support import SUBJECT, TARGET, MaskEnv, masking_gateway
from tests.support.gateway import RunningGateway

NAMES = ("Ada Lovelace", "Alan Turing", "Grace Hopper")


@pytest.fixture(scope="module")
def rules_gw(
    mask_env: MaskEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    with masking_gateway(
        mask_env,
        tmp_path_factory.mktemp("masking-rules"),
        {"columns": ["public.customers.name", "*.phone"], "strategy": "redact"},
    ) as gw:
        yield gw


def _rows(gw: RunningGateway, sql: str, *, binary: bool = False) -> list[Any]:
    with psycopg.connect(gw.dsn(SUBJECT, TARGET), autocommit=True) as conn:
        return conn.cursor(binary=binary).execute(sql).fetchall()


def _copy(gw: RunningGateway, sql: str) -> bytes:
    with psycopg.connect(gw.dsn(SUBJECT, TARGET)) as conn, conn.cursor().copy(sql) as cp:
        return b"".join(bytes(b) for b in cp)


def _no_names(data: object) -> bool:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else repr(data)
    return not any(n.lower() in text.lower() for n in NAMES)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT name FROM customers",
        "SELECT name AS who FROM customers",
        'SELECT c.name AS "id" FROM customers c',
        "SELECT * FROM customer_contacts",  # a view: traced to customers.name
        "SELECT upper(name) FROM customers",  # computed over a protected table
        "SELECT c FROM customers c",
        "SELECT row_to_json(c) FROM customers c",
        "SELECT string_agg(name, ',') FROM customers",
        "WITH x AS (SELECT name FROM customers) SELECT * FROM x",
    ],
)
@pytest.mark.parametrize("binary", [False, True])
def test_rule_column_masked_however_read(rules_gw: RunningGateway, sql: str, binary: bool) -> None:
    rows = _rows(rules_gw, sql, binary=binary)
    assert rows
    assert _no_names(rows), rows[:3]


def test_other_columns_unchanged(rules_gw: RunningGateway, mask_env: MaskEnv) -> None:
    rows = _rows(rules_gw, "SELECT id, created_at, length(name) FROM customers ORDER BY id")
    with psycopg.connect(mask_env.direct_dsn()) as conn:
        want = conn.execute("SELECT id, created_at, length(name) FROM customers ORDER BY id")
        assert rows == want.fetchall()
    # name-pattern rule: any column called phone, from any table or expression
    phones = _rows(rules_gw, "SELECT phone, 'x' AS phone FROM customers LIMIT 1")
    assert phones[0][0] != "+1-202-555-0100" and phones[0][1] != "x"


@pytest.mark.parametrize(
    "sql",
    [
        "COPY customers TO STDOUT",
        "COPY customers (id, name) TO STDOUT (FORMAT csv)",
        "COPY (SELECT name AS n FROM customers) TO STDOUT",
        "COPY customers TO STDOUT (FORMAT binary)",
    ],
)
def test_rule_column_masked_in_copy(rules_gw: RunningGateway, sql: str) -> None:
    data = _copy(rules_gw, sql)
    assert data
    assert _no_names(data)


def test_copy_of_temp_table_refused_when_rules_apply(rules_gw: RunningGateway) -> None:
    # its columns cannot be described from outside the session: refused before it runs
    with psycopg.connect(rules_gw.dsn(SUBJECT, TARGET), autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE t AS SELECT name FROM customers")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"pgwarden: .*masking"):
            with conn.cursor().copy("COPY t TO STDOUT") as cp:
                for _ in cp:
                    pass
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the session goes on
