"""Helpers for the approvals tests: real identities (tokens from a LocalIssuer, verified by
the TokenVerifier), a fake clock, a webhook receiver on 127.0.0.1, and the API served by
uvicorn on 127.0.0.1 in a thread. The fixtures are in conftest.py."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn
from fastapi import FastAPI

from pgwarden.auth import Identity, LocalIssuer, TokenVerifier

# Who is who in these tests. agent-7 asks; alice, bob and carol approve (group dba);
# mallory is a developer, not an approver.
PEOPLE: dict[str, tuple[str, ...]] = {
    "agent-7": ("agents",),
    "alice": ("dba",),
    "bob": ("dba", "dev"),
    "carol": ("dba",),
    "mallory": ("dev",),
    "Mallory": ("dev",),
    "dave-wronggroup": ("DBA",),  # group names are case-sensitive: not an approver
    # spellings of agent-7 in the approver group: must never approve agent-7's statements
    "Agent-7": ("dba",),
    "AGENT-7": ("dba",),
    " agent-7 ": ("dba",),
    "\uff41\uff47\uff45\uff4e\uff54-7": ("dba",),  # fullwidth "agent"-7
    "agent\u200b-7": ("dba",),  # with a zero-width space
    # agent-7 itself, holding a token that puts it into the approver group
    "agent-7@dba": ("dba",),
}


@dataclass
class Auth:
    issuer: LocalIssuer
    verifier: TokenVerifier
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, name: str) -> str:
        if name not in self.tokens:
            subject = "agent-7" if name == "agent-7@dba" else name
            self.tokens[name] = self.issuer.issue(subject, PEOPLE[name], ttl_seconds=3600)
        return self.tokens[name]

    def identity(self, name: str) -> Identity:
        """A real identity: the person's token, verified (call outside a running loop)."""
        return asyncio.run(self.verifier.identify(self.token(name)))


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------------------------
# a webhook receiver


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST; ``statuses`` is the list of
    status codes to answer with, in order (then 200)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.statuses: list[int] = []
        self.delay = 0.0
        self.got = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver.got:
                    receiver.requests.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.got.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.got:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"got {len(self.requests)} webhook(s), wanted {count}")
                self.got.wait(left)
            return list(self.requests)


def closed_port() -> int:
    """A loopback port with nothing listening on it (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------------------------
# the API on a real socket


class ApiServer:
    """``create_app(...)`` served by uvicorn on 127.0.0.1:<free port> in a thread."""

    def __init__(self, app: FastAPI) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        )
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ApiServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
