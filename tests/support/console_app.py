"""The console in-process, for tests: a data_dir opened as the gateway opens it (SQLite index,
recording files, signing key), the console mounted on the real API app, real local-issuer
tokens, and a blocking browser-like client (cookies kept, redirects not followed) that drives
the ASGI app in-process."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from pgwarden.api.app import create_app
from pgwarden.approvals.service import ApprovalService
from pgwarden.auth import LocalIssuer, TokenVerifier
from pgwarden.config import Config
from pgwarden.console import console_router
from pgwarden.console.auth import OidcLogin
from pgwarden.policy import load_policy
from pgwarden.recording.access import RecordingAccess
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

# Who is who (groups as the default config reads them: api.auditors [auditors], api.admins
# [admins], approvals.approvers [dba]).
PEOPLE: dict[str, tuple[str, ...]] = {
    "audrey": ("auditors",),
    "adam": ("admins",),
    "dora": ("dba",),
    "agent-7": ("agents",),
}
PROMPT = "how many customers signed up this week?"


@dataclass
class Env:
    data_dir: Path
    store: Store
    storage: RecordingStorage
    signer: RecordingSigner
    issuer: LocalIssuer
    config: Config
    approvals: ApprovalService = field(init=False)

    def __post_init__(self) -> None:
        self.approvals = ApprovalService(self.store, self.config.approvals)

    @classmethod
    def open(cls, data_dir: Path, **config: Any) -> Env:
        doc: dict[str, Any] = {
            "data_dir": str(data_dir),
            "targets": {"shop": {"dbname": "shop", "user": "app"}},
            **config,
        }
        return cls(
            data_dir=data_dir,
            store=open_store(None, data_dir),
            storage=open_storage(None, data_dir),
            signer=RecordingSigner.load_or_create(data_dir),
            issuer=LocalIssuer.load_or_create(data_dir),
            config=Config.model_validate(doc),
        )

    def close(self) -> None:
        self.storage.shutdown()
        self.store.close()

    def app(self, *, oidc: OidcLogin | None = None) -> FastAPI:
        verifier = TokenVerifier(local_issuer=self.issuer, oidc=[])
        access = RecordingAccess(self.store, self.storage, [self.signer.public_key], None)
        console = console_router(
            self.config,
            access=access,
            policy=load_policy(self.config.policy),
            approvals=self.approvals,
            verifier=verifier,
            oidc=oidc,
        )
        return create_app(None, verifier, self.approvals, console=console)

    def token(self, name: str, groups: tuple[str, ...] | None = None) -> str:
        return self.issuer.issue(name, list(PEOPLE.get(name, ()) if groups is None else groups))

    def browser(self, *, oidc: OidcLogin | None = None) -> Browser:
        return Browser(self.app(oidc=oidc))

    def signed_in(self, name: str) -> Browser:
        browser = self.browser()
        browser.sign_in_with_token(self.token(name))
        return browser

    # ---- recordings, written as the data path writes them ---------------------------------

    def record_session(
        self,
        session_id: str,
        *,
        subject: str = "agent-7",
        prompt: str = PROMPT,
        sql: str = "SELECT count(*) FROM customers",
        action: str = "allow",
        at: float | None = None,
    ) -> None:
        now = [time.time() - 600 if at is None else at]

        def clock() -> float:
            now[0] += 0.1
            return now[0]

        groups = PEOPLE.get(subject, ())
        self.store.create_session(
            SessionRecord(
                id=session_id,
                subject=subject,
                issuer=LocalIssuer.ISSUER,
                target="shop",
                started_at=now[0],
                groups=groups,
                client_addr="127.0.0.1:50000",
                application_name="agent-runner",
            )
        )
        writer = RecordingWriter(
            session_id,
            self.storage,
            self.signer,
            clock=clock,
            on_checkpoint=lambda w: self.store.record_progress(session_id, w.seq, w.hash),
        )
        writer.append(
            SessionStart(
                subject=subject,
                issuer=LocalIssuer.ISSUER,
                groups=groups,
                client_addr="127.0.0.1:50000",
                application_name="agent-runner",
                target="shop",
                gateway_instance="gw-1",
                tls=False,
                claims={"sub": subject},
                token_id=None,
            )
        )
        writer.append(
            ContextEvent(source="set", changes={"prompt": prompt}, context={"prompt": prompt})
        )
        written = writer.append(
            StatementEvent(
                sql=sql,
                protocol="simple",
                decision=Decision(action, rule="allow-reads" if action == "allow" else "guard"),
                classification={"kinds": ["select"]},
                context={"prompt": prompt},
                context_sources={"prompt": "set"},
            )
        )
        outcome = {"allow": "allowed", "deny": "denied", "review": "reviewed"}[action]
        self.store.count_statement(session_id, outcome)  # type: ignore[arg-type]
        if action == "allow":
            builder = ResultBuilder(statement_seq=written.seq)
            builder.set_columns([Column("count", 20)])
            builder.add_row([b"42"])
            writer.append(builder.finish("SELECT 1"))
        final = writer.end_sync("client closed the connection")
        self.store.end_session(
            session_id,
            ended_at=now[0],
            reason="client closed the connection",
            last_seq=final.seq,
            last_hash=final.hash,
        )

    def recording_path(self, session_id: str) -> Path:
        return self.data_dir / "recordings" / f"{session_id}.jsonl"


class Browser:
    """Cookies kept between requests, redirects returned (so tests see where they point)."""

    def __init__(self, app: FastAPI, base_url: str = "http://testserver") -> None:
        self.app = app
        self.base_url = base_url
        self.cookies = httpx.Cookies()

    def request(
        self, method: str, url: str, *, data: Mapping[str, str] | None = None
    ) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(
                transport=transport, base_url=self.base_url, cookies=self.cookies
            ) as client:
                response = await client.request(method, url, data=data)
                self.cookies = client.cookies
                return response

        return asyncio.run(call())

    def get(self, url: str) -> httpx.Response:
        return self.request("GET", url)

    def post(self, url: str, data: Mapping[str, str]) -> httpx.Response:
        return self.request("POST", url, data=data)

    def sign_in_with_token(self, token: str, next_url: str = "/console") -> httpx.Response:
        page = self.get(f"/console/login?next={next_url}")
        response = self.post(
            "/console/login/token",
            {"csrf": form_value(page.text, "csrf"), "token": token, "next": next_url},
        )
        assert response.status_code == 303, response.text
        return response


def form_value(html: str, name: str) -> str:
    found = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', html)
    assert found, f"no {name} field in the page"
    return found.group(1)
