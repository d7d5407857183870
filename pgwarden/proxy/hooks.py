"""Where the guardrails plug into the data path.

The relay calls these at fixed points; every other capability (classification and policy,
approvals, masking, recording) is an implementation of ``SessionHooks``. The relay treats any
exception raised by a hook as a refusal (fail closed): a statement whose check raised is never
forwarded, a server message whose filter raised never reaches the client, and a session that
can no longer be recorded is ended.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

# At run time too: the compiled dataclasses resolve their fields' types when created.
from pgwarden.auth.identity import Identity
from pgwarden.protocol.frozen import assign_in_init
from pgwarden.protocol.messages import Bind, Message, RowDescription

Action = Literal["allow", "deny", "hold"]


class Hold(Protocol):
    """A statement held until a human decides (``Verdict.hold``). The relay tells the client
    ``notice`` at once, keeps the connection open, and forwards or refuses the statement by
    the verdict ``wait()`` returns; if the client goes away first it calls ``withdraw``.
    A protocol, not a base class: this module is compiled, and a Python class cannot
    subclass a compiled one."""

    notice: str

    async def wait(self) -> Verdict: ...

    async def withdraw(self, reason: str) -> None: ...


VERDICT_FIELDS: Final = ("action", "message", "sqlstate", "rule", "rewrite", "ref", "hold")


class Verdict:
    """The outcome of checking one statement before it is forwarded. Immutable: ``ALLOW`` and
    cached verdicts are shared by every session. A plain class with ``Final`` attributes, not
    a frozen dataclass: compiled (pgwarden._native) it is built ~20x faster, two per
    statement, and its attributes refuse assignment at run time (mypy refuses it everywhere)."""

    def __init__(
        self,
        action: Action,
        message: str = "",  # for deny: shown to the client after "pgwarden: "
        sqlstate: str = "42501",
        rule: str | None = None,
        rewrite: str | None = None,  # for allow: SQL to forward instead (e.g. answered here)
        ref: object | None = None,  # carried by the relay to this statement's server messages
        hold: Hold | None = None,  # for hold: how to wait for the decision
    ) -> None:
        self.action: Final = action
        self.message: Final = message
        self.sqlstate: Final = sqlstate
        self.rule: Final = rule
        self.rewrite: Final = rewrite
        self.ref: Final = ref
        self.hold: Final = hold

    def _values(self) -> tuple[object, ...]:
        return (
            self.action, self.message, self.sqlstate, self.rule, self.rewrite, self.ref, self.hold
        )  # fmt: skip

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Verdict):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={v!r}" for n, v in zip(VERDICT_FIELDS, self._values(), strict=True))
        return f"Verdict({args})"

    @staticmethod
    def allow(
        rewrite: str | None = None, rule: str | None = None, ref: object | None = None
    ) -> Verdict:
        return Verdict("allow", rewrite=rewrite, rule=rule, ref=ref)

    @staticmethod
    def deny(message: str, *, rule: str | None = None, sqlstate: str = "42501") -> Verdict:
        return Verdict("deny", message=message, rule=rule, sqlstate=sqlstate)

    @staticmethod
    def held(hold: Hold, rule: str | None = None) -> Verdict:
        return Verdict("hold", rule=rule, hold=hold)

    def with_ref(self, ref: object | None) -> Verdict:
        """This verdict carrying ``ref``."""
        return Verdict(
            self.action, self.message, self.sqlstate, self.rule, self.rewrite, ref, self.hold
        )


ALLOW: Final = Verdict("allow")


class EndSession(Exception):
    """Raised by a hook when the session must end (for example, it can no longer be
    recorded). The relay tells the client with a FATAL error and closes both sides."""


@dataclass(slots=True)
class SessionInfo:
    """What the hooks may know about a session. Never holds the token or upstream password."""

    id: str
    identity: Identity
    target: str
    client_addr: str
    application_name: str
    started_at: float
    tls: bool
    context: dict[str, str] = field(default_factory=dict)
    tx_status: bytes = b"I"
    search_path: str | None = None  # the client's start-up search_path, if it gave one


@dataclass(frozen=True, slots=True, init=False)
class Statement:
    """A statement about to run: simple Query text, or an extended-protocol Execute. Its own
    ``__init__`` (one per Execute): the generated one of a frozen dataclass is interpreted
    Python even compiled (a ``setattr`` call per field); this one's assignments are native
    stores (see pgwarden.protocol.frozen). tests/unit/test_hooks_init.py checks it sets every
    field."""

    sql: str
    protocol: Literal["simple", "extended"]
    statement_name: str | None
    portal: str | None
    bind: Bind | None
    param_types: tuple[int, ...]
    known: bool  # False: the statement was not prepared through this session
    extra: Mapping[str, Any]

    def __init__(
        self,
        sql: str,
        protocol: Literal["simple", "extended"],
        statement_name: str | None = None,
        portal: str | None = None,
        bind: Bind | None = None,
        param_types: tuple[int, ...] = (),
        known: bool = True,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.sql = sql  # type: ignore[misc]
        self.protocol = protocol  # type: ignore[misc]
        self.statement_name = statement_name  # type: ignore[misc]
        self.portal = portal  # type: ignore[misc]
        self.bind = bind  # type: ignore[misc]
        self.param_types = param_types  # type: ignore[misc]
        self.known = known  # type: ignore[misc]
        self.extra = {} if extra is None else extra  # type: ignore[misc]


assign_in_init(Statement)


class SessionHooks:
    """Default hooks: allow everything, change nothing, record nothing."""

    async def session_started(self, info: SessionInfo) -> None:
        """Called once the client is authenticated and the upstream is ready."""

    async def check_query(self, info: SessionInfo, sql: str) -> Verdict:
        """A simple-protocol Query (may hold several statements). Called before forwarding."""
        return ALLOW

    async def check_parse(self, info: SessionInfo, name: str, sql: str) -> Verdict:
        """An extended-protocol Parse: classify once, refuse unparseable or denied SQL."""
        return ALLOW

    async def check_execute(self, info: SessionInfo, stmt: Statement) -> Verdict:
        """An extended-protocol Execute, with the bind parameters known (approval point)."""
        return ALLOW

    def statement_closed(self, info: SessionInfo, name: str) -> None:
        """The server confirmed the close of a protocol-level prepared statement."""

    def statement_prepared(self, info: SessionInfo, name: str, sql: str) -> None:
        """The server confirmed a protocol-level Parse (ParseComplete) of ``name``."""

    async def prepare_columns(self, info: SessionInfo, desc: RowDescription) -> None:
        """A RowDescription is about to be relayed: resolve what the masking needs to know
        about its columns (table names from OIDs) before rows arrive."""

    def filter_server_message(
        self,
        info: SessionInfo,
        msg: Message,
        columns: RowDescription | None,
        ref: object | None = None,
    ) -> Message | None:
        """Masking point: return the message to send to the client (the same object when
        unchanged, so its raw bytes are forwarded as they are), or None to hold it back (a
        COPY row split across messages). ``ref`` is the answered statement's ``Verdict.ref``.
        Raising withholds the message and ends the session."""
        return msg

    def run_untouched(
        self,
        info: SessionInfo,
        kind: bytes,
        joined: bytes,
        columns: RowDescription | None,
        ref: object | None,
    ) -> bool:
        """``joined``: a run of whole DataRow (``kind`` b"D", rows of one result) or CopyData
        (b"d", COPY TO STDOUT rows) messages. True if they may be forwarded as they are,
        without passing each through ``filter_server_message``."""
        return True

    def filter_run(
        self,
        info: SessionInfo,
        kind: bytes,
        msgs: list[Message],
        columns: RowDescription | None,
        ref: object | None,
    ) -> list[Message]:
        """A run of DataRow (``kind`` b"D", rows of one result) or CopyData (b"d", COPY TO
        STDOUT rows) messages that ``run_untouched`` did not pass: the messages to send in
        their place, in order (the same objects where unchanged; a COPY row split across
        messages is held back). Raising withholds them all and ends the session."""
        out = []
        for msg in msgs:
            fwd = self.filter_server_message(info, msg, columns, ref)
            if fwd is not None:
                out.append(fwd)
        return out

    async def record_server_messages(
        self, info: SessionInfo, batch: list[tuple[Message, object, RowDescription | None]]
    ) -> None:
        """Recording point for what the client is about to receive (already filtered), before
        it is sent: (message, the ``ref`` of the statement it answers, its columns)."""

    async def session_ended(self, info: SessionInfo, reason: str) -> None:
        """Called once when the session ends, whatever the reason."""

    def cancel_requested(self, info: SessionInfo) -> bool:
        """A CancelRequest for this session arrived. Return True if a hook consumed it (for
        example by withdrawing a held statement) so it is not forwarded upstream."""
        return False
