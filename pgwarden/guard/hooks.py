"""Guardrails in the data path: every statement classified and judged before it is forwarded.

Simple Query: the whole string is classified and judged at once (a string holding any refused
statement is refused whole). Extended protocol: a Parse is classified and refused at once when
the policy denies it whatever the parameters; the final judgement, with the bind parameters
known (row estimates, approvals), is made at Execute. Named statements are remembered, so
``EXECUTE p`` and a protocol-level Execute of a named statement are judged by what was
prepared.

``review``: the statement is held until a human decides (``pgwarden.approvals``); without an
approval service it is refused (fail closed).

Results: every server message passes through the session's masking (``SessionMasking``)
before it is recorded or sent; what was masked is counted into the recording, never the value.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import Any, Final, TypeVar

from pgwarden.approvals import ApprovalService, PendingApproval
from pgwarden.guard import catalog as catalog_mod
from pgwarden.guard.catalog import Catalog, UserFunctions
from pgwarden.guard.estimator import Estimator
from pgwarden.guard.masking import SessionMasking, plain_scope
from pgwarden.guard.recorder import (
    RecordingSetup,
    SessionRecorder,
    StatementRef,
    StatementScope,
    changes_context,
    mask_params,
)
from pgwarden.masking import Masker
from pgwarden.metrics import Metrics
from pgwarden.policy import Decision, Policy, PolicyIdentity, RowEstimate, evaluate, needs_estimate
from pgwarden.protocol.encodings import python_codec
from pgwarden.protocol.messages import Bind, Message, RowDescription
from pgwarden.proxy.hooks import SessionHooks, SessionInfo, Statement, Verdict
from pgwarden.recording import ApprovalEvent, encode_params
from pgwarden.sql import Classification, PreparedRegistry, classify_cached
from pgwarden.sql.functions import may_be_users

log: Final = logging.getLogger("pgwarden.guard")

_MODIFYING: Final = frozenset({"update", "delete", "merge"})
_DECISIONS_KEPT: Final = 1024


class Judgement:
    """A decision with the classification it was made on (what the recording will hold).
    Immutable (``Final``): a plain class, since compiled it is built ~20x faster than a
    frozen dataclass, once per statement (see proxy.hooks.Verdict)."""

    def __init__(self, classification: Classification, decision: Decision) -> None:
        self.classification: Final = classification
        self.decision: Final = decision


# Settings that change how the server reads SQL text or compares values: with them the
# server could run something other than what the gateway classified.
_PINNED: Final = {
    "standard_conforming_strings": {"on", "true", "yes", "1"},
    "transform_null_equals": {"off", "false", "no", "0"},
    "backslash_quote": {"safe_encoding", "off", "false", "no", "0"},
}
_PINNED_NAMES: Final = re.compile(
    r"standard_conforming_strings|transform_null_equals|backslash_quote|client_encoding"
    r"|pgwarden\s*\"?\s*\.\s*\"?session_id",
    re.IGNORECASE,
)


def _gateway_owned(c: Classification) -> str | None:
    """Refuse changes to settings the gateway owns or relies on to read SQL as the server
    does (the session id it reports, string-literal rules, the client encoding)."""
    for st in c.statements:
        if st.kind != "set" or not st.setting:
            continue
        name = st.setting.lower()
        value = (st.setting_value or "").strip().strip("'").lower()
        if name == "pgwarden.session_id":
            return "pgwarden.session_id is set by the gateway and cannot be changed"
        if name in _PINNED and value not in _PINNED[name]:
            return f"{name} cannot be changed through pgwarden (the gateway reads SQL with it)"
        if name == "client_encoding" and (
            st.setting_value is None or python_codec(st.setting_value.strip("'")) is None
        ):
            return "client_encoding can only be UTF8 or a single-byte encoding through pgwarden"
    if "set_config" in c.functions and (
        _PINNED_NAMES.search(c.sql) or "dynamic_set_config" in c.flags
    ):
        return (
            "set_config on a setting the gateway relies on, or with a computed name, is not allowed"
        )
    return None


_T = TypeVar("_T")
_PREPARE_BODY: Final = re.compile(r"\s*prepare\s+\S+?(?:\s*\(.*?\))?\s+as\s+(.*)", re.I | re.S)


# What an operator's name is made of (PostgreSQL's CREATE OPERATOR).
_OPERATOR_CHARS: Final = frozenset("+-*/<>=~!@#%^&|`?")
# OIDs below this are PostgreSQL's own objects (FirstNormalObjectId).
_FIRST_USER_OID: Final = 16384
# Statement kinds that evaluate no expression of the client's (so run no cast).
_NO_EXPRESSIONS: Final = frozenset(
    {
        "begin", "commit", "rollback", "savepoint", "release", "rollback_to",
        "prepare_transaction", "commit_prepared", "rollback_prepared",
        "show", "reset", "discard", "listen", "unlisten", "deallocate", "close",
    }
)  # fmt: skip


async def _or_else(worst: _T, asked: Awaitable[_T], what: str) -> _T:
    """What the catalog answers, or ``worst`` if it cannot be read (fail closed)."""
    try:
        return await asked
    except catalog_mod.LOOKUP_FAILURES as exc:
        log.info("cannot look up %s in the target's catalog: %s", what, exc)
        return worst


def _looked_up(name: str) -> bool:
    """Whether the target's catalog is asked what a called name runs: every unqualified
    name, PostgreSQL's own included, since a user's function of the same name is called in
    place of the built-in when its arguments match better (``public.lower(int)`` for
    ``lower(5)``); a name qualified with another schema than PostgreSQL's. Not one qualified
    with pg_catalog or information_schema: that is the built-in, whatever else exists."""
    return "." not in name or may_be_users(name)


def _prepare_body(text: str) -> str | None:
    """The statement text of ``PREPARE name [(types)] AS statement``, as the client wrote it."""
    m = _PREPARE_BODY.match(text)
    return m.group(1).strip().rstrip(";") if m else None


def _temp_tables(c: Classification) -> set[str]:
    """Temporary tables a query creates (not views: a temporary view writes through)."""
    out: set[str] = set()
    for st in c.statements:
        for op in st.operations:
            if (
                op.kind in ("create", "create_table_as", "select_into")
                and op.object_type == "temp_table"
            ):
                for t in op.targets:
                    out.add(t)
                    out.add(t.removeprefix("pg_temp."))
    return out


class _HeldStatement:
    def __init__(
        self,
        guard: GuardHooks,
        info: SessionInfo,
        j: Judgement,
        pending: PendingApproval,
        recorded: StatementRef | None,
    ) -> None:
        self.guard = guard
        self.info = info
        self.judgement = j
        self.pending = pending
        self.recorded = recorded
        pid = pending.id
        how = f"pgwarden approvals approve {pid} --token <approver token>"
        url = pending.approve_url
        self.notice = (
            f"pgwarden: statement held for approval {pid}; approve with: {how}"
            + (f" or {url}" if url else "")
            + f" (rule {j.decision.rule}: {j.decision.reason})"
        )

    async def wait(self) -> Verdict:
        return await self.guard._decided(self.info, self.judgement, self.pending, self.recorded)

    async def withdraw(self, reason: str) -> None:
        self.guard.held = None
        if self.guard.approvals is not None:
            await self.guard.approvals.withdraw(self.pending.id, reason)


class GuardHooks(SessionHooks):
    """Classification and policy for one session."""

    def __init__(
        self,
        policy: Policy,
        estimator: Estimator | None,
        recording: RecordingSetup | None = None,
        *,
        masker: Masker | None = None,
        catalog: Catalog | None = None,
        approvals: ApprovalService | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.policy = policy
        self.estimator = estimator
        self.recording = recording
        self.recorder: SessionRecorder | None = None
        self.masker = masker if masker is not None and masker.enabled else None
        self.catalog = catalog
        self.masking: SessionMasking | None = None
        self._masked: dict[int, Counter[str]] = {}  # id(sent message) -> what was masked
        self.approvals = approvals
        self.metrics = metrics
        self.held: PendingApproval | None = None  # the statement waiting for a decision
        # id(classification or its shape) -> (it, decision without estimates, needs estimate)
        self._decisions: dict[int, tuple[Classification, Decision, bool]] = {}
        # shapes the catalog found nothing in, and when it was asked
        self._unaffected: dict[int, tuple[Classification, float]] = {}
        # (id(shape), its estimates) -> (shape, decision with those estimates)
        self._estimated: dict[
            tuple[int, tuple[RowEstimate | None, ...] | None], tuple[Classification, Decision]
        ] = {}
        self._withdrawing: asyncio.Future[Any] | None = None
        self.prepared = PreparedRegistry()  # SQL-level PREPARE names
        # Once the session has temporary objects, or has changed its search_path or role
        # ("$user" in the path), a name may mean something else in this session than on the
        # estimator's connection: estimates are no longer trusted (writes that need one are
        # held). Its start-up search_path the estimator takes as its own.
        self.names_unsure = False
        self.temp_tables: set[str] = set()  # written rows there touch only this session
        self.bodies: dict[str, str] = {}  # prepared statements' original text, for estimates

    # -- session ---------------------------------------------------------------------------

    async def session_started(self, info: SessionInfo) -> None:
        if self.masker is not None:
            self.masking = SessionMasking(self.masker, self.catalog, info.target, info.search_path)
        if self.recording is not None:
            self.recorder = SessionRecorder(self.recording, info, masker=self.masker)
            await self.recorder.start()

    async def session_ended(self, info: SessionInfo, reason: str) -> None:
        if self.recorder is not None:
            await self.recorder.end(reason)

    async def prepare_columns(self, info: SessionInfo, desc: RowDescription) -> None:
        if self.masking is not None:
            await self.masking.prepare_columns(desc)

    def filter_server_message(
        self,
        info: SessionInfo,
        msg: Message,
        columns: RowDescription | None,
        ref: object | None = None,
    ) -> Message | None:
        masking = self.masking
        if masking is None:
            return msg
        scope = ref.masking if isinstance(ref, StatementScope) else None
        out, counts = masking.filter(msg, columns, scope)
        if counts and out is not None:
            self._note_masked(out, counts)
        return out

    def filter_run(
        self,
        info: SessionInfo,
        kind: bytes,
        msgs: list[Message],
        columns: RowDescription | None,
        ref: object | None,
    ) -> list[Message]:
        masking = self.masking
        if masking is None:
            return msgs
        scope = ref.masking if isinstance(ref, StatementScope) else None
        out, counts = masking.filter_run(kind, msgs, columns, scope)
        if counts and out:
            # one statement's messages: the run's counts go with its first message
            self._note_masked(out[0], counts)
        return out

    def _note_masked(self, sent: Message, counts: Counter[str]) -> None:
        """What masking replaced in ``sent``: for the recording (counted into the statement's
        result when it is recorded) and the metrics."""
        if self.recorder is not None:
            self._masked[id(sent)] = counts
        if self.metrics is not None:
            self.metrics.masked(counts)

    def run_untouched(
        self,
        info: SessionInfo,
        kind: bytes,
        joined: bytes,
        columns: RowDescription | None,
        ref: object | None,
    ) -> bool:
        if self.masking is None:
            return True
        scope = ref.masking if isinstance(ref, StatementScope) else None
        return self.masking.run_untouched(kind, joined, columns, scope)

    async def record_server_messages(
        self, info: SessionInfo, batch: list[tuple[Message, object, RowDescription | None]]
    ) -> None:
        if self.recorder is None:
            return
        masked, self._masked = self._masked, {}
        await self.recorder.server_messages(batch, masked)

    async def _record(
        self,
        info: SessionInfo,
        j: Judgement,
        verdict: Verdict,
        sql: str,
        protocol: str,
        *,
        stmt: Statement | None = None,
    ) -> Verdict:
        """Write the statement event (before anything is forwarded); attach its ref. A
        statement to review is held: the returned verdict waits for the decision."""
        scope = None
        if self.masking is not None and verdict.action == "allow":
            c = j.classification
            scope = plain_scope(c)
            if scope is None:
                unsure = self.names_unsure or any(st.changes_names for st in c.statements)
                scope = await self.masking.scope(c, names_unsure=unsure)
            if scope.refusal is not None:
                decision = Decision(
                    "deny", "masking-unavailable", scope.refusal, self.policy.mode, fail_closed=True
                )
                j = Judgement(j.classification, decision)
                verdict = self.verdict(j)
                scope = None
        recorded = None
        if self.recorder is not None:
            recorded = await self.recorder.statement(
                sql,
                protocol,
                j.classification,
                j.decision,
                bind=stmt.bind if stmt else None,
                param_types=stmt.param_types if stmt else (),
                statement_name=stmt.statement_name if stmt else None,
                portal=stmt.portal if stmt else None,
            )
            if verdict.action == "allow" and changes_context(j.classification):
                await self.recorder.apply_settings(j.classification)
        if j.decision.effective_action == "review" and self.approvals is not None:
            return await self._hold(info, j, sql, stmt, recorded)
        if recorded is None and scope is None:
            return verdict
        return verdict.with_ref(StatementScope(recorded, scope))

    # -- approvals ---------------------------------------------------------------------------

    async def _hold(
        self,
        info: SessionInfo,
        j: Judgement,
        sql: str,
        stmt: Statement | None,
        recorded: StatementRef | None,
    ) -> Verdict:
        assert self.approvals is not None
        params: list[Any] = []
        if stmt is not None and stmt.bind is not None:
            params = encode_params(stmt.bind.params, stmt.bind.param_formats, stmt.param_types)
        if self.masker is not None:
            # approvers see the statement as a log would: sensitive values masked (decoded
            # binary parameters included, as in the recording)
            ignored: Counter[str] = Counter()
            sql = self.masker.mask_json(sql, ignored)
            params = mask_params(self.masker, params, ignored)
        pending = await self.approvals.request(
            session_id=info.id,
            sql=sql,
            params=params,
            requester=info.identity,
            target=info.target,
            rule=j.decision.rule,
            reason=j.decision.reason,
        )
        record = pending.record
        if self.recorder is not None:
            await self.recorder.approval(
                ApprovalEvent(
                    approval_id=record.id,
                    state="requested",
                    statement_hash=record.statement_hash,
                    actor=info.identity.subject,
                    at=record.requested_at,
                    reason=j.decision.reason,
                    statement_seq=recorded.seq if recorded is not None else None,
                    expires_at=record.expires_at,
                )
            )
        self.held = pending
        return Verdict.held(_HeldStatement(self, info, j, pending, recorded), rule=j.decision.rule)

    async def _decided(
        self,
        info: SessionInfo,
        j: Judgement,
        pending: PendingApproval,
        recorded: StatementRef | None,
    ) -> Verdict:
        outcome = await pending.wait()
        self.held = None
        rec = outcome.record
        actor = ", ".join(rec.deciders) or None
        reason = "; ".join(r for r in rec.reasons if r) or None
        if self.recorder is not None:
            await self.recorder.approval(
                ApprovalEvent(
                    approval_id=rec.id,
                    state="withdrawn" if outcome.state == "pending" else outcome.state,
                    statement_hash=rec.statement_hash,
                    actor=actor,
                    at=rec.decided_at,
                    reason=reason,
                    statement_seq=recorded.seq if recorded is not None else None,
                )
            )
        rule = j.decision.rule
        if not outcome.approved:
            why = {
                "denied": f"statement {rec.id} was denied by {actor or 'an approver'}",
                "expired": f"statement {rec.id} was not approved in time",
                "withdrawn": f"approval {rec.id} was withdrawn",
            }.get(outcome.state, f"statement {rec.id} was not approved")
            return Verdict.deny(f"{why}{': ' + reason if reason else ''}", rule=rule)
        c = j.classification
        self.prepared.observe(classify_cached(c.sql))
        self._note_allowed(c)
        if self.recorder is not None:
            await self.recorder.apply_settings(c)
        scope = None
        if self.masking is not None:
            scope = plain_scope(c) or await self.masking.scope(c, names_unsure=self.names_unsure)
            if scope.refusal is not None:
                return Verdict.deny(scope.refusal, rule="masking-unavailable")
        ref = StatementScope(recorded, scope) if recorded or scope else None
        return Verdict.allow(rule=rule, ref=ref)

    def cancel_requested(self, info: SessionInfo) -> bool:
        # A cancel while a statement is held withdraws it (it never reached the server).
        held = self.held
        if held is None or self.approvals is None:
            return False
        self._withdrawing = asyncio.ensure_future(
            self.approvals.withdraw(held.id, "cancelled by the client")
        )
        return True

    # -- decisions -----------------------------------------------------------------------

    async def _estimates(
        self,
        info: SessionInfo,
        c: Classification,
        bind: Bind | None,
        param_types: Sequence[int],
    ) -> list[RowEstimate | None] | None:
        if self.estimator is None or self.names_unsure:
            return None
        out: list[RowEstimate | None] = []
        earlier: dict[str, str] = {}  # PREPAREd earlier in this same string
        unsure = False  # names changed earlier in this same string: none estimated after it
        for st in c.statements:
            if unsure:
                out.append(None)
                continue
            est = None
            if st.kind == "prepare":
                if st.prepared_name and st.body is not None:
                    earlier[st.prepared_name] = _prepare_body(st.text) or st.body.sql
            elif st.kind == "execute" and len(st.executes_prepared) == 1:
                name = st.executes_prepared[0]
                known = self.prepared.get(name)
                body = earlier.get(name) or self.bodies.get(name) or (known.sql if known else None)
                if body is not None and (st.kinds & _MODIFYING):
                    est = await self.estimator.estimate_prepared(
                        info.target, body, st.text, name, info.search_path
                    )
            elif st.estimate_sql and (st.kinds & _MODIFYING):
                est = await self.estimator.estimate(
                    info.target,
                    st.estimate_sql,
                    bind,
                    param_types,
                    st.key_lookup,
                    info.search_path,
                )
            out.append(est)
            unsure = st.changes_names
        return out

    async def judge(
        self,
        info: SessionInfo,
        c: Classification,
        *,
        bind: Bind | None = None,
        param_types: Sequence[int] = (),
        with_estimate: bool = True,
    ) -> Judgement:
        owned = _gateway_owned(c) if c.error is None else None
        if owned is not None:
            decision = Decision(
                "deny", "gateway-owned-setting", owned, self.policy.mode, fail_closed=True
            )
            return Judgement(c, decision)
        if self.catalog is not None and c.error is None:
            # What the catalog says of the functions, relations and operators a statement
            # uses is the same for every text of its shape: asked once per shape and session
            # while the answers are kept, and only when nothing was found.
            plain = c.shape or c
            seen = self._unaffected.get(id(plain))
            if (
                seen is None
                or seen[0] is not plain
                or time.monotonic() - seen[1] >= catalog_mod.FUNCTIONS_TTL
            ):
                c = await self._through_catalog(info, c)
                if c is plain or c.shape is plain:
                    if len(self._unaffected) >= _DECISIONS_KEPT:
                        self._unaffected.clear()
                    self._unaffected[id(plain)] = (plain, time.monotonic())
            if param_types and max(param_types) >= _FIRST_USER_OID:  # a type of the target's
                c = await self._casting_parameters(info, c, param_types)
        # The same statement text comes back as the same Classification object (the
        # classifier's cache), another text of a reusable shape with that shape's first one:
        # its policy outcome without estimates is decided once (policies read no constants).
        key = c.shape or c
        cached = self._decisions.get(id(key))
        if cached is not None and cached[0] is key:
            decision, estimate_needed = cached[1], cached[2]
        else:
            ident = PolicyIdentity.of(info.identity)
            decision = evaluate(self.policy, c, ident, info.target)
            estimate_needed = needs_estimate(self.policy, c, ident, info.target)
            if len(self._decisions) >= _DECISIONS_KEPT:
                self._decisions.clear()
            self._decisions[id(key)] = (key, decision, estimate_needed)
        if with_estimate and estimate_needed:
            estimates = await self._estimates(info, c, bind, param_types)
            # Nor do they read more of an estimate than its numbers: a write by a unique key
            # comes back with the same ones every time.
            decided = (id(key), None if estimates is None else tuple(estimates))
            hit = self._estimated.get(decided)
            if hit is not None and hit[0] is key:
                decision = hit[1]
            else:
                ident = PolicyIdentity.of(info.identity)
                decision = evaluate(self.policy, c, ident, info.target, estimates)
                if len(self._estimated) >= _DECISIONS_KEPT:
                    self._estimated.clear()
                self._estimated[decided] = (key, decision)
            deciding = c.statements[decision.statement_index or 0]
            scratch = self.temp_tables | _temp_tables(c)
            if (
                decision.estimate_missing
                and decision.action == "allow"
                and deciding.kind != "prepare"
                and not (deciding.tables_written and deciding.tables_written <= scratch)
            ):
                # Fail closed: the rows it would touch are unknown, so a human decides.
                decision = Decision(
                    "review",
                    "estimate-unavailable",
                    f"{decision.reason}; the rows it would touch could not be estimated",
                    self.policy.mode,
                    statement_index=decision.statement_index,
                    estimate_missing=True,
                )
        return Judgement(c, decision)

    async def _through_catalog(self, info: SessionInfo, c: Classification) -> Classification:
        """``c`` as the target's catalog makes it: statements that call, read (a view, a row
        security policy), write (a trigger, a rule, a default, a CHECK) or use (an operator,
        a cast) a user's function that may write are opaque; those that call one that may
        change the search_path or role change it. ``c`` itself when none does."""
        assert self.catalog is not None
        if c.functions:
            names = frozenset(filter(_looked_up, c.functions))
            if names:
                c = await self._calling_users(info, c, names)
        if c.tables_read:
            writing = await self._writing_relations(info, c.tables_read)
            if writing:
                c = c.reading_writers(writing)
        if c.tables_written:
            hooked = await self._destroying_write_hooks(info, c.tables_written)
            if hooked:
                c = c.writing_through(hooked)
        if not _OPERATOR_CHARS.isdisjoint(c.sql):  # else it can name no operator
            operators = await self._writing_operators(info)
            if operators and any(op in c.sql for op in operators):
                return c.using_writers()
        if all(st.kinds <= _NO_EXPRESSIONS for st in c.statements):
            return c  # ROLLBACK runs no cast, and passes even when the catalog cannot be read
        names = (await self._writing_casts(info)).names
        if names:
            sql = c.sql.lower()
            if any(name in sql for name in names):
                c = c.using_writers()
        return c

    async def _casting_parameters(
        self, info: SessionInfo, c: Classification, param_types: Sequence[int]
    ) -> Classification:
        """``c``, opaque when a parameter is declared as a type of one of the target's casts
        over a user's VOLATILE function: ``SELECT $1::int`` runs the cast without naming it."""
        types = (await self._writing_casts(info)).types
        if types is None or not types.isdisjoint(param_types):
            return c.using_writers()
        return c

    async def _calling_users(
        self, info: SessionInfo, c: Classification, names: frozenset[str]
    ) -> Classification:
        """``c``, or, when it calls a function of the target's that may write (a user's
        VOLATILE one: what it does is out of the gateway's sight, as a CALL's is), ``c`` with
        those statements opaque; when it calls one that may change the search_path or role,
        with those statements changing it (no estimates after them). If the catalog cannot
        be read, every call counts as both (fail closed)."""
        assert self.catalog is not None
        found = await _or_else(
            UserFunctions(names, names),
            self.catalog.user_functions(info.target, names),
            f"the functions {sorted(names)}",
        )
        writers, switchers = found.writers, found.switchers
        if writers:
            c = c.calling_writers(writers)
        if switchers:
            c = c.calling_switchers(switchers)
        return c

    async def _writing_relations(self, info: SessionInfo, names: frozenset[str]) -> frozenset[str]:
        """Of the relations a statement reads, those whose reading runs a user's VOLATILE
        function (a view's query, a row security policy)."""
        assert self.catalog is not None
        return await _or_else(
            names,
            self.catalog.writing_relations(info.target, names),
            f"the relations {sorted(names)}",
        )

    async def _destroying_write_hooks(
        self, info: SessionInfo, names: frozenset[str]
    ) -> frozenset[str]:
        """Of the relations a statement writes, those with a trigger, rule, default or CHECK
        that may change or remove other rows."""
        assert self.catalog is not None
        return await _or_else(
            names,
            self.catalog.destroying_write_hooks(info.target, names),
            f"what writing {sorted(names)} runs",
        )

    async def _writing_operators(self, info: SessionInfo) -> frozenset[str]:
        """The names of the target's operators over a user's VOLATILE function. If the catalog
        cannot be read, every operator counts (fail closed): an empty name is in every text."""
        assert self.catalog is not None
        return await _or_else(
            frozenset({""}), self.catalog.writing_operators(info.target), "the operators"
        )

    async def _writing_casts(self, info: SessionInfo) -> catalog_mod.WritingCasts:
        """What may run one of the target's casts over a user's VOLATILE function; anything
        if the catalog cannot be read (fail closed)."""
        assert self.catalog is not None
        return await _or_else(
            catalog_mod.ALL_CASTS, self.catalog.writing_casts(info.target), "the casts"
        )

    def _note_allowed(self, c: Classification) -> None:
        self.temp_tables |= _temp_tables(c)
        for st in c.statements:
            if st.kind == "prepare" and st.prepared_name:
                body = _prepare_body(st.text)
                if body:
                    self.bodies.setdefault(st.prepared_name, body)
            elif st.kind in ("deallocate", "discard"):
                self.bodies.clear()  # only a cache of original texts: re-derived when needed
        if any(st.changes_names for st in c.statements):
            self.names_unsure = True

    @staticmethod
    def _worse(a: Judgement, b: Judgement) -> Judgement:
        rank = {"allow": 0, "review": 1, "deny": 2}
        return b if rank[b.decision.effective_action] > rank[a.decision.effective_action] else a

    @staticmethod
    def verdict(j: Judgement) -> Verdict:
        d = j.decision
        if d.effective_action == "allow":
            return Verdict.allow(rule=d.rule)
        sqlstate = "42601" if d.rule == "unparseable" else "42501"
        if d.effective_action == "review":
            message = f"statement needs approval, which is not available here: {d.reason}"
            return Verdict.deny(message, rule=d.rule, sqlstate=sqlstate)
        return Verdict.deny(d.reason, rule=d.rule, sqlstate=sqlstate)

    # -- hook points -----------------------------------------------------------------------

    async def check_query(self, info: SessionInfo, sql: str) -> Verdict:
        raw = classify_cached(sql)
        c = self.prepared.resolve(raw)
        j = await self.judge(info, c)
        verdict = self.verdict(j)
        if verdict.action == "allow" and c.error is None:
            self.prepared.observe(raw)
            self._note_allowed(j.classification)  # as judged: with what the catalog told
        return await self._record(info, j, verdict, sql, "simple")

    async def check_parse(self, info: SessionInfo, name: str, sql: str) -> Verdict:
        c = self.prepared.resolve(classify_cached(sql))
        # Refuse now what no parameter value can make acceptable; estimates wait for Execute.
        j = await self.judge(info, c, with_estimate=False)
        if j.decision.effective_action == "deny":
            if name:
                self.prepared.forget(name)
            return await self._record(
                info, j, self.verdict(j), sql, "extended", stmt=Statement(sql, "extended", name)
            )
        return Verdict.allow()

    def statement_prepared(self, info: SessionInfo, name: str, sql: str) -> None:
        # Protocol-level and SQL-level prepared statements share one namespace in PostgreSQL:
        # `EXECUTE name` runs what this Parse prepared, once the server has accepted it.
        if name:
            self.prepared.remember(name, self.prepared.resolve(classify_cached(sql)))
            self.bodies[name] = sql

    async def check_execute(self, info: SessionInfo, stmt: Statement) -> Verdict:
        # The text is the one captured when the portal was bound (what the server will run);
        # SQL-level EXECUTE names resolve now, as the server resolves them at run time.
        raw: Classification | None = None
        if stmt.known:
            raw = classify_cached(stmt.sql)
            c = self.prepared.resolve(raw)
        else:
            c = Classification.failed(
                "", f'prepared statement "{stmt.statement_name}" is not known to the gateway'
            )
        j = judged = await self.judge(info, c, bind=stmt.bind, param_types=stmt.param_types)
        # The name may also have been (re)defined at SQL level (PREPARE / DEALLOCATE) since:
        # judge that definition too and keep the more severe outcome.
        other = self.prepared.get(stmt.statement_name) if stmt.statement_name else None
        if other is not None and other.sql != c.sql:
            j2 = await self.judge(
                info, self.prepared.resolve(other), bind=stmt.bind, param_types=stmt.param_types
            )
            j = self._worse(j, j2)
        verdict = self.verdict(j)
        if verdict.action == "allow" and c.error is None and raw is not None:
            self.prepared.observe(raw)
            self._note_allowed(judged.classification)
        return await self._record(info, j, verdict, stmt.sql, "extended", stmt=stmt)

    def statement_closed(self, info: SessionInfo, name: str) -> None:
        if name:
            self.prepared.forget(name)
