"""Config errors: one clear line on stderr, exit code 2, wherever `-c` appears."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

BAD = "targets:\n  shop:\n    dbname: shop\n    user: app\n    port: 70000\n"


def _assert_config_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pgwarden: config error")
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize(
    "position",
    [
        ["-c", "{cfg}", "token", "issue", "--subject", "s"],
        ["token", "-c", "{cfg}", "issue", "--subject", "s"],
        ["token", "issue", "-c", "{cfg}", "--subject", "s"],
        ["token", "issue", "--subject", "s", "--config", "{cfg}"],
        ["token", "issue", "--subject", "s", "--config={cfg}"],
        ["serve", "-c", "{cfg}"],
        ["--config", "{cfg}", "serve"],
    ],
)
def test_config_option_anywhere(
    cli: Callable[..., Result],
    write_config: Callable[..., Path],
    position: list[str],
) -> None:
    cfg = write_config(BAD)
    result = cli(*(arg.replace("{cfg}", str(cfg)) for arg in position))
    _assert_config_error(result, "targets.shop.port", str(cfg))


def test_innermost_config_wins(
    cli: Callable[..., Result], write_config: Callable[..., Path]
) -> None:
    bad = write_config(BAD, "bad.yaml")
    good = write_config("identity:\n  local_issuer: true\n", "good.yaml")
    result = cli("-c", str(bad), "token", "issue", "-s", "x", "-c", str(good))
    assert result.exit_code == 0, result.output


def test_pgwarden_config_env_var(
    cli: Callable[..., Result], write_config: Callable[..., Path]
) -> None:
    cfg = write_config(BAD, "env.yaml")
    _assert_config_error(cli("token", "issue", "-s", "x", env={"PGWARDEN_CONFIG": str(cfg)}))


def test_missing_file(cli: Callable[..., Result], tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = cli("token", "issue", "-s", "x", "-c", str(missing))
    _assert_config_error(result, "does not exist", str(missing))


def test_unknown_key(cli: Callable[..., Result], write_config: Callable[..., Path]) -> None:
    cfg = write_config("identity:\n  max_ttl: 1h\n")
    _assert_config_error(cli("token", "issue", "-s", "x", "-c", str(cfg)), "identity.max_ttl")


def test_missing_variable_names_key_and_variable_not_secret(
    cli: Callable[..., Result], write_config: Callable[..., Path]
) -> None:
    cfg = write_config(
        "targets:\n  shop:\n    dbname: shop\n    user: app\n    password: ${SHOP_PW}\n"
        "    host: ${SHOP_HOST}\n"
    )
    result = cli("token", "issue", "-s", "x", "-c", str(cfg), env={"SHOP_PW": "hunter2"})
    _assert_config_error(result, "targets.shop.host", "SHOP_HOST")
    assert "hunter2" not in result.output


def test_invalid_yaml(cli: Callable[..., Result], write_config: Callable[..., Path]) -> None:
    cfg = write_config("listen: [127.0.0.1\n")
    _assert_config_error(cli("serve", "-c", str(cfg)), "invalid YAML")


def test_real_process_exit_code(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(BAD)
    proc = subprocess.run(
        [sys.executable, "-m", "pgwarden.cli.main", "token", "issue", "-s", "x", "-c", str(cfg)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("pgwarden: config error in ")
    assert "targets.shop.port" in proc.stderr
