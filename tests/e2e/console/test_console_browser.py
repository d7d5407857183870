"""The web console in a real browser (headless Chromium), against a real gateway, a real
PostgreSQL and a real OpenID Connect provider: sign in through the provider, find a session a
psycopg client recorded, step through its replay, approve a held statement by clicking while
the client waits (and see it continue), and what a non-approver and a signed-out browser get."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.approvals.approvals_support import Background
from tests.e2e.console.console_support import (
    ConsoleEnv,
    assert_assets_local,
    screenshot,
    sign_in,
)

pytest_plugins = ["oidc_fixture"]

PROMPT = "count the customers for the weekly report"


def test_console_signed_out_goes_to_sign_in(console: ConsoleEnv, page: Page) -> None:
    page.goto(console.url + "/console")
    expect(page).to_have_url(console.url + "/console/login?next=/console")
    expect(page.locator("#oidc-sign-in")).to_have_text(
        f"Sign in with 127.0.0.1:{console.provider.port}"
    )
    assert_assets_local(page, console.url)
    page.goto(console.url + "/console/sessions?subject=x")
    expect(page).to_have_url(re.compile(r"/console/login\?next=/console/sessions%3Fsubject%3Dx"))


def test_console_find_a_session_and_replay_it(
    console: ConsoleEnv, page: Page, tmp_path: Path
) -> None:
    # an agent works through the gateway with a real client
    with console.connect("agent-7") as conn:
        conn.execute(f"SET pgwarden.prompt = '{PROMPT}'")
        count = conn.execute("SELECT count(*) FROM customers").fetchone()
        conn.execute("SELECT name, email FROM customers ORDER BY id LIMIT 3").fetchall()
        row = conn.execute("SHOW pgwarden.session_id").fetchone()
    assert count is not None and row is not None
    session_id = row[0]
    console.wait_ended(session_id)

    sign_in(page, console, "dana")
    expect(page).to_have_url(console.url + "/console/sessions")
    page.fill('input[name="subject"]', "agent-7")
    page.click('button:has-text("Filter")')
    link = page.locator(f'a.session-link[href="/console/sessions/{session_id}"]')
    expect(link).to_be_visible()
    assert_assets_local(page, console.url)
    screenshot(page, "console-sessions.png", tmp_path)

    link.click()
    expect(page.locator("#verify-badge")).to_have_text("✔ intact")
    controls = page.locator("#replay-controls")
    expect(controls).to_be_visible()
    position = page.locator("#replay-position")
    steps = page.locator("ol.timeline > li.step")
    total = steps.count()
    expect(position).to_have_text(f"step 1 of {total}")
    current = page.locator("li.step.current")
    expect(current).to_contain_text("Session started")

    # step forward to the agent's first query: its prompt, SQL, decision and result
    next_button = controls.locator('[data-act="next"]')
    for _ in range(total):
        if "SELECT count(*) FROM customers" in current.inner_text():
            break
        next_button.click()
    expect(current).to_contain_text(PROMPT)
    expect(current).to_contain_text("SELECT count(*) FROM customers")
    expect(current.locator(".decision")).to_contain_text("allowed")
    expect(current.locator("table.rows td").first).to_have_text(str(count[0]))
    # later steps are hidden until reached
    assert page.locator("li.step.future").first.is_hidden()
    next_button.click()
    expect(current).to_contain_text("SELECT name, email FROM customers")
    expect(current).to_contain_text("masked")
    with console.admin() as admin:  # the real e-mails never reach the page
        emails = [r[0] for r in admin.execute("SELECT email FROM customers").fetchall()]
    shown = current.locator("table.rows").inner_text()
    assert emails and not [e for e in emails if e in shown]
    page.locator('[data-act="prev"]').click()
    expect(current).to_contain_text(PROMPT)
    screenshot(page, "console-replay.png", tmp_path, full_page=True)

    # play to the end
    page.locator('[data-act="play"]').click()
    expect(position).to_have_text(f"step {total} of {total}", timeout=total * 1500 + 5000)
    expect(current).to_contain_text("Session ended")
    expect(page.locator('[data-act="play"]')).to_have_text("▶ Play")


def _alter(console: ConsoleEnv, user: str, table: str) -> object:
    with console.connect(user) as conn:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN note text")
        return conn.execute("SELECT 1").fetchone()


def test_console_approve_held_statement_while_client_waits(
    console: ConsoleEnv, page: Page, tmp_path: Path
) -> None:
    table = console.scratch_table()
    client = Background(lambda: _alter(console, "agent-9", table))
    pending = console.wait_pending(table)
    assert not client.done

    sign_in(page, console, "dana", "/console/approvals")
    expect(page).to_have_url(console.url + "/console/approvals")
    card = page.locator(f'article[data-approval="{pending.id}"]')
    expect(card).to_contain_text(f"ALTER TABLE {table} ADD COLUMN note text")
    expect(card).to_contain_text("agent-9")
    card.locator("textarea").fill("planned: adds the note column")
    screenshot(page, "console-approvals.png", tmp_path)
    assert not client.done, "the statement ran before anyone approved it"
    assert console.columns(table) == ["id"]

    card.locator('button:has-text("Approve")').click()
    expect(page).to_have_url(re.compile(rf"/console/approvals/{pending.id}\?done=approve"))
    expect(page.locator("[role=status]")).to_contain_text("the statement runs now")
    # the waiting client continues with the database's own reply
    assert client.result(30) == (1,)
    assert console.columns(table) == ["id", "note"]
    expect(page.locator(".votes")).to_contain_text("dana")


def test_console_non_approver_cannot_approve(console: ConsoleEnv, page: Page) -> None:
    table = console.scratch_table()
    errors: list[str] = []

    def run() -> object:
        try:
            return _alter(console, "agent-9", table)
        except psycopg.Error as exc:
            errors.append(f"{exc.sqlstate}: {exc}")
            raise

    client = Background(run)
    pending = console.wait_pending(table)

    # an auditor sees the request, without buttons; a forged POST is refused
    sign_in(page, console, "audrey", "/console/approvals")
    card = page.locator(f'article[data-approval="{pending.id}"]')
    expect(card).to_contain_text(table)
    expect(card.locator("button")).to_have_count(0)
    csrf = page.locator('input[name="csrf"]').first.get_attribute("value")
    assert csrf
    forged = page.request.post(
        f"{console.url}/console/approvals/{pending.id}/decide",
        form={"csrf": csrf, "decision": "approve", "reason": "me"},
        max_redirects=0,
    )
    assert forged.status == 403
    assert "approver groups" in forged.text()
    assert not client.done

    # an approver denies it (a reason is required), and the client gets 42501 with it
    other = page.context.browser.new_context()  # type: ignore[union-attr]
    try:
        approver = other.new_page()
        sign_in(approver, console, "dana", f"/console/approvals/{pending.id}")
        approver.locator('button:has-text("Deny")').click()
        expect(approver.locator("p.error")).to_contain_text("say why")
        approver.locator("textarea").fill("not during business hours")
        approver.locator('button:has-text("Deny")').click()
        expect(approver).to_have_url(re.compile(r"done=deny"))
    finally:
        other.close()
    with pytest.raises(psycopg.Error):
        client.result(30)
    assert errors and errors[0].startswith("42501")
    assert "not during business hours" in errors[0]
    assert console.columns(table) == ["id"]


def test_console_policy_page_for_admins(console: ConsoleEnv, page: Page) -> None:
    sign_in(page, console, "adam", "/console/policy")
    expect(page).to_have_url(console.url + "/console/policy")
    page.fill("#sql", "DELETE FROM customers")
    page.click('button:has-text("Explain")')
    explanation = page.locator("#explanation")
    expect(explanation).to_contain_text("denied")
    expect(explanation).to_contain_text("DELETE FROM customers")
    assert_assets_local(page, console.url)

    auditor = page.context.browser.new_context()  # type: ignore[union-attr]
    try:
        other = auditor.new_page()
        sign_in(other, console, "audrey", "/console/sessions")
        response = other.goto(console.url + "/console/policy")
        assert response is not None and response.status == 403
        expect(other.locator("h1")).to_have_text("Not for your role")
        expect(other.locator("nav")).not_to_contain_text("Policy")
    finally:
        auditor.close()
