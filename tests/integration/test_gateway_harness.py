"""The RunningGateway helper itself: ports, API, tokens, DSNs, clean start and stop."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.databases import TargetDb
from tests.support.gateway import RunningGateway, gateway_config, token_claims


def test_ports_api_and_sessions(gateway: RunningGateway) -> None:
    assert gateway.port > 0 and gateway.api_port > 0 and gateway.port != gateway.api_port
    health = httpx.get(f"{gateway.api_url}/healthz", timeout=5)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    with psycopg.connect(gateway.dsn("carol", groups=["dev", "ops"])) as conn:
        conn.execute("select 1")
        [session] = [s for s in gateway.sessions() if s.info.identity.subject == "carol"]
        assert session.info.identity.groups == ("dev", "ops")
        assert session.info.target == "shop"
        assert httpx.get(f"{gateway.api_url}/healthz", timeout=5).json()["sessions"] >= 1


def test_token_helper(gateway: RunningGateway) -> None:
    claims = token_claims(gateway.token("dave", groups=("a",), ttl=60))
    assert claims["sub"] == "dave"
    assert claims["groups"] == ["a"]
    assert 59 <= claims["exp"] - claims["iat"] <= 61


def test_start_and_stop_free_the_ports(tmp_path: Path, shop: TargetDb) -> None:
    gw = RunningGateway(gateway_config(tmp_path, targets={"shop": shop.target()})).start()
    port, api_port = gw.port, gw.api_port
    with psycopg.connect(gw.dsn("erin")) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        gw.stop()
        # Sessions end with the gateway.
        with pytest.raises(psycopg.OperationalError):
            conn.execute("select 1")
    assert not gw.alive
    for p in (port, api_port):
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))  # free again
    gw.stop()  # idempotent


def test_bad_config_fails_at_start(tmp_path: Path, shop: TargetDb) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        gw = RunningGateway(
            gateway_config(tmp_path, targets={"shop": shop.target()}, listen=f"127.0.0.1:{busy}")
        )
        with pytest.raises(OSError):
            gw.start()
        assert not gw.alive
