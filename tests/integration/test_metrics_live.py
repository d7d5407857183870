"""/metrics after real traffic through a real gateway: each family the data path feeds moves
(connections, statements by decision with latency, masked values by detector, recording bytes,
token failures, approvals pending)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.databases import TargetDb
from tests.support.gateway import RunningGateway, gateway_config


def _samples(gw: RunningGateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{gw.api_port}/metrics", timeout=10).text
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_follow_real_traffic(tmp_path: Path, shop: TargetDb) -> None:
    cfg = gateway_config(
        tmp_path, targets={"shop": shop.target()}, policy="default", approvals={"timeout": "5s"}
    )
    with RunningGateway(cfg) as gw:
        with psycopg.connect(gw.dsn("agent-1"), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT 'ada' || g || '@example.com' AS email, '332-20-6469' AS ssn "
                "FROM generate_series(1, 5) g"
            ).fetchall()
            assert rows and "*" in rows[0][0]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM orders")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(gw.dsn("agent-1", password="not-a-token"))
        deadline = time.monotonic() + 10
        while True:
            m = _samples(gw)
            if m.get(("pgwarden_recording_bytes_total", ()), 0) > 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert m[("pgwarden_statements_total", (("decision", "allowed"),))] >= 1
        assert m[("pgwarden_statements_total", (("decision", "denied"),))] >= 1
        assert m[("pgwarden_statement_duration_seconds_count", (("decision", "allowed"),))] >= 1
        assert m[("pgwarden_masked_values_total", (("detector", "email"),))] >= len(rows)
        assert m[("pgwarden_masked_values_total", (("detector", "ssn"),))] >= len(rows)
        assert m[("pgwarden_connections_total", ())] >= 2
        assert sum(v for (n, _), v in m.items() if n == "pgwarden_token_failures_total") >= 1
        assert m[("pgwarden_recording_bytes_total", ())] > 0
        assert m[("pgwarden_approvals_pending", ())] == 0
