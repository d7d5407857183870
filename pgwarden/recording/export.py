"""Exporting a recording: JSON lines, and OCSF Datastore Activity.

``export_jsonl(events)`` yields one JSON object per event (``Event.to_dict()``: envelope and
decrypted payload, canonical JSON). With ``raw=True`` an unencrypted event is yielded as its
stored line, byte for byte, so the export verifies like the recording itself.

``export_ocsf(events)`` yields OCSF 1.8.0 events of class Datastore Activity (``class_uid``
6005, category 6 Application Activity), one for the session start (activity 3 Connect), one
per statement (with the outcome of its approvals, result or error folded in), and one for the
session end (activity 99 Other, ``activity_name`` "Disconnect").

Mapping
=======
===========================  =================================================================
OCSF attribute               from
===========================  =================================================================
activity_id / activity_name  statement kinds (classification ``kinds``), most consequential
                             first: delete/truncate/drop -> 7 Delete; update/merge/alter/grant/
                             revoke -> 2 Update; create* / select_into -> 6 Create; insert/
                             copy_from -> 5 Write; select/copy_to/show/explain/fetch -> 4 Query;
                             anything else -> 99 Other. session_start -> 3 Connect.
type_uid / type_name         ``6005 * 100 + activity_id``
time, metadata.original_time event ``ts`` (``time`` in ms since the epoch)
metadata                     product {name, vendor_name: pgwarden, version}, version "1.8.0",
                             profiles [ai_operation, security_control], uid ``<session>:<seq>``,
                             correlation_uid session id, sequence seq, log_name
actor.user                   subject (name, uid), groups, issuer as ``actor.session.issuer``
actor.session                uid session id, created_time, issuer; ``actor.app_name``
                             application_name
src_endpoint                 client address (ip, port)
database / type_id           name target, type_id 1 Relational; ``type_id`` 1 Database
table                        the first table written (else read), if any
query_info                   query_string sql, uid statement hash, name prepared statement name
action_id / disposition_id   decision: allow -> 1 Allowed / 1 Allowed; deny -> 2 Denied /
                             2 Blocked; review -> approved: 1 / 8 Approved, denied or expired or
                             withdrawn: 2 / 25 Rejected, undecided: 3 Observed / 14 Delayed;
                             audit mode -> 3 Observed / 17 Logged
policy                       rule name and reason
status_id / status_code /    result -> 1 Success, command tag; error -> 2 Failure, SQLSTATE,
status_detail                message; nothing -> 0 Unknown
severity_id                  1 Informational; 2 Low (held for review); 3 Medium (denied)
message_context (AI profile) uid session id, ai_role_id 4 Agent, application {name:
                             application_name}, service {name: pgwarden}
ai_model (AI profile)        only when the context has ``model`` (and ``ai_provider``)
unmapped.pgwarden            session, seq, hash, the agent context in force (prompt, intent,
                             traceparent, any key) with its sources, bind params, decision,
                             classification, result summary (row_count, digest, masked
                             counts; no rows), approvals, error, notices
===========================  =================================================================

OCSF 1.8's ``message_context`` has no field for prompt text (1.9 adds ``prompt_text``), so the
prompt stays under ``unmapped.pgwarden.context``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from pgwarden.recording.canonical import canonical_json
from pgwarden.recording.events import Event, statement_hash

__all__ = ["OCSF_VERSION", "activity_for_kinds", "export_jsonl", "export_ocsf"]

OCSF_VERSION = "1.8.0"
CLASS_UID = 6005
CATEGORY_UID = 6

ACTIVITY_NAMES = {
    1: "Read",
    2: "Update",
    3: "Connect",
    4: "Query",
    5: "Write",
    6: "Create",
    7: "Delete",
    8: "List",
    99: "Other",
}

_DELETE = {"delete", "truncate", "drop", "drop_role"}
_UPDATE = {
    "update",
    "merge",
    "alter",
    "alter_role",
    "alter_system",
    "grant",
    "revoke",
    "alter_default_privileges",
    "reassign_owned",
    "refresh_matview",
    "comment",
    "security_label",
}
_WRITE = {"insert", "copy_from"}
_QUERY = {"select", "copy_to", "show", "explain", "explain_analyze", "fetch", "declare_cursor"}


def activity_for_kinds(kinds: Iterable[str]) -> int:
    kinds = set(kinds)
    if kinds & _DELETE:
        return 7
    if kinds & _UPDATE:
        return 2
    if any(k.startswith("create") for k in kinds) or "select_into" in kinds:
        return 6
    if kinds & _WRITE:
        return 5
    if kinds & _QUERY:
        return 4
    return 99


def export_jsonl(events: Iterable[Event], *, raw: bool = False) -> Iterator[str]:
    """One JSON object per event, as text without the newline."""
    for event in events:
        if raw and event.raw and not event.encrypted:
            yield event.raw.decode("utf-8")
        else:
            yield canonical_json(event.to_dict()).decode("utf-8")


def _ms(event: Event) -> int:
    return round(event.time * 1000)


def _endpoint(addr: str) -> dict[str, Any]:
    """``1.2.3.4:5678``, ``[::1]:5678``, ``unix`` ... -> an OCSF network endpoint."""
    if not addr:
        return {}
    host, port = addr, None
    if addr.startswith("["):
        close = addr.find("]")
        host = addr[1:close] if close > 0 else addr
        rest = addr[close + 1 :] if close > 0 else ""
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif addr.count(":") == 1:
        h, _, p = addr.partition(":")
        if p.isdigit():
            host, port = h, int(p)
    out: dict[str, Any] = {}
    if host and (host[0].isdigit() or ":" in host):
        out["ip"] = host
    else:
        out["hostname"] = host
    if port is not None:
        out["port"] = port
    return out


class _Session:
    def __init__(self) -> None:
        self.start: Mapping[str, Any] = {}
        self.start_ms: int | None = None
        self.session_id = ""

    def actor(self) -> dict[str, Any]:
        s = self.start
        user: dict[str, Any] = {"name": s.get("subject"), "uid": s.get("subject")}
        groups = s.get("groups") or []
        if groups:
            user["groups"] = [{"name": g} for g in groups]
        session: dict[str, Any] = {"uid": self.session_id}
        if s.get("issuer"):
            session["issuer"] = s["issuer"]
        if self.start_ms is not None:
            session["created_time"] = self.start_ms
        if s.get("token_id"):
            session["credential_uid"] = s["token_id"]
        actor: dict[str, Any] = {"user": user, "session": session}
        if s.get("application_name"):
            actor["app_name"] = s["application_name"]
        return actor

    def message_context(self, context: Mapping[str, Any]) -> dict[str, Any]:
        app = context.get("application_name") or self.start.get("application_name")
        mc: dict[str, Any] = {
            "uid": self.session_id,
            "ai_role_id": 4,
            "ai_role": "Agent",
            "service": {"name": "pgwarden"},
        }
        if app:
            mc["application"] = {"name": str(app)}
        return mc


def _base(sess: _Session, event: Event, activity_id: int, product_version: str) -> dict[str, Any]:
    name = ACTIVITY_NAMES.get(activity_id, "Other")
    record: dict[str, Any] = {
        "class_uid": CLASS_UID,
        "class_name": "Datastore Activity",
        "category_uid": CATEGORY_UID,
        "category_name": "Application Activity",
        "activity_id": activity_id,
        "activity_name": name,
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": f"Datastore Activity: {name}",
        "time": _ms(event),
        "severity_id": 1,
        "severity": "Informational",
        "metadata": {
            "product": {"name": "pgwarden", "vendor_name": "pgwarden", "version": product_version},
            "version": OCSF_VERSION,
            "profiles": ["ai_operation", "security_control"],
            "uid": f"{event.session}:{event.seq}",
            "correlation_uid": event.session,
            "sequence": event.seq,
            "log_name": "pgwarden-recording",
            "original_time": event.ts,
        },
        "actor": sess.actor(),
        "src_endpoint": _endpoint(str(sess.start.get("client_addr", ""))),
        "database": {"name": sess.start.get("target"), "type_id": 1, "type": "Relational"},
        "type_id": 1,
        "type": "Database",
    }
    return record


_DISPOSITIONS = {
    1: "Allowed",
    2: "Blocked",
    8: "Approved",
    14: "Delayed",
    17: "Logged",
    25: "Rejected",
}
_ACTIONS = {1: "Allowed", 2: "Denied", 3: "Observed"}


def _security(
    decision: Mapping[str, Any], approvals: Sequence[Mapping[str, Any]]
) -> tuple[int, int]:
    action = str(decision.get("action", ""))
    if decision.get("mode") == "audit":
        return 3, 17
    if action == "allow":
        return 1, 1
    if action == "deny":
        return 2, 2
    if action == "review":
        final = approvals[-1]["state"] if approvals else None
        if final == "approved":
            return 1, 8
        if final in ("denied", "expired", "withdrawn"):
            return 2, 25
        return 3, 14
    return 0, 0


def _statement_record(
    sess: _Session,
    stmt: Event,
    followers: Sequence[Event],
    product_version: str,
) -> dict[str, Any]:
    data = stmt.data
    classification = data.get("classification") or {}
    kinds = classification.get("kinds") or []
    record = _base(sess, stmt, activity_for_kinds(kinds), product_version)
    query: dict[str, Any] = {"query_string": data.get("sql", ""), "query_time": _ms(stmt)}
    query["uid"] = statement_hash(str(data.get("sql", "")), data.get("params") or [])
    if data.get("statement_name"):
        query["name"] = data["statement_name"]
    record["query_info"] = query
    tables = list(classification.get("tables_written") or []) + list(
        classification.get("tables_read") or []
    )
    if tables:
        record["table"] = {"name": tables[0]}

    approvals = [e.data for e in followers if e.type == "approval"]
    results = [e.data for e in followers if e.type == "result"]
    errors = [e.data for e in followers if e.type == "error"]
    notices = [e.data for e in followers if e.type == "notice"]
    decision = data.get("decision") or {}
    action_id, disposition_id = _security(decision, approvals)
    record["action_id"] = action_id
    record["action"] = _ACTIONS.get(action_id, "Unknown")
    record["disposition_id"] = disposition_id
    record["disposition"] = _DISPOSITIONS.get(disposition_id, "Unknown")
    if decision.get("rule") or decision.get("reason"):
        record["policy"] = {
            "name": decision.get("rule") or "",
            "desc": decision.get("reason") or "",
        }
    if action_id == 2:
        record["severity_id"], record["severity"] = 3, "Medium"
    elif disposition_id in (8, 14):
        record["severity_id"], record["severity"] = 2, "Low"

    if errors:
        err = errors[-1]
        record["status_id"], record["status"] = 2, "Failure"
        record["status_code"] = err.get("sqlstate")
        record["status_detail"] = err.get("message")
    elif results:
        record["status_id"], record["status"] = 1, "Success"
        record["status_code"] = results[-1].get("command_tag")
    else:
        record["status_id"], record["status"] = 0, "Unknown"

    context = data.get("context") or {}
    record["message_context"] = sess.message_context(context)
    if context.get("model"):
        record["ai_model"] = {
            "name": str(context["model"]),
            "ai_provider": str(context.get("ai_provider", "unknown")),
        }
    subject = sess.start.get("subject", "?")
    first_line = str(data.get("sql", "")).strip().splitlines()[:1]
    record["message"] = (
        f"{subject}: {decision.get('action', '?')}: {first_line[0] if first_line else ''}"[:500]
    )

    extra: dict[str, Any] = {
        "session": stmt.session,
        "seq": stmt.seq,
        "hash": stmt.hash,
        "protocol": data.get("protocol"),
        "portal": data.get("portal"),
        "params": data.get("params") or [],
        "context": context,
        "context_sources": data.get("context_sources") or {},
        "decision": decision,
        "classification": classification,
    }
    if results:
        extra["result"] = {
            k: results[-1].get(k)
            for k in ("row_count", "rows_recorded", "truncated", "command_tag", "digest", "masked")
        }
    if approvals:
        extra["approvals"] = list(approvals)
    if errors:
        extra["error"] = errors[-1]
    if notices:
        extra["notices"] = notices
    record["unmapped"] = {"pgwarden": extra}
    return record


def export_ocsf(
    events: Iterable[Event], *, product_version: str = "0.1.0"
) -> Iterator[dict[str, Any]]:
    """OCSF Datastore Activity records for a session's events (see the module docstring)."""
    sess = _Session()
    pending: Event | None = None
    followers: list[Event] = []

    def flush() -> Iterator[dict[str, Any]]:
        nonlocal pending, followers
        if pending is not None:
            yield _statement_record(sess, pending, followers, product_version)
        pending, followers = None, []

    for event in events:
        sess.session_id = event.session
        if event.type == "session_start":
            sess.start = event.data
            sess.start_ms = _ms(event)
            record = _base(sess, event, 3, product_version)
            record["status_id"], record["status"] = 1, "Success"
            record["action_id"], record["action"] = 1, "Allowed"
            record["disposition_id"], record["disposition"] = 1, "Allowed"
            record["message"] = (
                f"{event.data.get('subject')} connected to {event.data.get('target')}"
            )
            record["message_context"] = sess.message_context({})
            record["unmapped"] = {
                "pgwarden": {
                    "session": event.session,
                    "seq": event.seq,
                    "hash": event.hash,
                    "tls": event.data.get("tls"),
                    "claims": event.data.get("claims") or {},
                    "gateway_instance": event.data.get("gateway_instance"),
                }
            }
            yield record
        elif event.type == "statement":
            yield from flush()
            pending = event
        elif event.type in ("approval", "result", "error", "notice"):
            if pending is not None:
                followers.append(event)
        elif event.type == "session_end":
            yield from flush()
            record = _base(sess, event, 99, product_version)
            record["activity_name"] = "Disconnect"
            record["type_name"] = "Datastore Activity: Other"
            record["status_id"], record["status"] = 1, "Success"
            record["message"] = f"session ended: {event.data.get('reason', '')}"
            record["unmapped"] = {
                "pgwarden": {
                    "session": event.session,
                    "seq": event.seq,
                    "hash": event.hash,
                    "reason": event.data.get("reason"),
                }
            }
            yield record
    yield from flush()
