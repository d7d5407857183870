"""The console's pages over the real API app, a real SQLite index, recordings written by the
project's RecordingWriter, the real ApprovalService, and people signed in with local-issuer
tokens (the OIDC sign-in has its own tests against a real provider)."""

from __future__ import annotations

import asyncio
import re
import time

from pgwarden.auth import Identity, LocalIssuer
from pgwarden.store.base import ApprovalRecord
from tests.support.console_app import PROMPT, Env, form_value


def test_signed_out_pages_redirect_to_sign_in(env: Env) -> None:
    browser = env.browser()
    for path in ("/console", "/console/sessions", "/console/approvals", "/console/policy"):
        response = browser.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/console/login?next=/console")
    page = browser.get("/console/login")
    assert page.status_code == 200
    assert "No identity provider is configured" in page.text
    assert "Sign in with a local token" in page.text
    assert browser.get("/console/approvals.json").status_code == 401


def test_token_sign_in_and_out(env: Env) -> None:
    browser = env.browser()
    response = browser.sign_in_with_token(env.token("audrey"), "/console/sessions")
    assert response.headers["location"] == "/console/sessions"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
    page = browser.get("/console/sessions")
    assert page.status_code == 200 and "audrey" in page.text
    # signing out needs the CSRF token too
    assert browser.post("/console/logout", {"csrf": "nope"}).status_code == 400
    out = browser.post("/console/logout", {"csrf": form_value(page.text, "csrf")})
    assert out.status_code == 303
    assert browser.get("/console/sessions").status_code == 303


def test_token_sign_in_refusals(env: Env) -> None:
    browser = env.browser()
    page = browser.get("/console/login")
    csrf = form_value(page.text, "csrf")
    # a forged form (no login CSRF cookie match)
    assert (
        browser.post(
            "/console/login/token", {"csrf": "x", "token": env.token("audrey")}
        ).status_code
        == 400
    )
    # a bad token
    bad = browser.post("/console/login/token", {"csrf": csrf, "token": "not-a-jwt"})
    assert bad.status_code == 401 and "pgwarden_console=" not in bad.headers.get("set-cookie", "")
    # an expired token (the same key, issued two hours ago for one minute)
    past = LocalIssuer.load_or_create(env.data_dir, clock=lambda: time.time() - 7200)
    expired = past.issue("audrey", ["auditors"], ttl_seconds=60)
    late = browser.post("/console/login/token", {"csrf": csrf, "token": expired})
    assert late.status_code == 401 and "expired" in late.text
    assert browser.get("/console/sessions").status_code == 303


def test_roles_decide_what_is_shown(env: Env) -> None:
    env.record_session("s-one")
    agent = env.signed_in("agent-7")
    assert agent.get("/console").headers["location"] == "/console/approvals"
    assert agent.get("/console/sessions").status_code == 403
    assert agent.get("/console/sessions/s-one").status_code == 403
    assert agent.get("/console/policy").status_code == 403
    dora = env.signed_in("dora")  # approver only
    assert dora.get("/console/sessions").status_code == 403
    assert dora.get("/console/approvals").status_code == 200
    audrey = env.signed_in("audrey")
    assert audrey.get("/console").headers["location"] == "/console/sessions"
    assert audrey.get("/console/policy").status_code == 403
    adam = env.signed_in("adam")  # admins are auditors too
    assert adam.get("/console/sessions").status_code == 200
    assert adam.get("/console/policy").status_code == 200
    nav = adam.get("/console/sessions").text
    assert 'href="/console/policy"' in nav and 'href="/console/sessions"' in nav
    assert 'href="/console/policy"' not in audrey.get("/console/sessions").text


