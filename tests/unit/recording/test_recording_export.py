"""Exports: JSON lines and OCSF Datastore Activity."""

from __future__ import annotations

import json

from recording_helpers import session_start, statement

from pgwarden.recording.codec import read_events
from pgwarden.recording.events import (
    ApprovalEvent,
    Column,
    Decision,
    ErrorEvent,
    ResultBuilder,
    SessionEnd,
)
from pgwarden.recording.export import activity_for_kinds, export_jsonl, export_ocsf
from pgwarden.recording.signing import RecordingSigner
from pgwarden.recording.storage.memory import MemoryStorage
from pgwarden.recording.verify import verify_recording
from pgwarden.recording.writer import RecordingWriter


def _session(storage: MemoryStorage, signer: RecordingSigner) -> bytes:
    w = RecordingWriter("sess-9", storage, signer)
    w.append(session_start(client_addr="10.1.2.3:5555"))
    ev = w.append(
        statement(
            "SELECT email FROM customers /*prompt='find%20churn'*/",
            context={
                "prompt": "find churn",
                "traceparent": "00-aa-bb-01",
                "application_name": "psql",
            },
            context_sources={"prompt": "comment", "traceparent": "comment"},
            params=["5"],
        )
    )
    b = ResultBuilder(statement_seq=ev.seq)
    b.set_columns([Column("email", 25)])
    b.add_row([b"[redacted]"])
    b.count_masked("email", 1)
    w.append(b.finish("SELECT 1"))
    ev = w.append(
        statement(
            "DELETE FROM customers",
            decision=Decision("deny", rule="no-unbounded-delete", reason="no WHERE"),
            classification={"kinds": ["delete"], "tables_written": ["customers"]},
        )
    )
    w.append(ErrorEvent("42501", "pgwarden: denied", source="gateway", statement_seq=ev.seq))
    ev = w.append(
        statement(
            "DROP TABLE orders",
            decision=Decision("review", rule="hold-ddl"),
            classification={"kinds": ["drop"], "tables_written": ["orders"]},
        )
    )
    w.append(ApprovalEvent("ap1", "requested", "sha256:x", actor="agent-7", statement_seq=ev.seq))
    w.append(
        ApprovalEvent("ap1", "approved", "sha256:x", actor="dba", reason="ok", statement_seq=ev.seq)
    )
    w.append(b.finish("DROP TABLE"))
    w.append(SessionEnd("client closed the connection"))
    return storage.read("sess-9")


def test_jsonl(storage: MemoryStorage, signer: RecordingSigner) -> None:
    data = _session(storage, signer)
    events = read_events(data)
    lines = list(export_jsonl(events))
    assert len(lines) == len(events)
    first = json.loads(lines[0])
    assert first["type"] == "session_start" and first["subject"] == "agent-7" and first["seq"] == 1
    assert json.loads(lines[1])["params"] == ["5"]
    raw = "\n".join(export_jsonl(events, raw=True)) + "\n"
    assert raw.encode() == data
    assert verify_recording(raw.encode(), signer.public_key).status == "intact"


def test_ocsf_shape(storage: MemoryStorage, signer: RecordingSigner) -> None:
    records = list(export_ocsf(read_events(_session(storage, signer)), product_version="9.9"))
    json.dumps(records)  # JSON-able
    assert [r["activity_id"] for r in records] == [3, 4, 7, 7, 99]
    for r in records:
        assert r["class_uid"] == 6005 and r["category_uid"] == 6
        assert r["type_uid"] == 600500 + r["activity_id"]
        assert isinstance(r["time"], int) and r["time"] > 1_600_000_000_000
        assert r["metadata"]["product"] == {
            "name": "pgwarden",
            "vendor_name": "pgwarden",
            "version": "9.9",
        }
        assert r["metadata"]["version"] == "1.8.0"
        assert r["actor"]["user"]["name"] == "agent-7"
        assert r["actor"]["session"]["uid"] == "sess-9"
        assert r["src_endpoint"] == {"ip": "10.1.2.3", "port": 5555}
        assert r["database"] == {"name": "shop", "type_id": 1, "type": "Relational"}
        assert "severity_id" in r and "status_id" in r
    connect, select, delete, drop, end = records
    assert connect["activity_name"] == "Connect"
    assert select["query_info"]["query_string"].startswith("SELECT email")
    assert select["query_info"]["uid"].startswith("sha256:")
    assert (select["status_id"], select["status_code"]) == (1, "SELECT 1")
    assert (select["action_id"], select["disposition_id"]) == (1, 1)
    assert select["table"] == {"name": "customers"}
    assert select["message_context"]["uid"] == "sess-9"
    assert select["message_context"]["ai_role_id"] == 4
    assert select["message_context"]["application"] == {"name": "psql"}
    pg = select["unmapped"]["pgwarden"]
    assert pg["context"]["prompt"] == "find churn"
    assert pg["context"]["traceparent"] == "00-aa-bb-01"
    assert pg["params"] == ["5"]
    assert pg["result"]["masked"] == {"email": 1} and "rows" not in pg["result"]
    assert (delete["action_id"], delete["disposition_id"], delete["status_id"]) == (2, 2, 2)
    assert delete["status_code"] == "42501" and delete["severity_id"] == 3
    assert delete["policy"] == {"name": "no-unbounded-delete", "desc": "no WHERE"}
    assert (drop["action_id"], drop["disposition_id"], drop["disposition"]) == (1, 8, "Approved")
    assert [a["state"] for a in drop["unmapped"]["pgwarden"]["approvals"]] == [
        "requested",
        "approved",
    ]
    assert end["activity_name"] == "Disconnect"


def test_activity_mapping() -> None:
    assert activity_for_kinds(["select"]) == 4
    assert activity_for_kinds(["select", "delete"]) == 7
    assert activity_for_kinds(["update"]) == 2
    assert activity_for_kinds(["insert"]) == 5
    assert activity_for_kinds(["create_table_as", "select"]) == 6
    assert activity_for_kinds(["begin"]) == 99
    assert activity_for_kinds([]) == 99
