"""Webhooks: tell people that a statement waits for their approval.

For every new request, each ``approvals.notify`` entry gets one POST (``Content-Type:
application/json``):

- ``format: json``: ``{"event": "approval.requested", "id", "session_id", "sql", "params",
  "requester", "requester_groups", "target", "rule", "reason", "requested_at", "expires_at",
  "url", "approve_command", "deny_command"}`` (times ISO-8601 UTC; ``url`` is the console page,
  null when no console URL is known).
- ``format: slack``: a Slack incoming-webhook message (``{"text": ..., "blocks": [...]}``) with
  the statement and a link to the console page. Deciding happens in the console or through the
  API, never by a button in chat: a chat message is easy to forward, and whoever clicks a chat
  button is not authenticated by pgwarden. Every text taken from the request is escaped for
  Slack's mrkdwn (``&``, ``<``, ``>``), so SQL cannot inject mentions or links.

Headers on every delivery: ``X-Pgwarden-Event``, ``X-Pgwarden-Delivery`` (a random id, the same
on retries), ``X-Pgwarden-Timestamp`` (unix seconds, fresh on each attempt) and, when the entry
has a ``secret``, ``X-Pgwarden-Signature: sha256=<hex>``: the HMAC-SHA256, keyed with the
secret, of ``"<timestamp>.".encode() + body``. Receivers check it with ``verify_signature``
(and should refuse old timestamps: ``max_age``).

Delivery: a short timeout, up to ``attempts`` tries with exponential backoff on network errors,
429 and 5xx; other statuses (redirects included: they are not followed) fail at once. Failures
are logged (with the URL cut to scheme://host, as a Slack webhook's path is a secret) and never
raised.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from pgwarden import __version__
from pgwarden.config import NotifyConfig
from pgwarden.recording.events import format_ts
from pgwarden.store.base import ApprovalRecord

__all__ = [
    "EVENT_REQUESTED",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Notifier",
    "json_body",
    "redact_webhook_url",
    "sign",
    "slack_body",
    "verify_signature",
]

log = logging.getLogger("pgwarden.approvals.notify")

EVENT_REQUESTED = "approval.requested"
EVENT_HEADER = "X-Pgwarden-Event"
DELIVERY_HEADER = "X-Pgwarden-Delivery"
TIMESTAMP_HEADER = "X-Pgwarden-Timestamp"
SIGNATURE_HEADER = "X-Pgwarden-Signature"
SIGNATURE_PREFIX = "sha256="

# Slack: a section's text may hold 3000 characters; leave room for the code fence.
SLACK_SQL_LIMIT = 2800
SLACK_FIELD_LIMIT = 1900


# --------------------------------------------------------------------------------------------
# signatures


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, "sha256")
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str | int,
    body: bytes,
    header: str | None,
    *,
    max_age: float | None = None,
    now: float | None = None,
) -> bool:
    """True when ``header`` (the ``X-Pgwarden-Signature`` value) signs ``timestamp`` and
    ``body`` with ``secret``. With ``max_age`` (seconds), a timestamp further than that from
    ``now`` (default: the current time) is refused too, so a captured delivery cannot be
    replayed later. Constant-time comparison."""
    if not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    ts = str(timestamp).strip()
    if not ts.isdigit() or not ts.isascii():
        return False
    if max_age is not None:
        current = time.time() if now is None else now
        if abs(current - int(ts)) > max_age:
            return False
    expected = sign(secret, ts, body)
    return hmac.compare_digest(expected.encode("ascii"), header.strip().encode("ascii", "replace"))


# --------------------------------------------------------------------------------------------
# bodies


def _iso(t: float | None) -> str | None:
    return format_ts(t) if t is not None else None


def _commands(approval_id: str) -> tuple[str, str]:
    return (
        f"pgwarden approvals approve {approval_id} --token $TOKEN --reason '...'",
        f"pgwarden approvals deny {approval_id} --token $TOKEN --reason '...'",
    )


def json_body(record: ApprovalRecord, *, url: str | None, reason: str | None) -> dict[str, Any]:
    """The generic JSON notification for a new request."""
    approve, deny = _commands(record.id)
    return {
        "event": EVENT_REQUESTED,
        "id": record.id,
        "session_id": record.session_id,
        "sql": record.sql,
        "params": list(record.params),
        "requester": record.requester,
        "requester_groups": list(record.requester_groups),
        "target": record.target,
        "rule": record.rule,
        "reason": reason,
        "requested_at": _iso(record.requested_at),
        "expires_at": _iso(record.expires_at),
        "url": url,
        "approve_command": approve,
        "deny_command": deny,
    }


def slack_escape(text: str) -> str:
    """Escape text for Slack mrkdwn: no mentions, links or channel pings from user data."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _code(text: str, limit: int) -> str:
    # A ``` inside the statement would close the code block early.
    body = slack_escape(_truncate(text, limit)).replace("```", "``\u200b`")
    return f"```{body}```"


