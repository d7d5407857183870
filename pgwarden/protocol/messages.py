"""Typed PostgreSQL v3 protocol messages.

Every message keeps ``raw``: the exact bytes it arrived as (type byte, length, body), so the
relay forwards unchanged messages byte for byte and only re-encodes what it rewrites. The
``build`` constructors produce new messages with ``raw`` computed from the fields.

Decoding is strict: a body that does not match its declared layout raises ProtocolError,
because a lenient decoder is how a gateway and a server come to disagree about what was sent.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from pgwarden.protocol.errors import ProtocolError, Side
from pgwarden.protocol.frozen import assign_in_init

PROTOCOL_V3: Final = 196608  # 3.0
SSL_REQUEST_CODE: Final = 80877103
GSSENC_REQUEST_CODE: Final = 80877104
CANCEL_REQUEST_CODE: Final = 80877102

_I32: Final = struct.Struct("!i")
_I16: Final = struct.Struct("!h")
_U32: Final = struct.Struct("!I")  # OIDs are unsigned
_U16: Final = struct.Struct("!H")  # counts are unsigned: up to 65535 parameters
_HEADER = struct.Struct("!ci")

# The messages every statement carries (a query and its replies, the extended protocol's five
# and theirs) write their own __init__ (dataclass init=False) of plain assignments: compiled,
# each is a native store (pgwarden.protocol.frozen lets them run interpreted too: OWN_INIT).
# tests/unit/protocol/test_protocol_messages_init.py checks each sets every field.


def frame(code: bytes, body: bytes = b"") -> bytes:
    return code + _I32.pack(len(body) + 4) + body


def cstr(value: str | bytes, encoding: str = "utf-8") -> bytes:
    data = value.encode(encoding, "surrogateescape") if isinstance(value, str) else value
    if 0 in data:  # an int: `bytes in bytes` costs a discarded TypeError first
        raise ValueError("string contains a NUL byte")
    return data + b"\x00"


# Big-endian integers read from bytes by indexing: compiled, native arithmetic, where a
# Struct.unpack_from is a method call that builds a tuple (several per message decoded). The
# reader's length fields and the row masking's value lengths use them too. The caller checks
# the bounds.
def int32_at(buf: bytes, at: int) -> int:
    n = (buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3]
    return n - 0x100000000 if n & 0x80000000 else n


def int16_at(buf: bytes, at: int) -> int:
    n = (buf[at] << 8) | buf[at + 1]
    return n - 0x10000 if n & 0x8000 else n


def uint16_at(buf: bytes, at: int) -> int:
    return (buf[at] << 8) | buf[at + 1]


class _Reader:
    """Cursor over a message body; every overrun is a ProtocolError for ``side``."""

    __slots__ = ("buf", "encoding", "pos", "side", "what")

    def __init__(self, buf: bytes, side: Side, what: str, encoding: str) -> None:
        self.buf = buf
        self.pos = 0
        self.side: Side = side
        self.what = what
        self.encoding = encoding

    def fail(self, why: str) -> ProtocolError:
        return ProtocolError(f"malformed {self.what}: {why}", side=self.side)

    def int32(self) -> int:
        if self.pos + 4 > len(self.buf):
            raise self.fail("truncated int32")
        v = int32_at(self.buf, self.pos)
        self.pos += 4
        return v

    def int16(self) -> int:
        if self.pos + 2 > len(self.buf):
            raise self.fail("truncated int16")
        v = int16_at(self.buf, self.pos)
        self.pos += 2
        return v

    def byte(self) -> bytes:
        if self.pos + 1 > len(self.buf):
            raise self.fail("truncated byte")
        b = self.buf[self.pos : self.pos + 1]
        self.pos += 1
        return b

    def raw_cstr(self) -> bytes:
        end = self.buf.find(b"\x00", self.pos)
        if end < 0:
            raise self.fail("unterminated string")
        s = self.buf[self.pos : end]
        self.pos = end + 1
        return s

    def cstr(self) -> str:
        return self.raw_cstr().decode(self.encoding, "surrogateescape")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise self.fail("truncated data")
        b = self.buf[self.pos : self.pos + n]
        self.pos += n
        return b

    def count(self, limit: int) -> int:
        # PostgreSQL reads every Int16 count as unsigned (pq_getmsgint): 65535 parameters are
        # legal, so a signed read would refuse statements the server accepts.
        if self.pos + 2 > len(self.buf):
            raise self.fail("truncated int16")
        n = uint16_at(self.buf, self.pos)
        self.pos += 2
        if n > limit:
            raise self.fail(f"bad count {n}")
        return n

    def rest(self) -> bytes:
        b = self.buf[self.pos :]
        self.pos = len(self.buf)
        return b

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise self.fail(f"{len(self.buf) - self.pos} trailing bytes")


def _values(r: _Reader, n: int) -> tuple[bytes | None, ...]:
    out: list[bytes | None] = []
    for _ in range(n):
        ln = r.int32()
        if ln == -1:
            out.append(None)
        elif ln < -1:
            raise r.fail(f"bad value length {ln}")
        else:
            out.append(r.take(ln))
    return tuple(out)


_Decoder = Callable[[bytes, _Reader], "Message"]


def _encode_values(values: Sequence[bytes | None]) -> bytes:
    parts = [_U16.pack(len(values))]
    for v in values:
        if v is None:
            parts.append(_I32.pack(-1))
        else:
            parts.append(_I32.pack(len(v)))
            parts.append(v)
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class Message:
    """Any protocol message. ``raw`` is authoritative for forwarding."""

    raw: bytes = field(repr=False)

    @property
    def code(self) -> bytes:
        return b""

    @property
    def body(self) -> bytes:
        return self.raw[5:]


# ---------------------------------------------------------------------------------------------
# Untyped start-up packets (sent by the client before the typed message stream begins)


@dataclass(frozen=True, slots=True)
class StartupMessage(Message):
    version: int = PROTOCOL_V3
    params: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, params: Mapping[str, str], version: int = PROTOCOL_V3) -> StartupMessage:
        body = _I32.pack(version) + b"".join(cstr(k) + cstr(v) for k, v in params.items()) + b"\0"
        return cls(_I32.pack(len(body) + 4) + body, version, dict(params))

    @property
    def body(self) -> bytes:
        return self.raw[4:]


@dataclass(frozen=True, slots=True)
class SSLRequest(Message):
    @classmethod
    def build(cls) -> SSLRequest:
        return cls(_I32.pack(8) + _I32.pack(SSL_REQUEST_CODE))


@dataclass(frozen=True, slots=True)
class GSSENCRequest(Message):
    @classmethod
    def build(cls) -> GSSENCRequest:
        return cls(_I32.pack(8) + _I32.pack(GSSENC_REQUEST_CODE))


@dataclass(frozen=True, slots=True)
class CancelRequest(Message):
    pid: int = 0
    secret: bytes = b""

    @classmethod
    def build(cls, pid: int, secret: bytes) -> CancelRequest:
        body = _I32.pack(CANCEL_REQUEST_CODE) + _I32.pack(pid) + secret
        return cls(_I32.pack(len(body) + 4) + body, pid, secret)


def decode_startup(raw: bytes, encoding: str = "utf-8") -> Message:
    """Decode one complete untyped packet (length prefix included)."""
    if len(raw) < 8 or _I32.unpack_from(raw)[0] != len(raw):
        raise ProtocolError("startup packet length does not match its length field", side="client")
    r = _Reader(raw[4:], "client", "startup packet", encoding)
    code = r.int32()
    if code == SSL_REQUEST_CODE:
        r.done()
        return SSLRequest(raw)
    if code == GSSENC_REQUEST_CODE:
        r.done()
        return GSSENCRequest(raw)
    if code == CANCEL_REQUEST_CODE:
        pid = r.int32()
        secret = r.rest()
        if not 4 <= len(secret) <= 256:
            raise r.fail("bad cancel key length")
        return CancelRequest(raw, pid, secret)
    if code >> 16 != 3:
        raise ProtocolError(
            f"unsupported protocol version {code >> 16}.{code & 0xFFFF}", side="client"
        )
    params: dict[str, str] = {}
    while True:
        key = r.cstr()
        if key == "":
            break
        if key in params:
            raise r.fail(f"duplicate parameter {key!r}")
        params[key] = r.cstr()
    r.done()
    return StartupMessage(raw, code, params)


# ---------------------------------------------------------------------------------------------
# Frontend (client -> server) messages


@dataclass(frozen=True, slots=True, init=False)  # own __init__: see OWN_INIT
class Query(Message):
    @property
    def code(self) -> bytes:
        return b"Q"

    sql: str = ""

    def __init__(self, raw: bytes, sql: str = "") -> None:
        self.raw = raw  # type: ignore[misc]
        self.sql = sql  # type: ignore[misc]

    @classmethod
    def build(cls, sql: str, encoding: str = "utf-8") -> Query:
        return cls(frame(b"Q", cstr(sql, encoding)), sql)


@dataclass(frozen=True, slots=True, init=False)  # own __init__: see OWN_INIT
class Parse(Message):
    @property
    def code(self) -> bytes:
        return b"P"

    name: str = ""
    sql: str = ""
    param_types: tuple[int, ...] = ()

    def __init__(
        self, raw: bytes, name: str = "", sql: str = "", param_types: tuple[int, ...] = ()
    ) -> None:
        self.raw = raw  # type: ignore[misc]
        self.name = name  # type: ignore[misc]
        self.sql = sql  # type: ignore[misc]
        self.param_types = param_types  # type: ignore[misc]

    @classmethod
    def build(
        cls, name: str, sql: str, param_types: Sequence[int] = (), encoding: str = "utf-8"
    ) -> Parse:
        body = cstr(name, encoding) + cstr(sql, encoding) + _U16.pack(len(param_types))
        body += b"".join(_U32.pack(t & 0xFFFFFFFF) for t in param_types)
        return cls(frame(b"P", body), name, sql, tuple(t & 0xFFFFFFFF for t in param_types))


@dataclass(frozen=True, slots=True, init=False)  # own __init__: see OWN_INIT
class Bind(Message):
    @property
    def code(self) -> bytes:
        return b"B"

    portal: str = ""
    statement: str = ""
    param_formats: tuple[int, ...] = ()
    params: tuple[bytes | None, ...] = ()
    result_formats: tuple[int, ...] = ()

    def __init__(
        self,
        raw: bytes,
        portal: str = "",
        statement: str = "",
        param_formats: tuple[int, ...] = (),
        params: tuple[bytes | None, ...] = (),
        result_formats: tuple[int, ...] = (),
    ) -> None:
        self.raw = raw  # type: ignore[misc]
        self.portal = portal  # type: ignore[misc]
        self.statement = statement  # type: ignore[misc]
        self.param_formats = param_formats  # type: ignore[misc]
        self.params = params  # type: ignore[misc]
        self.result_formats = result_formats  # type: ignore[misc]

    @classmethod
    def build(
        cls,
        portal: str,
        statement: str,
        params: Sequence[bytes | None] = (),
        param_formats: Sequence[int] = (),
        result_formats: Sequence[int] = (),
        encoding: str = "utf-8",
    ) -> Bind:
        body = cstr(portal, encoding) + cstr(statement, encoding)
        body += _U16.pack(len(param_formats)) + b"".join(_I16.pack(f) for f in param_formats)
        body += _encode_values(params)
        body += _U16.pack(len(result_formats)) + b"".join(_I16.pack(f) for f in result_formats)
        return cls(
            frame(b"B", body),
            portal,
            statement,
            tuple(param_formats),
            tuple(params),
            tuple(result_formats),
        )

    def param_format(self, i: int) -> int:
        """Format code of parameter i (0 text, 1 binary), per the protocol's 0/1/N rule."""
        if not self.param_formats:
            return 0
        if len(self.param_formats) == 1:
            return self.param_formats[0]
        return self.param_formats[i]


