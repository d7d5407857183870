"""Fixtures for the HTTP API tests (helpers in api_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import Env


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env.open(tmp_path / "data")
    yield e
    e.close()
