"""Fixtures for the approvals tests (helpers in approvals_helpers.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from approvals_helpers import PEOPLE, Auth, FakeClock, Receiver

from pgwarden.approvals import ApprovalService
from pgwarden.auth import Identity, LocalIssuer, TokenVerifier
from pgwarden.config import ApprovalsConfig
from pgwarden.store import SqliteStore


@pytest.fixture
def auth() -> Auth:
    issuer = LocalIssuer.generate()
    return Auth(issuer, TokenVerifier(local_issuer=issuer, oidc=[]))


@pytest.fixture
def people(auth: Auth) -> dict[str, Identity]:
    return {name: auth.identity(name) for name in PEOPLE}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "pgwarden.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(db_path)
    yield s
    s.close()


@pytest.fixture
def make_service(store: SqliteStore) -> Callable[..., ApprovalService]:
    """``make_service(timeout=..., min_approvals=..., notify=[...], clock=..., ...)``."""

    def make(
        *,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 5.0,
        console_url: str | None = "https://console.example/",
        the_store: Any = None,
        **config: Any,
    ) -> ApprovalService:
        return ApprovalService(
            the_store if the_store is not None else store,
            ApprovalsConfig.model_validate({"approvers": ["dba"], **config}),
            console_url=console_url,
            clock=clock,
            poll_interval=poll_interval,
        )

    return make


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()