@dataclass(frozen=True, slots=True, init=False)  # own __init__: see OWN_INIT
class Execute(Message):
    @property
    def code(self) -> bytes:
        return b"E"

    portal: str = ""
    max_rows: int = 0

    def __init__(self, raw: bytes, portal: str = "", max_rows: int = 0) -> None:
        self.raw = raw  # type: ignore[misc]
        self.portal = portal  # type: ignore[misc]
        self.max_rows = max_rows  # type: ignore[misc]

    @classmethod
    def build(cls, portal: str = "", max_rows: int = 0, encoding: str = "utf-8") -> Execute:
        return cls(frame(b"E", cstr(portal, encoding) + _I32.pack(max_rows)), portal, max_rows)


@dataclass(frozen=True, slots=True, init=False)  # own __init__: see OWN_INIT
class Describe(Message):
    @property
    def code(self) -> bytes:
        return b"D"

    kind: bytes = b"S"  # b"S" statement, b"P" portal
    name: str = ""

    def __init__(self, raw: bytes, kind: bytes = b"S", name: str = "") -> None:
        self.raw = raw  # type: ignore[misc]
        self.kind = kind  # type: ignore[misc]
        self.name = name  # type: ignore[misc]

    @classmethod
    def build(cls, kind: bytes, name: str = "", encoding: str = "utf-8") -> Describe:
        return cls(frame(b"D", kind + cstr(name, encoding)), kind, name)


