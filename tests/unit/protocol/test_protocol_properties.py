"""Hypothesis properties of the codec and the framing reader.

- any byte string, fed whole or split anywhere, yields messages or raises ProtocolError
  (never another exception, never a loop without progress), with bounded buffering;
- framing is lossless: the raws handed out are exactly the bytes consumed;
- build(...) of random fields decodes back to an equal message;
- mutated valid messages decode or raise ProtocolError;
- oversized DataRow / CopyData stream as parts that concatenate to the original bytes.
"""

from __future__ import annotations

import functools
import struct

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pgwire_samples import (
    chunked,
    client_messages,
    drain,
    merged,
    read_until_error,
    real_messages,
    server_messages,
)

from pgwarden.protocol import MAX_STARTUP_PACKET, MessageReader, ProtocolError
from pgwarden.protocol.encodings import python_codec
from pgwarden.protocol.errors import Side
from pgwarden.protocol.messages import (
    AUTH_CLEARTEXT,
    AUTH_GSS,
    AUTH_GSS_CONTINUE,
    AUTH_MD5,
    AUTH_OK,
    AUTH_SASL,
    AUTH_SASL_CONTINUE,
    AUTH_SASL_FINAL,
    AUTH_SSPI,
    BACKEND_DECODERS,
    CANCEL_REQUEST_CODE,
    FRONTEND_DECODERS,
    GSSENC_REQUEST_CODE,
    SSL_REQUEST_CODE,
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
    _Reader,
    _values,
    datarow_values,
    decode,
    decode_startup,
    frame,
    int16_at,
    int32_at,
    uint16_at,
)

PROPS = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(PROPS, max_examples=150)

SIDES: st.SearchStrategy[Side] = st.sampled_from(["client", "server"])
I16 = st.integers(-(2**15), 2**15 - 1)
I32 = st.integers(-(2**31), 2**31 - 1)
OID = st.integers(0, 2**32 - 1)
TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=24)
NAME = st.text(st.characters(min_codepoint=1, max_codepoint=0x7F), min_size=1, max_size=12)
VALUE = st.none() | st.binary(max_size=24)
FMT = st.sampled_from([0, 1])


# ---------------------------------------------------------------------------------------------
# Strategies for valid messages


@st.composite
def binds(draw: st.DrawFn) -> Bind:
    params = draw(st.lists(VALUE, max_size=6))
    formats = draw(
        st.one_of(
            st.just([]),
            FMT.map(lambda f: [f]),
            st.lists(FMT, min_size=len(params), max_size=len(params)),
        )
    )
    return Bind.build(draw(TEXT), draw(TEXT), params, formats, draw(st.lists(FMT, max_size=4)))


@st.composite
def function_calls(draw: st.DrawFn) -> Message:
    args = draw(st.lists(VALUE, max_size=3))
    body = struct.pack("!I", draw(OID))
    fmts = draw(st.lists(FMT, max_size=3))
    body += struct.pack("!h", len(fmts)) + b"".join(struct.pack("!h", f) for f in fmts)
    body += struct.pack("!h", len(args))
    for a in args:
        body += struct.pack("!i", -1) if a is None else struct.pack("!i", len(a)) + a
    return decode("client", frame(b"F", body + struct.pack("!h", draw(FMT))))


FRONTEND = st.one_of(
    st.builds(Query.build, TEXT),
    st.builds(Parse.build, TEXT, TEXT, st.lists(OID, max_size=5)),
    binds(),
    st.builds(Execute.build, TEXT, I32),
    st.builds(Describe.build, st.sampled_from([b"S", b"P"]), TEXT),
    st.builds(Close.build, st.sampled_from([b"S", b"P"]), TEXT),
    st.sampled_from([Sync.build(), Flush.build(), Terminate.build(), CopyDone.build()]),
    st.builds(CopyData.build, st.binary(max_size=40)),
    st.builds(CopyFail.build, TEXT),
    st.builds(AuthResponse.build, st.binary(max_size=40)),
    st.builds(AuthResponse.sasl_initial, NAME, st.binary(max_size=40)),
    function_calls(),
)


