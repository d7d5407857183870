"""Acceptance: asyncpg's own test suite, run directly and through the gateway (allow-all):
every test that passes directly must pass through the gateway.

The work is done by scripts/client_suite.py (it downloads the suite of the installed asyncpg
version once into .cache/client-suite, starts its own PostgreSQL clusters and gateway, and
prints a comparison). It takes a few minutes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "client_suite.py"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_asyncpg_suite_passes_through_the_gateway(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--work-dir", str(tmp_path / "client-suite")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1700,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, (
        f"scripts/client_suite.py exited {result.returncode}:\n{output[-20000:]}"
    )
    assert "client-suite: OK" in output, output[-5000:]