@dataclass(frozen=True, slots=True)
class Close(Message):
    @property
    def code(self) -> bytes:
        return b"C"

    kind: bytes = b"S"
    name: str = ""

    @classmethod
    def build(cls, kind: bytes, name: str = "", encoding: str = "utf-8") -> Close:
        return cls(frame(b"C", kind + cstr(name, encoding)), kind, name)


@dataclass(frozen=True, slots=True, init=False)  # own __init__: see OWN_INIT
class Sync(Message):
    @property
    def code(self) -> bytes:
        return b"S"

    def __init__(self, raw: bytes) -> None:
        self.raw = raw  # type: ignore[misc]

    @classmethod
    def build(cls) -> Sync:
        return cls(frame(b"S"))


@dataclass(frozen=True, slots=True)
class Flush(Message):
    @property
    def code(self) -> bytes:
        return b"H"

    @classmethod
    def build(cls) -> Flush:
        return cls(frame(b"H"))


@dataclass(frozen=True, slots=True)
class Terminate(Message):
    @property
    def code(self) -> bytes:
        return b"X"

    @classmethod
    def build(cls) -> Terminate:
        return cls(frame(b"X"))


@dataclass(frozen=True, slots=True)
class CopyData(Message):
    """Sent by both sides; ``data`` is the payload."""

    @property
    def code(self) -> bytes:
        return b"d"

    @property
    def data(self) -> bytes:
        return self.raw[5:]

    @classmethod
    def build(cls, data: bytes) -> CopyData:
        return cls(frame(b"d", data))


