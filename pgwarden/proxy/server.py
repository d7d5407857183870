"""The listening side of the gateway: accept, TLS, start-up, identity, then hand off to a relay.

Nothing reaches a target before the caller's token has been verified, and no byte the client
sends before the TLS handshake is ever read as part of the encrypted conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import secrets
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from pgwarden.auth.identity import AuthError
from pgwarden.auth.verifier import TokenVerifier
from pgwarden.config import Config, TargetConfig
from pgwarden.metrics import Metrics
from pgwarden.protocol.encodings import python_codec
from pgwarden.protocol.errors import ProtocolError
from pgwarden.protocol.messages import (
    AUTH_CLEARTEXT,
    AUTH_OK,
    PROTOCOL_V3,
    Authentication,
    AuthResponse,
    BackendKeyData,
    CancelRequest,
    ErrorResponse,
    GSSENCRequest,
    Message,
    MessagePart,
    NegotiateProtocolVersion,
    NoticeResponse,
    ParameterStatus,
    ReadyForQuery,
    SSLRequest,
    StartupMessage,
)
from pgwarden.protocol.reader import DEFAULT_MAX_MESSAGE, MessageReader
from pgwarden.proxy import upstream as upstream_mod
from pgwarden.proxy.channel import Channel
from pgwarden.proxy.hooks import SessionHooks, SessionInfo
from pgwarden.proxy.relay import Relay
from pgwarden.proxy.tls import ensure_self_signed, server_context
from pgwarden.proxy.upstream import Upstream, UpstreamError

log = logging.getLogger("pgwarden.proxy")

# Start-up parameters a client may set on the target. Anything that changes who the session
# runs as, or whether it is read-only, is refused; other unknown parameters are dropped.
ALLOWED_PARAMS = frozenset(
    name.lower()
    for name in (
        "application_name", "client_encoding", "DateStyle", "TimeZone", "extra_float_digits",
        "search_path", "IntervalStyle", "bytea_output", "statement_timeout", "lock_timeout",
        "idle_in_transaction_session_timeout", "datestyle",
        "timezone", "intervalstyle", "lc_monetary", "lc_numeric", "lc_time", "geqo",
        "application_name", "xmlbinary", "xmloption", "jit", "work_mem", "client_min_messages",
    )
)  # fmt: skip
FORBIDDEN_PARAMS = frozenset(
    {
        "role", "session_authorization", "default_transaction_read_only", "transaction_read_only",
        "default_transaction_isolation", "session_replication_role", "row_security", "replication",
        "local_preload_libraries", "session_preload_libraries", "default_transaction_deferrable",
        "standard_conforming_strings", "transform_null_equals", "backslash_quote",
    }
)  # fmt: skip


class StartupRefused(Exception):
    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message


def parse_options(options: str) -> dict[str, str]:
    """Parse libpq's ``options`` (``-c name=value`` / ``--name=value``, backslash escapes)."""
    words: list[str] = []
    cur: list[str] = []
    escape = False
    for ch in options:
        if escape:
            cur.append(ch)
            escape = False
        elif ch == "\\":
            escape = True
        elif ch.isspace():
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        words.append("".join(cur))
    out: dict[str, str] = {}
    i = 0
    while i < len(words):
        w = words[i]
        if w == "-c" and i + 1 < len(words):
            setting = words[i + 1]
            i += 2
        elif w.startswith("-c") and len(w) > 2:
            setting = w[2:]
            i += 1
        elif w.startswith("--"):
            setting = w[2:]
            i += 1
        else:
            raise StartupRefused("42501", f"pgwarden: unsupported startup option {w!r}")
        if "=" not in setting:
            raise StartupRefused("42501", f"pgwarden: startup option {setting!r} has no value")
        name, value = setting.split("=", 1)
        out[name.replace("-", "_")] = value
    return out


