"""Helpers shared by the recording tests: typical events, a session builder, an attacker's
re-chaining."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pgwarden.recording.canonical import ZERO_HASH, canonical_json, seal, unseal
from pgwarden.recording.events import (
    Column,
    ContextEvent,
    Decision,
    ResultBuilder,
    SessionStart,
    StatementEvent,
)
from pgwarden.recording.writer import RecordingWriter


def session_start(**overrides: Any) -> SessionStart:
    fields: dict[str, Any] = {
        "subject": "agent-7",
        "issuer": "pgwarden-local",
        "groups": ("agents",),
        "client_addr": "127.0.0.1:50432",
        "application_name": "psql",
        "target": "shop",
        "gateway_instance": "gw-1",
        "tls": False,
        "claims": {"sub": "agent-7", "iss": "pgwarden-local", "exp": 2000000000, "secret": "x"},
        "token_id": "jti-1",
    }
    fields.update(overrides)
    return SessionStart(**fields)


def statement(sql: str = "SELECT 1", **overrides: Any) -> StatementEvent:
    fields: dict[str, Any] = {
        "sql": sql,
        "protocol": "simple",
        "decision": Decision("allow", rule="reads", reason="reading is allowed"),
        "classification": {"kinds": ["select"], "tables_read": ["customers"]},
        "context": {"prompt": "why I ask"},
        "context_sources": {"prompt": "comment"},
    }
    fields.update(overrides)
    return StatementEvent(**fields)


def write_session(
    writer: RecordingWriter, *, statements: int = 3, end: bool = True
) -> RecordingWriter:
    """Synchronously write a typical session: start, context, N statements with results."""
    writer.append(session_start())
    writer.append(ContextEvent(source="set", changes={"prompt": "p"}, context={"prompt": "p"}))
    for i in range(statements):
        ev = writer.append(statement(f"SELECT {i} FROM customers"))
        builder = ResultBuilder(statement_seq=ev.seq)
        builder.set_columns([Column("n", 23)])
        builder.add_row([str(i).encode()])
        writer.append(builder.finish("SELECT 1"))
    if end:
        writer.end_sync("client closed the connection")
    return writer


MakeSession = Callable[..., RecordingWriter]  # the ``make_session`` fixture's type


def lines_of(data: bytes) -> list[bytes]:
    """The recording's lines, each with its newline."""
    return data.splitlines(keepends=True)


def rechain(lines: list[bytes], edit: Callable[[int, dict[str, Any]], None] | None = None) -> bytes:
    """What an attacker without the signing key can do: edit parsed events (``edit(seq,
    obj)``) and recompute every hash and prev so the chain itself is consistent again."""
    out = []
    prev = ZERO_HASH
    for i, line in enumerate(lines, start=1):
        body, _ = unseal(line)
        obj = json.loads(body)
        obj["seq"] = i
        obj["prev"] = prev
        if edit is not None:
            edit(i, obj)
        new_line, prev = seal(canonical_json(obj), prev)
        out.append(new_line)
    return b"".join(out)