@dataclass(frozen=True, slots=True)
class CopyDone(Message):
    @property
    def code(self) -> bytes:
        return b"c"

    @classmethod
    def build(cls) -> CopyDone:
        return cls(frame(b"c"))


@dataclass(frozen=True, slots=True)
class CopyFail(Message):
    @property
    def code(self) -> bytes:
        return b"f"

    reason: str = ""

    @classmethod
    def build(cls, reason: str) -> CopyFail:
        return cls(frame(b"f", cstr(reason)), reason)


@dataclass(frozen=True, slots=True)
class FunctionCall(Message):
    @property
    def code(self) -> bytes:
        return b"F"

    function_oid: int = 0


@dataclass(frozen=True, slots=True)
class AuthResponse(Message):
    """'p': PasswordMessage, SASLInitialResponse, SASLResponse or GSSResponse; which one
    depends on the authentication exchange, so the body stays opaque here."""

    @property
    def code(self) -> bytes:
        return b"p"

    @property
    def data(self) -> bytes:
        return self.raw[5:]

    def password(self) -> bytes:
        """The cleartext password of a PasswordMessage (NUL-terminated)."""
        body = self.raw[5:]
        if not body.endswith(b"\x00") or body.find(0) < len(body) - 1:
            raise ProtocolError("malformed password message", side="client")
        return body[:-1]

    @classmethod
    def build(cls, data: bytes) -> AuthResponse:
        return cls(frame(b"p", data))

    @classmethod
    def sasl_initial(cls, mechanism: str, data: bytes) -> AuthResponse:
        return cls.build(cstr(mechanism) + _I32.pack(len(data)) + data)


# ---------------------------------------------------------------------------------------------
# Backend (server -> client) messages

AUTH_OK: Final = 0
AUTH_KERBEROS_V5: Final = 2
AUTH_CLEARTEXT: Final = 3
AUTH_MD5: Final = 5
AUTH_GSS: Final = 7
AUTH_GSS_CONTINUE = 8
AUTH_SSPI: Final = 9
AUTH_SASL: Final = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12


@dataclass(frozen=True, slots=True)
class Authentication(Message):
    @property
    def code(self) -> bytes:
        return b"R"

    kind: int = AUTH_OK
    data: bytes = b""  # md5 salt, SASL data, GSS data

    @property
    def mechanisms(self) -> tuple[str, ...]:
        if self.kind != AUTH_SASL:
            return ()
        return tuple(m.decode("utf-8", "surrogateescape") for m in self.data.split(b"\x00") if m)

    @classmethod
    def build(cls, kind: int, data: bytes = b"") -> Authentication:
        return cls(frame(b"R", _I32.pack(kind) + data), kind, data)


@dataclass(frozen=True, slots=True)
class BackendKeyData(Message):
    @property
    def code(self) -> bytes:
        return b"K"

    pid: int = 0
    secret: bytes = b""

    @classmethod
    def build(cls, pid: int, secret: bytes) -> BackendKeyData:
        return cls(frame(b"K", _I32.pack(pid) + secret), pid, secret)


@dataclass(frozen=True, slots=True, init=False)  # own __init__: see OWN_INIT
class ParseComplete(Message):
    @property
    def code(self) -> bytes:
        return b"1"

    def __init__(self, raw: bytes) -> None:
        self.raw = raw  # type: ignore[misc]

    @classmethod
    def build(cls) -> ParseComplete:
        return cls(frame(b"1"))


@dataclass(frozen=True, slots=True, init=False)  # own __init__: see OWN_INIT
class BindComplete(Message):
    @property
    def code(self) -> bytes:
        return b"2"

    def __init__(self, raw: bytes) -> None:
        self.raw = raw  # type: ignore[misc]

    @classmethod
    def build(cls) -> BindComplete:
        return cls(frame(b"2"))


@dataclass(frozen=True, slots=True)
class CloseComplete(Message):
    @property
    def code(self) -> bytes:
        return b"3"

    @classmethod
    def build(cls) -> CloseComplete:
        return cls(frame(b"3"))


@dataclass(frozen=True, slots=True, init=False)  # own __init__: see OWN_INIT
class CommandComplete(Message):
    @property
    def code(self) -> bytes:
        return b"C"

    tag: str = ""

    def __init__(self, raw: bytes, tag: str = "") -> None:
        self.raw = raw  # type: ignore[misc]
        self.tag = tag  # type: ignore[misc]

    @classmethod
    def build(cls, tag: str) -> CommandComplete:
        return cls(frame(b"C", cstr(tag)), tag)


