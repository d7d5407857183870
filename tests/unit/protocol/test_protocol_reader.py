"""MessageReader framing: transcripts fed whole, byte by byte and split at every point; the
start-up packet rules; size limits and streaming; strict decoding of malformed bodies."""

from __future__ import annotations

import random
import struct

import pytest
from pgwire_samples import (
    bytewise,
    chunked,
    client_messages,
    client_transcript,
    drain,
    read_all,
    read_until_error,
    server_messages,
    server_transcript,
)

from pgwarden.protocol import MAX_STARTUP_PACKET, MessageReader, ProtocolError
from pgwarden.protocol.errors import Side
from pgwarden.protocol.messages import (
    AUTH_CLEARTEXT,
    AUTH_MD5,
    AUTH_OK,
    AUTH_SASL,
    BACKEND_DECODERS,
    CANCEL_REQUEST_CODE,
    FRONTEND_DECODERS,
    GSSENC_REQUEST_CODE,
    SSL_REQUEST_CODE,
    Authentication,
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
    ParameterDescription,
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
    decode_startup,
    frame,
)


def _startup_packet(version: int, body: bytes = b"") -> bytes:
    return struct.pack("!ii", 8 + len(body), version) + body


# ---------------------------------------------------------------------------------------------
# Transcripts


@pytest.fixture(params=["client", "server"])
def transcript(request: pytest.FixtureRequest) -> tuple[Side, bytes, list[Message]]:
    if request.param == "client":
        return "client", client_transcript(), client_messages()
    return "server", server_transcript(), server_messages()


def _read(side: Side, chunks: list[bytes]) -> list[Message | MessagePart]:
    items, reader = read_all(side, chunks, startup=side == "client")
    assert reader.buffered == 0
    assert not reader.streaming
    return items


def test_transcript_whole(transcript: tuple[Side, bytes, list[Message]]) -> None:
    side, data, expected = transcript
    items = _read(side, [data])
    assert [m.raw for m in items] == [m.raw for m in expected]
    assert b"".join(m.raw for m in items) == data
    for got, want in zip(items, expected, strict=True):
        assert type(got) is type(want)
        assert got == want  # every field, and raw byte for byte


def test_transcript_byte_at_a_time(transcript: tuple[Side, bytes, list[Message]]) -> None:
    side, data, _ = transcript
    assert _read(side, bytewise(data)) == _read(side, [data])


def test_transcript_every_split_point(transcript: tuple[Side, bytes, list[Message]]) -> None:
    side, data, _ = transcript
    whole = _read(side, [data])
    for cut in range(len(data) + 1):
        assert _read(side, [data[:cut], data[cut:]]) == whole, f"split at {cut}"


def test_transcript_random_chunks(transcript: tuple[Side, bytes, list[Message]]) -> None:
    side, data, _ = transcript
    whole = _read(side, [data])
    rng = random.Random(1234)
    for _ in range(200):
        cuts = [rng.randrange(len(data) + 1) for _ in range(rng.randrange(1, 40))]
        assert _read(side, chunked(data, cuts)) == whole


def test_next_before_any_data() -> None:
    for side in ("client", "server"):
        for startup in (False, True):
            reader = MessageReader(side, startup=startup)  # type: ignore[arg-type]
            assert reader.next() is None
            reader.feed(b"")
            assert reader.next() is None


def test_stream_continues_after_error_free_prefix() -> None:
    """Messages before a malformed one come out; the malformed one raises for its side."""
    good = Query.build("SELECT 1").raw + Sync.build().raw
    bad = frame(b"Q", b"no terminator")
    items, err, _ = read_until_error("client", [good + bad + Sync.build().raw])
    assert [type(m) for m in items] == [Query, Sync]
    assert err is not None
    assert err.side == "client"


