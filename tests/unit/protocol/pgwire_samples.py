"""Shared helpers for the protocol tests: hand-built transcripts and a bounded stream driver."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

from pgwarden.protocol import MessageReader, ProtocolError
from pgwarden.protocol.errors import Side
from pgwarden.protocol.messages import (
    AUTH_OK,
    AUTH_SASL,
    AUTH_SASL_CONTINUE,
    AUTH_SASL_FINAL,
    Authentication,
    AuthResponse,
    BackendKeyData,
    Bind,
    BindComplete,
    CancelRequest,
    Close,
    CloseComplete,
    Column,
    CommandComplete,
    CopyData,
    CopyDone,
    CopyFail,
    DataRow,
    Describe,
    EmptyQueryResponse,
    ErrorResponse,
    Execute,
    Flush,
    GSSENCRequest,
    Message,
    MessagePart,
    NegotiateProtocolVersion,
    NoData,
    NoticeResponse,
    NotificationResponse,
    ParameterStatus,
    Parse,
    ParseComplete,
    PortalSuspended,
    Query,
    ReadyForQuery,
    RowDescription,
    SSLRequest,
    StartupMessage,
    Sync,
    Terminate,
    decode,
    frame,
)

DATA_DIR = Path(__file__).resolve().parents[2] / "data"

Item = Message | MessagePart


def drain(reader: MessageReader, out: list[Item], *, auto_startup: bool = True) -> None:
    """Call next() until it returns None, appending to ``out``.

    Bounded: every non-None result consumes at least one byte, so more results than buffered
    bytes means the reader is looping without progress. ProtocolError propagates.
    With ``auto_startup`` a StartupMessage switches the reader to typed messages, as the
    gateway does (SSLRequest / GSSENCRequest keep it in start-up mode).
    """
    budget = reader.buffered + 1
    while True:
        budget -= 1
        assert budget >= 0, "MessageReader.next() made no progress"
        item = reader.next()
        if item is None:
            return
        out.append(item)
        if auto_startup and isinstance(item, StartupMessage):
            reader.startup = False


def read_all(
    side: Side,
    chunks: Iterable[bytes],
    *,
    startup: bool = False,
    max_message: int | None = None,
    auto_startup: bool = True,
) -> tuple[list[Item], MessageReader]:
    """Feed ``chunks`` one at a time, draining after each; returns (items, reader)."""
    kwargs = {} if max_message is None else {"max_message": max_message}
    reader = MessageReader(side, startup=startup, **kwargs)
    out: list[Item] = []
    for chunk in chunks:
        reader.feed(chunk)
        drain(reader, out, auto_startup=auto_startup)
    return out, reader


def read_until_error(
    side: Side,
    chunks: Iterable[bytes],
    *,
    startup: bool = False,
    max_message: int | None = None,
) -> tuple[list[Item], ProtocolError | None, MessageReader]:
    """Like read_all, but a ProtocolError ends the stream and is returned."""
    kwargs = {} if max_message is None else {"max_message": max_message}
    reader = MessageReader(side, startup=startup, **kwargs)
    out: list[Item] = []
    try:
        for chunk in chunks:
            reader.feed(chunk)
            drain(reader, out)
    except ProtocolError as exc:
        return out, exc, reader
    return out, None, reader


def merged(items: Sequence[Item]) -> list[tuple[str, bytes]]:
    """(type name, raw) per message, with the MessageParts of one message joined together."""
    out: list[tuple[str, bytes]] = []
    partial = b""
    for item in items:
        if isinstance(item, MessagePart):
            partial += item.data
            if item.last:
                out.append(("part:" + item.code.decode("latin-1"), partial))
                partial = b""
        else:
            out.append((type(item).__name__, item.raw))
    if partial:
        out.append(("part-unfinished", partial))
    return out


def chunked(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """Split data at the given offsets (clamped and sorted)."""
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    out, prev = [], 0
    for p in points:
        out.append(data[prev:p])
        prev = p
    out.append(data[prev:])
    return out


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# ---------------------------------------------------------------------------------------------
# Hand-built transcripts: a full start-up, simple and extended queries, a pipeline with a row
# limit, COPY in / out / fail, errors, notices and notifications.

COLUMNS = (
    Column("id", 16384, 1, 23, 4, -1, 0),
    Column("name", 16384, 2, 25, -1, -1, 0),
    Column("?column?", 0, 0, 3_000_000_000, -1, -1, 1),  # OID above 2**31
)


def _function_call(oid: int, args: Sequence[bytes | None]) -> bytes:
    body = struct.pack("!Ih", oid, 1) + struct.pack("!h", 0) + struct.pack("!h", len(args))
    for a in args:
        body += struct.pack("!i", -1) if a is None else struct.pack("!i", len(a)) + a
    return frame(b"F", body + struct.pack("!h", 0))


def client_messages() -> list[Message]:
    return [
        GSSENCRequest.build(),
        SSLRequest.build(),
        StartupMessage.build(
            {"user": "alice", "database": "shop", "application_name": "psql", "options": ""}
        ),
        AuthResponse.sasl_initial("SCRAM-SHA-256", b"n,,n=,r=rOprNGfwEbeRWgbNEkqO"),
        AuthResponse.build(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF,p=dHzbZ"),
        Query.build("SELECT id, name FROM items; SELECT ''"),
        Query.build(""),
        Parse.build("s1", "SELECT * FROM items WHERE id = $1 AND name = $2", [23, 25]),
        Describe.build(b"S", "s1"),
        Bind.build("p1", "s1", [b"\x00\x00\x00\x01", None], [1, 0], [0, 1]),
        Describe.build(b"P", "p1"),
        Execute.build("p1", 2),
        Execute.build("p1", 0),
        Close.build(b"P", "p1"),
        Close.build(b"S", "s1"),
        Sync.build(),
        Parse.build("", "INSERT INTO items VALUES ($1, $2)"),
        Bind.build("", "", [b"7", b""]),
        Execute.build(),
        Flush.build(),
        Sync.build(),
        Query.build("COPY items FROM STDIN"),
        CopyData.build(b"1\talice\n"),
        CopyData.build(b"2\t\\N\n"),
        CopyData.build(b""),
        CopyDone.build(),
        Query.build("COPY items FROM STDIN"),
        CopyData.build(b"3\tbob\n"),
        CopyFail.build("client gave up"),
        Query.build("COPY items TO STDOUT"),
        Query.build("SELEC 1"),
        Query.build("SELECT 'ünïcødé ✓'"),
        decode("client", _function_call(1397, [b"-7"])),
        Query.build("LISTEN chan"),
        Terminate.build(),
    ]


def client_transcript() -> bytes:
    return b"".join(m.raw for m in client_messages())


def server_messages() -> list[Message]:
    return [
        Authentication.build(AUTH_SASL, b"SCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00"),
        Authentication.build(AUTH_SASL_CONTINUE, b"r=rOprNGfwEbeRWgbNEkqO%hvYD,s=W22Z,i=4096"),
        Authentication.build(AUTH_SASL_FINAL, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
        Authentication.build(AUTH_OK),
        NegotiateProtocolVersion.build(0, ["_pq_.unknown"]),
        ParameterStatus.build("server_version", "16.4"),
        ParameterStatus.build("client_encoding", "UTF8"),
        ParameterStatus.build("application_name", ""),
        BackendKeyData.build(4242, b"\x01\x02\x03\x04"),
        ReadyForQuery.build(b"I"),
        RowDescription.build(COLUMNS[:2]),
        DataRow.build([b"1", b"alice"]),
        DataRow.build([b"2", None]),
        CommandComplete.build("SELECT 2"),
        RowDescription.build([Column("?column?", 0, 0, 25, -1, -1, 0)]),
        DataRow.build([b""]),
        CommandComplete.build("SELECT 1"),
        ReadyForQuery.build(b"I"),
        EmptyQueryResponse.build(),
        ReadyForQuery.build(b"I"),
        ParseComplete.build(),
        decode("server", b"t\x00\x00\x00\x0e\x00\x02\x00\x00\x00\x17\x00\x00\x00\x19"),
        RowDescription.build(COLUMNS),
        BindComplete.build(),
        RowDescription.build(COLUMNS),
        DataRow.build([b"\x00\x00\x00\x01", b"alice", b"\x00" * 8]),
        DataRow.build([b"\x00\x00\x00\x02", None, b""]),
        PortalSuspended.build(),
        CommandComplete.build("SELECT 0"),
        CloseComplete.build(),
        CloseComplete.build(),
        ReadyForQuery.build(b"I"),
        ParseComplete.build(),
        BindComplete.build(),
        CommandComplete.build("INSERT 0 1"),
        ReadyForQuery.build(b"I"),
        decode("server", b"G\x00\x00\x00\x0b\x00\x00\x02\x00\x00\x00\x00"),  # CopyInResponse, text
        CommandComplete.build("COPY 2"),
        ReadyForQuery.build(b"I"),
        decode("server", b"G\x00\x00\x00\x0b\x00\x00\x02\x00\x00\x00\x00"),
        ErrorResponse.build("57014", "COPY from stdin failed: client gave up", where="COPY items"),
        ReadyForQuery.build(b"I"),
        decode("server", b"H\x00\x00\x00\x0b\x00\x00\x02\x00\x00\x00\x00"),  # CopyOutResponse
        CopyData.build(b"1\talice\n"),
        CopyData.build(b"2\t\\N\n"),
        CopyDone.build(),
        CommandComplete.build("COPY 2"),
        ReadyForQuery.build(b"T"),
        ErrorResponse.build("42601", 'syntax error at or near "SELEC"', position="1"),
        ReadyForQuery.build(b"E"),
        NoticeResponse.build("there is no transaction in progress", "WARNING", "25P01"),
        RowDescription.build([Column("?column?", 0, 0, 25, -1, -1, 0)]),
        DataRow.build(["ünïcødé ✓".encode()]),
        CommandComplete.build("SELECT 1"),
        ReadyForQuery.build(b"I"),
        decode("server", b"V\x00\x00\x00\x09\x00\x00\x00\x017"),  # FunctionCallResponse "7"
        ReadyForQuery.build(b"I"),
        CommandComplete.build("LISTEN"),
        NotificationResponse.build(4243, "chan", "payload"),
        NoData.build(),
        decode("server", b"W\x00\x00\x00\x07\x00\x00\x00"),  # CopyBothResponse
        CopyData.build(b"w" + b"\x00" * 24),
        CopyDone.build(),
        ReadyForQuery.build(b"I"),
    ]


def server_transcript() -> bytes:
    return b"".join(m.raw for m in server_messages())


def real_transcripts() -> list[tuple[str, Side, bytes]]:
    """(file name, side, bytes) of every recorded stream in tests/data."""
    out: list[tuple[str, Side, bytes]] = []
    for path in sorted(DATA_DIR.glob("pgwire_*.bin")):
        side: Side = "client" if path.stem.endswith("_client") else "server"
        out.append((path.name, side, path.read_bytes()))
    return out


def real_messages() -> list[tuple[Side, bytes]]:
    """Every typed message (side, raw) found in the recorded transcripts."""
    out: list[tuple[Side, bytes]] = []
    for _, side, data in real_transcripts():
        items, _ = read_all(side, [data], startup=side == "client")
        out.extend(
            (side, m.raw)
            for m in items
            if isinstance(m, Message) and not isinstance(m, StartupMessage | CancelRequest)
        )
    return out