@st.composite
def copy_responses(draw: st.DrawFn) -> Message:
    fmts = draw(st.lists(FMT, max_size=5))
    body = bytes([draw(FMT)]) + struct.pack("!h", len(fmts))
    body += b"".join(struct.pack("!h", f) for f in fmts)
    return decode("server", frame(draw(st.sampled_from([b"G", b"H", b"W"])), body))


@st.composite
def parameter_descriptions(draw: st.DrawFn) -> Message:
    oids = draw(st.lists(OID, max_size=6))
    return decode("server", frame(b"t", struct.pack(f"!H{len(oids)}I", len(oids), *oids)))


@st.composite
def function_call_responses(draw: st.DrawFn) -> Message:
    v = draw(VALUE)
    body = struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v
    return decode("server", frame(b"V", body))


FIELDS = st.dictionaries(st.sampled_from("SVCMDHPpqWsctdnFLR"), TEXT, max_size=6)
COLUMNS = st.builds(Column, TEXT, OID, I16, OID, I16, I32, I16)
SASL_LIST = st.lists(NAME, max_size=3).map(lambda ns: b"".join(n.encode() + b"\0" for n in ns))

BACKEND = st.one_of(
    st.builds(
        Authentication.build, st.sampled_from([AUTH_OK, AUTH_CLEARTEXT, AUTH_GSS, AUTH_SSPI])
    ),
    st.builds(Authentication.build, st.just(AUTH_MD5), st.binary(min_size=4, max_size=4)),
    st.builds(Authentication.build, st.just(AUTH_SASL), SASL_LIST.map(lambda b: b + b"\0")),
    st.builds(
        Authentication.build,
        st.sampled_from([AUTH_GSS_CONTINUE, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL]),
        st.binary(max_size=40),
    ),
    st.builds(BackendKeyData.build, I32, st.binary(min_size=4, max_size=256)),
    st.sampled_from(
        [
            ParseComplete.build(),
            BindComplete.build(),
            CloseComplete.build(),
            NoData.build(),
            PortalSuspended.build(),
            EmptyQueryResponse.build(),
            CopyDone.build(),
        ]
    ),
    st.builds(CommandComplete.build, TEXT),
    st.builds(CopyData.build, st.binary(max_size=40)),
    copy_responses(),
    st.builds(DataRow.build, st.lists(VALUE, max_size=8)),
    st.builds(ErrorResponse.from_fields, FIELDS),
    st.builds(NoticeResponse.from_fields, FIELDS),
    st.builds(ErrorResponse.build, TEXT, TEXT, TEXT, detail=TEXT, hint=TEXT),
    st.builds(NoticeResponse.build, TEXT, TEXT, TEXT, where=TEXT),
    function_call_responses(),
    st.builds(NegotiateProtocolVersion.build, I32, st.lists(TEXT, max_size=4)),
    st.builds(NotificationResponse.build, I32, TEXT, TEXT),
    parameter_descriptions(),
    st.builds(ParameterStatus.build, TEXT, TEXT),
    st.builds(ReadyForQuery.build, st.sampled_from([b"I", b"T", b"E"])),
    st.builds(RowDescription.build, st.lists(COLUMNS, max_size=4)),
)

STARTUP = st.one_of(
    st.builds(
        StartupMessage.build,
        st.dictionaries(TEXT.filter(bool), TEXT, max_size=5),
        st.integers(0, 0xFFFF).map(lambda minor: (3 << 16) | minor),
    ),
    st.just(SSLRequest.build()),
    st.just(GSSENCRequest.build()),
    st.builds(CancelRequest.build, I32, st.binary(min_size=4, max_size=256)),
)


def messages_for(side: Side) -> st.SearchStrategy[Message]:
    return FRONTEND if side == "client" else BACKEND


# ---------------------------------------------------------------------------------------------
# Round trips