def slack_body(record: ApprovalRecord, *, url: str | None, reason: str | None) -> dict[str, Any]:
    """A Slack incoming-webhook message for a new request (a link, never a decide button)."""
    who = slack_escape(_truncate(record.requester, 200))
    target = slack_escape(_truncate(record.target, 200))
    aid = slack_escape(record.id)
    if url is not None:
        link = f"<{url}|Review {aid} in the pgwarden console>"
        where = f"{link} to approve or deny it."
    else:
        approve, deny = _commands(record.id)
        link = ""
        where = f"Decide with `{slack_escape(approve)}` or `{slack_escape(deny)}`."
    text = f"pgwarden: {who} needs approval to run a statement on {target} ({aid})."
    if link:
        text += f" {link}"
    fields: list[dict[str, str]] = [
        {"type": "mrkdwn", "text": f"*Requester*\n{who}"},
        {"type": "mrkdwn", "text": f"*Target*\n{target}"},
        {"type": "mrkdwn", "text": f"*Session*\n{slack_escape(record.session_id)}"},
        {"type": "mrkdwn", "text": f"*Expires*\n{_iso(record.expires_at) or 'never'}"},
    ]
    if record.rule:
        fields.append(
            {
                "type": "mrkdwn",
                "text": f"*Rule*\n{slack_escape(_truncate(record.rule, SLACK_FIELD_LIMIT))}",
            }
        )
    if reason:
        fields.append(
            {
                "type": "mrkdwn",
                "text": f"*Why held*\n{slack_escape(_truncate(reason, SLACK_FIELD_LIMIT))}",
            }
        )
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"Approval needed: {record.id}"},
        },
        {"type": "section", "fields": fields},
        {"type": "section", "text": {"type": "mrkdwn", "text": _code(record.sql, SLACK_SQL_LIMIT)}},
    ]
    if record.params:
        params = json.dumps(list(record.params), ensure_ascii=False)
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "*Parameters*\n" + _code(params, 1000)},
            }
        )
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": where}})
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": "Decisions are made in the pgwarden console or API by members of "
                    "the approver groups, never from chat. Requesters cannot approve their "
                    "own statements.",
                }
            ],
        }
    )
    return {"text": text, "blocks": blocks}


def redact_webhook_url(url: str) -> str:
    """``scheme://host[:port]/…``: enough to tell hooks apart in logs, without the path
    (a Slack webhook's path is its secret) or any user-info."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparseable URL)"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}/…"


# --------------------------------------------------------------------------------------------
# delivery


class Notifier:
    """Delivers notifications to the configured webhooks; never raises."""

    def __init__(
        self,
        targets: Sequence[NotifyConfig],
        *,
        timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.targets = list(targets)
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self._transport = transport
        self._clock = clock

    def body(self, target: NotifyConfig, record: ApprovalRecord, **kw: Any) -> bytes:
        doc = slack_body(record, **kw) if target.format == "slack" else json_body(record, **kw)
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    async def notify_requested(
        self, record: ApprovalRecord, *, url: str | None, reason: str | None
    ) -> list[bool]:
        """Deliver to every target at once; one bool (delivered or not) per target."""
        if not self.targets:
            return []
        async with httpx.AsyncClient(
            timeout=self.timeout, follow_redirects=False, transport=self._transport
        ) as client:
            return list(
                await asyncio.gather(
                    *(
                        self._deliver(client, t, self.body(t, record, url=url, reason=reason))
                        for t in self.targets
                    )
                )
            )

    async def _deliver(self, client: httpx.AsyncClient, target: NotifyConfig, body: bytes) -> bool:
        where = redact_webhook_url(target.url)
        delivery = secrets.token_hex(8)
        problem = "not attempted"
        for attempt in range(1, self.attempts + 1):
            timestamp = str(int(self._clock()))
            headers = {
                "Content-Type": "application/json",
                "User-Agent": f"pgwarden/{__version__}",
                EVENT_HEADER: EVENT_REQUESTED,
                DELIVERY_HEADER: delivery,
                TIMESTAMP_HEADER: timestamp,
            }
            if target.secret:
                headers[SIGNATURE_HEADER] = sign(target.secret, timestamp, body)
            retry = True
            try:
                response = await client.post(target.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            except Exception as exc:  # never let a webhook break anything
                problem = f"{type(exc).__name__}: {exc}"
                retry = False
            else:
                if 200 <= response.status_code < 300:
                    log.debug("webhook %s: delivered (attempt %d)", where, attempt)
                    return True
                problem = f"HTTP {response.status_code}"
                retry = response.status_code == 429 or response.status_code >= 500
            if not retry or attempt == self.attempts:
                break
            log.info("webhook %s: attempt %d failed (%s); retrying", where, attempt, problem)
            await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
        log.warning("webhook %s: not delivered: %s", where, problem)
        return False
