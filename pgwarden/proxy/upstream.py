"""Connecting to a target database with the credentials only the gateway holds.

Errors raised from here never carry the password: UpstreamError messages are written for the
client, and the upstream's own error text is passed on only after authentication fails, which
PostgreSQL never words with the password in it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import scramp

from pgwarden.config import TargetConfig
from pgwarden.protocol.errors import ProtocolError
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
    ErrorResponse,
    NegotiateProtocolVersion,
    NoticeResponse,
    ParameterStatus,
    ReadyForQuery,
    SSLRequest,
    StartupMessage,
    cstr,
)
from pgwarden.protocol.reader import MessageReader
from pgwarden.proxy.tls import upstream_context


class UpstreamError(Exception):
    def __init__(
        self, message: str, sqlstate: str = "08006", fields: Mapping[str, str] | None = None
    ):
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.fields = dict(fields) if fields else None


@dataclass(slots=True)
class Upstream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    parser: MessageReader
    pid: int = 0
    secret: bytes = b""
    parameters: dict[str, str] = field(default_factory=dict)
    notices: list[NoticeResponse] = field(default_factory=list)
    tls: bool = False


async def _read_message(up: Upstream) -> object:
    while True:
        msg = up.parser.next()
        if msg is not None:
            return msg
        data = await up.reader.read(65536)
        if not data:
            raise UpstreamError("the target closed the connection during start-up")
        up.parser.feed(data)


async def _open(target: TargetConfig) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port), target.connect_timeout
        )
    except (OSError, TimeoutError) as exc:
        raise UpstreamError(f"cannot reach the target database ({type(exc).__name__})") from None
    ctx = upstream_context(target.sslmode, target.sslrootcert)
    if ctx is None:
        return reader, writer, False
    writer.write(SSLRequest.build().raw)
    await writer.drain()
    answer = await reader.readexactly(1)
    if answer == b"S":
        if reader._buffer:  # type: ignore[attr-defined]  # bytes before the handshake: spoofing
            writer.close()
            raise UpstreamError("the target sent unencrypted data before the TLS handshake")
        try:
            await writer.start_tls(ctx, server_hostname=target.host)
        except (OSError, ValueError) as exc:
            writer.close()
            raise UpstreamError(f"TLS with the target failed: {exc}") from None
        return reader, writer, True
    if answer == b"N" and target.sslmode == "prefer":
        return reader, writer, False
    writer.close()
    if answer == b"N":
        raise UpstreamError(f"the target does not support TLS (sslmode={target.sslmode})")
    raise UpstreamError("unexpected answer to SSLRequest from the target")


async def connect(target: TargetConfig, params: Mapping[str, str]) -> Upstream:
    """Open, (optionally) encrypt and authenticate a connection; return it ready for queries."""
    try:
        reader, writer, is_tls = await asyncio.wait_for(_open(target), target.connect_timeout)
    except TimeoutError:
        raise UpstreamError(
            f"the target did not answer within {target.connect_timeout:g} s"
        ) from None
    up = Upstream(reader, writer, MessageReader("server"), tls=is_tls)
    try:
        # connect_timeout covers the whole start-up, as libpq's does: a target that accepts
        # and then says nothing is reported as such, not left to the client's auth timeout.
        await asyncio.wait_for(_startup(up, target, params), target.connect_timeout)
    except TimeoutError:
        writer.close()
        raise UpstreamError(
            f"the target did not complete start-up within {target.connect_timeout:g} s"
        ) from None
    except BaseException:
        writer.close()
        raise
    return up


async def _startup(up: Upstream, target: TargetConfig, params: Mapping[str, str]) -> None:
    startup = {"user": target.user, "database": target.dbname, **params}
    up.writer.write(StartupMessage.build(startup).raw)
    password = target.password.get_secret_value() if target.password is not None else None
    scram: scramp.ScramClient | None = None
    try:
        while True:
            msg = await _read_message(up)
            if isinstance(msg, Authentication):
                if msg.kind == AUTH_OK:
                    continue
                if password is None:
                    raise UpstreamError(
                        "the target asks for a password but none is configured", "28000"
                    )
                if msg.kind == AUTH_CLEARTEXT:
                    up.writer.write(AuthResponse.build(cstr(password)).raw)
                elif msg.kind == AUTH_MD5:
                    inner = hashlib.md5((password + target.user).encode()).hexdigest()  # noqa: S324
                    outer = hashlib.md5(inner.encode() + msg.data).hexdigest()  # noqa: S324
                    up.writer.write(AuthResponse.build(cstr("md5" + outer)).raw)
                elif msg.kind == AUTH_SASL:
                    if "SCRAM-SHA-256" not in msg.mechanisms:
                        raise UpstreamError(
                            "the target offers no supported SASL mechanism", "28000"
                        )
                    scram = scramp.ScramClient(["SCRAM-SHA-256"], target.user, password)
                    first = scram.get_client_first().encode()
                    up.writer.write(AuthResponse.sasl_initial("SCRAM-SHA-256", first).raw)
                elif msg.kind == AUTH_SASL_CONTINUE and scram is not None:
                    scram.set_server_first(msg.data.decode())
                    up.writer.write(AuthResponse.build(scram.get_client_final().encode()).raw)
                elif msg.kind == AUTH_SASL_FINAL and scram is not None:
                    # The server's signature proves it knows the password too: checks the target.
                    scram.set_server_final(msg.data.decode())
                else:
                    raise UpstreamError(
                        f"unsupported authentication request {msg.kind} from the target", "28000"
                    )
                await up.writer.drain()
            elif isinstance(msg, ErrorResponse):
                raise UpstreamError(msg.message, msg.sqlstate or "08006", msg.fields)
            elif isinstance(msg, ParameterStatus):
                up.parameters[msg.name] = msg.value
            elif isinstance(msg, BackendKeyData):
                up.pid, up.secret = msg.pid, msg.secret
            elif isinstance(msg, NoticeResponse):
                up.notices.append(msg)
            elif isinstance(msg, NegotiateProtocolVersion):
                continue
            elif isinstance(msg, ReadyForQuery):
                return
            else:
                raise UpstreamError(
                    f"unexpected {type(msg).__name__} from the target during start-up"
                )
    except scramp.ScramException:
        raise UpstreamError(
            "the target failed SCRAM authentication (wrong server signature)", "28000"
        ) from None
    except ProtocolError as exc:
        raise UpstreamError(f"the target broke the protocol: {exc.message}") from None
    except (OSError, asyncio.IncompleteReadError):
        raise UpstreamError("lost the connection to the target during start-up") from None


async def send_cancel(target: TargetConfig, pid: int, secret: bytes) -> None:
    """Forward a cancel to the target's backend, over TLS when sslmode asks for it."""
    try:
        reader, writer, _ = await _open(target)
    except UpstreamError:
        return
    try:
        writer.write(CancelRequest.build(pid, secret).raw)
        await writer.drain()
        await asyncio.wait_for(reader.read(1), 5)
    except (OSError, TimeoutError):
        pass
    finally:
        writer.close()