@PROPS
@given(FRONTEND)
def test_frontend_build_decode_round_trip(msg: Message) -> None:
    again = decode("client", msg.raw)
    assert type(again) is type(msg)
    assert again == msg
    assert again.raw == msg.raw


@PROPS
@given(BACKEND)
def test_backend_build_decode_round_trip(msg: Message) -> None:
    again = decode("server", msg.raw)
    assert type(again) is type(msg)
    assert again == msg
    if isinstance(msg, DataRow):
        assert DataRow.build(msg.values()) == msg
    if isinstance(msg, RowDescription):
        assert RowDescription.build(msg.columns) == msg


@PROPS
@given(STARTUP)
def test_startup_build_decode_round_trip(msg: Message) -> None:
    assert decode_startup(msg.raw) == msg


@PROPS
@given(
    st.lists(TEXT, max_size=4),
    st.lists(VALUE, max_size=6),
    st.lists(OID, max_size=4),
)
def test_decoded_fields_rebuild_the_same_bytes(
    names: list[str], values: list[bytes | None], oids: list[int]
) -> None:
    """What the relay does: decode, then build a new message from the decoded fields."""
    sql = " ".join(names)
    parse = decode("client", Parse.build("s", sql, oids).raw)
    assert isinstance(parse, Parse)
    assert Parse.build(parse.name, parse.sql, parse.param_types).raw == parse.raw
    bind = decode("client", Bind.build("p", "s", values).raw)
    assert isinstance(bind, Bind)
    rebuilt = Bind.build(
        bind.portal, bind.statement, bind.params, bind.param_formats, bind.result_formats
    )
    assert rebuilt.raw == bind.raw


SUPPORTED_CODECS = sorted(
    {
        c
        for name in ("UTF8", "LATIN1", "LATIN2", "WIN1251", "WIN1253", "KOI8R", "EUC_KR", "EUC_CN")
        if (c := python_codec(name)) is not None
    }
)


@PROPS
@given(st.sampled_from(SUPPORTED_CODECS), st.binary(max_size=40))
def test_client_bytes_survive_decode_and_rebuild_in_every_encoding(
    codec: str, sql_bytes: bytes
) -> None:
    """Bytes -> str -> bytes is the identity, whatever the bytes, so a rewritten statement
    keeps every byte of the client's text that the rewrite did not touch."""
    sql_bytes = sql_bytes.replace(b"\x00", b"")
    raw = frame(b"Q", sql_bytes + b"\x00")
    msg = decode("client", raw, codec)
    assert isinstance(msg, Query)
    assert Query.build(msg.sql, codec).raw == raw


# ---------------------------------------------------------------------------------------------
# Arbitrary bytes through the reader


def _valid_raw(side: Side) -> st.SearchStrategy[bytes]:
    return messages_for(side).map(lambda m: m.raw)


@st.composite
def streams(draw: st.DrawFn, side: Side, startup: bool) -> bytes:
    """Random bytes, valid messages, and valid messages with damage, glued together."""
    pieces = []
    if startup:
        pieces.append(draw(st.one_of(STARTUP.map(lambda m: m.raw), st.binary(max_size=12))))
    pieces += draw(
        st.lists(
            st.one_of(
                st.binary(max_size=16),
                _valid_raw(side),
                _valid_raw(side).flatmap(lambda r: st.integers(0, len(r)).map(lambda n: r[:n])),
            ),
            max_size=6,
        )
    )
    return b"".join(pieces)


MAX_MESSAGE = st.sampled_from([5, 9, 16, 64, 300, 64 * 1024 * 1024])


