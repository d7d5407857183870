"""Shared fixtures.

- `pg` (session): one throwaway PostgreSQL for the whole run, a started DevCluster with
  log_statement=all and server TLS (`pg.ca_path` works for verify-full). Started on first
  use only, so unit-only runs never start a server.
- `pg_factory`: start extra clusters (own settings, restarts, stops), torn down after the test.
- `demo_shop` (session): the demo shop data loaded into `pg` as database `demo_shop` owned
  by role `demo_app` (apart from the `shop`/`app` that tests/support/fixtures.py sets up).

When a test fails, its report gets a "postgres log" section for every running cluster that
logged something during the test.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from pgwarden.demo import ShopDatabase, load_shop
from pgwarden.devcluster import DevCluster, running_clusters

_LOG_LIMIT = 20_000
_positions_key = pytest.StashKey[dict[int, int]]()


@pytest.fixture(scope="session")
def pg() -> Iterator[DevCluster]:
    """The session's PostgreSQL (a started DevCluster)."""
    cluster = DevCluster(log_statement="all", ssl=True)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_factory() -> Generator[Callable[..., DevCluster]]:
    """`pg_factory(**DevCluster kwargs)` starts a fresh cluster, stopped after the test."""
    started: list[DevCluster] = []

    def make(**kwargs: Any) -> DevCluster:
        cluster = DevCluster(**kwargs)
        started.append(cluster)
        cluster.start()
        return cluster

    yield make
    for cluster in reversed(started):
        cluster.stop()


@pytest.fixture(scope="session")
def demo_shop(pg: DevCluster) -> ShopDatabase:
    """The demo shop data (customers, products, orders) in database `demo_shop`, owned by
    role `demo_app`. Loaded once per session: do not change its data."""
    return load_shop(pg, dbname="demo_shop", owner="demo_app")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None]:
    item.stash[_positions_key] = {id(c): c.log_position() for c in running_clusters()}
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        positions = item.stash.get(_positions_key, {})
        for cluster in running_clusters():
            text = cluster.log_text(since=positions.get(id(cluster), 0))
            if not text:
                continue
            if len(text) > _LOG_LIMIT:
                text = "... (truncated)\n" + text[-_LOG_LIMIT:]
            report.sections.append((f"postgres log {cluster.host}:{cluster.port}", text))
    return report
