"""Helpers for the HTTP API tests: a data_dir opened exactly as the gateway opens it (SQLite
index, recording files, signing key), sessions written by the project's own RecordingWriter
with index entries kept as the data path keeps them, and real tokens from a local issuer.
The fixtures are in conftest.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from pgwarden.api.app import create_app
from pgwarden.auth import LocalIssuer, TokenVerifier
from pgwarden.config import Config
from pgwarden.metrics import Metrics
from pgwarden.recording.access import RecordingAccess
from pgwarden.recording.crypto import RecordingCipher
from pgwarden.recording.events import (
    Column,
    ContextEvent,
    Decision,
    ResultBuilder,
    SessionStart,
    StatementEvent,
)
from pgwarden.recording.signing import RecordingSigner
from pgwarden.recording.storage import RecordingStorage, open_storage
from pgwarden.recording.writer import RecordingWriter
from pgwarden.store import SessionRecord, Store, open_store

# Who is who: auditors (group "auditors"), an admin ("admins"), an approver who is not an
# auditor ("dba"), and two agents.
PEOPLE: dict[str, tuple[str, ...]] = {
    "audrey": ("auditors",),
    "adam": ("admins",),
    "dora": ("dba",),
    "agent-7": ("agents",),
    "agent-9": ("agents",),
}

PROMPT = "find the customer who complained about order 42"


@dataclass
class Env:
    """One gateway's data_dir, opened as the gateway opens it."""

    data_dir: Path
    store: Store
    storage: RecordingStorage
    signer: RecordingSigner
    issuer: LocalIssuer
    config: Config
    cipher: RecordingCipher | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, data_dir: Path, cipher: RecordingCipher | None = None) -> Env:
        return cls(
            data_dir=data_dir,
            store=open_store(None, data_dir),
            storage=open_storage(None, data_dir),
            signer=RecordingSigner.load_or_create(data_dir),
            issuer=LocalIssuer.generate(),
            config=Config.model_validate({"data_dir": str(data_dir)}),
            cipher=cipher,
        )

    def close(self) -> None:
        self.storage.shutdown()
        self.store.close()

    @property
    def verifier(self) -> TokenVerifier:
        return TokenVerifier(local_issuer=self.issuer, oidc=[])

    def access(self, *, cipher: RecordingCipher | None = None) -> RecordingAccess:
        return RecordingAccess(self.store, self.storage, [self.signer.public_key], cipher)

    def client(
        self, *, metrics: Metrics | None = None, cipher: RecordingCipher | None = None
    ) -> ApiClient:
        app = create_app(
            verifier=self.verifier,
            config=self.config,
            recordings=self.access(cipher=cipher if cipher is not None else self.cipher),
            metrics=metrics,
        )
        return ApiClient(app)

    def token(self, name: str) -> str:
        if name not in self.tokens:
            self.tokens[name] = self.issuer.issue(name, PEOPLE[name], ttl_seconds=3600)
        return self.tokens[name]

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(name)}"}

    def recording_path(self, session_id: str) -> Path:
        return self.data_dir / "recordings" / f"{session_id}.jsonl"


class ApiClient:
    """A blocking client for the ASGI app in-process (httpx.ASGITransport): the app runs on
    a fresh event loop per request, as the blocking store calls run in its worker threads."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                return await c.get(path, headers=dict(headers or {}))

        return asyncio.run(call())


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Run:
    """One session being recorded the way the data path records it: index entry at start,
    events through RecordingWriter, progress at checkpoints, counts, clean end."""

    def __init__(
        self,
        env: Env,
        session_id: str,
        *,
        subject: str = "agent-7",
        target: str = "shop",
        at: float | None = None,
    ) -> None:
        self.env = env
        self.id = session_id
        self.clock = Clock(time.time() - 3600 if at is None else at)
        groups = PEOPLE.get(subject, ("agents",))
        env.store.create_session(
            SessionRecord(
                id=session_id,
                subject=subject,
                issuer=LocalIssuer.ISSUER,
                target=target,
                started_at=self.clock.now,
                groups=groups,
                client_addr="127.0.0.1:50432",
                application_name="agent-runner",
                gateway_instance="gw-1",
            )
        )
        self.writer = RecordingWriter(
            session_id,
            env.storage,
            env.signer,
            cipher=env.cipher,
            clock=self.clock,
            on_checkpoint=lambda w: env.store.record_progress(session_id, w.seq, w.hash),
        )
        self.writer.append(
            SessionStart(
                subject=subject,
                issuer=LocalIssuer.ISSUER,
                groups=groups,
                client_addr="127.0.0.1:50432",
                application_name="agent-runner",
                target=target,
                gateway_instance="gw-1",
                tls=True,
                claims={"sub": subject, "iss": LocalIssuer.ISSUER},
                token_id=f"jti-{session_id}",
                database_user="app",
            )
        )

    def set_prompt(self, prompt: str) -> None:
        self.clock.now += 0.1
        self.writer.append(
            ContextEvent(
                source="set", changes={"prompt": prompt}, context={"prompt": prompt}, actor=None
            )
        )

    def statement(
        self,
        sql: str,
        *,
        action: str = "allow",
        context: Mapping[str, Any] | None = None,
        masked: bool = False,
    ) -> int:
        self.clock.now += 0.1
        written = self.writer.append(
            StatementEvent(
                sql=sql,
                protocol="simple",
                decision=Decision(action, rule="reads" if action == "allow" else "guard"),
                classification={"kinds": ["select"]},
                context=dict(context or {}),
                context_sources={k: "set" for k in context or {}},
            )
        )
        outcome = {"allow": "allowed", "deny": "denied", "review": "reviewed"}[action]
        self.env.store.count_statement(self.id, outcome, masked=masked)  # type: ignore[arg-type]
        if action == "allow":
            builder = ResultBuilder(statement_seq=written.seq)
            builder.set_columns([Column("n", 23)])
            builder.add_row([b"1"])
            self.writer.append(builder.finish("SELECT 1"))
        return written.seq

    def end(self, reason: str = "client closed the connection") -> None:
        self.clock.now += 0.1
        final = self.writer.end_sync(reason)
        self.env.store.end_session(
            self.id,
            ended_at=self.clock.now,
            reason=reason,
            state="ended",
            last_seq=final.seq,
            last_hash=final.hash,
        )

    def crash(self) -> None:
        """The gateway dies mid-session: no session_end, the index still says active."""
        self.writer.close()


def record(
    env: Env,
    session_id: str,
    *,
    subject: str = "agent-7",
    target: str = "shop",
    at: float | None = None,
    prompt: str = PROMPT,
    action: str = "allow",
) -> Run:
    """A typical finished session: a prompt set, one statement, a clean end."""
    run = Run(env, session_id, subject=subject, target=target, at=at)
    run.set_prompt(prompt)
    run.statement("SELECT count(*) FROM orders", action=action, context={"prompt": prompt})
    run.end()
    return run