def _check_reader(
    side: Side, startup: bool, data: bytes, cuts: list[int], max_message: int
) -> tuple[list[tuple[str, bytes]], ProtocolError | None]:
    reader = MessageReader(side, startup=startup, max_message=max_message)
    items: list[Message | MessagePart] = []
    fed = 0
    error = None
    try:
        for chunk in chunked(data, cuts):
            reader.feed(chunk)
            fed += len(chunk)
            drain(reader, items)  # asserts progress on every non-None result
            # bounded buffering: what is left is less than one (allowed) message
            if reader.startup:
                assert reader.buffered < MAX_STARTUP_PACKET
            else:
                assert reader.buffered < max(max_message, 5)
    except ProtocolError as exc:
        error = exc
        assert exc.side == side
    consumed = b"".join(i.raw for i in items)
    if error is None:
        # lossless: the raws handed out are exactly the bytes consumed, in order
        assert consumed == data[: fed - reader.buffered]
    else:
        assert data.startswith(consumed)
    for item in items:
        if isinstance(item, MessagePart):
            assert item.code in (b"d", b"D") and item.data
            assert item.total_length > max_message
        elif isinstance(item, StartupMessage | SSLRequest | GSSENCRequest | CancelRequest):
            assert decode_startup(item.raw) == item
        else:
            assert decode(side, item.raw) == item  # idempotent
    return merged(items), error


@PROPS
@given(
    side=SIDES,
    startup=st.booleans(),
    data=st.binary(max_size=400),
    cuts=st.lists(st.integers(0, 400), max_size=8),
    max_message=MAX_MESSAGE,
)
@example(side="server", startup=False, data=b"D\x7f\xff\xff\xff", cuts=[], max_message=64)
@example(side="client", startup=True, data=b"\x00\x00'\x11", cuts=[1], max_message=5)
def test_random_bytes_yield_messages_or_protocol_error(
    side: Side, startup: bool, data: bytes, cuts: list[int], max_message: int
) -> None:
    _check_reader(side, startup, data, cuts, max_message)


@PROPS
@given(st.data(), SIDES, st.booleans(), MAX_MESSAGE)
def test_message_like_streams_split_anywhere_give_the_same_result(
    data: st.DataObject, side: Side, startup: bool, max_message: int
) -> None:
    stream = data.draw(streams(side, startup), label="stream")
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10), label="cuts")
    whole = _check_reader(side, startup, stream, [], max_message)
    split = _check_reader(side, startup, stream, cuts, max_message)
    assert split[0] == whole[0]
    assert (split[1] is None) == (whole[1] is None)
    bytewise_result = _check_reader(side, startup, stream, list(range(len(stream))), max_message)
    assert bytewise_result[0] == whole[0]
    assert (bytewise_result[1] is None) == (whole[1] is None)


@PROPS
@given(st.data(), SIDES)
def test_valid_message_streams_come_back_exactly(data: st.DataObject, side: Side) -> None:
    msgs = data.draw(st.lists(messages_for(side), max_size=12), label="messages")
    stream = b"".join(m.raw for m in msgs)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12), label="cuts")
    items, error, reader = read_until_error(side, chunked(stream, cuts))
    assert error is None
    assert items == msgs
    assert reader.buffered == 0


# ---------------------------------------------------------------------------------------------
# Mutations of valid messages


@functools.cache
def _real() -> list[tuple[Side, bytes]]:
    return real_messages()


@functools.cache
def _hand() -> list[tuple[Side, bytes]]:
    return [("client", m.raw) for m in client_messages()[3:]] + [
        ("server", m.raw) for m in server_messages()
    ]


@st.composite
def seeds(draw: st.DrawFn) -> tuple[Side, bytes]:
    side = draw(SIDES)
    choice = draw(st.integers(0, 2))
    if choice == 0:
        return draw(st.sampled_from(_real()))
    if choice == 1:
        return draw(st.sampled_from(_hand()))
    return side, draw(_valid_raw(side))


@st.composite
def mutated(draw: st.DrawFn, raw: bytes, fix_length: bool) -> bytes:
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "extend", "insert", "delete"]))
        if op in ("flip", "set") and data:
            i = draw(st.integers(0, len(data) - 1))
            if op == "flip":
                data[i] ^= 1 << draw(st.integers(0, 7))
            else:
                data[i] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]))
        elif op == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif op == "extend":
            data += draw(st.binary(min_size=1, max_size=8))
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            i = draw(st.integers(0, len(data) - 1))
            del data[i : i + draw(st.integers(1, 8))]
    if fix_length and len(data) >= 5:
        data[1:5] = struct.pack("!i", len(data) - 1)  # reach the body decoders
    return bytes(data)