@dataclass(frozen=True, slots=True)
class CopyResponse(Message):
    """CopyInResponse 'G', CopyOutResponse 'H' or CopyBothResponse 'W'."""

    overall_format: int = 0
    column_formats: tuple[int, ...] = ()

    @property
    def direction(self) -> bytes:
        return self.raw[:1]


def _bad_row(why: str) -> ProtocolError:
    return ProtocolError(f"malformed DataRow: {why}", side="server")


def datarow_values(raw: bytes) -> tuple[bytes | None, ...]:
    """The values of a whole DataRow message (``raw``: type byte and length included), read
    in place: what ``_Reader`` would read from its body, with the same errors, but without a
    body copy or a call per field (once per row of every recorded or masked result)."""
    end = len(raw)
    if end < 7:
        raise _bad_row("truncated int16")
    n = uint16_at(raw, 5)
    if n > 0x7FFF:
        raise _bad_row(f"bad count {n}")
    pos = 7
    out: list[bytes | None] = []
    for _ in range(n):
        if pos + 4 > end:
            raise _bad_row("truncated int32")
        ln = int32_at(raw, pos)
        pos += 4
        if ln == -1:
            out.append(None)
        elif ln < -1:
            raise _bad_row(f"bad value length {ln}")
        elif pos + ln > end:
            raise _bad_row("truncated data")
        else:
            out.append(raw[pos : pos + ln])
            pos += ln
    if pos != end:
        raise _bad_row(f"{end - pos} trailing bytes")
    return tuple(out)


@dataclass(frozen=True, slots=True, init=False)  # own __init__: see OWN_INIT
class DataRow(Message):
    @property
    def code(self) -> bytes:
        return b"D"

    def __init__(self, raw: bytes) -> None:
        self.raw = raw  # type: ignore[misc]

    def values(self) -> tuple[bytes | None, ...]:
        return datarow_values(self.raw)

    @classmethod
    def build(cls, values: Sequence[bytes | None]) -> DataRow:
        return cls(frame(b"D", _encode_values(values)))


@dataclass(frozen=True, slots=True, init=False)  # own __init__: see OWN_INIT
class MessageRun(Message):
    """Several whole server messages of one kind forwarded as they are (``raw`` is all of
    them); ``parts`` are the messages one by one, for the recording."""

    parts: tuple[bytes, ...] = ()
    kind: bytes = b""  # the messages' type byte: b"D" (rows of a result) or b"d" (COPY data)

    def __init__(self, raw: bytes, parts: tuple[bytes, ...] = (), kind: bytes = b"") -> None:
        self.raw = raw  # type: ignore[misc]
        self.parts = parts  # type: ignore[misc]
        self.kind = kind  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class EmptyQueryResponse(Message):
    @property
    def code(self) -> bytes:
        return b"I"

    @classmethod
    def build(cls) -> EmptyQueryResponse:
        return cls(frame(b"I"))


def _encode_fields(fields: Mapping[str, str]) -> bytes:
    return b"".join(k.encode("ascii") + cstr(v) for k, v in fields.items()) + b"\x00"


@dataclass(frozen=True, slots=True)
class _FieldsMessage(Message):
    """ErrorResponse and NoticeResponse: a list of (one-letter code, text) fields."""

    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def sqlstate(self) -> str:
        return self.fields.get("C", "")

    @property
    def severity(self) -> str:
        return self.fields.get("V", self.fields.get("S", ""))

    @property
    def message(self) -> str:
        return self.fields.get("M", "")


@dataclass(frozen=True, slots=True)
class ErrorResponse(_FieldsMessage):
    @property
    def code(self) -> bytes:
        return b"E"

    @classmethod
    def build(
        cls, sqlstate: str, message: str, severity: str = "ERROR", **extra: str
    ) -> ErrorResponse:
        fields = {"S": severity, "V": severity, "C": sqlstate, "M": message}
        for key, value in extra.items():
            fields[_FIELD_NAMES[key]] = value
        return cls(frame(b"E", _encode_fields(fields)), fields)

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> ErrorResponse:
        return cls(frame(b"E", _encode_fields(fields)), dict(fields))


@dataclass(frozen=True, slots=True)
class NoticeResponse(_FieldsMessage):
    @property
    def code(self) -> bytes:
        return b"N"

    @classmethod
    def build(
        cls, message: str, severity: str = "NOTICE", sqlstate: str = "00000", **extra: str
    ) -> NoticeResponse:
        fields = {"S": severity, "V": severity, "C": sqlstate, "M": message}
        for key, value in extra.items():
            fields[_FIELD_NAMES[key]] = value
        return cls(frame(b"N", _encode_fields(fields)), fields)

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> NoticeResponse:
        return cls(frame(b"N", _encode_fields(fields)), dict(fields))


_FIELD_NAMES: Final = {"detail": "D", "hint": "H", "position": "P", "where": "W", "routine": "R"}


@dataclass(frozen=True, slots=True)
class FunctionCallResponse(Message):
    @property
    def code(self) -> bytes:
        return b"V"


