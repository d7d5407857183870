"""Real PostgreSQL traffic, recorded by tests/unit/protocol/pgwire_capture.py (a TCP relay in
front of a DevCluster, with psycopg, asyncpg and a hand-driven client), parsed completely.

The recordings in tests/data are also the seeds of the mutation properties."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pytest
from pgwire_samples import DATA_DIR, Item, bytewise, chunked, read_all, real_transcripts

from pgwarden.protocol.errors import Side
from pgwarden.protocol.messages import (
    AUTH_CLEARTEXT,
    AUTH_MD5,
    AUTH_OK,
    AUTH_SASL,
    AUTH_SASL_CONTINUE,
    AUTH_SASL_FINAL,
    Authentication,
    AuthResponse,
    BackendKeyData,
    CancelRequest,
    CopyData,
    CopyFail,
    CopyResponse,
    DataRow,
    EmptyQueryResponse,
    ErrorResponse,
    Execute,
    FunctionCall,
    FunctionCallResponse,
    Message,
    NegotiateProtocolVersion,
    NoData,
    NoticeResponse,
    NotificationResponse,
    ParameterDescription,
    ParameterStatus,
    Parse,
    PortalSuspended,
    Query,
    ReadyForQuery,
    RowDescription,
    StartupMessage,
    Sync,
    Terminate,
    decode,
    decode_startup,
)

TRANSCRIPTS = real_transcripts()
SESSIONS = sorted({name.rsplit("_", 1)[0] for name, _, _ in TRANSCRIPTS})


def _parse(side: Side, data: bytes) -> list[Item]:
    items, reader = read_all(side, [data], startup=side == "client")
    assert reader.buffered == 0, "bytes left over"
    return items


def _session(dir_: Path, session: str) -> tuple[list[Message], list[Message]]:
    client = _parse("client", (dir_ / f"{session}_client.bin").read_bytes())
    server = _parse("server", (dir_ / f"{session}_server.bin").read_bytes())
    assert all(isinstance(m, Message) for m in client + server)
    return client, server  # type: ignore[return-value]


def test_recordings_are_present() -> None:
    assert {
        "pgwire_scram_psycopg",
        "pgwire_md5",
        "pgwire_cleartext",
        "pgwire_asyncpg",
        "pgwire_asyncpg_cancel",
        "pgwire_raw",
    } <= set(SESSIONS)


@pytest.mark.parametrize(("name", "side", "data"), TRANSCRIPTS, ids=[t[0] for t in TRANSCRIPTS])
def test_recording_parses_completely(name: str, side: Side, data: bytes) -> None:
    items = _parse(side, data)
    assert b"".join(m.raw for m in items) == data
    for m in items:
        assert isinstance(m, Message)
        if isinstance(m, StartupMessage | CancelRequest):
            assert decode_startup(m.raw) == m
        else:
            assert decode(side, m.raw) == m
            assert type(m).__name__ != "Message"


@pytest.mark.parametrize(("name", "side", "data"), TRANSCRIPTS, ids=[t[0] for t in TRANSCRIPTS])
def test_recording_byte_at_a_time_and_split(name: str, side: Side, data: bytes) -> None:
    whole = _parse(side, data)
    items, reader = read_all(side, bytewise(data), startup=side == "client")
    assert items == whole
    assert reader.buffered == 0
    rng = random.Random(name)
    for cut in rng.sample(range(len(data) + 1), min(len(data) + 1, 150)):
        items, _ = read_all(side, [data[:cut], data[cut:]], startup=side == "client")
        assert items == whole, f"split at {cut}"
    for _ in range(30):
        cuts = [rng.randrange(len(data) + 1) for _ in range(rng.randrange(1, 60))]
        items, _ = read_all(side, chunked(data, cuts), startup=side == "client")
        assert items == whole


@pytest.mark.parametrize(
    "session", [s for s in SESSIONS if not s.endswith("_cancel")], ids=lambda s: s
)
def test_one_ready_for_query_per_query_sync_and_function_call(session: str) -> None:
    """A semantic check that both directions were framed right."""
    client, server = _session(DATA_DIR, session)
    c = Counter(type(m) for m in client)
    expected = 1 + c[Query] + c[Sync] + c[FunctionCall]  # 1: the end of start-up
    assert Counter(type(m) for m in server)[ReadyForQuery] == expected
    assert isinstance(client[0], StartupMessage)
    assert isinstance(client[-1], Terminate)
    assert isinstance(server[-1], ReadyForQuery)


def _auth_kinds(server: list[Message]) -> list[int]:
    return [m.kind for m in server if isinstance(m, Authentication)]


def _check_startup(server: list[Message]) -> dict[str, str]:
    params = {m.name: m.value for m in server if isinstance(m, ParameterStatus)}
    assert params["client_encoding"] == "UTF8"
    assert re.fullmatch(r"\d+(\.\d+)?.*", params["server_version"])
    keys = [m for m in server if isinstance(m, BackendKeyData)]
    assert len(keys) == 1
    assert keys[0].pid > 0
    assert len(keys[0].secret) == 4
    first_ready = next(m for m in server if isinstance(m, ReadyForQuery))
    assert first_ready.status == b"I"
    return params


def _check_scram(dir_: Path) -> None:
    client, server = _session(dir_, "pgwire_scram_psycopg")
    assert _auth_kinds(server) == [AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL, AUTH_OK]
    sasl = next(m for m in server if isinstance(m, Authentication))
    assert "SCRAM-SHA-256" in sasl.mechanisms
    cont = [m for m in server if isinstance(m, Authentication) and m.kind == AUTH_SASL_CONTINUE]
    assert cont[0].data.startswith(b"r=")
    start = client[0]
    assert isinstance(start, StartupMessage)
    assert start.params["user"] == "wire_scram"
    assert start.params["database"] == "wire"
    initial = client[1]
    assert isinstance(initial, AuthResponse)
    assert initial.data.startswith(b"SCRAM-SHA-256\x00")
    _check_startup(server)

    sqlstates = {m.sqlstate for m in server if isinstance(m, ErrorResponse)}
    assert {"42601", "22012", "23505", "57014"} <= sqlstates  # syntax, /0, duplicate, COPY
    statuses = {m.status for m in server if isinstance(m, ReadyForQuery)}
    assert statuses == {b"I", b"T", b"E"}
    directions = {m.direction for m in server if isinstance(m, CopyResponse)}
    assert directions == {b"G", b"H"}
    copied = b"".join(m.data for m in server if isinstance(m, CopyData))
    assert b"cherry" in copied
    assert b"tab\\there" in copied
    rows = [m.values() for m in server if isinstance(m, DataRow)]
    assert any(None in r for r in rows)
    assert any(b"" in r for r in rows)
    assert any(isinstance(m, EmptyQueryResponse) for m in server)
    assert any(isinstance(m, NoData) for m in server)
    notices = [m for m in server if isinstance(m, NoticeResponse)]
    assert any(m.message == "hello 42" for m in notices)
    notes = [m for m in server if isinstance(m, NotificationResponse)]
    assert [(n.channel, n.payload) for n in notes] == [("wire_channel", "payload ünïcode")]
    assert any(isinstance(m, ParameterStatus) and m.value == "renamed" for m in server)
    assert any(isinstance(m, CopyFail) for m in client)
    assert any(isinstance(m, Parse) and m.name for m in client)  # a named prepared statement
    descs = [m for m in server if isinstance(m, RowDescription)]
    assert any(c.format == 1 for d in descs for c in d.columns)  # binary=True


def _check_password(dir_: Path, session: str, kind: int) -> None:
    client, server = _session(dir_, session)
    assert _auth_kinds(server) == [kind, AUTH_OK]
    reply = client[1]
    assert isinstance(reply, AuthResponse)
    if kind == AUTH_MD5:
        salt = next(m for m in server if isinstance(m, Authentication)).data
        assert len(salt) == 4
        assert re.fullmatch(rb"md5[0-9a-f]{32}", reply.password())
    else:
        assert reply.password() == b"wire-test-password"
    _check_startup(server)


def _check_asyncpg(dir_: Path) -> None:
    client, server = _session(dir_, "pgwire_asyncpg")
    assert _auth_kinds(server) == [AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL, AUTH_OK]
    _check_startup(server)
    assert any(isinstance(m, Execute) and m.max_rows == 3 for m in client)
    assert any(isinstance(m, PortalSuspended) for m in server)
    assert any(isinstance(m, ParameterDescription) and m.type_oids for m in server)
    copy_in = [m for m in server if isinstance(m, CopyResponse)]
    assert copy_in and copy_in[0].direction == b"G"
    assert copy_in[0].overall_format == 1  # binary COPY
    copy_data = b"".join(m.data for m in client if isinstance(m, CopyData))
    assert copy_data.startswith(b"PGCOPY\n\xff\r\n\x00")
    assert any(isinstance(m, ErrorResponse) and m.sqlstate == "42P01" for m in server)
    assert any(isinstance(m, ErrorResponse) and m.sqlstate == "57014" for m in server)
    (cancel,) = _parse("client", (dir_ / "pgwire_asyncpg_cancel_client.bin").read_bytes())
    assert isinstance(cancel, CancelRequest)
    key = next(m for m in server if isinstance(m, BackendKeyData))
    assert (cancel.pid, cancel.secret) == (key.pid, key.secret)
    assert (dir_ / "pgwire_asyncpg_cancel_server.bin").read_bytes() == b""


def _check_raw(dir_: Path) -> None:
    client, server = _session(dir_, "pgwire_raw")
    nego = server[0]
    assert isinstance(nego, NegotiateProtocolVersion)
    # The docs call this field the "newest minor version", but the server really sends
    # PG_PROTOCOL_LATEST, the whole version number (3 << 16 | 0 for 3.0).
    assert nego.newest_minor == 3 << 16
    assert nego.unrecognized == ("_pq_.pgwarden_test",)
    assert _auth_kinds(server) == [AUTH_OK]
    _check_startup(server)
    assert any(isinstance(m, FunctionCall) for m in client)
    (result,) = [m for m in server if isinstance(m, FunctionCallResponse)]
    assert result.raw == b"V\x00\x00\x00\x09\x00\x00\x00\x017"  # abs(-7) = "7", text
    assert sum(isinstance(m, PortalSuspended) for m in server) == 2
    assert any(isinstance(m, ParameterDescription) and m.type_oids == (23,) for m in server)
    copy_out = [m for m in server if isinstance(m, CopyResponse) and m.direction == b"H"]
    assert copy_out[0].overall_format == 1
    assert any(isinstance(m, EmptyQueryResponse) for m in server)
    assert any(isinstance(m, NotificationResponse) and m.payload == "hi" for m in server)
    errors = [m.sqlstate for m in server if isinstance(m, ErrorResponse)]
    assert errors == ["42601", "57014", "22012"]


def _check_all(dir_: Path) -> None:
    _check_scram(dir_)
    _check_password(dir_, "pgwire_md5", AUTH_MD5)
    _check_password(dir_, "pgwire_cleartext", AUTH_CLEARTEXT)
    _check_asyncpg(dir_)
    _check_raw(dir_)


def test_recorded_sessions_decode_to_the_expected_messages() -> None:
    _check_all(DATA_DIR)


@pytest.mark.slow
def test_live_capture_through_a_relay(tmp_path: Path) -> None:
    """Record fresh traffic from a real server and run the same checks on it."""
    devcluster = pytest.importorskip("pgwarden.devcluster")
    try:
        devcluster.find_bindir()
    except devcluster.DevClusterError as exc:
        pytest.skip(str(exc))
    pytest.importorskip("psycopg")
    pytest.importorskip("asyncpg")
    from pgwire_capture import capture  # noqa: PLC0415

    files = capture(tmp_path)
    assert {p.name for p in files} == {p.name for p in DATA_DIR.glob("pgwire_*.bin")}
    for path in files:
        side: Side = "client" if path.stem.endswith("_client") else "server"
        data = path.read_bytes()
        assert b"".join(m.raw for m in _parse(side, data)) == data
    _check_all(tmp_path)
