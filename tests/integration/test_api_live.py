"""The HTTP API of a real gateway over real HTTP: a psycopg session through the gateway sets
its prompt and runs a SELECT, then an auditor finds the session and the prompt through
/api/v1/sessions; /healthz and /metrics answer without a token, /api/ never does."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from tests.support.databases import TargetDb
from tests.support.gateway import RunningGateway, gateway_config

PROMPT = "why"


def wait_for_state(
    client: httpx.Client, session_id: str, headers: dict[str, str], state: str
) -> dict[str, Any]:
    """The session's detail once the index shows ``state`` (a session ends asynchronously
    after the client disconnects)."""
    deadline = time.monotonic() + 10
    while True:
        r = client.get(f"/api/v1/sessions/{session_id}", headers=headers)
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        if doc["state"] == state or time.monotonic() > deadline:
            return doc
        time.sleep(0.05)


def test_an_auditor_reads_the_session_and_its_prompt(tmp_path: Path, shop: TargetDb) -> None:
    with RunningGateway(gateway_config(tmp_path, targets={"shop": shop.target()})) as gw:
        with psycopg.connect(gw.dsn("agent-7", groups=["agents"]), autocommit=True) as conn:
            conn.execute(f"SET pgwarden.prompt = '{PROMPT}'")
            assert conn.execute("SELECT 40 + 2").fetchone() == (42,)
            row = conn.execute("SHOW pgwarden.session_id").fetchone()
            assert row is not None
            session_id = row[0]

        auditor = {"Authorization": f"Bearer {gw.token('audrey', groups=['auditors'])}"}
        agent = {"Authorization": f"Bearer {gw.token('agent-7', groups=['agents'])}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{gw.api_port}", timeout=10) as client:
            assert client.get("/healthz").json()["status"] == "ok"
            for path in (
                "/api/v1/sessions",
                f"/api/v1/sessions/{session_id}",
                f"/api/v1/sessions/{session_id}/events",
                "/api/v1/approvals",
            ):
                assert client.get(path).status_code == 401, path

            listing = client.get("/api/v1/sessions", headers=auditor)
            assert listing.status_code == 200
            [mine] = [s for s in listing.json() if s["id"] == session_id]
            assert mine["subject"] == "agent-7" and mine["target"] == "shop"
            assert mine["statements"] >= 1 and mine["allowed"] >= 1
            filtered = client.get(
                "/api/v1/sessions",
                params={"subject": "agent-7", "target": "shop", "since": "1h"},
                headers=auditor,
            )
            assert session_id in [s["id"] for s in filtered.json()]
            # the agent is not an auditor: not everybody's list, but its own session
            assert client.get("/api/v1/sessions", headers=agent).status_code == 403
            assert client.get(f"/api/v1/sessions/{session_id}", headers=agent).status_code == 200

            detail = wait_for_state(client, session_id, auditor, "ended")
            assert detail["state"] == "ended"
            assert detail["verification"]["status"] == "intact"

            r = client.get(f"/api/v1/sessions/{session_id}/events", headers=auditor)
            assert r.status_code == 200
            assert r.headers["x-pgwarden-verification"] == "intact"
            events = r.json()
            [select] = [
                e for e in events if e["type"] == "statement" and e["sql"] == "SELECT 40 + 2"
            ]
            assert select["context"]["prompt"] == PROMPT
            assert select["session"] == session_id
            assert events[0]["type"] == "session_start" and events[0]["subject"] == "agent-7"

            assert client.get("/api/v1/approvals", headers=auditor).status_code == 200

            metrics = client.get("/metrics")
            assert metrics.status_code == 200
            families = {f.name: f for f in text_string_to_metric_families(metrics.text)}
            for name in (
                "pgwarden_connections",
                "pgwarden_statements",
                "pgwarden_statement_duration_seconds",
                "pgwarden_approvals_pending",
                "pgwarden_masked_values",
                "pgwarden_recording_bytes",
                "pgwarden_recording_errors",
                "pgwarden_token_failures",
            ):
                assert name in families, name
            [pending] = families["pgwarden_approvals_pending"].samples
            assert pending.value == 0
            [active] = families["pgwarden_sessions_active"].samples
            assert active.value == 0
