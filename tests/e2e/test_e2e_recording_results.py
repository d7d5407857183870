"""What a recording holds besides statements, through real clients: results (columns, capped
rows, row count, command tag, digest), errors, notices and denied statements; the fsync
durability mode end to end; and failing closed when the recording cannot be written."""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.recording_support import (
    RecordedGateway,
    following,
    of_type,
    read_recording,
    recorded_session_ids,
    sessions_list,
    show_session_id,
    start_recorded_gateway,
    statement_with,
    verify,
    wait_ended,
    wait_for,
)
from tests.support.databases import TargetDb, run_pgbench

POLICY: dict[str, Any] = {
    "mode": "enforce",
    "default": "allow",
    "rules": [
        {
            "name": "no-unfiltered-writes",
            "when": {"kinds": ["delete", "update"], "where": ["absent", "tautology"]},
            "action": "deny",
            "message": "add a WHERE clause",
        }
    ],
}


@pytest.fixture
def gateways(tmp_path: Path, shop: TargetDb) -> Iterator[Callable[..., RecordedGateway]]:
    started: list[RecordedGateway] = []

    def make(**overrides: Any) -> RecordedGateway:
        overrides.setdefault("policy", POLICY)
        rg = start_recorded_gateway(
            tmp_path / f"gw{len(started)}", {"shop": shop.target()}, **overrides
        )
        started.append(rg)
        return rg

    yield make
    for rg in started:
        with contextlib.suppress(Exception):
            rg.gw.stop()


def _digest(rows: list[tuple[str | None, ...]]) -> str:
    """sha256 over the DataRow bodies as sent (text format)."""
    h = hashlib.sha256()
    for row in rows:
        body = struct.pack("!h", len(row))
        for value in row:
            if value is None:
                body += struct.pack("!i", -1)
            else:
                raw = value.encode()
                body += struct.pack("!i", len(raw)) + raw
        h.update(body)
    return "sha256:" + h.hexdigest()


