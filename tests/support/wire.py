"""A raw PostgreSQL v3 wire client on a blocking socket, written independently of
``pgwarden.protocol`` so that it can check the gateway's codec rather than share its bugs.

    with RawConn.connect("127.0.0.1", port) as c:
        c.login(user="alice", database="shop", password=token)
        replies = c.simple("select 1")       # messages up to and including ReadyForQuery

Messages are ``Msg(type, body)``; helpers decode the fields tests look at.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import scramp

PROTOCOL_V3 = 196608
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102

_I32 = struct.Struct("!i")
_I16 = struct.Struct("!h")


# ---------------------------------------------------------------------------------------------
# Building messages


def cstr(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return data + b"\0"


def frame(code: bytes, body: bytes = b"") -> bytes:
    return code + _I32.pack(len(body) + 4) + body


def startup_packet(params: Mapping[str, str], version: int = PROTOCOL_V3) -> bytes:
    body = _I32.pack(version) + b"".join(cstr(k) + cstr(v) for k, v in params.items()) + b"\0"
    return _I32.pack(len(body) + 4) + body


def ssl_request() -> bytes:
    return _I32.pack(8) + _I32.pack(SSL_REQUEST_CODE)


def gssenc_request() -> bytes:
    return _I32.pack(8) + _I32.pack(GSSENC_REQUEST_CODE)


def cancel_request(pid: int, secret: bytes) -> bytes:
    body = _I32.pack(CANCEL_REQUEST_CODE) + _I32.pack(pid) + secret
    return _I32.pack(len(body) + 4) + body


def query(sql: str) -> bytes:
    return frame(b"Q", cstr(sql))


def parse(name: str, sql: str, param_types: Sequence[int] = ()) -> bytes:
    body = cstr(name) + cstr(sql) + _I16.pack(len(param_types))
    body += b"".join(_I32.pack(t) for t in param_types)
    return frame(b"P", body)


def bind(
    portal: str = "",
    statement: str = "",
    params: Sequence[bytes | str | None] = (),
    *,
    param_formats: Sequence[int] = (),
    result_formats: Sequence[int] = (),
) -> bytes:
    body = cstr(portal) + cstr(statement)
    body += _I16.pack(len(param_formats)) + b"".join(_I16.pack(f) for f in param_formats)
    body += _I16.pack(len(params))
    for p in params:
        if p is None:
            body += _I32.pack(-1)
        else:
            data = p.encode() if isinstance(p, str) else p
            body += _I32.pack(len(data)) + data
    body += _I16.pack(len(result_formats)) + b"".join(_I16.pack(f) for f in result_formats)
    return frame(b"B", body)


def execute(portal: str = "", max_rows: int = 0) -> bytes:
    return frame(b"E", cstr(portal) + _I32.pack(max_rows))


def describe(kind: bytes, name: str = "") -> bytes:
    return frame(b"D", kind + cstr(name))


def close(kind: bytes, name: str = "") -> bytes:
    return frame(b"C", kind + cstr(name))


def sync() -> bytes:
    return frame(b"S")


def flush() -> bytes:
    return frame(b"H")


def terminate() -> bytes:
    return frame(b"X")


def copy_data(data: bytes) -> bytes:
    return frame(b"d", data)


def copy_done() -> bytes:
    return frame(b"c")


def copy_fail(reason: str) -> bytes:
    return frame(b"f", cstr(reason))


def function_call(oid: int, args: Sequence[bytes | None] = (), result_format: int = 0) -> bytes:
    body = _I32.pack(oid) + _I16.pack(0) + _I16.pack(len(args))
    for a in args:
        body += _I32.pack(-1) if a is None else _I32.pack(len(a)) + a
    body += _I16.pack(result_format)
    return frame(b"F", body)


def extended(sql: str, params: Sequence[bytes | str | None] = (), max_rows: int = 0) -> bytes:
    """Parse/Bind/Describe/Execute of the unnamed statement and portal (no Sync)."""
    return parse("", sql) + bind("", "", params) + describe(b"P") + execute("", max_rows)


# ---------------------------------------------------------------------------------------------
# Reading messages


@dataclass(frozen=True)
class Msg:
    type: bytes
    body: bytes

    @property
    def name(self) -> str:
        return _BACKEND_NAMES.get(self.type, repr(self.type))

    # ErrorResponse / NoticeResponse
    @property
    def fields(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in self.body.split(b"\0"):
            if part:
                out[chr(part[0])] = part[1:].decode("utf-8", "replace")
        return out

    @property
    def sqlstate(self) -> str:
        return self.fields.get("C", "")

    @property
    def message(self) -> str:
        return self.fields.get("M", "")

    @property
    def severity(self) -> str:
        return self.fields.get("V", self.fields.get("S", ""))

    # CommandComplete
    @property
    def tag(self) -> str:
        return self.body.rstrip(b"\0").decode()

    # ReadyForQuery
    @property
    def status(self) -> bytes:
        return self.body[:1]

    # DataRow
    @property
    def values(self) -> tuple[bytes | None, ...]:
        (n,) = _I16.unpack_from(self.body, 0)
        pos = 2
        out: list[bytes | None] = []
        for _ in range(n):
            (length,) = _I32.unpack_from(self.body, pos)
            pos += 4
            if length < 0:
                out.append(None)
            else:
                out.append(self.body[pos : pos + length])
                pos += length
        return tuple(out)

    # RowDescription
    @property
    def columns(self) -> tuple[tuple[str, int], ...]:
        """(name, type oid) of each column."""
        (n,) = _I16.unpack_from(self.body, 0)
        pos = 2
        cols: list[tuple[str, int]] = []
        for _ in range(n):
            end = self.body.index(b"\0", pos)
            name = self.body[pos:end].decode()
            pos = end + 1
            _table, _attnum, type_oid, _size, _mod, _fmt = struct.unpack_from(
                "!ihihih", self.body, pos
            )
            pos += 18
            cols.append((name, type_oid))
        return tuple(cols)

    # ParameterStatus
    @property
    def parameter(self) -> tuple[str, str]:
        name, value, _ = self.body.split(b"\0", 2)
        return name.decode(), value.decode()

    # BackendKeyData
    @property
    def key(self) -> tuple[int, bytes]:
        (pid,) = _I32.unpack_from(self.body, 0)
        return pid, self.body[4:]

    # NotificationResponse
    @property
    def notification(self) -> tuple[int, str, str]:
        (pid,) = _I32.unpack_from(self.body, 0)
        channel, payload, _ = self.body[4:].split(b"\0", 2)
        return pid, channel.decode(), payload.decode()

    # Authentication
    @property
    def auth_kind(self) -> int:
        (kind,) = _I32.unpack_from(self.body, 0)
        return kind

    def __repr__(self) -> str:
        if self.type in (b"E", b"N"):
            return f"<{self.name} {self.sqlstate} {self.message!r}>"
        if self.type == b"C":
            return f"<{self.name} {self.tag!r}>"
        if self.type == b"Z":
            return f"<{self.name} {self.status!r}>"
        if self.type == b"D":
            return f"<{self.name} {self.values!r}>"
        return f"<{self.name} {len(self.body)} bytes>"


_BACKEND_NAMES = {
    b"R": "Authentication",
    b"K": "BackendKeyData",
    b"2": "BindComplete",
    b"3": "CloseComplete",
    b"C": "CommandComplete",
    b"d": "CopyData",
    b"c": "CopyDone",
    b"G": "CopyInResponse",
    b"H": "CopyOutResponse",
    b"W": "CopyBothResponse",
    b"D": "DataRow",
    b"I": "EmptyQueryResponse",
    b"E": "ErrorResponse",
    b"V": "FunctionCallResponse",
    b"v": "NegotiateProtocolVersion",
    b"n": "NoData",
    b"N": "NoticeResponse",
    b"A": "NotificationResponse",
    b"t": "ParameterDescription",
    b"S": "ParameterStatus",
    b"1": "ParseComplete",
    b"s": "PortalSuspended",
    b"Z": "ReadyForQuery",
    b"T": "RowDescription",
}


class ServerError(Exception):
    def __init__(self, msg: Msg) -> None:
        super().__init__(f"{msg.sqlstate}: {msg.message}")
        self.msg = msg
        self.sqlstate = msg.sqlstate
        self.message = msg.message


class RawConn:
    """One blocking connection; reads are bounded by `timeout` seconds."""

    def __init__(self, sock: socket.socket, timeout: float = 10) -> None:
        self.sock: socket.socket | ssl.SSLSocket = sock
        self.timeout = timeout
        self.buf = b""
        self.pid = 0
        self.secret = b""
        self.parameters: dict[str, str] = {}
        sock.settimeout(timeout)

    @classmethod
    def connect(cls, host: str, port: int, timeout: float = 10) -> RawConn:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock, timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # ---- bytes -------------------------------------------------------------------------------

    def send(self, *chunks: bytes) -> None:
        self.sock.sendall(b"".join(chunks))

    def _fill(self, deadline: float) -> bool:
        """Read more bytes; False on EOF."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no reply from the server in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("no reply from the server in time") from None
        except ConnectionResetError:
            return False
        if not data:
            return False
        self.buf += data
        return True

    def recv_bytes(self, n: int, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise ConnectionError(f"connection closed (wanted {n} bytes, got {len(self.buf)})")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self, timeout: float | None = None) -> Msg | None:
        """The next message, or None if the server closed the connection."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if len(self.buf) >= 5:
                (length,) = _I32.unpack_from(self.buf, 1)
                if len(self.buf) >= length + 1:
                    msg = Msg(self.buf[:1], self.buf[5 : length + 1])
                    self.buf = self.buf[length + 1 :]
                    return msg
            if not self._fill(deadline):
                return None

    def recv_until(self, types: Iterable[bytes], timeout: float | None = None) -> list[Msg]:
        """Messages up to and including the first one of `types` (or until EOF)."""
        stop = set(types)
        out: list[Msg] = []
        while True:
            msg = self.recv(timeout)
            if msg is None:
                return out
            out.append(msg)
            if msg.type in stop:
                return out

    def until_ready(self, timeout: float | None = None) -> list[Msg]:
        """Messages up to and including ReadyForQuery."""
        return self.recv_until([b"Z"], timeout)

    def recv_all(self, timeout: float = 5) -> list[Msg]:
        """Every message until the server closes the connection."""
        out: list[Msg] = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if msg is None:
                return out
            out.append(msg)

    def closed_by_peer(self, timeout: float = 5) -> bool:
        """True if the server closes the connection within `timeout` (any pending bytes are
        discarded); False if it is still open then."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.sock.settimeout(remaining)
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except TimeoutError:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        except ssl.SSLError:
            return True

    # ---- conversations -----------------------------------------------------------------------

    def start_tls(
        self, context: ssl.SSLContext | None = None, server_hostname: str | None = None
    ) -> bool:
        """SSLRequest and (if accepted) the TLS handshake. Returns whether TLS is on."""
        self.send(ssl_request())
        answer = self.recv_bytes(1)
        if answer != b"S":
            return False
        if context is None:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        assert isinstance(self.sock, socket.socket)
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        return True

    def startup(self, params: Mapping[str, str], version: int = PROTOCOL_V3) -> None:
        self.send(startup_packet(params, version))

    def login(
        self,
        user: str,
        database: str,
        password: str | None,
        params: Mapping[str, str] | None = None,
    ) -> list[Msg]:
        """Start-up and authentication (cleartext, md5 or SCRAM-SHA-256) up to ReadyForQuery.

        Returns every message received; raises ServerError on an ErrorResponse."""
        self.startup({"user": user, "database": database, **(params or {})})
        received: list[Msg] = []
        scram: scramp.ScramClient | None = None
        while True:
            msg = self.recv()
            if msg is None:
                raise ConnectionError("the server closed the connection during start-up")
            received.append(msg)
            if msg.type == b"E":
                raise ServerError(msg)
            if msg.type == b"R":
                kind = msg.auth_kind
                if kind == 0:
                    continue
                if password is None:
                    raise RuntimeError(f"the server asks for a password (auth kind {kind})")
                if kind == 3:
                    self.send(frame(b"p", cstr(password)))
                elif kind == 5:
                    salt = msg.body[4:8]
                    inner = hashlib.md5((password + user).encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + salt).hexdigest()
                    self.send(frame(b"p", cstr("md5" + outer)))
                elif kind == 10:
                    scram = scramp.ScramClient(["SCRAM-SHA-256"], user, password)
                    first = scram.get_client_first().encode()
                    self.send(frame(b"p", cstr("SCRAM-SHA-256") + _I32.pack(len(first)) + first))
                elif kind == 11 and scram is not None:
                    scram.set_server_first(msg.body[4:].decode())
                    self.send(frame(b"p", scram.get_client_final().encode()))
                elif kind == 12 and scram is not None:
                    scram.set_server_final(msg.body[4:].decode())
                else:
                    raise RuntimeError(f"unsupported authentication request {kind}")
            elif msg.type == b"K":
                self.pid, self.secret = msg.key
            elif msg.type == b"S":
                name, value = msg.parameter
                self.parameters[name] = value
            elif msg.type == b"Z":
                return received

    def simple(self, sql: str, timeout: float | None = None) -> list[Msg]:
        """A simple Query; the replies up to and including ReadyForQuery."""
        self.send(query(sql))
        return self.until_ready(timeout)

    def terminate(self) -> None:
        try:
            self.send(terminate())
        except OSError:
            pass
        self.close()


def rows(msgs: Iterable[Msg]) -> list[tuple[str | None, ...]]:
    """The DataRow values of a reply, decoded as text."""
    return [
        tuple(None if v is None else v.decode() for v in m.values) for m in msgs if m.type == b"D"
    ]


def errors(msgs: Iterable[Msg]) -> list[Msg]:
    return [m for m in msgs if m.type == b"E"]


def types(msgs: Iterable[Msg]) -> list[bytes]:
    return [m.type for m in msgs]
