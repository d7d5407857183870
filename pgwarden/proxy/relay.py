"""The relay: one authenticated client, one upstream connection, and what flows between them.

It understands what it relays. Every client message that the server answers is queued as a
``Pending`` entry, and every server message is matched against the front of that queue, so
the relay always knows which statement a row, an error or a ReadyForQuery belongs to. That
is what lets the hooks judge statements, mask rows with the right column descriptions, and
record results per statement.

A refused statement is never sent. In its place the relay sends something that fails on the
server without side effects (a Query that is a syntax error; an Execute of a portal that does
not exist), then replaces the server's error with the refusal. The server's own error
handling then does exactly what it would have done had the statement failed: the rest of the
pipeline up to Sync is skipped, the implicit transaction does not commit, an explicit one is
marked failed, and one ReadyForQuery follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Final

from pgwarden.protocol.encodings import python_codec
from pgwarden.protocol.errors import ProtocolError
from pgwarden.protocol.messages import (
    Bind,
    BindComplete,
    Close,
    CloseComplete,
    CommandComplete,
    CopyData,
    CopyDone,
    CopyFail,
    CopyResponse,
    DataRow,
    Describe,
    EmptyQueryResponse,
    ErrorResponse,
    Execute,
    Flush,
    FunctionCall,
    Message,
    MessagePart,
    MessageRun,
    NoData,
    NoticeResponse,
    ParameterStatus,
    Parse,
    ParseComplete,
    PortalSuspended,
    Query,
    ReadyForQuery,
    RowDescription,
    Sync,
    Terminate,
)
from pgwarden.protocol.reader import MessageReader
from pgwarden.proxy.channel import Channel
from pgwarden.proxy.hooks import (
    EndSession,
    Hold,
    SessionHooks,
    SessionInfo,
    Statement,
    Verdict,
)

if TYPE_CHECKING:
    from pgwarden.metrics import Metrics
    from pgwarden.proxy.upstream import Upstream

log: Final = logging.getLogger("pgwarden.relay")

# Pending kinds
# Final: compiled, a module constant that is not Final is a dictionary look-up at every use
PARSE: Final = 0
BIND: Final = 1
DESCRIBE: Final = 2
CLOSE: Final = 3
EXECUTE: Final = 4
SYNC: Final = 5
QUERY: Final = 6
INJECTED_EXT: Final = 7
INJECTED_SIMPLE: Final = 8
_EXTENDED: Final = frozenset({PARSE, BIND, DESCRIBE, CLOSE, EXECUTE, INJECTED_EXT})
_TIMED: Final = frozenset({QUERY, EXECUTE, INJECTED_EXT, INJECTED_SIMPLE})  # one per statement
# isinstance() tuples: `A | B` in the call builds a union object every time (per message)
_PASSED_AS_IS: Final = (CopyData, MessagePart)
_COPY_IN_ENDS: Final = (CopyDone, CopyFail)
_RESULT_ENDS: Final = (CommandComplete, EmptyQueryResponse, PortalSuspended)

_SHOW_SESSION_ID: Final = re.compile(
    r"""^\s*show\s+(?:pgwarden\.session_id|"pgwarden\.session_id"|"pgwarden"\."session_id")\s*;?\s*$""",
    re.IGNORECASE,
)


class _Portal:
    """What a Bind made a portal run (one per Bind). A plain class, like ``Pending``: compiled,
    its own ``__init__`` is native code, where a frozen dataclass's is interpreted Python."""

    def __init__(
        self, statement: str, sql: str, param_types: tuple[int, ...], bind: Bind, known: bool
    ) -> None:
        self.statement: Final = statement
        self.sql: Final = sql
        self.param_types: Final = param_types
        self.bind: Final = bind
        self.known: Final = known  # False: the statement was not prepared through this session