@dataclass(frozen=True, slots=True)
class NegotiateProtocolVersion(Message):
    @property
    def code(self) -> bytes:
        return b"v"

    newest_minor: int = 0
    unrecognized: tuple[str, ...] = ()

    @classmethod
    def build(cls, newest_minor: int, unrecognized: Sequence[str]) -> NegotiateProtocolVersion:
        body = (
            _I32.pack(newest_minor)
            + _I32.pack(len(unrecognized))
            + b"".join(cstr(o) for o in unrecognized)
        )
        return cls(frame(b"v", body), newest_minor, tuple(unrecognized))


@dataclass(frozen=True, slots=True, init=False)  # own __init__: see OWN_INIT
class NoData(Message):
    @property
    def code(self) -> bytes:
        return b"n"

    def __init__(self, raw: bytes) -> None:
        self.raw = raw  # type: ignore[misc]

    @classmethod
    def build(cls) -> NoData:
        return cls(frame(b"n"))


@dataclass(frozen=True, slots=True)
class NotificationResponse(Message):
    @property
    def code(self) -> bytes:
        return b"A"

    pid: int = 0
    channel: str = ""
    payload: str = ""

    @classmethod
    def build(cls, pid: int, channel: str, payload: str) -> NotificationResponse:
        return cls(
            frame(b"A", _I32.pack(pid) + cstr(channel) + cstr(payload)), pid, channel, payload
        )


@dataclass(frozen=True, slots=True)
class ParameterDescription(Message):
    @property
    def code(self) -> bytes:
        return b"t"

    type_oids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ParameterStatus(Message):
    @property
    def code(self) -> bytes:
        return b"S"

    name: str = ""
    value: str = ""

    @classmethod
    def build(cls, name: str, value: str) -> ParameterStatus:
        return cls(frame(b"S", cstr(name) + cstr(value)), name, value)


@dataclass(frozen=True, slots=True)
class PortalSuspended(Message):
    @property
    def code(self) -> bytes:
        return b"s"

    @classmethod
    def build(cls) -> PortalSuspended:
        return cls(frame(b"s"))


@dataclass(frozen=True, slots=True, init=False)  # own __init__: see OWN_INIT
class ReadyForQuery(Message):
    @property
    def code(self) -> bytes:
        return b"Z"

    status: bytes = b"I"  # I idle, T in transaction, E failed transaction

    def __init__(self, raw: bytes, status: bytes = b"I") -> None:
        self.raw = raw  # type: ignore[misc]
        self.status = status  # type: ignore[misc]

    @classmethod
    def build(cls, status: bytes = b"I") -> ReadyForQuery:
        return cls(frame(b"Z", status), status)


# The messages above that write their own __init__ of plain assignments (see the comment
# above frame()): interpreted, the frozen __setattr__ would refuse those.
OWN_INIT: Final = (
    Query, Parse, Bind, Execute, Describe, Sync, ParseComplete, BindComplete, CommandComplete,
    DataRow, MessageRun, NoData, ReadyForQuery,
)  # fmt: skip
assign_in_init(*OWN_INIT)


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    table_oid: int
    attnum: int
    type_oid: int
    type_size: int
    type_modifier: int
    format: int


_COLUMN: Final = struct.Struct("!IhIhih")  # table OID, attnum, type OID, size, typmod, format


@dataclass(frozen=True, slots=True)
class RowDescription(Message):
    @property
    def code(self) -> bytes:
        return b"T"

    columns: tuple[Column, ...] = ()

    @classmethod
    def build(cls, columns: Iterable[Column]) -> RowDescription:
        cols = tuple(columns)
        body = _I16.pack(len(cols))
        for c in cols:
            body += cstr(c.name) + _COLUMN.pack(
                c.table_oid & 0xFFFFFFFF,
                c.attnum,
                c.type_oid & 0xFFFFFFFF,
                c.type_size,
                c.type_modifier,
                c.format,
            )
        return cls(frame(b"T", body), cols)


@dataclass(frozen=True, slots=True)
class MessagePart:
    """A slice of a message too large to buffer whole (DataRow or CopyData past the cap).

    ``data`` of the first part starts with the type byte and length, so concatenating every
    part's ``data`` reproduces the message exactly."""

    code: bytes
    total_length: int  # the whole message including the type byte
    data: bytes
    first: bool
    last: bool

    @property
    def raw(self) -> bytes:
        return self.data


# ---------------------------------------------------------------------------------------------
# Body decoders, one per (side, code)


def _dec_query(raw: bytes, r: _Reader) -> Message:
    sql = r.cstr()
    r.done()
    return Query(raw, sql)


def _dec_parse(raw: bytes, r: _Reader) -> Message:
    name = r.cstr()
    sql = r.cstr()
    n = r.count(0xFFFF)
    types = tuple(r.int32() & 0xFFFFFFFF for _ in range(n))
    r.done()
    return Parse(raw, name, sql, types)