def _decode_or_refuse(side: Side, raw: bytes) -> None:
    try:
        msg = decode(side, raw)
    except ProtocolError as exc:
        assert exc.side == side
        return
    assert msg.raw == raw
    assert decode(side, msg.raw) == msg
    table = FRONTEND_DECODERS if side == "client" else BACKEND_DECODERS
    assert raw[:1] in table
    if isinstance(msg, DataRow):
        msg.values()  # validated at decode time, so this cannot fail later
    if isinstance(msg, Authentication):
        msg.mechanisms  # noqa: B018 - must not raise


@PROPS
@given(st.data(), st.booleans())
def test_mutated_messages_decode_or_raise_protocol_error(
    data: st.DataObject, fix_length: bool
) -> None:
    side, raw = data.draw(seeds(), label="seed")
    bad = data.draw(mutated(raw, fix_length), label="mutated")
    _decode_or_refuse(side, bad)
    _check_reader(side, False, bad, [], 64 * 1024 * 1024)
    _check_reader(side, False, bad, list(range(len(bad))), 32)


@PROPS
@given(st.data(), st.booleans())
def test_mutated_startup_packets_decode_or_raise_protocol_error(
    data: st.DataObject, fix_length: bool
) -> None:
    raw = data.draw(STARTUP, label="seed").raw
    bad = bytearray(data.draw(mutated(raw, False), label="mutated"))
    if fix_length and len(bad) >= 4:
        bad[0:4] = struct.pack("!i", len(bad))
    try:
        msg = decode_startup(bytes(bad))
    except ProtocolError as exc:
        assert exc.side == "client"
    else:
        assert msg.raw == bytes(bad)
        assert decode_startup(msg.raw) == msg
    _check_reader("client", True, bytes(bad), [], 1024)


# ---------------------------------------------------------------------------------------------
# Limits


@PROPS
@given(
    side=SIDES,
    code=st.integers(0, 255).map(lambda c: bytes([c])),
    max_message=st.integers(5, 100_000),
    excess=st.integers(1, 2**31 - 100_002),
)
def test_declared_length_over_max_is_refused_or_streamed_from_the_header(
    side: Side, code: bytes, max_message: int, excess: int
) -> None:
    total = max_message + excess  # type byte + length field + body
    reader = MessageReader(side, max_message=max_message)
    reader.feed(code + struct.pack("!i", total - 1))
    streamable = (side == "server" and code in (b"D", b"d")) or (side == "client" and code == b"d")
    try:
        item = reader.next()
    except ProtocolError as exc:
        assert not streamable
        assert exc.side == side
        return
    assert streamable, "an oversized message must not be buffered"
    assert isinstance(item, MessagePart)
    assert item.total_length == total
    assert item.first
    assert not item.last
    assert reader.buffered == 0


@FEW
@given(
    big=st.binary(min_size=41, max_size=300),
    others=st.lists(VALUE, max_size=5),
    position=st.integers(0, 5),
    max_message=st.integers(5, 40),
    cuts=st.lists(st.integers(0, 400), max_size=10),
)
def test_oversized_datarow_streams_as_parts_that_concatenate(
    big: bytes, others: list[bytes | None], position: int, max_message: int, cuts: list[int]
) -> None:
    values = [*others[:position], big, *others[position:]]
    row = DataRow.build(values)
    assume(len(row.raw) > max_message)
    data = row.raw + ReadyForQuery.build(b"I").raw * (max_message >= 6)
    items, error, _ = read_until_error("server", chunked(data, cuts), max_message=max_message)
    assert error is None
    parts = [i for i in items if isinstance(i, MessagePart)]
    assert b"".join(p.data for p in parts) == row.raw
    assert [p.first for p in parts] == [True] + [False] * (len(parts) - 1)
    assert [p.last for p in parts] == [False] * (len(parts) - 1) + [True]
    assert items[len(parts) :] == [ReadyForQuery.build(b"I")] * (max_message >= 6)