def test_a_long_stream_in_small_chunks() -> None:
    """Hundreds of KB through one reader in small chunks, most messages split across two."""
    msgs = [DataRow.build([b"%d" % i, b"x" * (i % 300), None]) for i in range(3000)]
    data = b"".join(m.raw for m in msgs)
    assert len(data) > 300_000
    items, reader = read_all("server", [data[i : i + 777] for i in range(0, len(data), 777)])
    assert items == msgs
    assert reader.buffered == 0


def test_a_chunk_holding_one_whole_message_is_passed_on_without_a_copy() -> None:
    chunk = Query.build("SELECT abalance FROM pgbench_accounts WHERE aid = 1").raw
    reader = MessageReader("client")
    reader.feed(chunk)
    msg = reader.next()
    assert isinstance(msg, Query)
    assert msg.raw is chunk


def test_a_message_split_over_many_reads_is_joined_once_complete() -> None:
    """Chunks fed behind a partial message wait until they complete it: the buffer is not
    regrown (copied) at every read of a long message."""
    row = DataRow.build([b"v" * 300_000]).raw
    reader = MessageReader("server")
    chunks = [row[i : i + 1000] for i in range(0, len(row), 1000)]
    for fed, chunk in enumerate(chunks[:-1], 1):
        reader.feed(chunk)
        assert reader.next() is None
        assert reader.next_run(0x44) == []
        assert reader.buffered == sum(len(c) for c in chunks[:fed])
        assert len(reader._buf) <= 1000  # the first chunk only, until the message is whole
    reader.feed(chunks[-1])
    assert reader.next() == DataRow(row)
    assert reader.buffered == 0


def test_rows_completed_by_a_later_read_still_come_as_a_run() -> None:
    rows = [DataRow.build([b"%d" % i, b"x" * 50]).raw for i in range(4)]
    data = b"".join(rows)
    reader = MessageReader("server")
    reader.feed(data[: len(rows[0]) + 7])  # the first row and the start of the second
    assert reader.next_run(0x44) == [rows[0]]
    assert reader.next_run(0x44) == []
    reader.feed(data[len(rows[0]) + 7 :])
    assert reader.next_run(0x44) == rows[1:]
    assert reader.run_messages == 4
    assert reader.buffered == 0


def test_take_rest() -> None:
    reader = MessageReader("client", startup=True)
    reader.feed(SSLRequest.build().raw + b"Q\x00\x00")  # bytes smuggled after SSLRequest
    assert isinstance(reader.next(), SSLRequest)
    assert reader.take_rest() == b"Q\x00\x00"
    assert reader.buffered == 0
    assert reader.next() is None


# ---------------------------------------------------------------------------------------------
# Start-up packets


def test_ssl_then_startup_stays_in_startup_mode() -> None:
    startup = StartupMessage.build({"user": "u"})
    items, reader = read_all(
        "client", [SSLRequest.build().raw + startup.raw], startup=True, auto_startup=False
    )
    assert items == [SSLRequest.build(), startup]
    assert reader.startup  # the caller decides when typed messages begin


def test_startup_packet_at_the_limit_is_accepted() -> None:
    base = StartupMessage.build({"user": "u", "pad": ""})
    params = {"user": "u", "pad": "x" * (MAX_STARTUP_PACKET - len(base.raw))}
    msg = StartupMessage.build(params)
    assert len(msg.raw) == MAX_STARTUP_PACKET == 10_000
    items, _ = read_all("client", [msg.raw], startup=True)
    assert items == [msg]


@pytest.mark.parametrize("length", [MAX_STARTUP_PACKET + 1, 10_240, 2**31 - 1])
def test_startup_packet_over_the_limit_is_refused_from_its_length(length: int) -> None:
    reader = MessageReader("client", startup=True)
    reader.feed(struct.pack("!i", length))  # the length alone: nothing else is needed
    with pytest.raises(ProtocolError) as info:
        reader.next()
    assert info.value.side == "client"


