"""Guardrails in the data path: every statement classified and judged before it is forwarded.

Simple Query: the whole string is classified and judged at once (a string holding any refused
statement is refused whole). Extended protocol: a Parse is classified and refused at once when
the policy denies it whatever the parameters; the final judgement, with the bind parameters
known (row estimates, approvals), is made at Execute. Named statements are remembered, so
``EXECUTE p`` and a protocol-level Execute of a named statement are judged by what was
prepared.

``review`` is refused until approvals exist in the data path (fail closed).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from pgwarden.guard.estimator import Estimator
from pgwarden.guard.recorder import RecordingSetup, SessionRecorder
from pgwarden.policy import Decision, Policy, PolicyIdentity, RowEstimate, evaluate, needs_estimate
from pgwarden.protocol.messages import Bind, Message, RowDescription
from pgwarden.proxy.hooks import SessionHooks, SessionInfo, Statement, Verdict
from pgwarden.sql import Classification, PreparedRegistry, classify_cached

log = logging.getLogger("pgwarden.guard")

_MODIFYING = frozenset({"update", "delete", "merge"})
_SESSION_ID_NAME = re.compile(r"pgwarden\s*\"?\s*\.\s*\"?session_id", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Judgement:
    """A decision with the classification it was made on (what the recording will hold)."""

    classification: Classification
    decision: Decision


def _gateway_owned(c: Classification) -> str | None:
    """Refuse changes to settings the gateway owns (the session id it reports)."""
    for st in c.statements:
        if st.kind == "set" and st.setting and st.setting.lower() == "pgwarden.session_id":
            return "pgwarden.session_id is set by the gateway and cannot be changed"
    if "set_config" in c.functions and (
        _SESSION_ID_NAME.search(c.sql) or "dynamic_set_config" in c.flags
    ):
        return "set_config on pgwarden.session_id, or with a computed name, is not allowed"
    return None


class GuardHooks(SessionHooks):
    """Classification and policy for one session."""

    def __init__(
        self,
        policy: Policy,
        estimator: Estimator | None,
        recording: RecordingSetup | None = None,
    ) -> None:
        self.policy = policy
        self.estimator = estimator
        self.recording = recording
        self.recorder: SessionRecorder | None = None
        self.prepared = PreparedRegistry()  # SQL-level PREPARE names
        self.last: Judgement | None = None

    # -- session ---------------------------------------------------------------------------

    async def session_started(self, info: SessionInfo) -> None:
        if self.recording is not None:
            self.recorder = SessionRecorder(self.recording, info)
            await self.recorder.start()

    async def session_ended(self, info: SessionInfo, reason: str) -> None:
        if self.recorder is not None:
            await self.recorder.end(reason)

    async def record_server_messages(
        self, info: SessionInfo, batch: list[tuple[Message, object, RowDescription | None]]
    ) -> None:
        if self.recorder is not None:
            await self.recorder.server_messages(batch)

    async def _record(
        self,
        j: Judgement,
        verdict: Verdict,
        sql: str,
        protocol: str,
        *,
        stmt: Statement | None = None,
    ) -> Verdict:
        """Write the statement event (before anything is forwarded); attach its ref."""
        if self.recorder is None:
            return verdict
        ref = await self.recorder.statement(
            sql,
            protocol,
            j.classification,
            j.decision,
            bind=stmt.bind if stmt else None,
            param_types=stmt.param_types if stmt else (),
            statement_name=stmt.statement_name if stmt else None,
            portal=stmt.portal if stmt else None,
        )
        if verdict.action == "allow":
            await self.recorder.apply_settings(j.classification)
        return replace(verdict, ref=ref)

    # -- decisions -----------------------------------------------------------------------

    async def _estimates(
        self,
        info: SessionInfo,
        c: Classification,
        bind: Bind | None,
        param_types: Sequence[int],
    ) -> list[RowEstimate | None] | None:
        if self.estimator is None:
            return None
        out: list[RowEstimate | None] = []
        for st in c.statements:
            est = None
            if st.estimate_sql and (st.kinds & _MODIFYING):
                est = await self.estimator.estimate(info.target, st.estimate_sql, bind, param_types)
            out.append(est)
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
        ident = PolicyIdentity.of(info.identity)
        owned = _gateway_owned(c) if c.error is None else None
        if owned is not None:
            decision = Decision(
                "deny", "gateway-owned-setting", owned, self.policy.mode, fail_closed=True
            )
            return Judgement(c, decision)
        decision = evaluate(self.policy, c, ident, info.target)
        if with_estimate and needs_estimate(self.policy, c, ident, info.target):
            estimates = await self._estimates(info, c, bind, param_types)
            decision = evaluate(self.policy, c, ident, info.target, estimates)
        return Judgement(c, decision)

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
        c = self.prepared.resolve(classify_cached(sql))
        j = await self.judge(info, c)
        self.last = j
        verdict = self.verdict(j)
        if verdict.action == "allow" and c.error is None:
            self.prepared.observe(classify_cached(sql))
        return await self._record(j, verdict, sql, "simple")

    async def check_parse(self, info: SessionInfo, name: str, sql: str) -> Verdict:
        c = self.prepared.resolve(classify_cached(sql))
        # Refuse now what no parameter value can make acceptable; estimates wait for Execute.
        j = await self.judge(info, c, with_estimate=False)
        if j.decision.effective_action == "deny":
            self.last = j
            if name:
                self.prepared.forget(name)
            return await self._record(
                j, self.verdict(j), sql, "extended", stmt=Statement(sql, "extended", name)
            )
        if name:
            # Protocol-level and SQL-level prepared statements share one namespace in
            # PostgreSQL: `EXECUTE name` runs what this Parse prepared.
            self.prepared.remember(name, c)
        return Verdict.allow()

    async def check_execute(self, info: SessionInfo, stmt: Statement) -> Verdict:
        # The text is the one captured when the portal was bound (what the server will run);
        # SQL-level EXECUTE names resolve now, as the server resolves them at run time.
        if stmt.known:
            c = self.prepared.resolve(classify_cached(stmt.sql))
        else:
            c = Classification.failed(
                "", f'prepared statement "{stmt.statement_name}" is not known to the gateway'
            )
        j = await self.judge(info, c, bind=stmt.bind, param_types=stmt.param_types)
        self.last = j
        verdict = self.verdict(j)
        if verdict.action == "allow" and c.error is None:
            self.prepared.observe(classify_cached(stmt.sql))
        return await self._record(j, verdict, stmt.sql, "extended", stmt=stmt)

    def statement_closed(self, info: SessionInfo, name: str) -> None:
        if name:
            self.prepared.forget(name)
