"""Fixtures for the masking tests: one demo-shop database behind one gateway with the default
masking, shared by every module here (see masking_support)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pgwarden.devcluster import DevCluster
from tests.e2e.masking.masking_support import MaskEnv


@pytest.fixture(scope="session")
def mask_env(pg_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MaskEnv]:
    env = MaskEnv(pg_cluster, tmp_path_factory.mktemp("masking-gateway"))
    try:
        yield env
    finally:
        env.close()