@pytest.mark.parametrize("length", [-(2**31), -1, 0, 1, 4, 7])
def test_startup_packet_shorter_than_8_is_refused(length: int) -> None:
    reader = MessageReader("client", startup=True)
    reader.feed(struct.pack("!i", length))
    with pytest.raises(ProtocolError) as info:
        reader.next()
    assert info.value.side == "client"


@pytest.mark.parametrize(
    "version",
    [
        0,
        1 << 16,  # 1.0
        2 << 16,  # 2.0, the pre-7.4 protocol
        4 << 16,  # 4.0
        (2 << 16) | 3,
        0x7FFF0000,
        -1,
        (1234 << 16) | 5677,  # next to the special request codes
        (1234 << 16) | 5681,
    ],
)
def test_unknown_protocol_version_is_refused(version: int) -> None:
    packet = _startup_packet(version, b"user\x00u\x00\x00")
    with pytest.raises(ProtocolError) as info:
        read_all("client", [packet], startup=True)
    assert info.value.side == "client"
    with pytest.raises(ProtocolError):
        decode_startup(packet)


@pytest.mark.parametrize("minor", [0, 1, 2, 99, 0xFFFF])
def test_any_minor_of_protocol_3_is_decoded(minor: int) -> None:
    packet = _startup_packet((3 << 16) | minor, b"user\x00u\x00\x00")
    msg = decode_startup(packet)
    assert isinstance(msg, StartupMessage)
    assert msg.version == (3 << 16) | minor
    assert msg.params == {"user": "u"}


