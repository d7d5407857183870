"""`pgwarden demo` orchestration, with a fake cluster and a fake gateway (the real cluster is
exercised in tests/integration/test_devcluster.py)."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from typer.testing import Result

from pgwarden.cli import demo as demo_cli
from pgwarden.config import Config
from pgwarden.demo import ShopDatabase


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class FakeCluster:
    instances: list[FakeCluster] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.host = "127.0.0.1"
        self.port = 55432
        self.logfile = Path("/nonexistent/postgres.log")
        self.started = self.stopped = False
        FakeCluster.instances.append(self)

    def start(self) -> FakeCluster:
        self.started = True
        return self

    def stop(self) -> None:
        self.stopped = True


class Recorder:
    def __init__(self) -> None:
        self.config: Config | None = None
        self.config_file: dict[str, Any] | None = None
        self.cancelled = False
        self.shop_calls: list[tuple[Any, ...]] = []


@pytest.fixture
def demo_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Recorder:
    rec = Recorder()
    FakeCluster.instances = []
    monkeypatch.setattr(demo_cli, "DevCluster", FakeCluster)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", None)

    def fake_load_shop(
        cluster: FakeCluster, dbname: str, owner: str, password: str
    ) -> ShopDatabase:
        rec.shop_calls.append((cluster, dbname, owner, password))
        return ShopDatabase(cluster.host, cluster.port, dbname, owner, password)

    async def fake_serve(config: Config, *, ready: Callable[[], None] | None = None) -> None:
        rec.config = config
        config_path = config.data_dir / "pgwarden.yaml"
        rec.config_file = yaml.safe_load(config_path.read_text())
        assert (config_path.stat().st_mode & 0o077) == 0
        assert ready is not None
        ready()
        os.kill(os.getpid(), signal.SIGTERM)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            rec.cancelled = True
            raise

    monkeypatch.setattr(demo_cli, "load_shop", fake_load_shop)
    monkeypatch.setattr(demo_cli, "load_serve", lambda: fake_serve)
    return rec


def _paste_lines(stdout: str) -> dict[str, str]:
    lines = {}
    for line in stdout.splitlines():
        if line.startswith("PGPASSWORD="):
            match = re.search(r"user=(\S+)", line)
            assert match
            lines[match.group(1)] = line
    return lines


def test_demo_prints_ready_to_paste_lines_and_cleans_up(
    cli: Callable[..., Result], demo_env: Recorder, tmp_path: Path
) -> None:
    gw, api = free_port(), free_port()
    result = cli("demo", "--listen", f"127.0.0.1:{gw}", "--api-listen", f"127.0.0.1:{api}")
    assert result.exit_code == 0, result.output

    lines = _paste_lines(result.stdout)
    assert set(lines) == {"agent-7", "alice"}
    agent = lines["agent-7"]
    token, _, rest = agent.removeprefix("PGPASSWORD=").partition(" ")
    assert rest == f'psql "host=127.0.0.1 port={gw} dbname=shop user=agent-7 sslmode=prefer"'
    assert shlex.split(rest) == [
        "psql",
        f"host=127.0.0.1 port={gw} dbname=shop user=agent-7 sslmode=prefer",
    ]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "agent-7" and claims["groups"] == ["agents"]
    alice_token = lines["alice"].removeprefix("PGPASSWORD=").split(" ")[0]
    alice = jwt.decode(alice_token, options={"verify_signature": False})
    assert alice["sub"] == "alice" and alice["groups"] == ["dba", "auditors"]
    assert f"http://127.0.0.1:{api}/" in result.stdout

    # The gateway got a config pointing at the cluster, with the app role's password.
    assert demo_env.config is not None
    cfg = demo_env.config
    assert (cfg.listen.port, cfg.api.listen.port) == (gw, api)
    target = cfg.targets["shop"]
    ((cluster, dbname, owner, password),) = demo_env.shop_calls
    assert (dbname, owner) == ("shop", "app")
    assert (target.host, target.port, target.dbname, target.user) == (
        "127.0.0.1",
        55432,
        "shop",
        "app",
    )
    assert target.password is not None and target.password.get_secret_value() == password
    assert password not in result.output  # only the gateway knows it
    assert demo_env.config_file is not None
    assert demo_env.config_file["targets"]["shop"]["password"] == password

    # Stopped: the gateway was cancelled, the cluster stopped, the temporary data dir removed.
    assert demo_env.cancelled
    assert cluster.started and cluster.stopped
    assert not cfg.data_dir.exists()
    assert list((tmp_path / "tmp").iterdir()) == []
    for port in (gw, api):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_demo_keeps_explicit_data_dir(
    cli: Callable[..., Result], demo_env: Recorder, tmp_path: Path
) -> None:
    data = tmp_path / "demo-data"
    result = cli(
        "demo",
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--api-listen",
        f"127.0.0.1:{free_port()}",
        "--data-dir",
        str(data),
    )
    assert result.exit_code == 0, result.output
    assert (data / "pgwarden.yaml").exists()
    assert (data / "keys").is_dir()
    assert FakeCluster.instances[0].stopped


def test_demo_with_base_config(
    cli: Callable[..., Result], demo_env: Recorder, write_config: Callable[..., Path]
) -> None:
    cfg = write_config({"approvals": {"timeout": "2m"}, "policy": {"mode": "audit"}})
    result = cli(
        "demo",
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--api-listen",
        f"127.0.0.1:{free_port()}",
        "-c",
        str(cfg),
    )
    assert result.exit_code == 0, result.output
    assert demo_env.config is not None
    assert demo_env.config.approvals.timeout == 120
    assert demo_env.config.policy == {"mode": "audit"}


def test_demo_port_in_use(cli: Callable[..., Result], demo_env: Recorder) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli(
            "demo", "--listen", f"127.0.0.1:{port}", "--api-listen", f"127.0.0.1:{free_port()}"
        )
    assert result.exit_code == 1
    assert f"127.0.0.1:{port}" in result.stderr
    assert "--listen" in result.stderr
    assert FakeCluster.instances == []  # nothing was started


def test_demo_bad_base_config(
    cli: Callable[..., Result], demo_env: Recorder, write_config: Callable[..., Path]
) -> None:
    cfg = write_config("bogus: 1\n")
    result = cli("demo", "-c", str(cfg))
    assert result.exit_code == 2
    assert "bogus" in result.stderr
    assert FakeCluster.instances == []
