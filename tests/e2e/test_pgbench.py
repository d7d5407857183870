"""pgbench through the gateway: initialisation, then the TPC-B-like load with the simple,
extended and prepared query modes, four clients at once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import TargetDb, ensure_database, run_pgbench
from tests.support.fixtures import MakeGateway
from tests.support.gateway import RunningGateway, gateway_config


@pytest.fixture(scope="module")
def bench(shop: TargetDb) -> TargetDb:
    ensure_database(shop.cluster, "bench", owner=shop.user)
    return TargetDb(shop.cluster, "bench", shop.user, shop.password, shop.auth)


@pytest.fixture(scope="module")
def bench_gateway(
    tmp_path_factory: pytest.TempPathFactory, bench: TargetDb
) -> Iterator[RunningGateway]:
    cfg = gateway_config(tmp_path_factory.mktemp("bench-gw"), targets={"bench": bench.target()})
    with RunningGateway(cfg) as gw:
        # Initialise through the gateway: DDL, COPY of 100000 rows, VACUUM, primary keys.
        result = run_pgbench(gw.dsn("alice", dbname="bench"), "-i", "-s", "1", "-q")
        assert result.returncode == 0, result.stderr
        yield gw


def _processed(output: str) -> int:
    match = re.search(r"number of transactions actually processed: (\d+)", output)
    assert match, output
    return int(match.group(1))


@pytest.fixture
def history(bench: TargetDb) -> Iterator[None]:
    bench.execute("truncate pgbench_history")
    yield


def test_init_through_the_gateway(bench_gateway: RunningGateway, bench: TargetDb) -> None:
    assert bench.query("select count(*) from pgbench_accounts") == [(100000,)]
    assert bench.query("select count(*) from pgbench_branches") == [(1,)]
    keys = bench.query(
        "select count(*) from pg_constraint "
        "where contype = 'p' and conrelid::regclass::text like 'pgbench_%'"
    )
    assert keys == [(3,)]


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_load(
    bench_gateway: RunningGateway, bench: TargetDb, history: None, mode: str
) -> None:
    result = run_pgbench(
        bench_gateway.dsn("alice", dbname="bench"),
        "-n",
        "-c",
        "4",
        "-j",
        "2",
        "-T",
        "3",
        "-M",
        mode,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"query mode: {mode}" in out
    assert "number of clients: 4" in out
    assert re.search(r"number of failed transactions: 0 \(0\.000%\)", out), out
    processed = _processed(out)
    assert processed > 20
    # Every TPC-B-like transaction inserts exactly one history row, and they all committed.
    assert bench.query("select count(*) from pgbench_history") == [(processed,)]
    balance = bench.query(
        "select (select sum(abalance) from pgbench_accounts) "
        "= (select sum(bbalance) from pgbench_branches)"
    )
    assert balance == [(True,)]


def test_pgbench_custom_script_with_errors_is_reported(
    make_gateway: MakeGateway, bench: TargetDb, tmp_path: Path
) -> None:
    """A failing statement makes pgbench abort that client, exactly as it would directly."""
    gw = make_gateway(targets={"bench": bench.target()})
    script = tmp_path / "fail.sql"
    script.write_text("select 1;\nselect 1/0;\n")
    result = run_pgbench(
        gw.dsn("alice", dbname="bench"), "-n", "-c", "1", "-t", "3", "-f", str(script)
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "division by zero" in result.stderr
