"""Fixtures for the integration tests: a real PostgreSQL and the gateway in-process."""

from tests.support.fixtures import (  # noqa: F401 - fixtures
    gateway,
    make_gateway,
    pg_cluster,
    plain_pg,
    plain_shop,
    shop,
    shop_md5,
    shop_trust,
    tls_pg,
    tls_shop,
    unique,
)
