"""Fixtures for the end-to-end tests: real clients (psql, psycopg, asyncpg, pgbench) through
the gateway, in-process, in front of a real PostgreSQL."""

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
