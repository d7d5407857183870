"""A gateway crash mid-load: pgbench through `pgwarden serve` (a separate process), killed with
SIGKILL. Every statement PostgreSQL's own statement log shows as executed for the gateway's
connections is in a recording; verify calls the sessions unterminated (intact so far) before
the restart and intact after start-up recovery (issue 4, third check)."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from pgwarden.devcluster import conninfo
from tests.e2e.recording_support import (
    ENFORCE_ALLOW_ALL,
    ServeProcess,
    free_port,
    local_token,
    normalize_sql,
    read_recording,
    recorded_session_ids,
    sessions_list,
    verify,
    wait_for,
    write_config,
)
from tests.support.databases import (
    TargetDb,
    client_env,
    ensure_database,
    ensure_role,
    pg_program,
    run_pgbench,
)

DB = "rec_bench"
ROLE = "rec_bench"  # only the gateway's connections use this role after the initialisation
_STATEMENT = re.compile(rf"^\S+ \S+ UTC \[(\d+)\] {ROLE}@{DB} LOG:  statement: (.*)$")


@pytest.fixture(scope="module")
def bench_db(shop: TargetDb) -> TargetDb:
    cluster = shop.cluster
    user, password = ensure_role(cluster, ROLE, auth="scram-sha-256")
    ensure_database(cluster, DB, owner=user)
    target = TargetDb(cluster, DB, user, password, "scram-sha-256")
    # the tables are initialised directly against PostgreSQL, not through the gateway
    done = run_pgbench(target.dsn(), "-i", "-s", "1", "-q")
    assert done.returncode == 0, done.stderr
    return target


def _server_statements(text: str) -> list[tuple[int, str]]:
    """(pid, statement) for every statement the server logged for the gateway's role."""
    out: list[tuple[int, str]] = []
    for line in text.splitlines():
        m = _STATEMENT.match(line)
        if m:
            out.append((int(m.group(1)), normalize_sql(m.group(2))))
    return out


def _recorded_statements(data_dir: Path) -> dict[str, list[str]]:
    return {
        sid: [
            normalize_sql(e["sql"])
            for e in read_recording(data_dir, sid)
            if e["type"] == "statement"
        ]
        for sid in recorded_session_ids(data_dir)
    }


def test_pgbench_sigkill_nothing_executed_is_missing(tmp_path: Path, bench_db: TargetDb) -> None:
    cluster = bench_db.cluster
    data_dir = tmp_path / "data"
    port, api_port = free_port(), free_port()
    cfg_path = write_config(
        tmp_path / "pgwarden.yaml",
        {
            "listen": f"127.0.0.1:{port}",
            "api": {"listen": f"127.0.0.1:{api_port}"},
            "data_dir": str(data_dir),
            "targets": {"bench": bench_db.target()},
            "policy": ENFORCE_ALLOW_ALL,
        },
    )
    token = local_token(data_dir, "bench-agent", ttl=600)
    dsn = conninfo(
        host="127.0.0.1",
        port=port,
        dbname="bench",
        user="bench-agent",
        password=token,
        sslmode="disable",
        connect_timeout=10,
    )

    log_from = cluster.log_position()
    gateway = ServeProcess(cfg_path, api_port, "serve-1").start()
    bench = subprocess.Popen(
        [pg_program("pgbench"), "-n", "-c", "4", "-j", "2", "-T", "10", "-M", "simple", dsn],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=client_env(),
    )
    try:
        # let the load run, then kill the gateway in the middle of it
        started = time.monotonic()
        wait_for(
            lambda: (
                time.monotonic() - started > 2.0
                and sum(
                    "UPDATE pgbench_accounts" in s
                    for _, s in _server_statements(cluster.log_text(log_from))
                )
                > 40
            ),
            timeout=9,
            what="pgbench to get going through the gateway",
        )
        assert bench.poll() is None, "pgbench finished before the kill"
        assert gateway.kill(signal.SIGKILL) == -signal.SIGKILL
        out, err = bench.communicate(timeout=30)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.communicate()
        gateway.kill()
    assert bench.returncode != 0, out + err  # its clients lost their connections

    # the server finishes with the cut connections (it logs each statement on receipt)
    def upstream_gone() -> bool:
        sql = "select count(*) from pg_stat_activity where usename = %s"
        return bool(cluster.query(sql, [ROLE])[0][0] == 0)

    wait_for(
        upstream_gone,
        timeout=10,
        what="the gateway's upstream connections to end",
    )
    executed = _server_statements(cluster.log_text(log_from))
    recorded = _recorded_statements(data_dir)
    assert len(recorded) >= 4, recorded.keys()

    # ---- every statement the server executed is in a recording, as often as it ran
    server_counts = Counter(s for _, s in executed)
    recorded_counts = Counter(s for stmts in recorded.values() for s in stmts)
    missing = {
        s: n - recorded_counts[s] for s, n in server_counts.items() if recorded_counts[s] < n
    }
    assert not missing, f"executed but not recorded: {list(missing.items())[:10]}"
    updates = [s for _, s in executed if s.startswith("UPDATE pgbench_accounts")]
    assert len(updates) > 40
    aids = re.findall(r"WHERE aid = (\d+)", " ".join(updates))
    assert len(aids) == len(updates)  # simple protocol: the values are in the text
    # recorded before forwarding: at most the one statement in flight per session is
    # recorded without the server having received it
    extra = recorded_counts - server_counts
    assert sum(extra.values()) <= len(recorded), extra

    # ---- before the restart: the sessions cut by the crash are unterminated, intact so far
    before = verify((cfg_path, data_dir), all_sessions=True)
    assert before.code == 0, before.output
    assert set(before.statuses) == set(recorded)
    assert set(before.statuses.values()) <= {"intact", "unterminated"}, before.output
    cut = {sid for sid, status in before.statuses.items() if status == "unterminated"}
    assert len(cut) >= 4, before.output
    index = {s["id"]: s["state"] for s in sessions_list(cfg_path, data_dir)}
    assert {index[sid] for sid in cut} == {"active"}

    print(
        f"\nexecuted by the server: {len(executed)} statements ({len(updates)} account updates); "
        f"recorded: {sum(recorded_counts.values())} in {len(recorded)} sessions; "
        f"recorded, not received: {sum(extra.values())}; before restart: {before.statuses}"
    )

    # ---- restart: start-up recovery ends the crashed sessions
    restarted = ServeProcess(cfg_path, api_port, "serve-2").start()
    try:
        after = verify((cfg_path, data_dir), all_sessions=True)
    finally:
        assert restarted.kill(signal.SIGTERM) == 0, restarted.log()
    assert after.code == 0, after.output
    assert after.statuses == dict.fromkeys(recorded, "intact"), after.output
    index = {s["id"]: s["state"] for s in sessions_list(cfg_path, data_dir)}
    assert {index[sid] for sid in cut} == {"crashed"}
    for sid in cut:
        events = read_recording(data_dir, sid)
        assert events[-2]["type"] == "session_end"
        assert "crash" in events[-2]["reason"]
        # recovery only appended: the statements are all still there
        statements = [normalize_sql(e["sql"]) for e in events if e["type"] == "statement"]
        assert statements == recorded[sid]
    print(f"after restart: {after.statuses}; index: {index}")