class Pending:
    """A reply the relay waits for, one per message that gets one. A plain class rather than
    a dataclass: one or more per statement, and compiled (pgwarden._native) its own
    ``__init__`` is several times cheaper than the one dataclasses generate."""

    def __init__(
        self,
        kind: int,
        name: str = "",  # statement or portal name
        describe_kind: bytes = b"",
        statement: str = "",  # for BIND: the statement bound
        result_formats: tuple[int, ...] = (),
        verdict: Verdict | None = None,
        ref: object | None = None,  # the hooks' handle on the statement this answers
        parsed: tuple[str, tuple[int, ...]] | None = None,  # PARSE: what the name will mean
        portal: _Portal | None = None,  # BIND: what the portal will run
        started: float = 0.0,  # QUERY/EXECUTE and refusals: when the message was judged
        outcome: str = "",  # for metrics: allowed, denied, approved, rejected
    ) -> None:
        self.kind = kind
        self.name = name
        self.describe_kind = describe_kind
        self.statement = statement
        self.result_formats = result_formats
        self.verdict = verdict
        self.ref = ref
        self.parsed = parsed
        self.portal = portal
        self.started = started
        self.outcome = outcome


def _masking_failed(session: str, what: str, exc: Exception) -> FatalToClient:
    """Fail closed: what masking could not handle is withheld and the session ends; the
    client is told why, never shown the value."""
    log.warning("masking failed in session %s on %s: %s", session, what, exc)
    return FatalToClient(
        "58000",
        "pgwarden: a result could not be masked and was withheld; the session ends",
        f"masking failed: {type(exc).__name__}",
    )


class SessionEnded(Exception):
    """Raised inside the relay to end the session with a reason."""


class FatalToClient(SessionEnded):
    """End the session, telling the client why with a FATAL error."""

    def __init__(self, sqlstate: str, message: str, reason: str) -> None:
        super().__init__(reason)
        self.sqlstate = sqlstate
        self.message = message
        self.reason = reason


