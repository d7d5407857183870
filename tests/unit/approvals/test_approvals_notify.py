"""Webhooks: delivered to a real HTTP receiver on 127.0.0.1, signed, retried, never fatal."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time

import pytest
from approvals_helpers import Receiver, closed_port

from pgwarden.approvals import ApprovalService, verify_signature
from pgwarden.approvals.notify import (
    Notifier,
    json_body,
    redact_webhook_url,
    sign,
    slack_body,
)
from pgwarden.config import NotifyConfig
from pgwarden.store import ApprovalRecord

SECRET = "s3cret-webhook-key"


def record(**kw: object) -> ApprovalRecord:
    base: dict[str, object] = {
        "id": "apr_abcdefghij",
        "session_id": "sess-1",
        "sql": "DROP TABLE orders",
        "requester": "agent-7",
        "target": "shop",
        "requested_at": 1_800_000_000.0,
        "statement_hash": "0" * 64,
        "params": ("5",),
        "expires_at": 1_800_000_600.0,
        "rule": "hold-ddl",
        "requester_groups": ("agents",),
    }
    base.update(kw)
    return ApprovalRecord(**base)  # type: ignore[arg-type]


def test_json_webhook_is_signed(make_service, people, receiver: Receiver) -> None:
    svc = make_service(notify=[{"url": receiver.url("/json"), "secret": SECRET}], timeout="10m")

    async def main() -> ApprovalRecord:
        pending = await svc.request(
            session_id="sess-1",
            sql="DELETE FROM orders WHERE id = $1",
            params=["42"],
            requester=people["agent-7"],
            target="shop",
            rule="hold-deletes",
            reason="deletes are held",
        )
        await asyncio.to_thread(receiver.wait_for, 1)
        await svc.aclose()
        return pending.record

    rec = asyncio.run(main())
    (got,) = receiver.requests
    assert got.path == "/json"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-pgwarden-event"] == "approval.requested"
    timestamp = got.headers["x-pgwarden-timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    signature = got.headers["x-pgwarden-signature"]
    assert signature.startswith("sha256=")
    assert verify_signature(SECRET, timestamp, got.body, signature)
    assert verify_signature(SECRET, timestamp, got.body, signature, max_age=300)
    # any change breaks it: body, timestamp, secret, header
    assert not verify_signature(SECRET, timestamp, got.body + b" ", signature)
    assert not verify_signature(SECRET, str(int(timestamp) + 1), got.body, signature)
    assert not verify_signature("other", timestamp, got.body, signature)
    flipped = signature[:-1] + ("1" if signature[-1] == "0" else "0")
    assert not verify_signature(SECRET, timestamp, got.body, flipped)
    assert not verify_signature(SECRET, timestamp, got.body, None)
    assert not verify_signature(SECRET, timestamp, got.body, signature.removeprefix("sha256="))
    assert not verify_signature(SECRET, "12ab", got.body, signature)
    # an old delivery replayed later
    assert not verify_signature(
        SECRET, timestamp, got.body, signature, max_age=300, now=int(timestamp) + 301
    )
    body = got.json()
    assert body == {
        "event": "approval.requested",
        "id": rec.id,
        "session_id": "sess-1",
        "sql": "DELETE FROM orders WHERE id = $1",
        "params": ["42"],
        "requester": "agent-7",
        "requester_groups": ["agents"],
        "target": "shop",
        "rule": "hold-deletes",
        "reason": "deletes are held",
        "requested_at": body["requested_at"],
        "expires_at": body["expires_at"],
        "url": f"https://console.example/approvals/{rec.id}",
        "approve_command": f"pgwarden approvals approve {rec.id} --token $TOKEN --reason '...'",
        "deny_command": f"pgwarden approvals deny {rec.id} --token $TOKEN --reason '...'",
    }
    assert body["requested_at"].endswith("Z") and body["expires_at"] > body["requested_at"]


def test_signature_matches_the_documented_recipe() -> None:
    body = b'{"a":1}'
    expected = hmac.new(SECRET.encode(), b"1800000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1800000000", body) == "sha256=" + expected
    assert verify_signature(SECRET, 1800000000, body, "sha256=" + expected)


def test_slack_webhook(make_service, people, receiver: Receiver) -> None:
    svc = make_service(
        notify=[
            {"url": receiver.url("/slack"), "format": "slack", "secret": SECRET},
            {"url": receiver.url("/plain"), "format": "json"},
        ]
    )
    sql = "DROP TABLE orders; -- <!channel> <https://evil.example|click> & ```"

    async def main() -> str:
        pending = await svc.request(
            session_id="sess-1",
            sql=sql,
            params=[],
            requester=people["agent-7"],
            target="shop",
            rule="hold-ddl",
            reason="DROP <b>",
        )
        await asyncio.to_thread(receiver.wait_for, 2)
        await svc.aclose()
        return pending.id

    aid = asyncio.run(main())
    by_path = {r.path: r for r in receiver.requests}
    plain = by_path["/plain"]
    assert "x-pgwarden-signature" not in plain.headers  # no secret, no signature
    assert plain.json()["sql"] == sql
    slack = by_path["/slack"]
    assert verify_signature(
        SECRET,
        slack.headers["x-pgwarden-timestamp"],
        slack.body,
        slack.headers["x-pgwarden-signature"],
    )
    msg = slack.json()
    assert set(msg) == {"text", "blocks"}
    url = f"https://console.example/approvals/{aid}"
    assert f"<{url}|" in msg["text"]
    everything = json.dumps(msg)
    # the SQL is shown, escaped: no mention, no injected link, code fence intact
    assert "<!channel>" not in everything and "<https://evil" not in everything
    assert "&lt;!channel&gt;" in everything
    assert "&amp;" in everything
    assert "DROP &lt;b&gt;" in everything  # the reason, escaped too
    code = [
        b["text"]["text"]
        for b in msg["blocks"]
        if b["type"] == "section" and "text" in b and b["text"]["text"].startswith("```")
    ]
    assert len(code) == 1 and code[0].count("```") == 2
    # a link to the console; never a button that decides
    assert any(url in json.dumps(b) for b in msg["blocks"])
    assert not any(b["type"] == "actions" for b in msg["blocks"])
    assert "button" not in everything
    assert msg["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": f"Approval needed: {aid}"},
    }


def test_slack_without_console_says_how_to_decide() -> None:
    msg = slack_body(record(), url=None, reason=None)
    text = json.dumps(msg)
    assert "pgwarden approvals approve apr_abcdefghij" in text
    assert "pgwarden approvals deny apr_abcdefghij" in text
    long = slack_body(record(sql="x" * 10_000), url="https://c/approvals/a", reason="r")
    for block in long["blocks"]:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000


def test_json_body_without_console() -> None:
    body = json_body(record(), url=None, reason="why")
    assert body["url"] is None and body["reason"] == "why"


def test_retries_then_succeeds(receiver: Receiver) -> None:
    receiver.statuses = [503, 500]
    notifier = Notifier([NotifyConfig(url=receiver.url(), secret=SECRET)], attempts=3, backoff=0.01)
    result = asyncio.run(notifier.notify_requested(record(), url=None, reason=None))
    assert result == [True]
    assert len(receiver.requests) == 3
    deliveries = {r.headers["x-pgwarden-delivery"] for r in receiver.requests}
    assert len(deliveries) == 1  # one delivery id across its retries
    for r in receiver.requests:  # each attempt freshly signed
        assert verify_signature(
            SECRET, r.headers["x-pgwarden-timestamp"], r.body, r.headers["x-pgwarden-signature"]
        )


def test_client_errors_are_not_retried(receiver: Receiver, caplog) -> None:
    receiver.statuses = [404]
    notifier = Notifier([NotifyConfig(url=receiver.url("/hooks/T0/B0/XXXXsecret"))], backoff=0.01)
    with caplog.at_level(logging.WARNING, logger="pgwarden.approvals.notify"):
        result = asyncio.run(notifier.notify_requested(record(), url=None, reason=None))
    assert result == [False]
    assert len(receiver.requests) == 1
    assert "HTTP 404" in caplog.text
    assert "XXXXsecret" not in caplog.text  # a Slack hook's path is its secret


def test_gives_up_on_an_unreachable_hook_without_raising(caplog) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    notifier = Notifier([NotifyConfig(url=url)], attempts=2, backoff=0.01, timeout=1)
    with caplog.at_level(logging.WARNING, logger="pgwarden.approvals.notify"):
        result = asyncio.run(notifier.notify_requested(record(), url=None, reason=None))
    assert result == [False]
    assert "not delivered" in caplog.text


def test_slow_hook_times_out(receiver: Receiver) -> None:
    receiver.delay = 1.0
    notifier = Notifier([NotifyConfig(url=receiver.url())], attempts=1, timeout=0.2)
    started = time.monotonic()
    result = asyncio.run(notifier.notify_requested(record(), url=None, reason=None))
    assert result == [False]
    assert time.monotonic() - started < 0.9


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/secret", "https://hooks.slack.com/…"),
        ("http://user:pw@127.0.0.1:8080/x?token=1", "http://127.0.0.1:8080/…"),
        ("http://[::1]:9/x", "http://[::1]:9/…"),
    ],
)
def test_redacted_urls(url: str, shown: str) -> None:
    assert redact_webhook_url(url) == shown


def test_service_with_a_failing_hook_still_decides(
    make_service, people, receiver: Receiver
) -> None:
    receiver.statuses = [500] * 10
    svc: ApprovalService = make_service(notify=[{"url": receiver.url()}])

    async def main() -> str:
        pending = await svc.request(
            session_id="s",
            sql="DROP TABLE t",
            params=[],
            requester=people["agent-7"],
            target="shop",
            rule=None,
            reason="",
        )
        await svc.decide(pending.id, people["alice"], approve=True, reason=None)
        outcome = await asyncio.wait_for(pending.wait(), 5)
        await svc.aclose()
        return outcome.state

    assert asyncio.run(main()) == "approved"
