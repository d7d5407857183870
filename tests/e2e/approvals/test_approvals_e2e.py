"""Just-in-time approval of single statements, end to end: real clients hold a schema change
(held under the default policy), approvers decide through the HTTP API and the CLI, and the
client gets the database's reply or 42501; webhooks hear of every request; the recording
names who decided and why."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from pgwarden.devcluster import DevCluster
from tests.e2e.approvals.approvals_support import (
    TARGET,
    ApprovalEnv,
    Background,
    body,
    notices,
    signed_ok,
)
from tests.e2e.recording_support import read_recording, run_cli, wait_for, write_config
from tests.support.gateway import RunningGateway, gateway_config


@pytest.fixture(scope="module")
def env(pg_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApprovalEnv]:
    e = ApprovalEnv(pg_cluster, tmp_path_factory.mktemp("approvals-gateway"))
    try:
        yield e
    finally:
        e.close()


def _alter(env: ApprovalEnv, user: str, table: str, column: str, seen: list[str]) -> Any:
    with psycopg.connect(env.dsn(user), autocommit=True) as conn:
        conn.add_notice_handler(lambda d: seen.append(d.message_primary or ""))
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} int")
        return conn.execute("SELECT 1").fetchone()


def test_held_then_refused_to_non_approver_then_approved(env: ApprovalEnv) -> None:
    table = env.scratch_table()
    seen: list[str] = []
    client = Background(lambda: _alter(env, "agent-1", table, "added", seen))
    pending = env.wait_pending(table)
    assert not client.done, "the statement ran without approval"
    assert env.columns(table) == ["id"]
    # the client was told at once, with the id and how to decide
    assert any(pending["id"] in n and "pgwarden approvals approve" in n for n in seen), seen
    assert all(n.startswith("pgwarden:") for n in seen if pending["id"] in n)
    assert pending["requester"] == "agent-1" and pending["target"] == TARGET
    with env.api("mallory", ("dev",)) as api:
        r = api.post(f"/api/v1/approvals/{pending['id']}/approve", json={"reason": "me"})
        assert r.status_code in (403, 404), r.text
    assert not client.done
    with env.api("dana", ("dba",)) as api:
        r = api.post(f"/api/v1/approvals/{pending['id']}/approve", json={"reason": "planned"})
        assert r.status_code == 200, r.text
    assert client.result() == (1,)
    assert env.columns(table) == ["id", "added"]
    # webhooks: the signed JSON one and the Slack-compatible one, each pointing at the console
    hooks = wait_for(lambda: len(env.webhooks_for(pending["id"])) >= 2 or None, what="webhooks")
    assert hooks
    got = env.webhooks_for(pending["id"])
    json_hook = next(h for h in got if h["path"] == "/json")
    slack_hook = next(h for h in got if h["path"] == "/slack")
    assert signed_ok(json_hook)
    tampered = dict(json_hook, body=json_hook["body"].replace(b"agent-1", b"agent-2"))
    assert not signed_ok(tampered)
    assert body(json_hook)["id"] == pending["id"]
    assert "text" in body(slack_hook) and "/console/approvals/" in slack_hook["body"].decode()


def test_self_approval_refused_then_denied_by_another(env: ApprovalEnv) -> None:
    table = env.scratch_table()
    seen: list[str] = []

    def run() -> Any:
        with psycopg.connect(env.dsn("dana", ("dba",)), autocommit=True) as conn:
            conn.add_notice_handler(lambda d: seen.append(d.message_primary or ""))
            conn.execute(f"ALTER TABLE {table} ADD COLUMN self int")

    client = Background(run)
    pending = env.wait_pending(table)
    with env.api("dana", ("dba",)) as api:
        r = api.post(f"/api/v1/approvals/{pending['id']}/approve", json={"reason": "mine"})
        assert r.status_code == 403, r.text
    with env.api("erin", ("dba",)) as api:
        r = api.post(f"/api/v1/approvals/{pending['id']}/deny", json={"reason": "not today"})
        assert r.status_code == 200, r.text
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
        client.result()
    assert "pgwarden:" in str(info.value) and "not today" in str(info.value)
    assert "erin" in str(info.value)
    assert env.columns(table) == ["id"]


def test_expired_refused_and_nothing_changed(env: ApprovalEnv, pg_cluster: DevCluster) -> None:
    table = env.scratch_table()
    # a short-timeout gateway of its own on the same database
    cfg = gateway_config(
        env.data_dir.parent / "approvals-short",
        targets={TARGET: env.db.target()},
        policy="default",
        approvals={"timeout": "1s", "approvers": ["dba"]},
    )
    with RunningGateway(cfg) as gw:
        start = time.monotonic()
        with psycopg.connect(gw.dsn("agent-3", TARGET), autocommit=True) as conn:
            with notices(conn) as seen:
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="in time"):
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN late int")
                assert any("held for approval" in n for n in seen)
            assert conn.execute("SELECT 2").fetchone() == (2,)  # the session goes on
        assert time.monotonic() - start >= 0.9
    assert env.columns(table) == ["id"]


def test_disconnected_client_withdraws_and_late_approval_does_nothing(env: ApprovalEnv) -> None:
    table = env.scratch_table()
    conn = psycopg.connect(env.dsn("agent-4"), autocommit=True)
    client = Background(lambda: conn.execute(f"ALTER TABLE {table} ADD COLUMN gone int"))
    pending = env.wait_pending(table)
    conn.pgconn.finish()  # the client goes away while its statement is held
    with pytest.raises(psycopg.Error):
        client.result()

    def withdrawn() -> bool | None:
        with env.api("dana", ("dba",)) as api:
            state = api.get(f"/api/v1/approvals/{pending['id']}").json()["state"]
        return state == "withdrawn" or None

    wait_for(withdrawn, what="the request withdrawn")
    with env.api("dana", ("dba",)) as api:
        r = api.post(f"/api/v1/approvals/{pending['id']}/approve", json={"reason": "late"})
        assert r.status_code == 409, r.text
    time.sleep(0.3)
    assert env.columns(table) == ["id"]


def test_cancel_withdraws(env: ApprovalEnv) -> None:
    table = env.scratch_table()
    with psycopg.connect(env.dsn("agent-5"), autocommit=True) as conn:
        client = Background(lambda: conn.execute(f"ALTER TABLE {table} ADD COLUMN c int"))
        pending = env.wait_pending(table)
        conn.cancel_safe()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="withdrawn"):
            client.result()
        assert conn.execute("SELECT 3").fetchone() == (3,)
    with env.api("dana", ("dba",)) as api:
        assert api.get(f"/api/v1/approvals/{pending['id']}").json()["state"] == "withdrawn"
    assert env.columns(table) == ["id"]


def test_held_inside_a_transaction_and_a_pipeline(env: ApprovalEnv) -> None:
    table = env.scratch_table()

    def in_tx() -> Any:
        with psycopg.connect(env.dsn("agent-6")) as conn:  # explicit transaction
            conn.execute(f"INSERT INTO {table} VALUES (1)")
            conn.execute(f"ALTER TABLE {table} ADD COLUMN in_tx int")
            conn.execute(f"INSERT INTO {table} VALUES (2, 2)")
            conn.commit()

    client = Background(in_tx)
    pending = env.wait_pending(f"{table} ADD COLUMN in_tx")
    with env.api("dana", ("dba",)) as api:
        assert api.post(f"/api/v1/approvals/{pending['id']}/approve", json={}).status_code == 200
    client.result()
    assert env.columns(table) == ["id", "in_tx"]

    def in_pipeline() -> Any:
        with psycopg.connect(env.dsn("agent-6"), autocommit=True) as conn:
            with conn.pipeline():
                a = conn.execute("SELECT 41")
                conn.execute(f"ALTER TABLE {table} ADD COLUMN piped int")
                b = conn.execute("SELECT 42")
            return a.fetchone(), b.fetchone()

    client = Background(in_pipeline)
    pending = env.wait_pending(f"{table} ADD COLUMN piped")
    with env.api("dana", ("dba",)) as api:
        assert api.post(f"/api/v1/approvals/{pending['id']}/approve", json={}).status_code == 200
    assert client.result() == ((41,), (42,))
    assert env.columns(table) == ["id", "in_tx", "piped"]


def test_two_person_rule(env: ApprovalEnv) -> None:
    table = env.scratch_table()
    cfg = gateway_config(
        env.data_dir.parent / "approvals-two",
        targets={TARGET: env.db.target()},
        policy="default",
        approvals={"timeout": "20s", "approvers": ["dba"], "min_approvals": 2},
    )
    with RunningGateway(cfg) as gw:

        def run() -> Any:
            with psycopg.connect(gw.dsn("agent-7", TARGET), autocommit=True) as conn:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN two int")

        client = Background(run)

        def api(user: str) -> httpx.Client:
            return httpx.Client(
                base_url=f"http://127.0.0.1:{gw.api_port}",
                headers={"Authorization": f"Bearer {gw.token(user, ('dba',))}"},
            )

        with api("dana") as a:
            deadline = time.time() + 10
            pending: list[Any] = []
            while not pending and time.time() < deadline:
                pending = a.get("/api/v1/approvals", params={"state": "pending"}).json()
                time.sleep(0.05)
            assert pending
            pid = pending[0]["id"]
            assert a.post(f"/api/v1/approvals/{pid}/approve", json={}).status_code == 200
            assert a.post(f"/api/v1/approvals/{pid}/approve", json={}).status_code == 409
        time.sleep(0.5)
        assert not client.done, "one approval of two let it run"
        assert env.columns(table) == ["id"]
        with api("erin") as b:
            assert b.post(f"/api/v1/approvals/{pid}/approve", json={}).status_code == 200
        client.result()
    assert env.columns(table) == ["id", "two"]


def test_recording_names_the_approver_and_reason(env: ApprovalEnv) -> None:
    table = env.scratch_table()
    ids: list[str] = []

    def run() -> Any:
        with psycopg.connect(env.dsn("agent-8"), autocommit=True) as conn:
            ids.append(str(conn.execute("SHOW pgwarden.session_id").fetchone()[0]))  # type: ignore[index]
            conn.execute(f"ALTER TABLE {table} ADD COLUMN rec int")

    client = Background(run)
    pending = env.wait_pending(table)
    with env.api("dana", ("dba",)) as api:
        api.post(f"/api/v1/approvals/{pending['id']}/approve", json={"reason": "ticket 42"})
    client.result()
    events = read_recording(env.data_dir, ids[0], strict=False)
    approvals = [e for e in events if e["type"] == "approval"]
    assert [a["state"] for a in approvals] == ["requested", "approved"]
    assert approvals[1]["actor"] == "dana" and approvals[1]["reason"] == "ticket 42"
    assert approvals[0]["approval_id"] == pending["id"]
    stmt = next(e for e in events if e["type"] == "statement" and "ADD COLUMN rec" in e["sql"])
    assert stmt["decision"]["action"] == "review"
    assert any(e["type"] == "result" and e.get("command_tag") == "ALTER TABLE" for e in events)


def test_cli_lists_and_approves_as_the_token_identity(env: ApprovalEnv, tmp_path: Any) -> None:
    doc = env.gw.config.model_dump(mode="json")
    doc["api"]["listen"] = f"127.0.0.1:{env.gw.api_port}"
    cfg = write_config(tmp_path / "pgwarden.json", doc)
    table = env.scratch_table()
    client = Background(lambda: _alter(env, "agent-9", table, "cli", []))
    pending = env.wait_pending(table)
    listed = run_cli("approvals", "list", "--json", "-c", str(cfg))
    assert listed.returncode == 0, listed.stderr
    rows = {a["id"]: a for a in json.loads(listed.stdout)}
    assert rows[pending["id"]]["state"] == "pending"
    assert {"id", "state", "sql", "params", "requester", "target", "requested_at"} <= set(
        rows[pending["id"]]
    )
    # the requester's own token cannot approve
    own = run_cli(
        "approvals",
        "approve",
        pending["id"],
        "--token",
        env.gw.token("agent-9", ("dba",)),
        "-c",
        str(cfg),
    )
    assert own.returncode == 1 and "own" in own.stderr.lower(), own.stderr
    ok = run_cli(
        "approvals",
        "approve",
        pending["id"],
        "-c",
        str(cfg),
        "--token",
        env.gw.token("dana", ("dba",)),
        "--reason",
        "via cli",
    )
    assert ok.returncode == 0, ok.stderr
    assert client.result() == (1,)
    assert env.columns(table) == ["id", "cli"]
