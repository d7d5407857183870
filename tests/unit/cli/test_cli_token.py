"""`pgwarden token issue`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from typer.testing import Result

from pgwarden.auth.local_issuer import LocalIssuer


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def test_issue_prints_one_token(
    cli: Callable[..., Result], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    cfg = write_config({"data_dir": str(data_dir)})
    result = cli("token", "issue", "--subject", "agent-7", "--groups", "agents,dba", "-c", str(cfg))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    token = lines[0]
    claims = _claims(token)
    assert claims["sub"] == "agent-7"
    assert claims["groups"] == ["agents", "dba"]
    assert claims["exp"] - claims["iat"] == 15 * 60
    # Signed with the key in the configured data_dir, which the gateway uses to verify.
    issuer = LocalIssuer.load_or_create(data_dir)
    verified = jwt.decode(
        token, issuer.public_key, algorithms=["EdDSA"], audience=LocalIssuer.AUDIENCE
    )
    assert verified["sub"] == "agent-7"


def test_groups_repeated_and_ttl(
    cli: Callable[..., Result], write_config: Callable[..., Path]
) -> None:
    cfg = write_config({"data_dir": "d"})
    result = cli(
        "token",
        "issue",
        "-s",
        "alice",
        "-g",
        "dba",
        "-g",
        "ops, dba",
        "--ttl",
        "1h",
        "-c",
        str(cfg),
    )
    assert result.exit_code == 0, result.output
    claims = _claims(result.stdout.strip())
    assert claims["groups"] == ["dba", "ops"]
    assert claims["exp"] - claims["iat"] == 3600


def test_no_groups(cli: Callable[..., Result]) -> None:
    result = cli("token", "issue", "-s", "bob")
    assert result.exit_code == 0, result.output
    assert _claims(result.stdout.strip())["groups"] == []
    assert Path("pgwarden-data").is_dir()  # the default data_dir, relative to cwd


def test_json_output(cli: Callable[..., Result]) -> None:
    result = cli("token", "issue", "-s", "bob", "-g", "x", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["subject"] == "bob" and doc["groups"] == ["x"]
    assert doc["expires_at"] == _claims(doc["token"])["exp"]


@pytest.mark.parametrize("ttl", ["forever", "0", "-5m"])
def test_bad_ttl(cli: Callable[..., Result], ttl: str) -> None:
    result = cli("token", "issue", "-s", "bob", "--ttl", ttl)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "--ttl" in result.stderr


def test_ttl_longer_than_allowed_warns(
    cli: Callable[..., Result], write_config: Callable[..., Path]
) -> None:
    cfg = write_config({"identity": {"max_token_ttl": "1h"}})
    result = cli("token", "issue", "-s", "bob", "--ttl", "2h", "-c", str(cfg))
    assert result.exit_code == 0
    assert "max_token_ttl" in result.stderr
    assert _claims(result.stdout.strip())["sub"] == "bob"


def test_subject_required(cli: Callable[..., Result]) -> None:
    result = cli("token", "issue")
    assert result.exit_code == 2
    assert result.stdout == ""
