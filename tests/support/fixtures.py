"""pytest fixtures shared by tests/integration and tests/e2e (imported by their conftests).

- ``pg_cluster``: the session's PostgreSQL (the root conftest's ``pg``, or one started here).
- ``shop`` / ``shop_md5`` / ``shop_trust``: database ``shop`` on it, reached as role ``app``
  (scram-sha-256), ``app_md5`` (md5) or ``app_trust`` (trust).
- ``tls_pg`` / ``tls_shop``: a cluster with server TLS (CA at ``tls_pg.ca_path``).
- ``plain_pg`` / ``plain_shop``: a cluster without TLS.
- ``gateway``: a module-wide RunningGateway with targets shop, shop_md5 and shop_trust.
- ``make_gateway(...)``: a gateway with custom config for one test.
- ``unique``: a fresh lower-case identifier per call, for per-test tables.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from pgwarden.devcluster import DevCluster
from tests.support.databases import TargetDb, ensure_database, ensure_role, grant_usage
from tests.support.gateway import RunningGateway, gateway_config

SHOP_DB = "shop"

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster(request: pytest.FixtureRequest) -> Iterator[DevCluster]:
    """The root conftest's session cluster (``pg``) if there is one, else our own."""
    try:
        cluster: DevCluster = request.getfixturevalue("pg")
    except pytest.FixtureLookupError:
        cluster = DevCluster()
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
        return
    yield cluster


def _shop_on(cluster: DevCluster) -> TargetDb:
    user, password = ensure_role(cluster, "app", auth="scram-sha-256")
    ensure_database(cluster, SHOP_DB, owner=user)
    return TargetDb(cluster, SHOP_DB, user, password, "scram-sha-256")


@pytest.fixture(scope="session")
def shop(pg_cluster: DevCluster) -> TargetDb:
    """Database ``shop`` owned by role ``app`` (scram-sha-256) on the session cluster."""
    return _shop_on(pg_cluster)


@pytest.fixture(scope="session")
def shop_md5(shop: TargetDb) -> TargetDb:
    cluster = shop.cluster
    user, password = ensure_role(cluster, "app_md5", auth="md5")
    grant_usage(cluster, shop.dbname, [user])
    return TargetDb(cluster, shop.dbname, user, password, "md5")


@pytest.fixture(scope="session")
def shop_trust(shop: TargetDb) -> TargetDb:
    cluster = shop.cluster
    user, _ = ensure_role(cluster, "app_trust", auth="trust")
    grant_usage(cluster, shop.dbname, [user])
    return TargetDb(cluster, shop.dbname, user, None, "trust")


@pytest.fixture(scope="session")
def tls_pg(pg_cluster: DevCluster) -> Iterator[DevCluster]:
    """A cluster with server TLS (certificate for localhost, 127.0.0.1 and ::1; CA at
    ``ca_path``): the session cluster when it has TLS on, else a second one."""
    if pg_cluster.ssl:
        yield pg_cluster
        return
    cluster = DevCluster(ssl=True)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def plain_pg(pg_cluster: DevCluster) -> Iterator[DevCluster]:
    """A cluster without TLS: the session cluster when it has TLS off, else a second one."""
    if not pg_cluster.ssl:
        yield pg_cluster
        return
    cluster = DevCluster(ssl=False)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def plain_shop(plain_pg: DevCluster) -> TargetDb:
    return _shop_on(plain_pg)


@pytest.fixture(scope="session")
def tls_shop(tls_pg: DevCluster) -> TargetDb:
    return _shop_on(tls_pg)


def default_targets(shop: TargetDb, shop_md5: TargetDb, shop_trust: TargetDb) -> dict[str, Any]:
    return {
        "shop": shop.target(),
        "shop_md5": shop_md5.target(),
        "shop_trust": shop_trust.target(),
    }


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    shop: TargetDb,
    shop_md5: TargetDb,
    shop_trust: TargetDb,
) -> Iterator[RunningGateway]:
    """One gateway for the whole test module, with targets shop, shop_md5 and shop_trust."""
    data_dir = tmp_path_factory.mktemp("gateway")
    cfg = gateway_config(data_dir, targets=default_targets(shop, shop_md5, shop_trust))
    with RunningGateway(cfg) as gw:
        yield gw


MakeGateway = Callable[..., RunningGateway]


@pytest.fixture
def make_gateway(
    tmp_path: Path,
    shop: TargetDb,
    shop_md5: TargetDb,
    shop_trust: TargetDb,
) -> Iterator[MakeGateway]:
    """``make_gateway(targets=None, data_dir=None, **config_overrides)``: a started gateway
    with custom configuration (stopped after the test). Overrides are merged into the
    config document, e.g. ``make_gateway(tls={"require": True}, auth_timeout=1)``."""
    started: list[RunningGateway] = []

    def make(
        *,
        targets: Mapping[str, Mapping[str, Any]] | None = None,
        data_dir: Path | None = None,
        **overrides: Any,
    ) -> RunningGateway:
        if targets is None:
            targets = default_targets(shop, shop_md5, shop_trust)
        if data_dir is None:
            data_dir = tmp_path / f"gw{len(started)}"
        gw = RunningGateway(gateway_config(data_dir, targets=targets, **overrides))
        gw.start()
        started.append(gw)
        return gw

    yield make
    for gw in reversed(started):
        with contextlib.suppress(Exception):
            gw.stop()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """``unique("t")`` -> a fresh identifier like ``t_3_9f2c1a``."""

    def make(prefix: str = "t") -> str:
        return f"{prefix}_{next(_counter)}_{secrets.token_hex(3)}"

    return make
