"""The console tests' world: a demo-shop database behind a real gateway (default policy: schema
changes held for review; approvers in group ``dba``) whose first OIDC issuer is a real OpenID
Connect provider (oidc-provider-mock on loopback) that the console signs people in through,
and a headless Chromium (Debian's ``chromium`` package) driven by Playwright.

People at the provider (their groups give their console roles):
  dana  auditors + dba   reads sessions, approves
  audrey auditors        reads sessions, may not approve
  adam  admins           everything an auditor sees, plus the policy page
Agents connect with local-issuer tokens, as agents do."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from playwright.sync_api import Page, expect

from pgwarden.demo import load_shop
from pgwarden.devcluster import DevCluster
from pgwarden.store.base import ApprovalRecord
from tests.support.databases import TargetDb, create_scratch_table, table_columns
from tests.support.gateway import RunningGateway, gateway_config

CHROMIUM = "/usr/bin/chromium"  # Debian's package (make setup installs it); never downloaded
DBNAME = "console_shop"
OWNER = "console_owner"
TARGET = "shop"
CLIENT_ID = "pgwarden-console"
CLIENT_SECRET = "console-" + secrets.token_hex(8)
PEOPLE: dict[str, list[str]] = {
    "dana": ["auditors", "dba"],
    "audrey": ["auditors"],
    "adam": ["admins"],
}
SCREENSHOTS_ENV = "PGWARDEN_SCREENSHOTS"


@dataclass
class ConsoleEnv:
    cluster: DevCluster
    data_dir: Path
    provider: Any  # oidc_fixture.OidcProvider
    password: str = field(default_factory=lambda: f"cs-{secrets.token_hex(12)}")

    def __post_init__(self) -> None:
        load_shop(self.cluster, dbname=DBNAME, owner=OWNER, password=self.password)
        self.db = TargetDb(self.cluster, DBNAME, OWNER, self.password, "scram-sha-256")
        for sub, groups in PEOPLE.items():
            self.provider.set_user(sub, {"groups": groups, "email": f"{sub}@example.com"})
        self.gw = RunningGateway(
            gateway_config(
                self.data_dir,
                targets={TARGET: self.db.target()},
                policy="default",
                identity={
                    "oidc": [
                        {
                            "issuer": self.provider.issuer,
                            "audience": "pgwarden",
                            "client_id": CLIENT_ID,
                            "client_secret": CLIENT_SECRET,
                        }
                    ]
                },
                approvals={"timeout": "60s", "approvers": ["dba"]},
            )
        ).start()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.gw.stop()

    @property
    def url(self) -> str:
        return self.gw.api_url

    # ---- the database side -----------------------------------------------------------------

    def connect(self, user: str) -> psycopg.Connection[Any]:
        return psycopg.connect(self.gw.dsn(user, TARGET), autocommit=True)

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.cluster.admin_dsn(DBNAME), autocommit=True)

    def scratch_table(self) -> str:
        return create_scratch_table(self.cluster.admin_dsn(DBNAME), OWNER)

    def columns(self, table: str) -> list[str]:
        return table_columns(self.cluster.admin_dsn(DBNAME), table)

    # ---- the control plane, read as the gateway stores it ----------------------------------

    def wait_pending(self, sql_part: str, timeout: float = 15) -> ApprovalRecord:
        store = self.gw.server.recording.store  # type: ignore[union-attr]
        return wait_for(
            lambda: next(
                (a for a in store.list_approvals(state="pending") if sql_part in a.sql), None
            ),
            timeout,
            f"a pending approval for {sql_part!r}",
        )

    def wait_ended(self, session_id: str, timeout: float = 15) -> None:
        store = self.gw.server.recording.store  # type: ignore[union-attr]

        def ended() -> bool | None:
            row = store.get_session(session_id)
            return True if row is not None and row.state == "ended" else None

        wait_for(ended, timeout, f"session {session_id} to end")


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ---- the browser side ------------------------------------------------------------------------


def sign_in(page: Page, env: ConsoleEnv, sub: str, start: str = "/console") -> None:
    """What a person does: open the console, get sent to sign-in, click the provider's
    button, name themselves on the provider's page, come back signed in."""
    page.goto(env.url + start)
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.click("#oidc-sign-in")
    expect(page).to_have_url(re.compile(re.escape(env.provider.issuer) + "/oauth2/authorize"))
    page.fill('input[name="sub"]', sub)
    page.click('button:has-text("Authorize")')
    expect(page.locator(".who .subject")).to_have_text(sub)
    assert page.url.startswith(env.url + "/console"), page.url


def assert_assets_local(page: Page, origin: str) -> None:
    """Everything the page loaded came from the gateway itself (no CDN)."""
    loaded = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded, "the page loaded no stylesheet or script"
    foreign = [u for u in loaded if not u.startswith(origin + "/console/static/")]
    assert not foreign, foreign


def screenshot(page: Page, name: str, fallback_dir: Path, *, full_page: bool = False) -> Path:
    """Save a screenshot: into $PGWARDEN_SCREENSHOTS when set (the README's images are made
    this way), else next to the test's other temporary files."""
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or fallback_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 10_000, "the screenshot looks empty"
    return path