def test_sessions_list_and_filters(env: Env) -> None:
    now = time.time()
    env.record_session("s-old", subject="agent-7", at=now - 3 * 86400)
    env.record_session("s-new", subject="agent-7", at=now - 600)
    env.record_session(
        "s-blocked", subject="agent-9", action="deny", sql="DELETE FROM orders", at=now - 300
    )
    env.record_session(
        "s-held", subject="agent-9", action="review", sql="ALTER TABLE t ADD c int", at=now - 200
    )
    audrey = env.signed_in("audrey")

    def ids(query: str) -> list[str]:
        page = audrey.get(f"/console/sessions{query}")
        assert page.status_code == 200, page.text
        return re.findall(r'class="session-link" href="/console/sessions/([^"]+)"', page.text)

    assert ids("") == ["s-held", "s-blocked", "s-new", "s-old"]  # newest first
    assert ids("?subject=agent-7") == ["s-new", "s-old"]
    assert ids("?since=1d") == ["s-held", "s-blocked", "s-new"]
    assert ids("?until=1d") == ["s-old"]
    assert ids("?outcome=blocked") == ["s-blocked"]
    assert ids("?outcome=held") == ["s-held"]
    assert ids("?target=elsewhere") == []
    assert ids("?state=ended&subject=agent-9") == ["s-held", "s-blocked"]
    bad = audrey.get("/console/sessions?since=yesterday-ish")
    assert bad.status_code == 200 and "cannot read" in bad.text


def test_session_page_replays_and_verifies(env: Env) -> None:
    env.record_session("s-one")
    audrey = env.signed_in("audrey")
    page = audrey.get("/console/sessions/s-one")
    assert page.status_code == 200
    text = page.text
    assert "verify-intact" in text
    assert PROMPT in text and "SELECT count(*) FROM customers" in text
    assert "allow-reads" in text and "<td>42</td>" in text
    steps = re.findall(r'<li class="step step-([a-z_]+)', text)
    assert steps == ["session_start", "context", "statement", "session_end"]
    assert 'id="replay-controls" hidden' in text  # shown by the script only
    # tamper with the stored recording: the badge says so
    path = env.recording_path("s-one")
    path.write_bytes(path.read_bytes().replace(b"customers", b"customerz", 1))
    tampered = audrey.get("/console/sessions/s-one").text
    assert "verify-tampered" in tampered and "first bad event" in tampered
    assert audrey.get("/console/sessions/nope").status_code == 404
    assert audrey.get("/console/sessions/..%2F..%2Fetc").status_code == 404


def test_recorded_text_is_escaped(env: Env) -> None:
    env.record_session("s-xss", prompt="<script>alert(1)</script>", sql="SELECT '<img src=x>'")
    page = env.signed_in("audrey").get("/console/sessions/s-xss")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<img src=x>" not in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["cache-control"] == "no-store"


def _held(env: Env, requester: str = "agent-7") -> ApprovalRecord:
    who = Identity(requester, ("agents",), "pgwarden-local", time.time() + 600, None, None, {})

    async def request() -> ApprovalRecord:
        pending = await env.approvals.request(
            session_id="s-held",
            sql="ALTER TABLE orders ADD COLUMN note text",
            params=(),
            requester=who,
            target="shop",
            rule="review-schema-changes",
            reason="ALTER TABLE orders",
        )
        await env.approvals.aclose()  # no timers left on this short-lived loop
        return pending.record

    return asyncio.run(request())


