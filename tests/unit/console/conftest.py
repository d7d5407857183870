"""Fixtures for the console tests (helpers in tests/support/console_app.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.console_app import Env


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env.open(tmp_path / "data")
    yield e
    e.close()