def test_results_errors_notices_denials(
    gateways: Callable[..., RecordedGateway], shop: TargetDb, unique: Callable[[str], str]
) -> None:
    rg = gateways(recording={"max_result_rows": 5})
    table = unique("rec_res")
    notices: list[str] = []
    log_from = shop.cluster.log_position()
    with psycopg.connect(rg.gw.dsn("agent-9"), autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        session_id = show_session_id(conn)
        rows = conn.execute(
            "SELECT g AS n, 'row ' || g AS label FROM generate_series(1, 20) g"
        ).fetchall()
        assert len(rows) == 20
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1/0 AS boom")
        conn.execute("DO $$ BEGIN RAISE NOTICE 'recording notice %', 42; END $$")
        assert notices == ["recording notice 42"]
        conn.execute(f"CREATE TABLE {table} (id int)")
        conn.execute(f"INSERT INTO {table} VALUES (1), (2), (3)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as denied:
            conn.execute(f"DELETE FROM {table}")
        assert str(denied.value).startswith("pgwarden:")
        assert "no-unfiltered-writes" in str(denied.value)
    assert shop.query(f"SELECT count(*) FROM {table}") == [(3,)]
    assert f"DELETE FROM {table}" not in shop.cluster.log_text(log_from)

    events = wait_ended(rg.data_dir, session_id)

    # ---- a SELECT's result: columns, 5 of 20 rows, row count, tag, digest of all 20 rows
    select = statement_with(events, "generate_series(1, 20)")
    [result] = following(events, select, "result")
    assert [(c["name"], c["type_oid"]) for c in result["columns"]] == [("n", 23), ("label", 25)]
    assert result["rows"] == [[str(i), f"row {i}"] for i in range(1, 6)]
    assert result["rows_recorded"] == 5
    assert result["row_count"] == 20
    assert result["truncated"] is True
    assert result["command_tag"] == "SELECT 20"
    assert result["digest"] == _digest([(str(i), f"row {i}") for i in range(1, 21)])

    # ---- the failing statement: an error event from the server, no result
    boom = statement_with(events, "1/0")
    [error] = following(events, boom, "error")
    assert error["sqlstate"] == "22012"
    assert error["source"] == "server"
    assert "division by zero" in error["message"]
    assert following(events, boom, "result") == []

    # ---- RAISE NOTICE: a notice event tied to its statement, then the DO's result
    do = statement_with(events, "RAISE NOTICE")
    [notice] = following(events, do, "notice")
    assert notice["message"] == "recording notice 42"
    assert notice["severity"] == "NOTICE"
    [do_result] = following(events, do, "result")
    assert do_result["command_tag"] == "DO"
    assert notice["seq"] < do_result["seq"]

    insert = statement_with(events, f"INSERT INTO {table}")
    assert following(events, insert, "result")[0]["command_tag"] == "INSERT 0 3"

    # ---- the denied statement: decision deny with the rule, the refusal, nothing forwarded
    delete = statement_with(events, f"DELETE FROM {table}")
    assert delete["decision"]["action"] == "deny"
    assert delete["decision"]["rule"] == "no-unfiltered-writes"
    assert delete["decision"]["mode"] == "enforce"
    [refusal] = following(events, delete, "error")
    assert refusal["sqlstate"] == "42501"
    assert refusal["source"] == "gateway"
    assert following(events, delete, "result") == []
    for stmt in of_type(events, "statement"):
        if stmt is not delete:
            assert stmt["decision"]["action"] == "allow", stmt

    [entry] = [s for s in sessions_list(rg.cfg_path, rg.data_dir) if s["id"] == session_id]
    assert entry["denied"] == 1
    assert entry["state"] == "ended"


def test_each_result_of_a_multi_statement_query_is_recorded_on_its_own(
    gateways: Callable[..., RecordedGateway], unique: Callable[[str], str]
) -> None:
    """One simple-protocol query, three results: each result event has its own columns,
    rows and digest (the gateway reuses one result builder per statement: the second
    result must not inherit the first one's columns or rows)."""
    rg = gateways()
    table = unique("rec_multi")
    with psycopg.connect(rg.gw.dsn("agent-9"), autocommit=True) as conn:
        session_id = show_session_id(conn)
        conn.execute(f"CREATE TABLE {table} (id int)")
        cur = conn.execute(
            f"SELECT 1 AS a, 'x' AS b; INSERT INTO {table} VALUES (1), (2); SELECT 'y' AS c"
        )
        assert cur.fetchall() == [(1, "x")]
        assert cur.nextset() and cur.statusmessage == "INSERT 0 2"
        assert cur.nextset() and cur.fetchall() == [("y",)]
    events = wait_ended(rg.data_dir, session_id)
    stmt = statement_with(events, f"INSERT INTO {table} VALUES (1), (2)")
    results = following(events, stmt, "result")
    assert [r["command_tag"] for r in results] == ["SELECT 1", "INSERT 0 2", "SELECT 1"]
    assert [[c["name"] for c in r["columns"]] for r in results] == [["a", "b"], [], ["c"]]
    assert [r["rows"] for r in results] == [[["1", "x"]], [], [["y"]]]
    assert [r["row_count"] for r in results] == [1, 0, 1]
    assert [r["digest"] for r in results] == [_digest([("1", "x")]), _digest([]), _digest([("y",)])]
    assert {r["statement_seq"] for r in results} == {stmt["seq"]}


def test_fsync_durability_end_to_end(
    gateways: Callable[..., RecordedGateway],
    shop: TargetDb,
    unique: Callable[[str], str],
    tmp_path: Path,
) -> None:
    rg = gateways(recording={"durability": "fsync"})
    table = unique("rec_fsync")
    shop.execute(f"CREATE TABLE {table} (id int, client int)")
    shop.execute(f"ALTER TABLE {table} OWNER TO {shop.user}")
    script = tmp_path / "insert.sql"
    script.write_text(
        "\\set v random(1, 1000000)\n"
        f"INSERT INTO {table} VALUES (:v, :client_id);\n"
        f"SELECT count(*) FROM {table} WHERE client = :client_id;\n"
    )
    done = run_pgbench(
        rg.gw.dsn("agent-fsync"),
        "-n",
        "-c",
        "4",
        "-j",
        "2",
        "-t",
        "25",
        "-M",
        "extended",
        "-f",
        str(script),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert shop.query(f"SELECT count(*) FROM {table}") == [(100,)]
    committer = rg.gw.server.recording.committer  # type: ignore[union-attr]
    assert committer is not None and committer.stats.syncs > 0

    rg.gw.wait_for_sessions(0)
    ids = recorded_session_ids(rg.data_dir)
    inserts = 0
    for sid in ids:
        events = wait_ended(rg.data_dir, sid)
        for stmt in of_type(events, "statement"):
            if stmt["sql"].startswith(f"INSERT INTO {table}"):
                inserts += 1
                assert len(stmt["params"]) == 2
                [res] = following(events, stmt, "result")
                assert res["command_tag"] == "INSERT 0 1"
    assert inserts == 100
    outcome = verify(rg, all_sessions=True)
    assert outcome.code == 0, outcome.output
    assert outcome.statuses == dict.fromkeys(ids, "intact"), outcome.output


def _recording_fds(path: Path) -> list[int]:
    """This process's descriptors open on the recording file (the in-process gateway's)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}") == str(path):
                found.append(int(name))
    return found


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_fail_closed_when_the_recording_cannot_be_written(
    gateways: Callable[..., RecordedGateway],
    shop: TargetDb,
    unique: Callable[[str], str],
    protocol: str,
) -> None:
    rg = gateways()
    table = unique("rec_closed")
    with psycopg.connect(rg.gw.dsn("agent-11"), autocommit=True) as conn:
        session_id = show_session_id(conn)
        conn.execute(f"CREATE TABLE {table} (id int)")
        conn.execute(f"INSERT INTO {table} VALUES (1)")
        good = read_recording(rg.data_dir, session_id)

        # The disk fills up: the gateway's descriptor on this session's recording now
        # writes to /dev/full (every write fails with ENOSPC).
        path = rg.recording_path(session_id)
        [fd] = _recording_fds(path)
        full = os.open("/dev/full", os.O_WRONLY)
        try:
            os.dup2(full, fd)
        finally:
            os.close(full)
        log_from = shop.cluster.log_position()
        with pytest.raises(psycopg.OperationalError) as failed:
            if protocol == "simple":
                conn.execute(f"INSERT INTO {table} VALUES (2)")
            else:
                conn.execute(f"INSERT INTO {table} VALUES (%s)", (2,))
        assert "record" in str(failed.value), failed.value
        assert conn.broken or conn.closed

    # the statement never reached the database; the session is over
    assert shop.query(f"SELECT array_agg(id) FROM {table}") == [([1],)]
    assert f"INSERT INTO {table} VALUES (2)" not in shop.cluster.log_text(log_from)
    assert f"INSERT INTO {table} VALUES ($1)" not in shop.cluster.log_text(log_from)
    rg.gw.wait_for_sessions(0)
    # what was recorded before the failure is untouched, and still verifies (the session
    # could not be ended in its recording: unterminated, the index knows it did not end well)
    assert read_recording(rg.data_dir, session_id) == good
    [entry] = [s for s in sessions_list(rg.cfg_path, rg.data_dir) if s["id"] == session_id]
    assert entry["state"] != "ended"
    outcome = verify(rg, [session_id])
    assert outcome.code == 0, outcome.output
    assert outcome.statuses == {session_id: "unterminated"}

    # the gateway itself carries on: a new session is recorded as usual
    with psycopg.connect(rg.gw.dsn("agent-11"), autocommit=True) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchall() == [(1,)]


def test_fail_closed_when_a_session_cannot_start_recording(
    gateways: Callable[..., RecordedGateway], shop: TargetDb
) -> None:
    rg = gateways()
    # the recordings directory replaced by a plain file: no recording can be created
    moved = rg.recordings.with_name("recordings.moved")
    rg.recordings.rename(moved)
    rg.recordings.write_text("not a directory")
    log_from = shop.cluster.log_position()
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(rg.gw.dsn("agent-12"), autocommit=True)
    assert "could not be recorded" in str(refused.value), refused.value
    wait_for(lambda: rg.gw.open_connections() == 0, what="the refused connection to close")
    assert "statement:" not in "".join(
        line for line in shop.cluster.log_text(log_from).splitlines() if "app@shop" in line
    )
    # restored: sessions are recorded again
    rg.recordings.unlink()
    moved.rename(rg.recordings)
    with psycopg.connect(rg.gw.dsn("agent-12"), autocommit=True) as conn:
        session_id = show_session_id(conn)
    assert wait_ended(rg.data_dir, session_id)[0]["subject"] == "agent-12"