def test_approvals_queue_and_decisions(env: Env) -> None:
    record = _held(env)
    dora = env.signed_in("dora")
    queue = dora.get("/console/approvals")
    assert queue.status_code == 200
    assert record.id in queue.text and "ALTER TABLE orders ADD COLUMN note text" in queue.text
    assert 'value="approve"' in queue.text
    assert dora.get("/console/approvals.json").json() == {"pending": [record.id]}
    csrf = form_value(queue.text, "csrf")
    url = f"/console/approvals/{record.id}/decide"
    # no or a wrong CSRF token: refused, nothing changes
    assert dora.post(url, {"decision": "approve", "csrf": "x"}).status_code == 400
    assert env.store.get_approval(record.id).state == "pending"  # type: ignore[union-attr]
    # deny needs a reason
    no_reason = dora.post(url, {"decision": "deny", "csrf": csrf, "reason": " "})
    assert no_reason.status_code == 400 and "say why" in no_reason.text
    done = dora.post(url, {"decision": "approve", "csrf": csrf, "reason": "planned change"})
    assert done.status_code == 303
    assert done.headers["location"] == f"/console/approvals/{record.id}?done=approve"
    final = env.store.get_approval(record.id)
    assert final is not None and final.state == "approved" and final.deciders == ("dora",)
    assert final.reasons == ("planned change",)
    detail = dora.get(done.headers["location"]).text
    assert "the statement runs now" in detail and "planned change" in detail
    again = dora.post(url, {"decision": "deny", "csrf": csrf, "reason": "too late"})
    assert again.status_code == 409


def test_non_approvers_cannot_decide(env: Env) -> None:
    record = _held(env)
    url = f"/console/approvals/{record.id}/decide"
    audrey = env.signed_in("audrey")  # an auditor: sees the queue, no buttons
    page = audrey.get("/console/approvals").text
    assert record.id in page and 'value="approve"' not in page
    refused = audrey.post(url, {"decision": "approve", "csrf": form_value(page, "csrf")})
    assert refused.status_code == 403 and "approver groups" in refused.text
    # the requester sees their own request, and may not decide it even as an approver
    agent = env.signed_in("agent-7")
    own = agent.get(f"/console/approvals/{record.id}").text
    assert "your own request" in own and 'value="approve"' not in own
    self_approver = env.browser()
    self_approver.sign_in_with_token(env.token("agent-7", ("dba",)))
    page = self_approver.get("/console/approvals").text
    assert 'value="approve"' not in page
    response = self_approver.post(url, {"decision": "approve", "csrf": form_value(page, "csrf")})
    assert response.status_code == 403 and "own statement" in response.text
    # someone who is neither approver, auditor nor the requester sees nothing of it
    stranger = env.browser()
    stranger.sign_in_with_token(env.token("eve", ("dev",)))
    assert record.id not in stranger.get("/console/approvals").text
    assert stranger.get(f"/console/approvals/{record.id}").status_code == 404
    assert env.store.get_approval(record.id).state == "pending"  # type: ignore[union-attr]


def test_policy_page_explains(env: Env) -> None:
    adam = env.signed_in("adam")
    page = adam.get("/console/policy?sql=DROP+TABLE+customers&target=shop")
    assert page.status_code == 200
    text = page.text
    assert 'id="explanation"' in text
    assert re.search(r"decision-(deny|review)", text)
    assert "DROP TABLE customers" in text
    ok = adam.get("/console/policy?sql=SELECT+1").text
    assert "decision-allow" in ok
    assert "allow-ordinary-work" in ok  # the rules table names the default policy's rules


def test_assets_are_served_by_the_gateway(env: Env) -> None:
    browser = env.browser()
    css = browser.get("/console/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    js = browser.get("/console/static/console.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert browser.get("/console/static/../app.py").status_code == 404
    assert browser.get("/console/static/nope.js").status_code == 404
    page = env.signed_in("adam").get("/console/sessions").text
    for url in re.findall(r'(?:src|href)="([^"#]+)"', page):
        assert url.startswith("/console"), url  # nothing from another site


def test_damaged_recording_shows_the_gap(env: Env) -> None:
    env.record_session("s-cut")
    path = env.recording_path("s-cut")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # the last line loses its end
    page = env.signed_in("audrey").get("/console/sessions/s-cut").text
    assert "verify-tampered" in page
    assert "An unreadable line: incomplete last line" in page
    path.unlink()
    gone = env.signed_in("audrey").get("/console/sessions/s-cut").text
    assert "verify-missing" in gone and "the recording is missing" in gone
