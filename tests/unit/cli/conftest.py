"""Helpers for the CLI tests: run `pgwarden` in-process and write config files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from pgwarden.cli.main import app


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Result]:
    """`cli("token", "issue", ...)` runs the CLI in-process (cwd = tmp_path, no
    $PGWARDEN_CONFIG) and returns the result with separate stdout and stderr."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PGWARDEN_CONFIG", raising=False)
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, list(args), env=env, catch_exceptions=False)

    return run


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """`write_config(doc_or_text, name="pgwarden.yaml")` -> path."""

    def write(content: dict[str, Any] | str, name: str = "pgwarden.yaml") -> Path:
        path = tmp_path / name
        text = content if isinstance(content, str) else yaml.safe_dump(content)
        path.write_text(text)
        return path

    return write