@pytest.mark.parametrize(
    "packet",
    [
        _startup_packet(SSL_REQUEST_CODE, b"\x00\x00\x00\x00"),  # SSLRequest is exactly 8
        _startup_packet(GSSENC_REQUEST_CODE, b"x"),
        _startup_packet(CANCEL_REQUEST_CODE),  # no pid
        _startup_packet(CANCEL_REQUEST_CODE, b"\x00\x00\x00\x01abc"),  # key of 3 bytes
        _startup_packet(CANCEL_REQUEST_CODE, b"\x00\x00\x00\x01" + b"k" * 257),
        _startup_packet(3 << 16),  # no terminator at all
        _startup_packet(3 << 16, b"user\x00u\x00"),  # list not terminated
        _startup_packet(3 << 16, b"user\x00u"),  # value not terminated
        _startup_packet(3 << 16, b"user\x00a\x00user\x00b\x00\x00"),  # duplicate parameter
        _startup_packet(3 << 16, b"user\x00u\x00\x00junk"),  # bytes after the terminator
        _startup_packet(3 << 16, b"\x00\x00"),
    ],
)
def test_malformed_startup_packets_are_refused(packet: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        read_all("client", [packet], startup=True)
    assert info.value.side == "client"


@pytest.mark.parametrize("key_length", [4, 32, 256])
def test_cancel_key_lengths(key_length: int) -> None:
    packet = _startup_packet(CANCEL_REQUEST_CODE, b"\x00\x00\x30\x39" + b"k" * key_length)
    msg = decode_startup(packet)
    assert msg == CancelRequest.build(12345, b"k" * key_length)


def test_startup_with_no_parameters() -> None:
    assert decode_startup(_startup_packet(3 << 16, b"\x00")) == StartupMessage.build({})


def test_startup_packet_non_utf8_is_not_an_exception() -> None:
    msg = decode_startup(_startup_packet(3 << 16, b"user\x00\xff\xfe\x00\x00"))
    assert isinstance(msg, StartupMessage)
    assert msg.params["user"].encode("utf-8", "surrogateescape") == b"\xff\xfe"


# ---------------------------------------------------------------------------------------------
# Typed messages: lengths, types, limits


@pytest.mark.parametrize("side", ["client", "server"])
@pytest.mark.parametrize("length", [-(2**31), -1, 0, 1, 2, 3])
def test_message_length_below_4_is_refused(side: Side, length: int) -> None:
    reader = MessageReader(side)
    reader.feed(b"d" + struct.pack("!i", length))
    with pytest.raises(ProtocolError) as info:
        reader.next()
    assert info.value.side == side


FRONTEND_CODES = set(b"QPBEDCSHXdcfFp")
BACKEND_CODES = set(b"RK123CdcGHWDIENVvnAtSsZT")


def test_decoder_tables_cover_the_documented_messages() -> None:
    assert {c[0] for c in FRONTEND_DECODERS} == FRONTEND_CODES
    assert {c[0] for c in BACKEND_DECODERS} == BACKEND_CODES


@pytest.mark.parametrize("side", ["client", "server"])
def test_unknown_message_types_are_refused_for_their_side(side: Side) -> None:
    known = FRONTEND_CODES if side == "client" else BACKEND_CODES
    for code in range(256):
        if code in known:
            continue
        raw = bytes([code]) + b"\x00\x00\x00\x04"
        reader = MessageReader(side)
        reader.feed(raw)
        with pytest.raises(ProtocolError) as info:
            reader.next()
        assert info.value.side == side, bytes([code])
        assert "unknown message type" in info.value.message
        with pytest.raises(ProtocolError) as info2:
            decode(side, raw)
        assert info2.value.side == side


def test_server_only_type_from_client_names_the_client() -> None:
    reader = MessageReader("client")
    reader.feed(ReadyForQuery.build(b"I").raw)
    with pytest.raises(ProtocolError) as info:
        reader.next()
    assert info.value.side == "client"
    reader = MessageReader("server")
    reader.feed(Query.build("SELECT 1").raw)
    with pytest.raises(ProtocolError) as info:
        reader.next()
    assert info.value.side == "server"


@pytest.mark.parametrize(
    ("side", "raw"),
    [
        ("client", Query.build("x" * 94).raw),
        ("server", Authentication.build(11, b"y" * 91).raw),
    ],
)
def test_message_of_exactly_max_message_is_buffered(side: Side, raw: bytes) -> None:
    assert len(raw) == 100
    items, _ = read_all(side, bytewise(raw), max_message=100)
    assert [m.raw for m in items] == [raw]


@pytest.mark.parametrize(
    ("side", "code"),
    [
        ("client", b"Q"),
        ("client", b"D"),  # Describe: only the server's 'D' (DataRow) streams
        ("client", b"p"),
        ("client", b"F"),
        ("server", b"T"),
        ("server", b"E"),
        ("server", b"N"),
        ("server", b"R"),
        ("server", b"V"),
    ],
)
def test_oversized_message_refused_from_its_header(side: Side, code: bytes) -> None:
    reader = MessageReader(side, max_message=1000)
    reader.feed(code + struct.pack("!i", 1000))  # total 1001 bytes: one over the limit
    with pytest.raises(ProtocolError) as info:
        reader.next()
    assert info.value.side == side
    assert reader.buffered == 5  # refused before any body was buffered


@pytest.mark.parametrize(
    ("side", "msg"),
    [
        ("server", DataRow.build([b"a" * 3000, None, b"", b"b" * 17])),
        ("server", CopyData.build(bytes(range(256)) * 20)),
        ("client", CopyData.build(b"\n".join(b"%d\trow" % i for i in range(500)))),
    ],
)
def test_oversized_datarow_and_copydata_stream_as_parts(side: Side, msg: Message) -> None:
    after = Sync.build() if side == "client" else ReadyForQuery.build(b"I")
    data = msg.raw + after.raw
    max_message = 1024
    assert len(msg.raw) > max_message
    for chunks in ([data], bytewise(data), chunked(data, range(0, len(data), 700))):
        reader = MessageReader(side, max_message=max_message)
        items: list[Message | MessagePart] = []
        for chunk in chunks:
            reader.feed(chunk)
            drain(reader, items)
            # never holds the whole oversized message
            assert reader.buffered <= max(len(chunk), 5)
        parts = [i for i in items if isinstance(i, MessagePart)]
        assert parts, "the oversized message must be streamed"
        assert items[-1] == after
        assert len(parts) == len(items) - 1
        assert parts[0].first and not any(p.first for p in parts[1:])
        assert parts[-1].last and not any(p.last for p in parts[:-1])
        assert all(p.code == msg.raw[:1] for p in parts)
        assert all(p.total_length == len(msg.raw) for p in parts)
        assert all(p.raw == p.data and p.data for p in parts)
        assert b"".join(p.data for p in parts) == msg.raw
        assert parts[0].data[:5] == msg.raw[:5]  # the first part starts with the header
        assert not reader.streaming
        assert reader.buffered == 0


def test_streaming_property_mid_message() -> None:
    raw = DataRow.build([b"z" * 5000]).raw
    reader = MessageReader("server", max_message=100)
    reader.feed(raw[:10])
    part = reader.next()
    assert isinstance(part, MessagePart)
    assert part.first and not part.last
    assert part.data == raw[:10]
    assert reader.streaming
    assert reader.next() is None
    reader.feed(raw[10:])
    last = reader.next()
    assert isinstance(last, MessagePart)
    assert last.last and not last.first
    assert last.data == raw[10:]
    assert not reader.streaming


def test_huge_declared_datarow_is_streamed_not_buffered() -> None:
    """A 2 GB DataRow header does not make the reader wait for (or hold) 2 GB."""
    reader = MessageReader("server", max_message=1 << 20)
    reader.feed(b"D" + struct.pack("!i", 2**31 - 1) + b"\x00\x01")
    part = reader.next()
    assert isinstance(part, MessagePart)
    assert part.total_length == 2**31
    assert reader.buffered == 0
    assert reader.streaming


# ---------------------------------------------------------------------------------------------
# Strict decoding: malformed bodies raise ProtocolError for the sender's side


MALFORMED: list[tuple[Side, bytes]] = [
    ("client", frame(b"Q", b"SELECT 1")),  # unterminated
    ("client", frame(b"Q", b"SELECT 1\x00x")),  # trailing bytes
    ("client", frame(b"Q")),
    ("client", frame(b"P", b"s\x00SELECT 1\x00")),  # missing parameter type count
    ("client", frame(b"P", b"s\x00SELECT 1\x00\x00\x02\x00\x00\x00\x17")),  # one type short
    ("client", frame(b"B", b"\x00\x00\x00\x01\x00\x02\x00\x00\x00\x00")),  # format code 2
    ("client", frame(b"B", b"\x00\x00\x00\x02\x00\x00\x00\x00\x00\x01\xff\xff\xff\xff\x00\x00")),
    ("client", frame(b"B", b"\x00\x00\x00\x00\x00\x01\xff\xff\xff\xfe\x00\x00")),  # length -2
    ("client", frame(b"B", b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x05abc\x00\x00")),  # short
    ("client", frame(b"B", b"\x00\x00\x00\x00\x00\x00\x00\x01\x00\x05")),  # result format 5
    ("client", frame(b"E", b"\x00\x00\x00")),  # truncated row limit
    ("client", frame(b"D", b"Xname\x00")),  # bad kind
    ("client", frame(b"C", b"S")),  # no name
    ("client", frame(b"C", b"")),
    ("client", frame(b"S", b"\x00")),  # Sync has no body
    ("client", frame(b"H", b"x")),
    ("client", frame(b"X", b"x")),
    ("client", frame(b"c", b"x")),
    ("client", frame(b"f", b"reason")),
    ("client", frame(b"F", b"\x00\x00")),
    ("server", frame(b"R")),
    ("server", frame(b"R", b"\x00\x00\x00\x00\x00")),  # AuthenticationOk with data
    ("server", frame(b"R", b"\x00\x00\x00\x03x")),  # cleartext with data
    ("server", frame(b"R", b"\x00\x00\x00\x05\x01\x02\x03")),  # 3-byte md5 salt
    ("server", frame(b"R", b"\x00\x00\x00\x05\x01\x02\x03\x04\x05")),
    ("server", frame(b"R", b"\x00\x00\x00\x0aSCRAM-SHA-256")),  # SASL list unterminated
    ("server", frame(b"R", b"\x00\x00\x00\x0aSCRAM-SHA-256\x00")),  # no empty terminator
    ("server", frame(b"R", b"\x00\x00\x00\x0a")),
    ("server", frame(b"R", b"\x00\x00\x00\x0a\x00\x00")),  # empty mechanism name
    ("server", frame(b"R", b"\x00\x00\x00\x0aA\x00\x00B\x00\x00")),
    ("server", frame(b"K", b"\x00\x00\x00\x01\x01\x02\x03")),  # 3-byte key
    ("server", frame(b"K", b"\x00\x00\x00\x01" + b"k" * 257)),
    ("server", frame(b"1", b"x")),
    ("server", frame(b"C", b"SELECT 1")),
    ("server", frame(b"G", b"\x00\x00\x01")),  # one column format missing
    ("server", frame(b"G", b"")),
    ("server", frame(b"D", b"\x00\x01")),  # one value announced, none present
    ("server", frame(b"D", b"\x00\x01\xff\xff\xff\xfe")),  # length -2
    ("server", frame(b"D", b"\x00\x01\x00\x00\x00\x03ab")),  # value shorter than its length
    ("server", frame(b"D", b"\x00\x01\x00\x00\x00\x01abc")),  # trailing bytes
    ("server", frame(b"D", b"\x80\x00")),  # column count above 32767
    ("server", frame(b"D", b"\x00")),
    ("server", frame(b"E", b"SERROR\x00")),  # missing field-list terminator
    ("server", frame(b"E", b"SERROR")),
    ("server", frame(b"N", b"")),
    ("server", frame(b"E", b"\x00x")),
    ("server", frame(b"v", b"\x00\x00\x00\x00\xff\xff\xff\xff")),  # negative option count
    ("server", frame(b"v", b"\x00\x00\x00\x00\x00\x00\x00\x02a\x00")),  # one option short
    ("server", frame(b"A", b"\x00\x00\x00\x01chan\x00")),  # no payload
    ("server", frame(b"t", b"\x00\x02\x00\x00\x00\x17")),
    ("server", frame(b"S", b"name\x00")),
    ("server", frame(b"Z", b"X")),  # bad transaction status
    ("server", frame(b"Z", b"")),
    ("server", frame(b"Z", b"II")),
    ("server", frame(b"T", b"\x00\x01name\x00\x00\x00")),  # truncated column
    ("server", frame(b"T", b"\x00\x01name\x00" + b"\x00" * 19)),  # trailing byte
    ("server", frame(b"s", b"x")),
    ("server", frame(b"I", b"x")),
    ("server", frame(b"n", b"x")),
]


@pytest.mark.parametrize(("side", "raw"), MALFORMED)
def test_malformed_body_is_a_protocol_error(side: Side, raw: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(side, raw)
    assert info.value.side == side
    reader = MessageReader(side)
    reader.feed(raw)
    with pytest.raises(ProtocolError) as info:
        reader.next()
    assert info.value.side == side


def _strict_messages() -> list[tuple[Side, Message]]:
    """Messages whose body has no opaque tail: one byte more or less is malformed."""
    client: list[Message] = [
        Query.build("SELECT 1"),
        Parse.build("s", "SELECT $1", [23]),
        Bind.build("p", "s", [b"1", None], [0, 1], [1]),
        Execute.build("p", 5),
        Describe.build(b"S", "s"),
        Close.build(b"P", "p"),
        Sync.build(),
        Flush.build(),
        Terminate.build(),
        CopyDone.build(),
        CopyFail.build("why"),
    ]
    server: list[Message] = [
        Authentication.build(AUTH_OK),
        Authentication.build(AUTH_CLEARTEXT),
        Authentication.build(AUTH_MD5, b"salt"),
        Authentication.build(AUTH_SASL, b"SCRAM-SHA-256\x00\x00"),
        ParseComplete.build(),
        BindComplete.build(),
        CloseComplete.build(),
        CommandComplete.build("SELECT 1"),
        decode("server", b"G\x00\x00\x00\x09\x00\x00\x01\x00\x00"),
        DataRow.build([b"a", None, b""]),
        EmptyQueryResponse.build(),
        ErrorResponse.build("XX000", "boom"),
        NoticeResponse.build("note"),
        NegotiateProtocolVersion.build(0, ["_pq_.x"]),
        NoData.build(),
        NotificationResponse.build(1, "c", "p"),
        decode("server", b"t\x00\x00\x00\x0a\x00\x01\x00\x00\x00\x17"),
        ParameterStatus.build("a", "b"),
        PortalSuspended.build(),
        ReadyForQuery.build(b"I"),
        RowDescription.build([Column("c", 1, 1, 23, 4, -1, 0)]),
    ]
    return [("client", m) for m in client] + [("server", m) for m in server]


STRICT = _strict_messages()


@pytest.mark.parametrize(
    ("side", "msg"), STRICT, ids=[f"{s}-{type(m).__name__}" for s, m in STRICT]
)
def test_one_byte_more_or_less_is_refused(side: Side, msg: Message) -> None:
    body = msg.raw[5:]
    variants = [body + b"\x00", body + b"x"]
    if body:
        variants.append(body[:-1])
    for bad_body in variants:
        with pytest.raises(ProtocolError) as info:
            decode(side, frame(msg.raw[:1], bad_body))
        assert info.value.side == side


def test_one_byte_more_or_less_in_startup_packets_is_refused() -> None:
    for msg in (
        StartupMessage.build({"user": "u"}),
        SSLRequest.build(),
        GSSENCRequest.build(),
    ):
        for bad in (msg.raw[4:] + b"\x00", msg.raw[4:] + b"x", msg.raw[4:-1]):
            with pytest.raises(ProtocolError):
                decode_startup(struct.pack("!i", len(bad) + 4) + bad)


def test_malformed_datarow_detected_at_decode_not_at_values() -> None:
    with pytest.raises(ProtocolError):
        decode("server", frame(b"D", b"\x00\x02\x00\x00\x00\x01a"))


# ---------------------------------------------------------------------------------------------
# Regression tests for codec bugs found while writing these tests


@pytest.mark.parametrize(
    "raw",
    [
        b"S\x00\x00\x00\x08",  # declares 4 body bytes that are not there
        b"S\x00\x00",  # shorter than a header
        b"S",
        b"",
        b"Q\x00\x00\x00\x06x\x00trailing",  # longer than declared
        b"S\x00\x00\x00\x04\x00",
    ],
)
def test_decode_checks_the_length_field_against_raw(raw: bytes) -> None:
    """``raw`` is what the relay forwards: decode() must not accept a length field that
    disagrees with it (it used to return Sync() for b"S\\x00\\x00")."""
    with pytest.raises(ProtocolError) as info:
        decode("client", raw)
    assert info.value.side == "client"


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\x00\x00\x10\x04\xd2\x16\x2f",  # SSLRequest claiming 16 bytes
        b"\x00\x00\x00\x08\x04\xd2\x16",
        b"",
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f\x00",
    ],
)
def test_decode_startup_checks_the_length_field_against_raw(raw: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_startup(raw)
    assert info.value.side == "client"


@pytest.mark.parametrize("n", [32767, 32768, 40000, 65535])
def test_up_to_65535_parameters(n: int) -> None:
    """PostgreSQL reads Int16 counts as unsigned and accepts 65535 bind parameters; the codec
    used to refuse more than 32767 (and build() raised struct.error)."""
    parse = Parse.build("", "INSERT ...", [23] * n)
    assert decode("client", parse.raw) == parse
    bind = Bind.build("", "", [b"1"] * n, [0] * n, [1])
    decoded = decode("client", bind.raw)
    assert decoded == bind
    assert len(decoded.params) == n  # type: ignore[attr-defined]
    desc = frame(b"t", struct.pack("!H", n) + b"\x00\x00\x00\x17" * n)
    pd = decode("server", desc)
    assert isinstance(pd, ParameterDescription)
    assert pd.type_oids == (23,) * n
    items, _ = read_all("client", [parse.raw, bind.raw])
    assert items == [parse, bind]


def test_counts_over_65535_do_not_fit() -> None:
    with pytest.raises(ProtocolError):
        decode("server", frame(b"D", b"\xff\xff"))  # 65535 columns announced, none sent


@pytest.mark.parametrize("oid", [2**31 - 1, 2**31, 3_000_000_000, 2**32 - 1])
def test_oids_above_2_31_round_trip(oid: int) -> None:
    """OIDs are unsigned 32-bit. Decoding yields values up to 2**32-1, and the relay rebuilds
    Parse and RowDescription from decoded fields; build() used to raise struct.error."""
    parse = Parse.build("s", "SELECT $1", [oid, 25])
    assert parse.param_types == (oid, 25)
    assert decode("client", parse.raw) == parse

    wire = frame(
        b"T",
        b"\x00\x01c\x00" + struct.pack("!IhIhih", oid, 1, oid, -1, -1, 0),
    )
    desc = decode("server", wire)
    assert isinstance(desc, RowDescription)
    assert desc.columns == (Column("c", oid, 1, oid, -1, -1, 0),)
    assert RowDescription.build(desc.columns).raw == wire
    again = decode("client", Parse.build("s", "SELECT $1", [desc.columns[0].type_oid]).raw)
    assert again.param_types == (oid,)  # type: ignore[attr-defined]


def test_negative_oid_arguments_keep_their_old_encoding() -> None:
    assert Parse.build("", "x", [-1]).raw == Parse.build("", "x", [2**32 - 1]).raw
    assert decode("client", Parse.build("", "x", [-1]).raw).param_types == (2**32 - 1,)  # type: ignore[attr-defined]


def test_sasl_mechanisms_of_a_hostile_server_never_raise_unicode_errors() -> None:
    msg = decode("server", frame(b"R", struct.pack("!i", AUTH_SASL) + b"\xff\xfe\x00X\x00\x00"))
    assert isinstance(msg, Authentication)
    assert msg.mechanisms == ("\udcff\udcfe", "X")
    assert Authentication.build(AUTH_SASL, b"\xc3\x00\x00").mechanisms == ("\udcc3",)
    assert Authentication.build(AUTH_MD5, b"salt").mechanisms == ()


def test_repeated_statement_messages_are_decoded_once_per_encoding() -> None:
    # The Parse, Describe and Execute of a statement run again come back byte for byte: the
    # same (immutable) message is returned, equal to a fresh decoding; a Bind is new each time.
    def read(encoding: str) -> list[object]:
        reader = MessageReader("client")
        reader.encoding = encoding
        out: list[object] = []
        for _ in range(2):
            reader.feed(
                Parse.build("", "SELECT 'é' WHERE 1 = $1").raw
                + Bind.build("", "", [b"1"]).raw
                + Execute.build("", 0).raw
            )
            drain(reader, out)  # type: ignore[arg-type]
        return out

    first = read("utf-8")
    assert first[0] is first[3] and first[2] is first[5]
    assert first[1] is not first[4] and first[1] == first[4]
    assert isinstance(first[2], Execute) and first[2].portal == "" and first[2].max_rows == 0
    latin = read("latin-1")
    assert latin[0] is not first[0] and latin[0].sql != first[0].sql  # type: ignore[attr-defined]