class Relay:
    def __init__(
        self,
        info: SessionInfo,
        hooks: SessionHooks,
        client: Channel,
        client_parser: MessageReader,
        upstream: Upstream,
        server: Channel,
        metrics: Metrics | None = None,
    ) -> None:
        self.info = info
        # the statements' count and durations, added to natively (see pgwarden.tally): the
        # one part of the metrics the relay feeds
        self.tally = metrics.tally if metrics is not None else None
        self._outcome = "allowed"  # of the last verdict (see _verdict)
        self.hooks = hooks
        self.client = client
        self.server = server
        self.cparser = client_parser
        self.up = upstream
        self.sparser = upstream.parser
        self.pending: deque[Pending] = deque()
        # Woken when no reply is outstanding (see _token_expired). A future made only when
        # waited on: an asyncio.Event is plain Python, cleared and set for every statement.
        self._drained_waiter: asyncio.Future[None] | None = None
        self.end_reason: str | None = None  # the first reason found wins
        self._refusal_token = "pgwarden_refused_" + secrets.token_hex(8)
        # Client-ordered view: what each name means at the time the client uses it.
        # Names as the server knows them: a Parse or Bind takes effect here only when the
        # server confirms it (ParseComplete / BindComplete), so a refused, failed or skipped
        # one can never make the gateway judge one text while the server runs another.
        self.statements: dict[str, tuple[str, tuple[int, ...]]] = {}
        # A portal runs the statement as it was when bound, whatever happens to the
        # statement's name afterwards, so the text is captured at Bind.
        self.portals: dict[str, _Portal] = {}
        # Within one Sync segment a later Bind/Execute can only run if the Parse/Bind before
        # it succeeded, so the newest unconfirmed definition in the same segment is the one
        # that counts; across a Sync the relay waits for the server's confirmation.
        self.epoch = 0
        self.tentative_stmt: dict[str, tuple[int, tuple[str, tuple[int, ...]]]] = {}
        self.tentative_portal: dict[str, tuple[int, _Portal]] = {}
        # Parses (statement names) and Binds (portal names) sent and not yet answered: one
        # dict per kind, keyed by name (a tuple key was built and hashed four times per
        # statement).
        self.unconfirmed_stmt: dict[str, int] = {}
        self.unconfirmed_portal: dict[str, int] = {}
        self.confirmed = asyncio.Event()
        self._settling = 0  # how many _settle calls wait on ``confirmed``
        # Server-ordered view: descriptions as the server reports them.
        self.stmt_desc: dict[str, RowDescription | None] = {}
        self.portal_stmt: dict[str, tuple[str, tuple[int, ...]]] = {}
        self.portal_desc: dict[str, RowDescription | None] = {}
        self.columns: RowDescription | None = None
        self.copy_in = False  # the server is in COPY FROM STDIN: it ignores Sync and Flush
        self.copy_out = False  # the server is sending COPY TO STDOUT data
        self._ref: object | None = None  # the ref of the statement being answered

    # -----------------------------------------------------------------------------------------
    async def run(self) -> str:
        """Relay until either side ends; return why the session ended."""
        c2s = asyncio.create_task(self._client_loop(), name=f"c2s-{self.info.id}")
        s2c = asyncio.create_task(self._server_loop(), name=f"s2c-{self.info.id}")
        done, pending = await asyncio.wait({c2s, s2c}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, SessionEnded | ConnectionError):
                log.exception("session %s failed", self.info.id, exc_info=exc)
                self._ended(f"internal error: {type(exc).__name__}")
        self.close()
        return self.end_reason or "ended"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if not self.server.is_closing():
                self.server.write(Terminate.build().raw)
            self.server.close()
        with contextlib.suppress(Exception):
            self.client.close()

    async def _fatal(self, sqlstate: str, message: str, reason: str) -> None:
        """End the session with a FATAL error the client can read."""
        self._ended(reason)
        with contextlib.suppress(Exception):
            self.client.write(ErrorResponse.build(sqlstate, message, severity="FATAL").raw)
            await asyncio.wait_for(self.client.drain(), 5)
        raise SessionEnded(reason)

    def _enqueue(self, p: Pending) -> None:
        if self.tally is not None and p.kind in _TIMED:
            p.started = time.perf_counter()
            p.outcome = self._outcome
        self.pending.append(p)

    # -----------------------------------------------------------------------------------------
    # client -> server

    async def _client_loop(self) -> None:
        reader = self.client
        parser = self.cparser
        writer = self.server
        try:
            while True:
                data = await reader.read()
                if not data:
                    self._ended("client disconnected")
                    return
                parser.feed(data)
                out: list[bytes] = []
                while True:
                    try:
                        msg = (parser.next_copy_data() if self.copy_in else None) or parser.next()
                    except ProtocolError as exc:
                        if out:
                            writer.write(b"".join(out))
                        await self._fatal(
                            "08P01",
                            f"pgwarden: {exc.message}",
                            f"client protocol error: {exc.message}",
                        )
                    if msg is None:
                        break
                    if not await self._on_client(msg, out):
                        if out:
                            writer.write(b"".join(out))
                        self._ended("client terminated")
                        return
                if out:
                    writer.write(b"".join(out))
                    if writer.backlogged():
                        await writer.drain()
        except (ConnectionError, OSError):
            self._ended("client connection lost")

    def _ended(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason

    def _expired(self) -> bool:
        # Checked before every statement message; a plain call, since a coroutine per message
        # would cost more than the check.
        return time.time() >= self.info.identity.expires_at

    async def _token_expired(self, out: list[bytes]) -> None:
        # The statement already sent finishes and its reply reaches the client; then FATAL.
        if out:
            self.server.write(b"".join(out))
            out.clear()
        if self.pending:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._drained_waiter = waiter
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, 300)
        await self._fatal(
            "28000", "pgwarden: token expired; reconnect with a fresh token", "token expired"
        )

    async def _verdict(self, coro: object) -> Verdict:
        """The hooks' verdict on a statement, after any hold; ``_outcome`` says how it went
        (for metrics). Whatever fails here refuses the statement (fail closed)."""
        try:
            verdict = await coro  # type: ignore[misc]
        except EndSession as exc:
            await self._fatal("58030", f"pgwarden: {exc}; the session ends", str(exc))
        except Exception:
            log.exception("statement check failed in session %s; refusing", self.info.id)
            verdict = None
        if type(verdict) is not Verdict:
            self._outcome = "denied"
            return Verdict.deny(
                "internal error while checking the statement; refused", rule="fail-closed"
            )
        if verdict.action != "hold":
            self._outcome = "allowed" if verdict.action == "allow" else "denied"
            return verdict
        if verdict.hold is None:
            self._outcome = "denied"
            return Verdict.deny("held without a way to decide; refused", rule="fail-closed")
        verdict = await self._hold(verdict.hold)
        if verdict.action == "hold":
            self._outcome = "denied"
            return Verdict.deny("held twice; refused", rule="fail-closed")
        self._outcome = "approved" if verdict.action == "allow" else "rejected"
        return verdict

    async def _hold(self, hold: Hold) -> Verdict:
        """Wait for a human's decision on the statement being checked. The client is told at
        once; nothing is forwarded meanwhile (the server sits idle, the transaction open)."""
        self.client.write(NoticeResponse.build(hold.notice).raw)
        await self.client.drain()
        waiter = asyncio.ensure_future(hold.wait())
        gone = asyncio.ensure_future(self._client_gone())
        try:
            done, _ = await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            waiter.cancel()
            with contextlib.suppress(Exception):
                await hold.withdraw("the session ended")
            raise
        finally:
            gone.cancel()
        if waiter in done:
            try:
                return waiter.result()
            except EndSession as exc:
                await self._fatal("58030", f"pgwarden: {exc}; the session ends", str(exc))
            except Exception:
                log.exception("waiting for an approval failed in session %s", self.info.id)
                return Verdict.deny("internal error while waiting for approval", rule="fail-closed")
        waiter.cancel()
        with contextlib.suppress(Exception):
            await hold.withdraw("the client disconnected")
        self._ended("client disconnected while a statement was held")
        raise SessionEnded("client disconnected while a statement was held")

    async def _client_gone(self) -> None:
        """Return once the client has closed its side (its later messages stay buffered)."""
        client = self.client
        while True:
            if client.peer_closed() or client.exception() is not None or client.is_closing():
                return
            await asyncio.sleep(0.2)

    def _refuse_ext(self, verdict: Verdict, out: list[bytes]) -> None:
        out.append(Execute.build(self._refusal_token, 1).raw)
        self._enqueue(Pending(INJECTED_EXT, verdict=verdict, ref=verdict.ref))

    def _unconfirmed_of(self, kind: bytes) -> dict[str, int]:
        return self.unconfirmed_stmt if kind == b"S" else self.unconfirmed_portal

    def _unconfirmed(self, kind: bytes, name: str, delta: int) -> None:
        unconfirmed = self._unconfirmed_of(kind)
        n = unconfirmed.get(name, 0) + delta
        if n > 0:
            unconfirmed[name] = n
        else:
            unconfirmed.pop(name, None)
        if delta < 0 and self._settling:  # set() is plain Python: only when _settle waits
            self.confirmed.set()

    def _parse_sent(self, msg: Parse) -> None:
        parsed = (msg.sql, msg.param_types)
        self.tentative_stmt[msg.name] = (self.epoch, parsed)
        self._unconfirmed(b"S", msg.name, 1)
        self._enqueue(Pending(PARSE, name=msg.name, parsed=parsed))

    async def _settle(self, kind: bytes, name: str, out: list[bytes]) -> None:
        """Wait until the server has answered every Parse/Bind of ``name`` sent so far."""
        unconfirmed = self._unconfirmed_of(kind)
        if name not in unconfirmed:
            return
        out.append(Flush.build().raw)  # the server holds answers until Flush or Sync
        self.server.write(b"".join(out))
        out.clear()
        await self.server.drain()
        self._settling += 1
        try:
            while name in unconfirmed:
                self.confirmed.clear()
                await self.confirmed.wait()
        finally:
            self._settling -= 1

    async def _statement_for_bind(
        self, name: str, out: list[bytes]
    ) -> tuple[str, tuple[int, ...]] | None:
        await self._settle(b"S", name, out)
        return self.statements.get(name)

    async def _portal_for_execute(self, name: str, out: list[bytes]) -> _Portal | None:
        await self._settle(b"P", name, out)
        return self.portals.get(name)

    def _session_id_sql(self) -> str:
        return f"SELECT '{self.info.id}'::text AS \"pgwarden.session_id\""

    async def _on_client(self, msg: Message | MessagePart, out: list[bytes]) -> bool:
        """Handle one client message, appending what to send upstream. False: stop."""
        if isinstance(msg, _PASSED_AS_IS):
            out.append(msg.raw)
        elif isinstance(msg, Query):
            if self._expired():
                await self._token_expired(out)
            self.epoch += 1
            if _SHOW_SESSION_ID.match(msg.sql):
                out.append(Query.build(self._session_id_sql()).raw)
                self._enqueue(Pending(QUERY))
                return True
            verdict = await self._verdict(self.hooks.check_query(self.info, msg.sql))
            if verdict.action != "allow":
                out.append(Query.build(self._refusal_token).raw)
                self._enqueue(Pending(INJECTED_SIMPLE, verdict=verdict, ref=verdict.ref))
            else:
                out.append(
                    msg.raw
                    if verdict.rewrite is None
                    else Query.build(verdict.rewrite, self.cparser.encoding).raw
                )
                self._enqueue(Pending(QUERY, ref=verdict.ref))
        elif isinstance(msg, Parse):
            if self._expired():
                await self._token_expired(out)
            if _SHOW_SESSION_ID.match(msg.sql):
                out.append(Parse.build(msg.name, self._session_id_sql(), msg.param_types).raw)
                self._parse_sent(msg)
                return True
            verdict = await self._verdict(self.hooks.check_parse(self.info, msg.name, msg.sql))
            if verdict.action != "allow":
                self._refuse_ext(verdict, out)
            else:
                raw = (
                    msg.raw
                    if verdict.rewrite is None
                    else Parse.build(
                        msg.name, verdict.rewrite, msg.param_types, self.cparser.encoding
                    ).raw
                )
                out.append(raw)
                self._parse_sent(msg)
        elif isinstance(msg, Bind):
            if self._expired():
                await self._token_expired(out)
            # Parsed earlier in this segment (the common Parse/Bind/Execute/Sync): known at
            # once, without a coroutine; otherwise once the server has confirmed the name.
            tentative = self.tentative_stmt.get(msg.statement)
            if tentative is not None and tentative[0] == self.epoch:
                prepared: tuple[str, tuple[int, ...]] | None = tentative[1]
            else:
                prepared = await self._statement_for_bind(msg.statement, out)
            sql, types = prepared if prepared is not None else ("", ())
            bound = _Portal(msg.statement, sql, types, msg, prepared is not None)
            out.append(msg.raw)
            self.tentative_portal[msg.portal] = (self.epoch, bound)
            self._unconfirmed(b"P", msg.portal, 1)
            self._enqueue(
                Pending(
                    BIND,
                    name=msg.portal,
                    statement=msg.statement,
                    result_formats=msg.result_formats,
                    portal=bound,
                )
            )
        elif isinstance(msg, Execute):
            if self._expired():
                await self._token_expired(out)
            tentative_portal = self.tentative_portal.get(msg.portal)
            if tentative_portal is not None and tentative_portal[0] == self.epoch:
                portal: _Portal | None = tentative_portal[1]
            else:
                portal = await self._portal_for_execute(msg.portal, out)
            stmt_name = portal.statement if portal else ""
            sql = portal.sql if portal else ""
            param_types = portal.param_types if portal else ()
            bind = portal.bind if portal else None
            known = portal.known if portal else False
            verdict = await self._verdict(
                self.hooks.check_execute(
                    self.info,
                    Statement(
                        sql=sql,
                        protocol="extended",
                        statement_name=stmt_name,
                        portal=msg.portal,
                        bind=bind,
                        param_types=param_types,
                        known=known,
                    ),
                )
            )
            if verdict.action != "allow":
                self._refuse_ext(verdict, out)
            else:
                out.append(msg.raw)
                self._enqueue(Pending(EXECUTE, name=msg.portal, ref=verdict.ref))
        elif isinstance(msg, Describe):
            out.append(msg.raw)
            self._enqueue(Pending(DESCRIBE, name=msg.name, describe_kind=msg.kind))
        elif isinstance(msg, Close):
            # Forgotten when the server confirms (CloseComplete); a Close in this segment
            # also hides tentative definitions of the name.
            if msg.kind == b"S":
                self.tentative_stmt.pop(msg.name, None)
            else:
                self.tentative_portal.pop(msg.name, None)
            out.append(msg.raw)
            self._enqueue(Pending(CLOSE, name=msg.name, describe_kind=msg.kind))
        elif isinstance(msg, Sync):
            out.append(msg.raw)
            self.epoch += 1
            if not self.copy_in:
                self._enqueue(Pending(SYNC))
        elif isinstance(msg, Flush):
            out.append(msg.raw)
        elif isinstance(msg, _COPY_IN_ENDS):
            out.append(msg.raw)
            self.copy_in = False
        elif isinstance(msg, FunctionCall):
            # The fast-path function call runs a function by OID with no SQL to classify.
            verdict = Verdict.deny(
                "the FunctionCall protocol message is not allowed (it bypasses SQL); "
                "use SELECT fn(...)",
                rule="function-call-protocol",
            )
            out.append(Query.build(self._refusal_token).raw)
            self._enqueue(Pending(INJECTED_SIMPLE, verdict=verdict))
        elif isinstance(msg, Terminate):
            out.append(msg.raw)
            return False
        else:
            await self._fatal(
                "08P01",
                f"pgwarden: unexpected {type(msg).__name__} message",
                "client protocol error",
            )
        return True

    # -----------------------------------------------------------------------------------------
    # server -> client

    async def _server_loop(self) -> None:
        reader = self.server
        parser = self.sparser
        writer = self.client
        try:
            while True:
                data = await reader.read()
                if not data:
                    self._ended("target closed the connection")
                    return
                parser.feed(data)
                out: list[tuple[Message, object, RowDescription | None]] = []
                while True:
                    if self.copy_out:
                        run = parser.next_copy_run()
                        if run:
                            await self._run(run, b"d", out)
                            continue
                    elif self.columns is not None or self._execute_columns():
                        run = parser.next_run(0x44)  # b"D": more rows of the current result
                        if run:
                            await self._run(run, b"D", out)
                            continue
                    try:
                        msg = parser.next()
                    except ProtocolError as exc:
                        await self._fatal(
                            "08P01",
                            "pgwarden: the target broke the protocol",
                            f"server protocol error: {exc.message}",
                        )
                    if msg is None:
                        break
                    if isinstance(msg, MessagePart):
                        # Too large to buffer: masking cannot see the whole value, so such
                        # a value is withheld rather than passed through (fail closed).
                        await self._fatal(
                            "54000",
                            "pgwarden: a value too large to inspect was withheld; the session ends",
                            "oversized server message",
                        )
                        continue
                    ref = self.pending[0].ref if self.pending else None
                    self._ref = ref
                    if isinstance(msg, RowDescription):
                        try:
                            await self.hooks.prepare_columns(self.info, msg)
                        except Exception:
                            log.exception("column preparation failed in %s", self.info.id)
                            await self._fatal(
                                "58000",
                                "pgwarden: the result could not be checked for masking",
                                "masking preparation failed",
                            )
                    try:
                        fwd = self._on_server(msg)
                    except FatalToClient as fatal:
                        if out:
                            await self._deliver(out)
                        await self._fatal(fatal.sqlstate, fatal.message, fatal.reason)
                    if fwd is not None:
                        out.append((fwd, ref, self.columns))
                if out:
                    await self._deliver(out)
                    if writer.backlogged():
                        await writer.drain()
        except (ConnectionError, OSError):
            self._ended("connection lost")

    async def _run(
        self,
        run: list[bytes],
        kind: bytes,
        out: list[tuple[Message, object, RowDescription | None]],
    ) -> None:
        """A run of whole DataRow (b"D") or COPY TO STDOUT CopyData (b"d") messages: kept
        as separate messages (clients read COPY row by row), forwarded untouched in one piece
        when the masking says nothing in them can need masking, else masked together."""
        ref = self.pending[0].ref if self.pending else None
        self._ref = ref
        joined = b"".join(run)
        try:
            try:
                untouched = self.hooks.run_untouched(self.info, kind, joined, self.columns, ref)
            except Exception as exc:
                raise _masking_failed(self.info.id, "a run of rows", exc) from None
            if untouched:
                out.append((MessageRun(joined, tuple(run), kind), ref, self.columns))
                return
            self._columns_for(self.pending[0] if self.pending else None)
            msgs: list[Message] = (
                [DataRow(raw) for raw in run] if kind == b"D" else [CopyData(raw) for raw in run]
            )
            try:
                sent = self.hooks.filter_run(self.info, kind, msgs, self.columns, ref)
            except Exception as exc:
                raise _masking_failed(self.info.id, "a run of rows", exc) from None
            columns = self.columns
            out.extend([(fwd, ref, columns) for fwd in sent])
        except FatalToClient as fatal:
            if out:
                await self._deliver(out)
                out.clear()
            await self._fatal(fatal.sqlstate, fatal.message, fatal.reason)

    async def _deliver(self, out: list[tuple[Message, object, RowDescription | None]]) -> None:
        """Record, then send to the client: nothing reaches the client unrecorded."""
        try:
            await self.hooks.record_server_messages(self.info, out)
        except EndSession as exc:
            await self._fatal("58030", f"pgwarden: {exc}; the session ends", str(exc))
        self.client.write(b"".join([m.raw for m, _, _ in out]))

    def _filter(self, msg: Message) -> Message | None:
        try:
            return self.hooks.filter_server_message(self.info, msg, self.columns, self._ref)
        except Exception as exc:
            raise _masking_failed(self.info.id, type(msg).__name__, exc) from None

    def _pop(self) -> Pending | None:
        p = self.pending.popleft() if self.pending else None
        if p is not None and p.started and self.tally is not None:
            self.tally.record(p.outcome, time.perf_counter() - p.started)
        if p is not None:
            if p.kind == PARSE:
                self._unconfirmed(b"S", p.name, -1)
            elif p.kind == BIND:
                self._unconfirmed(b"P", p.name, -1)
        waiter = self._drained_waiter
        if waiter is not None and not self.pending:
            self._drained_waiter = None
            if not waiter.done():
                waiter.set_result(None)
        return p

    def _execute_columns(self) -> bool:
        """Before an Execute's first row: its columns (from its Describe), so that its rows
        are checked as a run like a simple query's, not decoded and masked one by one."""
        pending = self.pending
        if not pending or pending[0].kind != EXECUTE:
            return False
        self._columns_for(pending[0])
        return self.columns is not None

    def _columns_for(self, front: Pending | None) -> None:
        """Before an Execute's data: its columns, from the portal's Describe (or its
        statement's) when no RowDescription came with it."""
        if self.columns is None and front is not None and front.kind == EXECUTE:
            self.columns = self._result_columns(front.name)

    def _result_columns(self, portal: str) -> RowDescription | None:
        desc = self.portal_desc.get(portal)
        if desc is not None:
            return desc
        stmt, formats = self.portal_stmt.get(portal, ("", ()))
        sdesc = self.stmt_desc.get(stmt)
        if sdesc is None:
            return None
        cols = sdesc.columns
        if formats:
            fmts = formats * len(cols) if len(formats) == 1 else formats
            cols = tuple(
                c.__class__(
                    c.name, c.table_oid, c.attnum, c.type_oid, c.type_size, c.type_modifier, f
                )
                for c, f in zip(cols, fmts, strict=False)
            )
        return RowDescription.build(cols)

    def _on_server(self, msg: Message) -> Message | None:
        pending = self.pending
        if type(msg) is ReadyForQuery:  # once per exchange: checked first
            while pending and pending[0].kind in _EXTENDED:
                self._pop()  # defensive: the server answered a Sync we did not expect
            if pending:
                self._pop()
            self.info.tx_status = msg.status
            self.columns = None
            self.copy_out = False
            return msg
        front = pending[0] if pending else None
        if isinstance(msg, DataRow):
            self._columns_for(front)
            return self._filter(msg)
        if isinstance(msg, _RESULT_ENDS):
            if front is not None and front.kind == EXECUTE:
                self._pop()
            self.columns = None
            return self._filter(msg) if isinstance(msg, CommandComplete) else msg
        if isinstance(msg, RowDescription):
            if front is not None and front.kind == DESCRIBE:
                self._pop()
                if front.describe_kind == b"S":
                    self.stmt_desc[front.name] = msg
                else:
                    self.portal_desc[front.name] = msg
            else:
                self.columns = msg
            return msg
        if isinstance(msg, ErrorResponse):
            if (
                front is not None
                and front.kind in (INJECTED_EXT, INJECTED_SIMPLE)
                and front.verdict is not None
            ):
                v = front.verdict
                rule = f" (rule {v.rule})" if v.rule else ""
                reply: Message | None = ErrorResponse.build(
                    v.sqlstate, f"pgwarden: {v.message}{rule}"
                )
            else:
                reply = self._filter(msg)
            if front is not None and front.kind == PARSE and front.name == "":
                # A failed Parse of the unnamed statement has already dropped the old one.
                self.statements.pop("", None)
            while pending and pending[0].kind in _EXTENDED:
                self._pop()
            if front is not None and front.kind == INJECTED_SIMPLE:
                front.verdict = None  # a multi-part error reply must not be rewritten twice
            self.columns = None
            self.copy_in = self.copy_out = False
            return reply
        if isinstance(msg, ParseComplete):
            if front is not None and front.kind == PARSE:
                if front.parsed is not None:
                    self.statements[front.name] = front.parsed
                    self.hooks.statement_prepared(self.info, front.name, front.parsed[0])
                self._pop()
                self.stmt_desc.pop(front.name, None)
            return msg
        if isinstance(msg, BindComplete):
            if front is not None and front.kind == BIND:
                if front.portal is not None:
                    self.portals[front.name] = front.portal
                self._pop()
                self.portal_stmt[front.name] = (front.statement, front.result_formats)
                self.portal_desc.pop(front.name, None)
                self.columns = None
            return msg
        if isinstance(msg, CloseComplete):
            if front is not None and front.kind == CLOSE:
                if front.describe_kind == b"S":
                    self.statements.pop(front.name, None)
                    self.hooks.statement_closed(self.info, front.name)
                else:
                    self.portals.pop(front.name, None)
                self._pop()
            return msg
        if isinstance(msg, NoData):
            if front is not None and front.kind == DESCRIBE:
                self._pop()
                if front.describe_kind == b"S":
                    self.stmt_desc[front.name] = None
                else:
                    self.portal_desc[front.name] = None
            return msg
        if isinstance(msg, CopyResponse):
            self.copy_out = msg.direction == b"H"
            if msg.direction == b"G":
                self.copy_in = True
                if front is not None and front.kind == EXECUTE:
                    # Syncs the client pipelined after this Execute are ignored by the server.
                    rest = [p for p in list(pending)[1:] if p.kind != SYNC]
                    pending.clear()
                    pending.append(front)
                    pending.extend(rest)
            return self._filter(msg)
        if isinstance(msg, ParameterStatus):
            if msg.name == "client_encoding":
                codec = python_codec(msg.value)
                if codec is None:
                    raise FatalToClient(
                        "22023",
                        f"pgwarden: client_encoding {msg.value} is not supported "
                        "(use UTF8 or a single-byte encoding)",
                        f"unsupported client_encoding {msg.value}",
                    )
                self.cparser.encoding = codec
                self.sparser.encoding = codec
            return self._filter(msg)
        self._columns_for(front)
        if isinstance(msg, CopyData):
            return self._filter(msg)
        if isinstance(msg, CopyDone):
            self.copy_out = False
        # NoticeResponse, NotificationResponse, ParameterDescription, CopyDone, ...
        return self._filter(msg)
