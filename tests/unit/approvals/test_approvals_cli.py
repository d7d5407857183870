"""`pgwarden approvals list|approve|deny`: list reads the store of the config; approve and
deny go through the real HTTP API (uvicorn on 127.0.0.1 in a thread)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from approvals_helpers import ApiServer, Auth, closed_port
from typer.testing import CliRunner, Result

from pgwarden.api.app import create_app
from pgwarden.approvals import ApprovalService
from pgwarden.cli.main import app as cli_app
from pgwarden.config import ApprovalsConfig
from pgwarden.store import ApprovalRecord, SqliteStore


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Result]:
    monkeypatch.chdir(tmp_path)
    for name in ("PGWARDEN_CONFIG", "PGWARDEN_TOKEN", "PGWARDEN_API"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(cli_app, list(args), env=env, catch_exceptions=False)

    return run


def write_config(tmp_path: Path, *, api_port: int, **approvals: Any) -> Path:
    path = tmp_path / "gw.yaml"
    doc = {
        "data_dir": str(tmp_path / "data"),
        "api": {"listen": f"127.0.0.1:{api_port}"},
        "approvals": {"approvers": ["dba"], **approvals},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def put(store: SqliteStore, aid: str, *, at: float, state: str = "pending", **kw: Any) -> None:
    fields: dict[str, Any] = {
        "id": aid,
        "session_id": "sess-1",
        "sql": "DROP TABLE orders",
        "requester": "agent-7",
        "target": "shop",
        "requested_at": at,
        "statement_hash": "0" * 64,
        "params": ("5", None),
        "expires_at": at + 3600,
        "rule": "hold-ddl",
        "state": state,
        **kw,
    }
    store.create_approval(ApprovalRecord(**fields))


class Gateway:
    """The API of a gateway over the store of the config in tmp_path."""

    def __init__(self, tmp_path: Path, auth: Auth, **approvals: Any) -> None:
        self.store = SqliteStore(tmp_path / "data" / "pgwarden.db")
        self.service = ApprovalService(
            self.store,
            ApprovalsConfig.model_validate({"approvers": ["dba"], **approvals}),
            poll_interval=30,
        )
        self.server = ApiServer(create_app(verifier=auth.verifier, approvals=self.service))
        self.config = write_config(tmp_path, api_port=self.server.port, **approvals)


@pytest.fixture
def gateway(tmp_path: Path, auth: Auth) -> Iterator[Gateway]:
    gw = Gateway(tmp_path, auth)
    with gw.server:
        yield gw
    gw.store.close()


# --------------------------------------------------------------------------------------------
# list


def test_list_json(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, api_port=8080)
    store = SqliteStore(tmp_path / "data" / "pgwarden.db")
    put(store, "apr_second0000", at=1_800_000_100.0)
    put(store, "apr_first00000", at=1_800_000_000.0, sql="TRUNCATE orders")
    put(
        store,
        "apr_denied0000",
        at=1_800_000_200.0,
        state="denied",
        deciders=("alice",),
        reasons=("no",),
        decided_at=1_800_000_250.0,
    )
    store.close()

    for args in (
        ("approvals", "list", "--json", "-c", str(config)),
        ("-c", str(config), "approvals", "list", "--json"),
        ("approvals", "-c", str(config), "list", "--json"),
    ):
        result = cli(*args)
        assert result.exit_code == 0, result.stderr
        rows = json.loads(result.stdout)
        assert [r["id"] for r in rows] == ["apr_first00000", "apr_second0000", "apr_denied0000"]
    first = rows[0]
    assert first["state"] == "pending"
    assert first["sql"] == "TRUNCATE orders"
    assert first["params"] == ["5", None]
    assert first["requester"] == "agent-7"
    assert first["target"] == "shop"
    assert first["requested_at"] == "2027-01-15T08:00:00.000000Z"
    assert first["expires_at"] == "2027-01-15T09:00:00.000000Z"
    assert first["decided_at"] is None
    assert first["approvals_required"] == 1
    assert (rows[2]["deciders"], rows[2]["reasons"]) == (["alice"], ["no"])

    result = cli("approvals", "list", "--json", "--state", "denied", "-c", str(config))
    assert [r["id"] for r in json.loads(result.stdout)] == ["apr_denied0000"]
    result = cli("approvals", "list", "--json", "--state", "maybe", "-c", str(config))
    assert result.exit_code == 2 and "--state" in result.stderr


def test_list_table(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, api_port=8080, min_approvals=2)
    result = cli("approvals", "list", "-c", str(config))
    assert result.exit_code == 0 and "no approvals" in result.stdout
    store = SqliteStore(tmp_path / "data" / "pgwarden.db")
    put(store, "apr_table00000", at=1_800_000_000.0, deciders=("alice",), reasons=("",))
    store.close()
    result = cli("approvals", "list", "-c", str(config))
    assert result.exit_code == 0, result.stderr
    for text in ("apr_table00000", "pending", "agent-7", "shop", "DROP TABLE orders", "1/2"):
        assert text in result.stdout
    assert "2027-01-15 08:00:00" in result.stdout


def test_list_bad_config(cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("approvals: {approverz: [dba]}\n")
    result = cli("approvals", "list", "-c", str(bad))
    assert result.exit_code == 2
    assert "approvals.approverz" in result.stderr


# --------------------------------------------------------------------------------------------
# approve / deny through the API


def test_approve_and_deny(cli, gateway: Gateway, auth: Auth) -> None:
    put(gateway.store, "apr_approveme0", at=1_900_000_000.0)
    put(gateway.store, "apr_denyme0000", at=1_900_000_000.0)
    config = str(gateway.config)

    result = cli(
        "approvals", "approve", "apr_approveme0", "--token", auth.token("alice"),
        "--reason", "backup checked", "-c", config,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "apr_approveme0: approved" in result.stdout
    assert "alice" in result.stdout and "backup checked" in result.stdout
    rec = gateway.store.get_approval("apr_approveme0")
    assert rec is not None and (rec.state, rec.deciders, rec.reasons) == (
        "approved",
        ("alice",),
        ("backup checked",),
    )

    # the token from the environment; JSON output
    result = cli(
        "-c", config, "approvals", "deny", "apr_denyme0000", "--json", "-r", "not now",
        env={"PGWARDEN_TOKEN": auth.token("bob")},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    assert (body["id"], body["state"], body["deciders"], body["reasons"]) == (
        "apr_denyme0000",
        "denied",
        ["bob"],
        ["not now"],
    )

    # a decided request stays decided
    result = cli("approvals", "deny", "apr_approveme0", "-t", auth.token("bob"), "-c", config)
    assert result.exit_code == 1
    assert "already approved" in result.stderr and "HTTP 409" in result.stderr


def test_refusals_are_printed_with_exit_1(cli, gateway: Gateway, auth: Auth) -> None:
    put(gateway.store, "apr_mine000000", at=1_900_000_000.0, requester="agent-7")
    config = str(gateway.config)
    cases = [
        ("agent-7@dba", "approve", "nobody may approve their own statement"),
        ("Agent-7", "approve", "nobody may approve their own statement"),
        ("agent-7@dba", "deny", "their own statement"),
        ("mallory", "approve", "approver groups"),
    ]
    for name, verb, message in cases:
        result = cli("approvals", verb, "apr_mine000000", "--token", auth.token(name), "-c", config)
        assert result.exit_code == 1, (name, result.stdout)
        assert message in result.stderr
        assert result.stdout == ""
    result = cli(
        "approvals", "approve", "apr_unknown000", "--token", auth.token("bob"), "-c", config
    )
    assert result.exit_code == 1 and "HTTP 404" in result.stderr
    result = cli("approvals", "approve", "apr_mine000000", "--token", "garbage", "-c", config)
    assert result.exit_code == 1 and "HTTP 401" in result.stderr
    rec = gateway.store.get_approval("apr_mine000000")
    assert rec is not None and rec.state == "pending" and rec.deciders == ()


def test_token_is_required(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, api_port=8080)
    result = cli("approvals", "approve", "apr_x", "-c", str(config))
    assert result.exit_code == 2
    assert "--token" in result.stderr and "PGWARDEN_TOKEN" in result.stderr


def test_unreachable_api(cli, tmp_path: Path, auth: Auth) -> None:
    config = write_config(tmp_path, api_port=closed_port())
    result = cli("approvals", "approve", "apr_x", "--token", auth.token("bob"), "-c", str(config))
    assert result.exit_code == 1
    assert "cannot reach the pgwarden API at http://127.0.0.1:" in result.stderr
    assert auth.token("bob") not in result.stderr


def test_api_option_overrides_the_config(cli, gateway: Gateway, auth: Auth, tmp_path) -> None:
    put(gateway.store, "apr_viaoption0", at=1_900_000_000.0)
    elsewhere = write_config(tmp_path, api_port=closed_port())  # rewrites gw.yaml: wrong port
    result = cli(
        "approvals", "approve", "apr_viaoption0", "--token", auth.token("carol"),
        "--api", gateway.server.url + "/", "-c", str(elsewhere),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    result = cli(
        "approvals", "approve", "apr_viaoption0", "--token", auth.token("carol"),
        "--api", "ftp://x", "-c", str(elsewhere),
    )  # fmt: skip
    assert result.exit_code == 2


def test_two_person_rule_from_the_cli(cli, tmp_path: Path, auth: Auth) -> None:
    gw = Gateway(tmp_path, auth, min_approvals=2)
    with gw.server:
        put(gw.store, "apr_twopeople0", at=1_900_000_000.0)
        config = str(gw.config)
        result = cli(
            "approvals", "approve", "apr_twopeople0", "-t", auth.token("alice"), "-c", config
        )
        assert result.exit_code == 0, result.stderr
        assert "approval recorded (1 of 2 needed); still pending" in result.stdout
        result = cli(
            "approvals", "approve", "apr_twopeople0", "-t", auth.token("alice"), "-c", config
        )
        assert result.exit_code == 1 and "already voted" in result.stderr
        result = cli(
            "approvals", "approve", "apr_twopeople0", "-t", auth.token("bob"), "-c", config
        )
        assert result.exit_code == 0 and "apr_twopeople0: approved" in result.stdout
    gw.store.close()


def test_a_held_statement_released_from_the_cli(cli, gateway: Gateway, auth: Auth, people) -> None:
    """End to end in one process: the data path waits on its own event loop; an approver runs
    `pgwarden approvals approve` on another thread; the API (a third thread) decides; the
    waiter wakes at once."""
    svc = gateway.service

    async def main() -> str:
        pending = await svc.request(
            session_id="sess-9",
            sql="ALTER TABLE orders DROP COLUMN note",
            params=[],
            requester=people["agent-7"],
            target="shop",
            rule="hold-ddl",
            reason="schema change",
        )
        waiter = asyncio.create_task(pending.wait())
        listed = await asyncio.to_thread(
            cli, "approvals", "list", "--json", "--state", "pending", "-c", str(gateway.config)
        )
        assert [r["id"] for r in json.loads(listed.stdout)] == [pending.id]
        result = await asyncio.to_thread(
            cli, "approvals", "approve", pending.id, "-t", auth.token("alice"),
            "-c", str(gateway.config),
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        outcome = await asyncio.wait_for(waiter, 5)
        await svc.aclose()
        return outcome.state

    assert asyncio.run(main()) == "approved"
