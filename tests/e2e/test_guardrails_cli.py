"""``pgwarden policy explain``: the decision and why, as JSON, without running anything.

The config's targets are a real demo-shop database and a "trap": a TCP listener that only
counts connections. A plain explain must not connect to the target at all, and nothing it is
asked about may change the database; ``--estimate`` asks the real target for EXPLAIN estimates
(never executing) and still changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pgwarden.demo import load_shop
from pgwarden.devcluster import DevCluster

DBNAME = "guardrails_cli_shop"
OWNER = "guardrails_cli_app"
PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))


class Trap:
    """A listener on 127.0.0.1 that accepts, counts and closes every connection."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture(scope="module")
def cli_env(
    pg_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    password = f"cli-{secrets.token_hex(10)}"
    load_shop(pg_cluster, dbname=DBNAME, owner=OWNER, password=password)
    trap = Trap()
    base = tmp_path_factory.mktemp("guardrails-cli")
    cfg = base / "cfg.yaml"
    cfg.write_text(
        f"""\
listen: 127.0.0.1:0
api:
  listen: 127.0.0.1:0
data_dir: {base / "data"}
targets:
  shop:
    host: 127.0.0.1
    port: {pg_cluster.port}
    dbname: {DBNAME}
    user: {OWNER}
    password: ${{GR_CLI_SHOP_PASSWORD}}
    sslmode: disable
  trap:
    host: 127.0.0.1
    port: {trap.port}
    dbname: nothing
    user: nobody
    password: nothing
    sslmode: disable
policy: default
""",
        encoding="utf-8",
    )
    try:
        yield {"cfg": cfg, "trap": trap, "password": password, "cluster": pg_cluster}
    finally:
        trap.close()
        with contextlib.suppress(Exception):
            pg_cluster.drop_database(DBNAME)


def state(env: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Rows and schema of the shop, as the superuser sees them."""
    cluster: DevCluster = env["cluster"]
    return cluster.query(
        "SELECT 'orders', count(*), md5(string_agg(o::text, ',' ORDER BY o.id)) FROM orders o "
        "UNION ALL SELECT 'customers', count(*), md5(string_agg(c::text, ',' ORDER BY c.id)) "
        "FROM customers c "
        "UNION ALL SELECT 'products', count(*), md5(string_agg(p::text, ',' ORDER BY p.id)) "
        "FROM products p "
        "UNION ALL SELECT 'catalog', count(*), md5(string_agg(relname::text || relkind::text, ',' "
        "ORDER BY relname)) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
        dbname=DBNAME,
    )


def explain(env: dict[str, Any], *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [PGWARDEN, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GR_CLI_SHOP_PASSWORD": env["password"]},
        check=False,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


CASES = [
    ("DELETE FROM orders", "deny", "no-unfiltered-writes"),
    ("UPDATE orders SET amount = 0 WHERE 1 = 1", "deny", "no-unfiltered-writes"),
    ("TRUNCATE orders", "deny", "no-truncate"),
    ("SELECT 1; DROP TABLE orders", "deny", "no-drop-data"),
    ("DO $$ BEGIN EXECUTE format('DELETE FROM %I', 'orders'); END $$", "review", None),
    ("SET ROLE postgres", "review", "review-roles-and-privileges"),
    ("SELECT pg_terminate_backend(1)", "deny", "no-dangerous-functions"),
    ("DELET FROM orders", "deny", None),
    ("SELECT count(*) FROM orders", "allow", "allow-ordinary-work"),
    ("DELETE FROM orders WHERE id = 5", "allow", "allow-ordinary-work"),
]


def test_explain_prints_the_decision_and_why_without_connecting(cli_env: dict[str, Any]) -> None:
    trap: Trap = cli_env["trap"]
    cfg = str(cli_env["cfg"])
    before = state(cli_env)
    accepted = trap.accepted
    for i, (sql, decision, rule) in enumerate(CASES):
        # -c anywhere among the arguments
        where = i % 3
        args = ["policy", "explain", "--subject", "agent-7", "--target", "trap", sql]
        if where == 0:
            args = [*args, "-c", cfg]
        elif where == 1:
            args = ["-c", cfg, *args]
        else:
            args = ["policy", "-c", cfg, *args[1:]]
        doc = explain(cli_env, *args)
        assert doc["decision"] == decision, (sql, doc)
        if rule is not None:
            assert doc["rule"] == rule, (sql, doc)
        if decision != "allow":
            assert doc["rule"], (sql, doc)
        assert isinstance(doc["reason"], str) and doc["reason"], (sql, doc)
        assert doc["sql"] == sql
    assert trap.accepted == accepted, "a plain explain connected to the target"
    assert state(cli_env) == before


def test_explain_against_the_real_target_changes_nothing(cli_env: dict[str, Any]) -> None:
    cfg = str(cli_env["cfg"])
    before = state(cli_env)
    for sql in (
        "TRUNCATE orders, customers CASCADE",
        "DELETE FROM orders WHERE id = 5",
        "INSERT INTO orders (customer_id, amount, status) VALUES (1, 1, 'paid')",
    ):
        doc = explain(cli_env, "policy", "explain", "-s", "agent-7", "-t", "shop", sql, "-c", cfg)
        assert doc["decision"] in ("allow", "deny", "review"), doc
    assert state(cli_env) == before


def test_explain_with_groups(cli_env: dict[str, Any]) -> None:
    doc = explain(
        cli_env, "policy", "explain", "--subject", "agent-7", "--groups", "agents,dba",
        "--target", "trap", "SELECT 1", "-c", str(cli_env["cfg"]),
    )  # fmt: skip
    assert doc["decision"] == "allow"
    assert doc["identity"] == {"subject": "agent-7", "groups": ["agents", "dba"]}
    assert doc["target"] == "trap"


def test_explain_estimate_asks_for_a_plan_and_runs_nothing(cli_env: dict[str, Any]) -> None:
    cfg = str(cli_env["cfg"])
    before = state(cli_env)
    sql = "DELETE FROM orders WHERE id > 0"
    plain = explain(cli_env, "policy", "explain", "-s", "agent-7", "-t", "trap", sql, "-c", cfg)
    assert plain["needs_estimate"] is True
    assert plain["estimate_missing"] is True
    estimated = explain(
        cli_env, "policy", "explain", "-s", "agent-7", "-t", "shop", "--estimate", sql, "-c", cfg
    )
    assert estimated["decision"] == "review", estimated
    assert estimated["rule"] == "review-most-of-a-table", estimated
    assert state(cli_env) == before


def test_explain_estimate_of_a_write_by_key_is_one_row(cli_env: dict[str, Any]) -> None:
    cfg = str(cli_env["cfg"])
    before = state(cli_env)
    sql = "UPDATE orders SET amount = 0 WHERE id = 5; DELETE FROM orders WHERE id > 0; SELECT 1"
    doc = explain(
        cli_env, "policy", "explain", "-s", "agent-7", "-t", "shop", "--estimate", sql, "-c", cfg
    )
    first, second, third = doc["estimates"]
    assert first["rows"] == 1.0 and first["table_rows"] > 1, doc
    assert first["cascaded"] == 0.0  # an UPDATE; orders is referenced by nothing anyway
    assert second["rows"] > first["table_rows"] / 2, doc  # most of the table
    assert third is None
    assert [s["action"] for s in doc["statements"]] == ["allow", "review", "allow"]
    assert state(cli_env) == before