def _dec_bind(raw: bytes, r: _Reader) -> Message:
    portal = r.cstr()
    stmt = r.cstr()
    fmts = tuple(r.int16() for _ in range(r.count(0xFFFF)))
    params = _values(r, r.count(0xFFFF))
    rfmts = tuple(r.int16() for _ in range(r.count(0xFFFF)))
    r.done()
    if any(f not in (0, 1) for f in fmts + rfmts):
        raise r.fail("bad format code")
    if len(fmts) > 1 and len(fmts) != len(params):
        raise r.fail("parameter format count does not match parameter count")
    return Bind(raw, portal, stmt, fmts, params, rfmts)


def _dec_execute(raw: bytes, r: _Reader) -> Message:
    portal = r.cstr()
    max_rows = r.int32()
    r.done()
    return Execute(raw, portal, max_rows)


def _dec_describe_close(cls: type[Describe] | type[Close]) -> _Decoder:
    def dec(raw: bytes, r: _Reader) -> Message:
        kind = r.byte()
        if kind not in (b"S", b"P"):
            raise r.fail(f"bad kind {kind!r}")
        name = r.cstr()
        r.done()
        return cls(raw, kind, name)

    return dec


def _dec_empty(cls: type[Message]) -> _Decoder:
    def dec(raw: bytes, r: _Reader) -> Message:
        r.done()
        return cls(raw)

    return dec


def _dec_opaque(cls: type[Message]) -> _Decoder:
    def dec(raw: bytes, r: _Reader) -> Message:
        return cls(raw)

    return dec


def _dec_copyfail(raw: bytes, r: _Reader) -> Message:
    reason = r.cstr()
    r.done()
    return CopyFail(raw, reason)


def _dec_function_call(raw: bytes, r: _Reader) -> Message:
    oid = r.int32()
    return FunctionCall(raw, oid & 0xFFFFFFFF)


def _dec_auth(raw: bytes, r: _Reader) -> Message:
    kind = r.int32()
    data = r.rest()
    if kind == AUTH_MD5 and len(data) != 4:
        raise r.fail("md5 salt must be 4 bytes")
    if kind in (AUTH_OK, AUTH_CLEARTEXT, AUTH_KERBEROS_V5, AUTH_GSS, AUTH_SSPI) and data:
        raise r.fail("unexpected data")
    if kind == AUTH_SASL:
        # NUL-terminated mechanism names, then an empty name: b"SCRAM-SHA-256\0\0".
        names = data.split(b"\x00")
        if len(names) < 2 or names[-2:] != [b"", b""] or not all(names[:-2]):
            raise r.fail("malformed SASL mechanism list")
    return Authentication(raw, kind, data)


def _dec_key(raw: bytes, r: _Reader) -> Message:
    pid = r.int32()
    secret = r.rest()
    if not 4 <= len(secret) <= 256:
        raise r.fail("bad secret key length")
    return BackendKeyData(raw, pid, secret)


def _dec_command_complete(raw: bytes, r: _Reader) -> Message:
    tag = r.cstr()
    r.done()
    return CommandComplete(raw, tag)


def _dec_copy_response(raw: bytes, r: _Reader) -> Message:
    overall = r.byte()[0]
    fmts = tuple(r.int16() for _ in range(r.count(0x7FFF)))
    r.done()
    return CopyResponse(raw, overall, fmts)


def _dec_datarow(raw: bytes, r: _Reader) -> Message:
    # Validate the layout once here, cheaply, so later value access cannot fail halfway.
    n = r.count(0x7FFF)
    buf = r.buf
    pos = 2
    end = len(buf)
    for _ in range(n):
        if pos + 4 > end:
            raise r.fail("truncated int32")
        ln = int32_at(buf, pos)
        pos += 4
        if ln > 0:
            pos += ln
        elif ln < -1:
            raise r.fail(f"bad value length {ln}")
    if pos != end:
        raise r.fail("value lengths do not match the message length")
    return DataRow(raw)


def _dec_fields(cls: type[ErrorResponse] | type[NoticeResponse]) -> _Decoder:
    def dec(raw: bytes, r: _Reader) -> Message:
        fields: dict[str, str] = {}
        while True:
            code = r.byte()
            if code == b"\x00":
                break
            fields[code.decode("latin-1")] = r.cstr()
        r.done()
        return cls(raw, fields)

    return dec


def _dec_negotiate(raw: bytes, r: _Reader) -> Message:
    minor = r.int32()
    n = r.int32()
    if n < 0 or n > 10000:
        raise r.fail("bad option count")
    opts = tuple(r.cstr() for _ in range(n))
    r.done()
    return NegotiateProtocolVersion(raw, minor, opts)


def _dec_notification(raw: bytes, r: _Reader) -> Message:
    pid = r.int32()
    channel = r.cstr()
    payload = r.cstr()
    r.done()
    return NotificationResponse(raw, pid, channel, payload)