@PROPS
@given(length=st.one_of(st.integers(-(2**31), 7), st.integers(MAX_STARTUP_PACKET + 1, 2**31 - 1)))
def test_startup_length_out_of_range_is_refused_from_4_bytes(length: int) -> None:
    reader = MessageReader("client", startup=True)
    reader.feed(struct.pack("!i", length))
    try:
        reader.next()
    except ProtocolError as exc:
        assert exc.side == "client"
    else:
        raise AssertionError(f"startup length {length} accepted")


@PROPS
@given(version=I32, body=st.binary(max_size=40))
def test_startup_versions_other_than_3_are_refused(version: int, body: bytes) -> None:
    assume(version not in (SSL_REQUEST_CODE, GSSENC_REQUEST_CODE, CANCEL_REQUEST_CODE))
    packet = struct.pack("!ii", 8 + len(body), version) + body
    try:
        msg = decode_startup(packet)
    except ProtocolError as exc:
        assert exc.side == "client"
        return
    assert version >> 16 == 3
    assert isinstance(msg, StartupMessage)


@PROPS
@given(side=SIDES, code=st.integers(0, 255), body=st.binary(max_size=20))
def test_unknown_types_are_refused_with_the_senders_side(
    side: Side, code: int, body: bytes
) -> None:
    table = FRONTEND_DECODERS if side == "client" else BACKEND_DECODERS
    assume(bytes([code]) not in table)
    raw = frame(bytes([code]), body)
    reader = MessageReader(side)
    reader.feed(raw)
    try:
        reader.next()
    except ProtocolError as exc:
        assert exc.side == side
    else:
        raise AssertionError("unknown type accepted")


def _reference_row_values(body: bytes) -> tuple[bytes | None, ...]:
    """DataRow values read field by field with the codec's cursor (the general reader)."""
    r = _Reader(body, "server", "DataRow", "utf-8")
    out = _values(r, r.count(0x7FFF))
    r.done()
    return out


_ROW_VALUES = st.lists(st.none() | st.binary(max_size=6), max_size=5)


@settings(max_examples=500)
@given(
    values=_ROW_VALUES,
    cut=st.integers(0, 40),
    extra=st.binary(max_size=3),
    noise=st.binary(max_size=40),
    use_noise=st.booleans(),
)
def test_datarow_values_read_in_place_like_the_cursor(
    values: list[bytes | None], cut: int, extra: bytes, noise: bytes, use_noise: bool
) -> None:
    """``datarow_values`` (in place, for every recorded row) against the general cursor:
    the same values for a well-formed row, the same ProtocolError for a truncated one, one
    with trailing bytes, a bad count or length, or noise."""
    body = DataRow.build(values).raw[5:]
    if use_noise:
        body = noise
    else:
        body = body[: len(body) - cut] if cut else body + extra
    raw = frame(b"D", body)
    try:
        want: object = _reference_row_values(body)
    except ProtocolError as exc:
        want = ("error", str(exc), exc.side)
    try:
        got: object = datarow_values(raw)
    except ProtocolError as exc:
        got = ("error", str(exc), exc.side)
    assert got == want


@given(st.binary(min_size=4, max_size=12), st.data())
@example(b"\x80\x00\x00\x00", None)
@example(b"\xff\xff\xff\xff", None)
@example(b"\x7f\xff\xff\xff", None)
def test_integers_read_by_indexing_match_struct(buf: bytes, data: st.DataObject | None) -> None:
    at = 0 if data is None else data.draw(st.integers(0, len(buf) - 4))
    assert int32_at(buf, at) == struct.unpack_from("!i", buf, at)[0]
    assert int16_at(buf, at) == struct.unpack_from("!h", buf, at)[0]
    assert uint16_at(buf, at) == struct.unpack_from("!H", buf, at)[0]
