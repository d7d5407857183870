"""The approvals tests' environment: a demo-shop database behind a gateway with the default
policy (schema changes held for review), approver group ``dba``, a short timeout, and a
webhook receiver on loopback that checks every request's signature."""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg

from pgwarden.approvals import verify_signature
from pgwarden.demo import load_shop
from pgwarden.devcluster import DevCluster
from tests.support.databases import TargetDb, create_scratch_table, table_columns
from tests.support.gateway import RunningGateway, gateway_config

DBNAME = "approvals_shop"
OWNER = "approvals_owner"
TARGET = "shop"
WEBHOOK_SECRET = "whsec-" + secrets.token_hex(16)


class Receiver:
    """A loopback HTTP server that keeps every webhook it receives."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(
                    {"path": self.path, "headers": dict(self.headers.items()), "body": body}
                )
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()


@dataclass
class ApprovalEnv:
    cluster: DevCluster
    data_dir: Path
    password: str = field(default_factory=lambda: f"ap-{secrets.token_hex(12)}")

    def __post_init__(self) -> None:
        load_shop(self.cluster, dbname=DBNAME, owner=OWNER, password=self.password)
        self.db = TargetDb(self.cluster, DBNAME, OWNER, self.password, "scram-sha-256")
        self.receiver = Receiver()
        self.gw = RunningGateway(
            gateway_config(
                self.data_dir,
                targets={TARGET: self.db.target()},
                policy="default",
                approvals={
                    "timeout": "20s",
                    "approvers": ["dba"],
                    "notify": [
                        {"url": self.receiver.url("/json"), "secret": WEBHOOK_SECRET},
                        {"url": self.receiver.url("/slack"), "format": "slack"},
                    ],
                },
            )
        ).start()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.gw.stop()
        self.receiver.close()

    # ---- helpers -------------------------------------------------------------------------------

    def dsn(self, user: str, groups: tuple[str, ...] = ()) -> str:
        return self.gw.dsn(user, TARGET, groups=groups)

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.cluster.admin_dsn(DBNAME), autocommit=True)

    def scratch_table(self) -> str:
        return create_scratch_table(self.cluster.admin_dsn(DBNAME), OWNER)

    def columns(self, table: str) -> list[str]:
        return table_columns(self.cluster.admin_dsn(DBNAME), table)

    def api(self, user: str, groups: tuple[str, ...] = ()) -> httpx.Client:
        token = self.gw.token(user, groups)
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.gw.api_port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )

    def wait_pending(self, sql_part: str, timeout: float = 10) -> dict[str, Any]:
        with self.api("watcher", ("dba",)) as api:
            deadline = time.time() + timeout
            while time.time() < deadline:
                for a in api.get("/api/v1/approvals", params={"state": "pending"}).json():
                    if sql_part in a["sql"]:
                        return dict(a)
                time.sleep(0.05)
        raise AssertionError(f"no pending approval for {sql_part!r}")

    def webhooks_for(self, approval_id: str) -> list[dict[str, Any]]:
        return [w for w in self.receiver.received if approval_id.encode() in w["body"]]


class Background:
    """Run ``fn`` in a thread; ``result()`` re-raises its exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._result: Any = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._result = fn()
            except BaseException as exc:
                self._error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self, timeout: float = 30) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the client is still waiting"
        if self._error is not None:
            raise self._error
        return self._result

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()


def signed_ok(hook: dict[str, Any]) -> bool:
    headers = {k.lower(): v for k, v in hook["headers"].items()}
    return verify_signature(
        WEBHOOK_SECRET,
        headers.get("x-pgwarden-timestamp", ""),
        hook["body"],
        headers.get("x-pgwarden-signature", ""),
    )


def body(hook: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(hook["body"]))


@contextlib.contextmanager
def notices(conn: psycopg.Connection[Any]) -> Iterator[list[str]]:
    seen: list[str] = []
    conn.add_notice_handler(lambda d: seen.append(d.message_primary or ""))
    yield seen