def filter_params(params: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Return (parameters to send upstream, names dropped). Raises StartupRefused."""
    forwarded: dict[str, str] = {}
    dropped: list[str] = []
    candidates = {k: v for k, v in params.items() if k not in ("user", "database", "options")}
    if "options" in params:
        for name, value in parse_options(params["options"]).items():
            candidates[name] = value
    for name, value in candidates.items():
        lname = name.lower()
        if lname in FORBIDDEN_PARAMS:
            raise StartupRefused("42501", f"pgwarden: startup parameter {name!r} is not allowed")
        if lname.startswith("_pq_."):
            continue
        if lname in ALLOWED_PARAMS:
            if (
                lname == "client_encoding"
                and value.lower() != "auto"
                and python_codec(value) is None
            ):
                raise StartupRefused(
                    "22023", f"pgwarden: client_encoding {value!r} is not supported"
                )
            forwarded[name] = value
        else:
            dropped.append(name)
    return forwarded, dropped


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%", maxsplit=1)[0]).is_loopback
    except ValueError:
        return addr.startswith("/") or addr == ""  # unix socket


@dataclass(slots=True)
class ActiveSession:
    info: SessionInfo
    pid: int
    secret: bytes
    target: TargetConfig
    upstream: Upstream
    hooks: SessionHooks
    relay: Relay | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


HooksFactory = Callable[[SessionInfo], SessionHooks]


class Gateway:
    def __init__(
        self,
        config: Config,
        verifier: TokenVerifier,
        hooks_factory: HooksFactory | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.verifier = verifier
        self.hooks_factory: HooksFactory = hooks_factory or (lambda info: SessionHooks())
        self.sessions: dict[str, ActiveSession] = {}
        # Sessions by the pid their client knows; two targets' backends may share a pid, and
        # the secret tells them apart.
        self._by_pid: dict[int, list[ActiveSession]] = {}
        self._server: asyncio.Server | None = None
        self._conns: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._tls: ssl.SSLContext | None = None
        self.connections = 0

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def _tls_context(self) -> ssl.SSLContext:
        tls = self.config.tls
        if tls.cert is not None and tls.key is not None:
            return server_context(tls.cert, tls.key)
        cert, key = ensure_self_signed(self.config.data_dir)
        return server_context(cert, key)

    async def start(self) -> None:
        self._tls = self._tls_context()
        listen = self.config.listen
        self._server = await asyncio.start_server(
            self._on_connect,
            listen.host,
            listen.port,
            reuse_address=True,
            backlog=1024,
            limit=65536,
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        # Close sockets rather than cancel handler tasks, so every session ends through its
        # normal path (session_ended runs, the upstream gets Terminate).
        for session in list(self.sessions.values()):
            if session.relay is not None:
                session.relay._ended("gateway stopped")
                session.relay.close()
        for writer in list(self._conns.values()):
            writer.close()
        if self._conns:
            _, still = await asyncio.wait(list(self._conns), timeout=5)
            for task in still:
                task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns[task] = writer  # type: ignore[index]
        try:
            if len(self._conns) > self.config.max_connections:
                await self._refuse(writer, "53300", "pgwarden: too many connections")
                return
            await self._handle(reader, writer)
        except asyncio.CancelledError:
            pass  # only at shutdown; ending quietly keeps asyncio's server callback happy
        except Exception:
            log.exception("connection handler failed")
        finally:
            self._conns.pop(task, None)  # type: ignore[call-overload]
            with contextlib.suppress(Exception):
                writer.close()

    async def _refuse(self, writer: asyncio.StreamWriter, sqlstate: str, message: str) -> None:
        with contextlib.suppress(Exception):
            writer.write(ErrorResponse.build(sqlstate, message, severity="FATAL").raw)
            await asyncio.wait_for(writer.drain(), 2)

    async def _read(self, reader: asyncio.StreamReader, parser: MessageReader) -> Message:
        while True:
            msg = parser.next()
            if msg is not None:
                if isinstance(msg, MessagePart):
                    raise ProtocolError("message too large during start-up", side="client")
                return msg
            data = await reader.read(16384)
            if not data:
                raise ConnectionResetError("client closed during start-up")
            parser.feed(data)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        metrics = self.metrics
        if metrics is None:
            await self._handle_connection(reader, writer)
            return
        metrics.connection_opened()
        try:
            await self._handle_connection(reader, writer)
        finally:
            metrics.connection_closed()

    async def _handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        client_addr = str(peer[0]) if isinstance(peer, tuple) else str(peer or "")
        parser = MessageReader("client", startup=True, max_message=16384)
        try:
            async with asyncio.timeout(self.config.auth_timeout):
                setup = await self._startup(reader, writer, parser, client_addr)
        except TimeoutError:
            await self._refuse(writer, "08006", "pgwarden: authentication timed out")
            return
        except ProtocolError as exc:
            await self._refuse(writer, "08P01", f"pgwarden: {exc.message}")
            return
        except StartupRefused as exc:
            await self._refuse(writer, exc.sqlstate, exc.message)
            return
        except (ConnectionError, OSError, asyncio.IncompleteReadError, ssl.SSLError):
            return
        if setup is None:
            return
        session, parser = setup
        await self._run_session(session, reader, writer, parser)

    async def _startup(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: MessageReader,
        client_addr: str,
    ) -> tuple[ActiveSession, MessageReader] | None:
        is_tls = False
        gss_asked = False
        while True:
            msg = await self._read(reader, parser)
            if isinstance(msg, SSLRequest):
                if is_tls:
                    raise ProtocolError("SSLRequest inside TLS", side="client")
                # Bytes sent after SSLRequest but before the handshake would otherwise be
                # taken as if they had come through TLS (CVE-2021-23214): refuse them.
                if parser.buffered or reader._buffer:  # type: ignore[attr-defined]
                    raise ProtocolError("data received before the TLS handshake", side="client")
                writer.write(b"S")
                await writer.drain()
                assert self._tls is not None
                await writer.start_tls(self._tls)
                is_tls = True
                continue
            if isinstance(msg, GSSENCRequest):
                if gss_asked or is_tls:
                    raise ProtocolError("repeated GSSENCRequest", side="client")
                gss_asked = True
                writer.write(b"N")
                await writer.drain()
                continue
            if isinstance(msg, CancelRequest):
                await self._cancel(msg)
                return None
            if isinstance(msg, StartupMessage):
                break
            raise ProtocolError(f"unexpected {type(msg).__name__} during start-up", side="client")
        parser.startup = False
        return await self._authenticate(msg, reader, writer, parser, client_addr, is_tls)

    def _plaintext_allowed(self, client_addr: str) -> bool:
        require = self.config.tls.require
        if require is True:
            return False
        if require is False:
            return True
        return _is_loopback(client_addr)

    async def _authenticate(
        self,
        startup: StartupMessage,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: MessageReader,
        client_addr: str,
        is_tls: bool,
    ) -> tuple[ActiveSession, MessageReader]:
        params = dict(startup.params)
        if "replication" in params and params["replication"].lower() not in (
            "false",
            "off",
            "no",
            "0",
        ):
            raise StartupRefused("42501", "pgwarden: replication connections are not allowed")
        if not is_tls and not self._plaintext_allowed(client_addr):
            raise StartupRefused(
                "28000", "pgwarden: TLS is required for this connection (use sslmode=require)"
            )
        user = params.get("user", "")
        if not user:
            raise StartupRefused(
                "28000", "pgwarden: no user name given; the user must be the token's subject"
            )
        target_name = params.get("database") or user
        forwarded, dropped = filter_params(params)

        hello = b""
        if startup.version & 0xFFFF or any(k.startswith("_pq_.") for k in params):
            # Sent before authentication, as PostgreSQL does. The field carries the whole
            # newest version (3.0 = 196608), as the server sends it, not only the minor.
            unknown = [k for k in params if k.startswith("_pq_.")]
            hello = NegotiateProtocolVersion.build(PROTOCOL_V3, unknown).raw
        writer.write(hello + Authentication.build(AUTH_CLEARTEXT).raw)
        await writer.drain()
        msg = await self._read(reader, parser)
        if not isinstance(msg, AuthResponse):
            raise ProtocolError(
                f"expected a password message, got {type(msg).__name__}", side="client"
            )
        try:
            token = msg.password().decode("utf-8")
        except UnicodeDecodeError:
            raise StartupRefused(
                "28P01", "pgwarden: password is not a token (expected a JWT)"
            ) from None
        try:
            identity = await self.verifier.verify(token, user=user)
        except AuthError as exc:
            if self.metrics is not None:
                self.metrics.token_failure(exc.message)
            log.info(
                "authentication failed for user %r from %s: %s", user, client_addr, exc.message
            )
            raise StartupRefused(exc.sqlstate, f"pgwarden: {exc.message}") from None
        target = self.config.targets.get(target_name)
        if target is None:
            raise StartupRefused("3D000", f'pgwarden: target "{target_name}" does not exist')

        info = SessionInfo(
            id=str(uuid.uuid4()),
            identity=identity,
            target=target_name,
            client_addr=client_addr,
            application_name=forwarded.get("application_name", ""),
            started_at=time.time(),
            tls=is_tls,
            search_path=next((v for k, v in forwarded.items() if k.lower() == "search_path"), None),
        )
        # The upstream session carries its id too, so SHOW pgwarden.session_id inside a
        # multi-statement string is answered with the gateway's value by the server itself.
        forwarded["pgwarden.session_id"] = info.id
        try:
            up = await upstream_mod.connect(target, forwarded)
        except UpstreamError as exc:
            log.warning("session %s: target %s: %s", info.id, target_name, exc.message)
            raise StartupRefused(
                exc.sqlstate, f"pgwarden: target {target_name}: {exc.message}"
            ) from None

        # The client sees the upstream backend's pid, so pg_backend_pid(), pg_terminate_backend
        # and the pid in its own notifications agree with BackendKeyData; the secret is the
        # gateway's own, so a cancel key cannot be guessed from the server's.
        pid = up.pid if up.pid > 0 else secrets.randbelow(2**31 - 1) + 1
        secret = secrets.token_bytes(4)
        session = ActiveSession(info, pid, secret, target, up, self.hooks_factory(info))

        out = [Authentication.build(AUTH_OK).raw]
        for name, value in up.parameters.items():
            out.append(ParameterStatus.build(name, value).raw)
        out.append(BackendKeyData.build(pid, secret).raw)
        out.extend(n.raw for n in up.notices)
        if dropped:
            out.append(
                NoticeResponse.build(
                    "pgwarden: startup parameters not passed to the target: "
                    + ", ".join(sorted(dropped)),
                    severity="WARNING",
                    sqlstate="01000",
                ).raw
            )
        out.append(ReadyForQuery.build(b"I").raw)
        codec = python_codec(up.parameters.get("client_encoding", "UTF8"))
        if codec is None:
            up.writer.close()
            raise StartupRefused("22023", "pgwarden: the target's client_encoding is not supported")
        parser.encoding = codec
        parser.max_message = DEFAULT_MAX_MESSAGE  # the start-up cap no longer applies
        up.parser.encoding = codec
        session.info.tx_status = b"I"
        try:
            await session.hooks.session_started(info)
        except Exception:
            log.exception("session %s could not be started (recording?)", info.id)
            up.writer.close()
            raise StartupRefused(
                "58000", "pgwarden: the session could not be recorded; refused"
            ) from None
        writer.write(b"".join(out))
        await writer.drain()
        return session, parser

    async def _run_session(
        self,
        session: ActiveSession,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: MessageReader,
    ) -> None:
        info = session.info
        self.sessions[info.id] = session
        self._by_pid.setdefault(session.pid, []).append(session)
        reason = "gateway stopped"
        try:
            client = await Channel.take(reader, writer)
            server = await Channel.take(session.upstream.reader, session.upstream.writer)
            relay = Relay(
                info, session.hooks, client, parser, session.upstream, server, self.metrics
            )
            session.relay = relay
            reason = await relay.run()
        except (ConnectionError, OSError):
            reason = "connection lost"
        finally:
            self.sessions.pop(info.id, None)
            peers = self._by_pid.get(session.pid, [])
            if session in peers:
                peers.remove(session)
            if not peers:
                self._by_pid.pop(session.pid, None)
            with contextlib.suppress(Exception):
                session.upstream.writer.close()
            try:
                await asyncio.shield(session.hooks.session_ended(info, reason))
            except Exception:
                log.exception("session %s: session_ended hook failed", info.id)

    async def _cancel(self, req: CancelRequest) -> None:
        session = None
        for candidate in self._by_pid.get(req.pid, ()):
            if hmac.compare_digest(candidate.secret, req.secret):
                session = candidate
        if session is None:
            log.debug("cancel request with an unknown key dropped")
            return  # unknown keys are dropped silently, as PostgreSQL does
        try:
            if session.hooks.cancel_requested(session.info):
                return
        except Exception:
            log.exception("cancel hook failed")
        up = session.upstream
        await upstream_mod.send_cancel(session.target, up.pid, up.secret)
