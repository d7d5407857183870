"""Fixtures for the guardrail tests: one demo-shop database behind one gateway with the
built-in default policy, shared by every module here (see guardrails_support)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pgwarden.devcluster import DevCluster
from tests.e2e.guardrails.guardrails_support import GuardEnv


@pytest.fixture(scope="session")
def guard_env(
    pg_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GuardEnv]:
    env = GuardEnv(pg_cluster, tmp_path_factory.mktemp("guardrails-gateway"))
    try:
        yield env
    finally:
        env.close()


@pytest.fixture
def guard(guard_env: GuardEnv) -> GuardEnv:
    """The environment, with the database as loaded (restored if an earlier test changed it)."""
    guard_env.ensure_pristine()
    return guard_env


@pytest.fixture
def before(guard: GuardEnv) -> dict[str, Any]:
    """The fingerprint of the database just before the test's statements run."""
    return guard.baseline
