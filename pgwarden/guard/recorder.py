"""The data path's side of recording: one ``SessionRecorder`` per session.

It turns what the relay sees into recording events: the session's start (identity, client,
target), each statement with its parameters, classification, decision and the agent context
in force — written before the statement is forwarded —, the results (masked rows as the
client receives them, up to a cap, with row count, command tag and digest), errors, notices,
context changes, and the session's end. Any failure to record raises ``EndSession``: the
statement is not forwarded and the session ends (fail closed).
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from pgwarden.guard.masking import MaskingScope
from pgwarden.masking import NO_COUNTS, Masker
from pgwarden.metrics import Metrics
from pgwarden.policy import Decision
from pgwarden.protocol.messages import (
    Bind,
    BindComplete,
    CloseComplete,
    CommandComplete,
    DataRow,
    EmptyQueryResponse,
    ErrorResponse,
    Message,
    MessageRun,
    NoData,
    NoticeResponse,
    ParameterDescription,
    ParseComplete,
    PortalSuspended,
    ReadyForQuery,
    RowDescription,
    datarow_values,
)
from pgwarden.proxy.hooks import EndSession, SessionInfo
from pgwarden.recording import (
    ApprovalEvent,
    Column,
    ContextEvent,
    ContextState,
    ErrorEvent,
    GroupCommitter,
    NoticeEvent,
    RecordingCipher,
    RecordingError,
    RecordingSigner,
    RecordingStorage,
    RecordingWriter,
    ResultBuilder,
    SessionEnd,
    SessionStart,
    StatementContext,
    StatementEvent,
    encode_params,
)
from pgwarden.recording import Decision as RecordedDecision
from pgwarden.recording.canonical import canonical_json
from pgwarden.sql import Classification
from pgwarden.store import SessionRecord, Store

log: Final = logging.getLogger("pgwarden.recorder")

GATEWAY_INSTANCE = secrets.token_hex(6)
_CLAIMS_KEPT: Final = ("iss", "sub", "aud", "exp", "iat", "nbf", "jti", "azp", "email", "name")


#: the statement kinds ``apply_settings`` acts on
_CONTEXT_KINDS: Final = frozenset({"begin", "commit", "rollback", "set", "reset"})


def changes_context(c: Classification) -> bool:
    """Whether ``apply_settings`` has anything to do after ``c`` (most statements: no, and
    the hooks then await no coroutine for it)."""
    return not _CONTEXT_KINDS.isdisjoint(c.kinds)


@dataclass(slots=True, init=False)
class StatementRef:
    """What the relay carries from a statement to its results. Its own ``__init__`` (one per
    statement): compiled, native code, where the generated one is interpreted."""

    seq: int
    builder: ResultBuilder
    results: int

    def __init__(self, seq: int, builder: ResultBuilder, results: int = 0) -> None:
        self.seq = seq
        self.builder = builder
        self.results = results


class StatementScope:
    """The relay's handle on a statement (``Verdict.ref``), carried to its server messages:
    what the recording holds of it and how its results are masked. Immutable (``Final``): a
    plain class, since compiled it is built ~20x faster than a frozen dataclass, once per
    statement (see proxy.hooks.Verdict)."""

    def __init__(self, recorded: StatementRef | None, masking: MaskingScope | None) -> None:
        self.recorded: Final = recorded
        self.masking: Final = masking


@dataclass(slots=True)
class RecordingSetup:
    """Shared by all sessions of a gateway."""

    store: Store
    storage: RecordingStorage
    signer: RecordingSigner
    committer: GroupCommitter | None
    cipher: RecordingCipher | None
    durability: str = "write"
    max_result_rows: int = 1000
    instance: str = field(default=GATEWAY_INSTANCE)
    metrics: Metrics | None = None


def mask_params(masker: Masker, params: Sequence[Any], counts: Counter[str]) -> list[Any]:
    """Recorded bind parameters (see ``encode_params``) with sensitive values masked. A
    parameter kept as base64 (binary format) is decoded and scanned too, and when anything in
    it was masked its bytes are withheld (``data: null``): the base64 would give the value
    back, and a binary int8 card number cannot be masked in place."""
    out: list[Any] = []
    for p in params:
        # dict, not Mapping (encode_params makes dicts): an ABC check per parameter is slow
        if not (isinstance(p, dict) and p.get("encoding") == "base64"):
            out.append(masker.mask_json(p, counts))
            continue
        found: Counter[str] = Counter()
        q = dict(p)
        if isinstance(q.get("text"), str):
            q["text"] = masker.mask_json(q["text"], found)
        try:
            raw = base64.b64decode(str(q.get("data") or ""), validate=True)
        except ValueError:
            raw = b""
            found["withheld"] += 1  # not decodable: not kept either
        if raw and not found:  # the text, when there is one, already said it (count once)
            found.update(masker.mask_bytes(raw)[1])
        if found:
            q["data"] = None
            counts.update(found)
        out.append(q)
    return out


# A checkpoint (Ed25519 signature, index update in SQLite: ~0.3 ms) every 1000 events or 5 s,
# whichever comes first, and at the end. The 5 s bound is what limits the unsigned tail of a
# live recording; counting events only matters for busy sessions, where every 100 events cost
# a few percent of the statement path.
CHECKPOINT_EVERY: Final = 1000

_DICTS: Final[dict[int, tuple[Classification, dict[str, Any], bytes | None]]] = {}
# Replies that carry nothing for the recording and are never masked: one per statement at least
# (ReadyForQuery), skipped before the per-type checks.
_NOTHING_TO_RECORD: Final = frozenset(
    {ReadyForQuery, ParseComplete, BindComplete, CloseComplete, NoData, ParameterDescription}
)
_DICTS_KEPT: Final = 4096
# Replies that end a result: the result event is written when one is recorded.
_RESULT_ENDS: Final = frozenset({CommandComplete, EmptyQueryResponse, PortalSuspended})
_OUTCOMES: Final = {"allow": "allowed", "deny": "denied", "review": "reviewed"}


_RECORDED: Final[dict[int, tuple[Decision, RecordedDecision]]] = {}


def _recorded_decision(d: Decision) -> RecordedDecision:
    """The decision as recorded, made once per Decision object (the guard reuses the one
    decision of a statement shape for every statement of that shape)."""
    hit = _RECORDED.get(id(d))
    if hit is not None and hit[0] is d:
        return hit[1]
    recorded = RecordedDecision(d.action, d.rule, d.reason, d.mode)
    if len(_RECORDED) >= _DICTS_KEPT:
        _RECORDED.clear()
    _RECORDED[id(d)] = (d, recorded)
    return recorded


def _classification_dict(c: Classification) -> tuple[dict[str, Any], bytes | None]:
    """``c.to_dict()`` and its canonical JSON, built once per Classification object (the
    classifier's cache hands out the same object for the same text); the dict is only read
    afterwards."""
    hit = _DICTS.get(id(c))
    if hit is not None and hit[0] is c:
        if hit[2] is None:
            # Seen again: its JSON is kept from now on. Not at first sight, since most texts
            # with constants of their own never come back (4096 JSONs of a few KB each).
            hit = _DICTS[id(c)] = (c, hit[1], canonical_json(hit[1]))
        return hit[1], hit[2]
    if c.shape is not None:
        # Another text of a known shape: the shape's dict with this statement's text in it.
        base = _classification_dict(c.shape)[0]
        (st,) = c.statements
        d = _retexted(base, st.text, st.estimate_sql)
        # A reusable shape estimates with its own text (see Classification.retexted).
        same = "estimate_sql" not in base["statements"][0] or st.estimate_sql == st.text
        return d, _shape_json(c.shape, base, st.text) if same else None
    d = c.to_dict()
    if len(_DICTS) >= _DICTS_KEPT:
        _DICTS.clear()
    _DICTS[id(c)] = (c, d, None)
    return d, None


# A shape's canonical JSON cut where its statement's text goes (as ``text`` and, when it has
# one, ``estimate_sql``): another text of the shape is encoded by joining the pieces with it.
# The stand-in holds NUL, which no statement text can (PostgreSQL's protocol ends a text at
# NUL), so it is found nowhere else.
_MARK: Final = "\x00pgwarden:text\x00"
_MARK_JSON: Final = canonical_json(_MARK)
_TEMPLATES: Final[dict[int, tuple[Classification, list[bytes] | None]]] = {}


def _retexted(base: dict[str, Any], text: str, estimate_sql: str | None) -> dict[str, Any]:
    """A shape's dict with another text as its statement's (and estimate's, when it has one)."""
    first = dict(base["statements"][0], text=text)
    if "estimate_sql" in first:
        first["estimate_sql"] = estimate_sql
    return dict(base, statements=[first])


def _template(base: dict[str, Any]) -> list[bytes] | None:
    parts = canonical_json(_retexted(base, _MARK, _MARK)).split(_MARK_JSON)
    marks = 2 if "estimate_sql" in base["statements"][0] else 1
    return parts if len(parts) == marks + 1 else None


def _shape_json(shape: Classification, base: dict[str, Any], text: str) -> bytes | None:
    """The canonical JSON of ``shape``'s dict with ``text`` as its statement's text."""
    hit = _TEMPLATES.get(id(shape))
    if hit is None or hit[0] is not shape:
        if len(_TEMPLATES) >= _DICTS_KEPT:
            _TEMPLATES.clear()
        hit = _TEMPLATES[id(shape)] = (shape, _template(base))
    parts = hit[1]
    return None if parts is None else canonical_json(text).join(parts)


def _columns(desc: RowDescription) -> tuple[list[Column], bytes]:
    # The reader hands out one RowDescription object per distinct description, so the
    # recorded columns and their JSON are built once per object (kept with it: ids are reused).
    hit = _COLUMNS.get(id(desc))
    if hit is not None and hit[0] is desc:
        return hit[1], hit[2]
    cols = [Column(name=c.name, type_oid=c.type_oid, format=c.format) for c in desc.columns]
    if len(_COLUMNS) >= _DICTS_KEPT:
        _COLUMNS.clear()
    _COLUMNS[id(desc)] = (desc, cols, canonical_json([c.to_dict() for c in cols]))
    return cols, _COLUMNS[id(desc)][2]


_COLUMNS: Final[dict[int, tuple[RowDescription, list[Column], bytes]]] = {}


class SessionRecorder:
    def __init__(
        self, setup: RecordingSetup, info: SessionInfo, *, masker: Masker | None = None
    ) -> None:
        self.setup = setup
        self.info = info
        # Statements, parameters and agent context are what the client sent, but they may
        # quote a card number or an e-mail (WHERE email = '...'): the recording, like any
        # log, gets them masked by the same detectors as results.
        self.masker = masker
        self._bytes_reported = 0
        self.context = ContextState(info.application_name or None)
        self.counts = {"allowed": 0, "denied": 0, "reviewed": 0, "masked": 0}
        # The context of the last statement, masked and encoded: the context state hands out
        # the same object while nothing changes (see _encoded_context).
        self._context_seen: StatementContext | None = None
        self._context_encoded: tuple[dict[str, Any], Counter[str], bytes, bytes] = (
            {},
            NO_COUNTS,
            b"{}",
            b"{}",
        )
        self.writer = RecordingWriter(
            info.id,
            setup.storage,
            setup.signer,
            durability=setup.durability,  # type: ignore[arg-type]
            committer=setup.committer,
            cipher=setup.cipher,
            checkpoint_every=CHECKPOINT_EVERY,
            on_checkpoint=self._progress,
        )

    def _report_bytes(self) -> None:
        metrics = self.setup.metrics
        if metrics is not None:
            total = self.writer.bytes_written
            metrics.recording_bytes(total - self._bytes_reported)
            self._bytes_reported = total

    def _progress(self, written: Any) -> None:
        self._report_bytes()
        try:
            self.setup.store.record_progress(self.info.id, written.seq, written.hash)
        except Exception:
            log.exception("session index update failed for %s", self.info.id)
        self._flush_counts()

    def _flush_counts(self) -> None:
        # The index is updated in batches (at checkpoints and at the end): one SQLite commit
        # per statement would cost more than the statement.
        if not any(self.counts.values()):
            return
        counts, self.counts = self.counts, dict.fromkeys(self.counts, 0)
        try:
            self.setup.store.add_counts(self.info.id, **counts)
        except Exception:
            log.exception("session index update failed for %s", self.info.id)

    def _fail(self, exc: BaseException) -> EndSession:
        if self.setup.metrics is not None:
            self.setup.metrics.recording_error()
        log.error("recording failed for session %s: %s", self.info.id, exc)
        return EndSession(f"the session can no longer be recorded ({type(exc).__name__})")

    async def start(self) -> None:
        info = self.info
        ident = info.identity
        claims = {k: ident.claims[k] for k in _CLAIMS_KEPT if k in ident.claims}
        # Indexed first: a crash between the two leaves an indexed, recoverable session.
        self.setup.store.create_session(
            SessionRecord(
                id=info.id,
                subject=ident.subject,
                issuer=ident.issuer,
                target=info.target,
                started_at=info.started_at,
                groups=tuple(ident.groups),
                client_addr=info.client_addr,
                application_name=info.application_name,
                gateway_instance=self.setup.instance,
            )
        )
        await self.writer.write_session_start(
            SessionStart(
                subject=ident.subject,
                issuer=ident.issuer,
                groups=list(ident.groups),
                client_addr=info.client_addr,
                application_name=info.application_name,
                target=info.target,
                gateway_instance=self.setup.instance,
                tls=info.tls,
                claims=claims,
                token_id=ident.token_id,
                expires_at=ident.expires_at,
            )
        )
        self.writer.start_auto_checkpoint()

    async def statement(
        self,
        sql: str,
        protocol: str,
        classification: Classification,
        decision: Decision,
        *,
        bind: Bind | None = None,
        param_types: Sequence[int] = (),
        statement_name: str | None = None,
        portal: str | None = None,
    ) -> StatementRef:
        ctx = self.context.for_statement(sql)
        if ctx is not self._context_seen:
            self._context_encoded = self._encoded_context(ctx)
            self._context_seen = ctx
        context, context_found, context_json, sources_json = self._context_encoded
        params: Sequence[Any] = ()
        if bind is not None:
            params = encode_params(bind.params, bind.param_formats, param_types)
        classification_dict, classification_json = _classification_dict(classification)
        event = StatementEvent(
            sql=sql,
            protocol=protocol,  # type: ignore[arg-type]
            decision=_recorded_decision(decision),
            classification=classification_dict,
            classification_json=classification_json,
            params=params,
            param_types=tuple(param_types),
            statement_name=statement_name,
            portal=portal,
            context=context,
            context_sources=ctx.sources,
            context_json=context_json,
            context_sources_json=sources_json,
        )
        if self.masker is not None:
            event = self._mask_statement(event, context_found)
        try:
            # The writer's append and sync, not its write(): a coroutine less for each of the
            # two events of every statement.
            written = self.writer.append(event)
            if self.writer.durability == "fsync":
                await self.writer.sync()
        except (RecordingError, OSError) as exc:
            raise self._fail(exc) from None
        self.counts[_OUTCOMES.get(decision.effective_action, "denied")] += 1
        builder = ResultBuilder(self.setup.max_result_rows, statement_seq=written.seq)
        return StatementRef(written.seq, builder)

    def _encoded_context(
        self, ctx: StatementContext
    ) -> tuple[dict[str, Any], Counter[str], bytes, bytes]:
        """The context as recorded (masked: it may quote a card number or an e-mail), what
        was masked in it, and the JSON of it and of its sources."""
        context: dict[str, Any] = ctx.context
        found: Counter[str] = NO_COUNTS
        if self.masker is not None and context:
            found = Counter()
            context = self.masker.mask_json(context, found)
        return context, found, canonical_json(context), canonical_json(ctx.sources)

    def _mask_statement(self, event: StatementEvent, context_found: Counter[str]) -> StatementEvent:
        """The event with its statement text and parameters masked (its context is already);
        the event itself when nothing is."""
        assert self.masker is not None
        m = self.masker
        sql, found = m.mask_sql(event.sql)
        if not found and not context_found and not event.params:
            return event  # the common case: nothing to mask, no Counter built
        # Counter.__init__ is interpreted Python (a frame per statement with parameters); an
        # empty Counter needs none of it
        counts: Counter[str] = Counter(found) if found else Counter.__new__(Counter)
        if context_found:  # update() on a mapping runs ABC checks: skipped when empty
            counts.update(context_found)
        classification = event.classification
        if found:
            # the classification quotes the SQL (statement texts): masked only when it can
            # hold something, since walking it costs more than the statement itself
            classification = m.mask_json(classification, counts)
        params = mask_params(m, event.params, counts) if event.params else event.params
        if not counts:
            return event
        masked = replace(
            event,
            sql=sql,
            params=params,
            classification=classification,
            classification_json=(
                event.classification_json if classification is event.classification else None
            ),
        )
        self.counts["masked"] += sum(counts.values())
        return masked

    async def approval(self, event: ApprovalEvent) -> None:
        """A held statement's approval: requested, then decided (who, when, why)."""
        try:
            await self.writer.write_approval(event)
        except (RecordingError, OSError) as exc:
            raise self._fail(exc) from None

    async def apply_settings(self, classification: Classification) -> None:
        """After an allowed statement: SET/RESET pgwarden.* and transaction boundaries."""
        if not changes_context(classification):
            return
        for st in classification.statements:
            changes: dict[str, Any] | None = None
            source = "set"
            if st.kind == "begin":
                self.context.begin()
            elif st.kind == "commit":
                changes = self.context.commit()
                source = "commit"
            elif st.kind == "rollback":
                changes = self.context.rollback()
                source = "rollback"
            elif st.kind == "set" and st.setting == "application_name":
                if st.setting_value is not None:
                    changes = self.context.set_application_name(st.setting_value)
                    source = "application_name"
            elif st.kind == "set" and st.setting and st.setting.startswith("pgwarden."):
                if st.setting_value is not None:
                    try:
                        changes = self.context.apply_set(
                            st.setting, st.setting_value, local=st.setting_local
                        )
                    except ValueError:
                        changes = None  # a read-only name: the statement was refused anyway
                    source = "set_local" if st.setting_local else "set"
            elif (
                st.kind == "reset"
                and st.setting
                and (st.setting == "all" or st.setting.startswith("pgwarden."))
            ):
                changes = self.context.apply_reset(None if st.setting == "all" else st.setting)
                source = "reset"
            if changes:
                await self._context_event(source, changes)

    async def apply_api_context(self, values: dict[str, Any], actor: str) -> None:
        changes = self.context.apply_api(values)
        await self._context_event("api", changes, actor)

    async def _context_event(
        self, source: str, changes: dict[str, Any], actor: str | None = None
    ) -> None:
        context = self.context.session_context()
        if self.masker is not None:
            counts: Counter[str] = Counter()
            changes = self.masker.mask_json(changes, counts)
            context = self.masker.mask_json(context, counts)
            self.counts["masked"] += sum(counts.values())
        try:
            await self.writer.write_context(
                ContextEvent(source=source, changes=changes, context=context, actor=actor)
            )
        except (RecordingError, OSError) as exc:
            raise self._fail(exc) from None

    async def server_messages(
        self,
        batch: Sequence[tuple[Message, object, RowDescription | None]],
        masked: Mapping[int, Counter[str]] | None = None,
    ) -> None:
        """Record what the client is about to receive: each message with the relay's handle
        on its statement (a StatementScope; anything else is no recorded statement) and its
        columns. ``masked``: id(message) -> what masking replaced in it (counted into the
        statement's result, never the values)."""
        try:
            for msg, ref, columns in batch:
                kind = type(msg)
                if kind in _NOTHING_TO_RECORD:
                    continue
                sref = ref.recorded if type(ref) is StatementScope else None
                if masked:
                    found = masked.get(id(msg))
                    if found:
                        self.counts["masked"] += sum(found.values())
                        if sref is not None:
                            for name, n in found.items():
                                sref.builder.count_masked(name, n)
                if isinstance(msg, MessageRun):
                    if sref is None or msg.kind != b"D":
                        continue
                    b = sref.builder
                    if not b.columns and columns is not None:
                        b.set_columns(*_columns(columns))
                    for part in msg.parts:
                        values = datarow_values(part) if len(b.rows) < b.cap else ()
                        b.add_row_body(part[5:], values)
                elif isinstance(msg, DataRow):
                    if sref is None:
                        continue
                    b = sref.builder
                    if not b.columns and columns is not None:
                        b.set_columns(*_columns(columns))
                    values = datarow_values(msg.raw) if len(b.rows) < b.cap else ()
                    b.add_row_body(msg.raw[5:], values)
                elif isinstance(msg, RowDescription):
                    if sref is not None:
                        sref.builder.set_columns(*_columns(msg))
                elif kind in _RESULT_ENDS:  # their exact classes: the reader builds no others
                    if sref is None:
                        continue
                    b = sref.builder
                    if not b.columns and columns is not None:
                        b.set_columns(*_columns(columns))
                    tag = msg.tag if isinstance(msg, CommandComplete) else None
                    if kind is PortalSuspended:
                        tag = "PortalSuspended"
                    self.writer.append(b.finish(tag))  # b is empty again
                    if self.writer.durability == "fsync":
                        await self.writer.sync()
                elif isinstance(msg, ErrorResponse):
                    await self.writer.write_error(
                        ErrorEvent(
                            sqlstate=msg.sqlstate,
                            message=msg.message,
                            severity=msg.severity or "ERROR",
                            fields=dict(msg.fields),
                            source="gateway" if msg.message.startswith("pgwarden:") else "server",
                            statement_seq=sref.seq if sref else None,
                        )
                    )
                elif isinstance(msg, NoticeResponse):
                    await self.writer.write_notice(
                        NoticeEvent(
                            message=msg.message,
                            severity=msg.severity or "NOTICE",
                            sqlstate=msg.sqlstate or "00000",
                            fields=dict(msg.fields),
                            statement_seq=sref.seq if sref else None,
                        )
                    )
        except (RecordingError, OSError) as exc:
            raise self._fail(exc) from None

    async def end(self, reason: str) -> None:
        self._flush_counts()
        try:
            await self._end(reason)
        finally:
            self._report_bytes()

    async def _end(self, reason: str) -> None:
        state = "ended"
        try:
            written = await self.writer.end(reason)
            last_seq, last_hash = written.seq, written.hash
        except Exception:
            log.exception("could not end the recording of session %s", self.info.id)
            state, last_seq, last_hash = "crashed", None, None
        try:
            self.setup.store.end_session(
                self.info.id,
                ended_at=time.time(),
                reason=reason,
                state=state,  # type: ignore[arg-type]
                last_seq=last_seq,
                last_hash=last_hash,
            )
        except Exception:
            log.exception("session index update failed for %s", self.info.id)


__all__ = [
    "GATEWAY_INSTANCE",
    "RecordingSetup",
    "SessionEnd",
    "SessionRecorder",
    "StatementRef",
    "StatementScope",
    "mask_params",
]