def _dec_param_desc(raw: bytes, r: _Reader) -> Message:
    n = r.count(0xFFFF)
    oids = tuple(r.int32() & 0xFFFFFFFF for _ in range(n))
    r.done()
    return ParameterDescription(raw, oids)


def _dec_param_status(raw: bytes, r: _Reader) -> Message:
    name = r.cstr()
    value = r.cstr()
    r.done()
    return ParameterStatus(raw, name, value)


def _dec_ready(raw: bytes, r: _Reader) -> Message:
    status = r.byte()
    r.done()
    if status not in (b"I", b"T", b"E"):
        raise r.fail(f"bad transaction status {status!r}")
    return ReadyForQuery(raw, status)


def _dec_row_description(raw: bytes, r: _Reader) -> Message:
    n = r.count(0x7FFF)
    cols = []
    for _ in range(n):
        name = r.cstr()
        table_oid = r.int32() & 0xFFFFFFFF
        attnum = r.int16()
        type_oid = r.int32() & 0xFFFFFFFF
        size = r.int16()
        typmod = r.int32()
        fmt = r.int16()
        cols.append(Column(name, table_oid, attnum, type_oid, size, typmod, fmt))
    r.done()
    return RowDescription(raw, tuple(cols))


FRONTEND_DECODERS: Final[dict[bytes, _Decoder]] = {
    b"Q": _dec_query,
    b"P": _dec_parse,
    b"B": _dec_bind,
    b"E": _dec_execute,
    b"D": _dec_describe_close(Describe),
    b"C": _dec_describe_close(Close),
    b"S": _dec_empty(Sync),
    b"H": _dec_empty(Flush),
    b"X": _dec_empty(Terminate),
    b"d": _dec_opaque(CopyData),
    b"c": _dec_empty(CopyDone),
    b"f": _dec_copyfail,
    b"F": _dec_function_call,
    b"p": _dec_opaque(AuthResponse),
}

BACKEND_DECODERS: Final[dict[bytes, _Decoder]] = {
    b"R": _dec_auth,
    b"K": _dec_key,
    b"1": _dec_empty(ParseComplete),
    b"2": _dec_empty(BindComplete),
    b"3": _dec_empty(CloseComplete),
    b"C": _dec_command_complete,
    b"d": _dec_opaque(CopyData),
    b"c": _dec_empty(CopyDone),
    b"G": _dec_copy_response,
    b"H": _dec_copy_response,
    b"W": _dec_copy_response,
    b"D": _dec_datarow,
    b"I": _dec_empty(EmptyQueryResponse),
    b"E": _dec_fields(ErrorResponse),
    b"N": _dec_fields(NoticeResponse),
    b"V": _dec_opaque(FunctionCallResponse),
    b"v": _dec_negotiate,
    b"n": _dec_empty(NoData),
    b"A": _dec_notification,
    b"t": _dec_param_desc,
    b"S": _dec_param_status,
    b"s": _dec_empty(PortalSuspended),
    b"Z": _dec_ready,
    b"T": _dec_row_description,
}


def decode(side: Side, raw: bytes, encoding: str = "utf-8") -> Message:
    """Decode one complete typed message; ``side`` is who sent it."""
    table = FRONTEND_DECODERS if side == "client" else BACKEND_DECODERS
    if len(raw) < 5 or int32_at(raw, 1) != len(raw) - 1:
        # ``raw`` is what gets forwarded: a length field that disagrees with it would make the
        # next hop frame the stream differently from us.
        raise ProtocolError("message length does not match its length field", side=side)
    code = raw[:1]
    dec = table.get(code)
    if dec is None:
        raise ProtocolError(f"unknown message type {code!r}", side=side)
    return dec(raw, _Reader(raw[5:], side, _NAMES.get((side, code), "message"), encoding))


_NAMES: Final = {
    ("client", b"Q"): "Query", ("client", b"P"): "Parse", ("client", b"B"): "Bind",
    ("client", b"E"): "Execute", ("client", b"D"): "Describe", ("client", b"C"): "Close",
    ("client", b"f"): "CopyFail", ("client", b"F"): "FunctionCall",
    ("server", b"R"): "Authentication", ("server", b"K"): "BackendKeyData",
    ("server", b"C"): "CommandComplete", ("server", b"D"): "DataRow",
    ("server", b"E"): "ErrorResponse", ("server", b"N"): "NoticeResponse",
    ("server", b"A"): "NotificationResponse", ("server", b"T"): "RowDescription",
    ("server", b"t"): "ParameterDescription", ("server", b"S"): "ParameterStatus",
    ("server", b"Z"): "ReadyForQuery", ("server", b"G"): "CopyInResponse",
    ("server", b"H"): "CopyOutResponse", ("server", b"W"): "CopyBothResponse",
    ("server", b"v"): "NegotiateProtocolVersion",
}  # fmt: skip
