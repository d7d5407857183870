"""The recording's event model, format version 1.

A recording is one JSON object per line (see ``canonical.py`` for the exact bytes). Every line
carries the envelope ``v`` (``FORMAT_VERSION``), ``session`` (the session id), ``seq`` (1, 2,
3, ... without gaps), ``ts`` (UTC, ``2026-01-02T03:04:05.123456Z``), ``type``, ``prev`` (the
previous line's hash; 64 zeros for the first) and ``hash``. The payload fields of the event
type sit beside the envelope at the top level (a payload may not use an envelope name), or, in
an encrypted recording, inside ``enc`` (see ``crypto.py``).

Event types and their payload fields
====================================
``session_start``  ``subject``, ``issuer``, ``groups``, ``claims`` (the verified claims the
                   gateway relied on, never the raw token), ``token_id``, ``expires_at``,
                   ``client_addr``, ``application_name``, ``target``, ``database_user``,
                   ``gateway_instance``, ``tls``
``context``        ``source`` (``api`` | ``set`` | ``reset`` | ``application_name`` | ...),
                   ``changes`` (key -> new value, ``null`` = removed), ``context`` (the
                   session-scoped context in force afterwards), ``actor``
``statement``      ``sql``, ``protocol`` (``simple`` | ``extended``), ``statement_name``,
                   ``portal``, ``params`` (see ``encode_value``), ``param_types`` (OIDs),
                   ``classification`` (the classifier's summary), ``decision`` (``action``,
                   ``rule``, ``reason``, ``mode``), ``context`` (the merged context in force for
                   this statement, sqlcommenter keys included), ``context_sources``
``approval``       ``approval_id``, ``state`` (``requested`` | ``approved`` | ``denied`` |
                   ``expired`` | ``withdrawn``), ``actor``, ``at``, ``reason``,
                   ``statement_hash``, ``statement_seq``, ``expires_at``
``result``         ``statement_seq``, ``columns`` (``name``, ``type_oid``, ``format``),
                   ``rows`` (the masked rows, at most the cap), ``row_count`` (all rows),
                   ``rows_recorded``, ``truncated``, ``command_tag``, ``digest``
                   (``sha256:<hex>`` of the whole result stream as sent to the client, see
                   ``ResultBuilder``), ``masked`` (detector or rule -> values masked; never the
                   values)
``error``          ``statement_seq``, ``source`` (``server`` | ``gateway``), ``severity``,
                   ``sqlstate``, ``message``, ``fields`` (the other ErrorResponse fields, by
                   name)
``notice``         ``statement_seq``, ``severity``, ``sqlstate``, ``message``, ``fields``
``session_end``    ``reason``
``checkpoint``     ``signed_seq``, ``signed_hash``, ``alg`` (``ed25519``), ``key_id``,
                   ``signature`` (written by the writer, never encrypted; see ``signing.py``)

Values (bind parameters and row values) are recorded "as text where possible": a text-format
value that is valid UTF-8 is a JSON string, NULL is ``null``, anything else is a tagged object
``{"encoding": "base64", "data": ..., "format": "text" | "binary"}`` (plus ``type_oid`` and, for
binary values of well-known types, their ``text``).

Producers build the payload dataclasses below and hand them to ``RecordingWriter``; readers get
``Event`` values (envelope plus ``data``, the payload dict) from ``codec.read_events``.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, Protocol

from pgwarden.recording.canonical import canonical_json

__all__ = [
    "CLAIMS_USED",
    "DEFAULT_RESULT_ROW_CAP",
    "ENVELOPE_KEYS",
    "EVENT_TYPES",
    "FORMAT_VERSION",
    "ApprovalEvent",
    "ApprovalState",
    "Column",
    "ContextEvent",
    "Decision",
    "ErrorEvent",
    "Event",
    "EventPayload",
    "NoticeEvent",
    "ResultBuilder",
    "ResultEvent",
    "SessionEnd",
    "SessionStart",
    "StatementEvent",
    "claims_used",
    "encode_params",
    "encode_value",
    "format_ts",
    "parse_ts",
    "statement_hash",
    "value_bytes",
]

FORMAT_VERSION = 1
DEFAULT_RESULT_ROW_CAP: Final = 1000

ENVELOPE_KEYS = frozenset({"v", "session", "seq", "ts", "type", "prev", "hash", "enc"})
EVENT_TYPES = frozenset(
    {
        "session_start",
        "context",
        "statement",
        "approval",
        "result",
        "error",
        "notice",
        "session_end",
        "checkpoint",
    }
)

ApprovalState = Literal["requested", "approved", "denied", "expired", "withdrawn"]

# Claims worth keeping as evidence of who connected; everything else in a token is left out.
CLAIMS_USED: Final = (
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "azp",
    "client_id",
    "groups",
    "email",
    "name",
    "preferred_username",
    "act",
)


# --------------------------------------------------------------------------------------------
# timestamps


_SECOND: Final[list[tuple[int, str]]] = [(-1, "")]  # last whole second, formatted


def format_ts(t: float) -> str:
    """``2026-01-02T03:04:05.123456Z`` for a unix time (after 1970)."""
    # Two per statement: every event within the same second shares its prefix, so only the
    # microseconds are formatted per event, by string concatenation (no datetime object, no
    # format spec: compiled, an f-string's ``:06d`` alone costs ~0.5 µs).
    whole = math.floor(t)
    frac = round((t - whole) * 1_000_000)  # exact for t >= 1; rounded as datetime rounds
    if frac >= 1_000_000:
        whole, frac = whole + 1, frac - 1_000_000
    cached = _SECOND[0]  # one tuple, read once: safe if another thread replaces it
    if cached[0] != whole:
        cached = (whole, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(whole)))
        _SECOND[0] = cached
    digits = str(frac)
    return cached[1] + "000000"[len(digits) :] + digits + "Z"


def parse_ts(ts: str) -> float:
    """The unix time of a ``ts`` value."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


# --------------------------------------------------------------------------------------------
# values


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _decode_binary(data: bytes, oid: int | None) -> str | None:
    """Text for a binary-format value of a well-known type, else None."""
    try:
        if oid == 16 and len(data) == 1:  # bool
            return "true" if data[0] else "false"
        if oid == 21 and len(data) == 2:  # int2
            return str(struct.unpack("!h", data)[0])
        if oid == 23 and len(data) == 4:  # int4
            return str(struct.unpack("!i", data)[0])
        if oid == 20 and len(data) == 8:  # int8
            return str(struct.unpack("!q", data)[0])
        if oid == 26 and len(data) == 4:  # oid
            return str(struct.unpack("!I", data)[0])
        if oid in (700, 701) and len(data) in (4, 8):  # float4, float8
            value = struct.unpack("!f" if len(data) == 4 else "!d", data)[0]
            if math.isnan(value):
                return "NaN"
            if math.isinf(value):
                return "Infinity" if value > 0 else "-Infinity"
            return repr(value)
        if oid in (25, 1043, 1042, 19, 114, 705, 142):  # text-like: the same bytes as text
            return data.decode("utf-8")
        if oid == 3802 and data[:1] == b"\x01":  # jsonb: version byte, then text
            return data[1:].decode("utf-8")
        if oid == 2950 and len(data) == 16:  # uuid
            return str(uuid.UUID(bytes=data))
    except (UnicodeDecodeError, struct.error, ValueError):
        return None
    return None


def encode_value(
    data: bytes | None, *, binary: bool = False, type_oid: int | None = None
) -> str | dict[str, Any] | None:
    """A wire value as recorded: ``None`` for NULL, a string for valid UTF-8 text, else a
    tagged base64 object (binary values of well-known types also get their ``text``)."""
    if data is None:
        return None
    if not binary:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            tagged: dict[str, Any] = {"encoding": "base64", "data": _b64(data), "format": "text"}
            if type_oid:
                tagged["type_oid"] = type_oid
            return tagged
    tagged = {"encoding": "base64", "data": _b64(data), "format": "binary"}
    if type_oid:
        tagged["type_oid"] = type_oid
        text = _decode_binary(data, type_oid)
        if text is not None:
            tagged["text"] = text
    return tagged


def value_bytes(value: Any) -> bytes | None:
    """The wire bytes of a recorded value (the inverse of ``encode_value``)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, Mapping) and value.get("encoding") == "base64":
        return base64.b64decode(str(value.get("data", "")), validate=True)
    raise ValueError(f"not a recorded value: {value!r}")


def encode_params(
    values: Sequence[bytes | None],
    formats: Sequence[int] = (),
    type_oids: Sequence[int] = (),
) -> list[str | dict[str, Any] | None]:
    """Bind parameters as recorded. ``formats`` follows the Bind message: empty (all text),
    one code for all, or one per parameter (0 text, 1 binary). ``type_oids`` are the
    parameter types from Parse (0 or missing: unknown)."""
    out: list[str | dict[str, Any] | None] = []
    for i, value in enumerate(values):
        if not formats:
            fmt = 0
        elif len(formats) == 1:
            fmt = formats[0]
        else:
            fmt = formats[i] if i < len(formats) else 0
        oid = type_oids[i] if i < len(type_oids) and type_oids[i] else None
        out.append(encode_value(value, binary=fmt == 1, type_oid=oid))
    return out


def statement_hash(sql: str, params: Sequence[Any] = ()) -> str:
    """``sha256:<hex>`` over the canonical JSON of ``{"params": [...], "sql": sql}`` (params
    as recorded): identifies "this statement with these parameters" across approval events,
    the approvals table and the statement event."""
    digest = hashlib.sha256(canonical_json({"params": list(params), "sql": sql}))
    return "sha256:" + digest.hexdigest()


def claims_used(claims: Mapping[str, Any], keys: Sequence[str] = CLAIMS_USED) -> dict[str, Any]:
    """The subset of verified claims worth recording (JSON-able values only)."""
    out: dict[str, Any] = {}
    for key in keys:
        if key in claims:
            value = claims[key]
            try:
                canonical_json(value)
            except (TypeError, ValueError):
                value = str(value)
            out[key] = value
    return out


# --------------------------------------------------------------------------------------------
# payloads written by producers


class EventPayload(Protocol):
    """What ``RecordingWriter.write`` accepts: an event type and its payload fields."""

    @property
    def type(self) -> str: ...

    def to_payload(self) -> dict[str, Any]: ...


def _json_mapping(value: Mapping[str, Any]) -> dict[str, Any]:
    # A dict is encoded at once and never kept: no copy. Its keys are str by type; one that
    # is not makes the encoder fall back to the standard library's, which writes it as text.
    if type(value) is dict:
        return value
    return {str(k): v for k, v in value.items()}


@dataclass(frozen=True, slots=True)
class SessionStart:
    @property
    def type(self) -> str:
        return "session_start"

    subject: str
    issuer: str
    groups: Sequence[str]
    client_addr: str
    application_name: str
    target: str
    gateway_instance: str
    tls: bool
    claims: Mapping[str, Any] = field(default_factory=dict)
    token_id: str | None = None
    expires_at: float | None = None
    database_user: str | None = None

    def to_payload(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "groups": list(self.groups),
            "claims": claims_used(self.claims),
            "token_id": self.token_id,
            "expires_at": self.expires_at,
            "client_addr": self.client_addr,
            "application_name": self.application_name,
            "target": self.target,
            "database_user": self.database_user,
            "gateway_instance": self.gateway_instance,
            "tls": self.tls,
        }


@dataclass(frozen=True, slots=True)
class ContextEvent:
    @property
    def type(self) -> str:
        return "context"

    source: str  # api | set | set_local | reset | application_name | rollback | ...
    changes: Mapping[str, Any]  # key -> new value (None: removed)
    context: Mapping[str, Any]  # the session-scoped context in force afterwards
    actor: str | None = None

    def to_payload(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "changes": _json_mapping(self.changes),
            "context": _json_mapping(self.context),
            "actor": self.actor,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's verdict as recorded: ``action`` is allow | deny | review (or another word
    the policy uses), ``mode`` enforce | audit (audit: recorded, not enforced)."""

    action: str
    rule: str | None = None
    reason: str = ""
    mode: str = "enforce"

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "rule": self.rule, "reason": self.reason, "mode": self.mode}


_DECISION_JSON: Final[dict[int, tuple[Decision, bytes | None]]] = {}
_DECISION_JSON_KEPT: Final = 4096


def _decision_json(d: Decision) -> bytes:
    # The recorder hands the same Decision object for every statement decided alike: its JSON
    # is kept once the object comes back. A decision made for one statement (with its row
    # estimate in the reason) never does, and 4096 of those would hold megabytes.
    hit = _DECISION_JSON.get(id(d))
    if hit is not None and hit[0] is d:
        if hit[1] is not None:
            return hit[1]
        encoded = canonical_json(d.to_dict())
        _DECISION_JSON[id(d)] = (d, encoded)
        return encoded
    if len(_DECISION_JSON) >= _DECISION_JSON_KEPT:
        _DECISION_JSON.clear()
    _DECISION_JSON[id(d)] = (d, None)
    return canonical_json(d.to_dict())


def _json_or_null(value: str | None) -> bytes:
    return b"null" if value is None else canonical_json(value)


def _int_or_null(value: int | None) -> bytes:
    return b"null" if value is None else b"%d" % value


def _rows_as_lists(rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
    # A builder's rows are lists already: encoded as they are.
    if type(rows) is list and all(type(r) is list for r in rows):
        return rows
    return [list(r) for r in rows]


_V: Final = b"%d" % FORMAT_VERSION
_PROTOCOLS: Final = {"simple": b'"simple"', "extended": b'"extended"'}


# StatementEvent and ResultEvent are built for every statement and encoded at once: plain
# (not frozen) dataclasses, since a frozen one costs a setattr call per field to build. Their
# ``plain_body`` is ``canonical_json`` of payload and envelope joined from parts, in the sorted
# key order, without the payload dict (the property tests hold it to ``encode_event``).
# The two events of every statement write their own __init__ (init=False): compiled, it is
# native code (~60 ns), where the one dataclasses generate is interpreted (~0.7 µs for these
# fields). It takes every field by name, so dataclasses.replace still works; the dataclass
# still gives fields, equality and repr. tests/unit/recording/test_recording_events.py checks
# that it sets every field.
@dataclass(slots=True, init=False)
class StatementEvent:
    @property
    def type(self) -> str:
        return "statement"

    sql: str
    protocol: Literal["simple", "extended"]
    decision: Decision
    classification: Mapping[str, Any]
    params: Sequence[str | Mapping[str, Any] | None]  # see encode_params
    param_types: Sequence[int]
    statement_name: str | None
    portal: str | None
    context: Mapping[str, Any]
    context_sources: Mapping[str, str]
    # canonical_json(classification) when the producer holds it already (cached per statement
    # shape); must be dropped whenever classification is replaced
    classification_json: bytes | None = field(compare=False, repr=False)
    # the same for context and context_sources (cached while the context is unchanged)
    context_json: bytes | None = field(compare=False, repr=False)
    context_sources_json: bytes | None = field(compare=False, repr=False)

    def __init__(
        self,
        sql: str,
        protocol: Literal["simple", "extended"],
        decision: Decision,
        classification: Mapping[str, Any] | None = None,
        params: Sequence[str | Mapping[str, Any] | None] = (),
        param_types: Sequence[int] = (),
        statement_name: str | None = None,
        portal: str | None = None,
        context: Mapping[str, Any] | None = None,
        context_sources: Mapping[str, str] | None = None,
        classification_json: bytes | None = None,
        context_json: bytes | None = None,
        context_sources_json: bytes | None = None,
    ) -> None:
        self.sql = sql
        self.protocol = protocol
        self.decision = decision
        self.classification = {} if classification is None else classification
        self.params = params
        self.param_types = param_types
        self.statement_name = statement_name
        self.portal = portal
        self.context = {} if context is None else context
        self.context_sources = {} if context_sources is None else context_sources
        self.classification_json = classification_json
        self.context_json = context_json
        self.context_sources_json = context_sources_json

    def plain_body(self, session: bytes, seq: int, ts: str, prev: str) -> bytes:
        """The unencrypted body ``encode_event`` would write. ``session`` is its JSON; ``prev``
        (a hex digest: sealing refuses any other) and ``ts`` (from format_ts) go in as they are."""
        return b"".join(
            (
                b'{"classification":',
                self.classification_json or canonical_json(_json_mapping(self.classification)),
                b',"context":',
                self.context_json or canonical_json(_json_mapping(self.context)),
                b',"context_sources":',
                self.context_sources_json or canonical_json(_json_mapping(self.context_sources)),
                b',"decision":',
                _decision_json(self.decision),
                b',"param_types":',
                canonical_json(list(self.param_types)) if self.param_types else b"[]",
                b',"params":',
                canonical_json(self._params()) if self.params else b"[]",
                b',"portal":',
                _json_or_null(self.portal),
                b',"prev":"',
                prev.encode(),  # hex: the writer's own digest (sealing checks any other)
                b'","protocol":',
                _PROTOCOLS.get(self.protocol) or canonical_json(self.protocol),
                b',"seq":',
                b"%d" % seq,
                b',"session":',
                session,
                b',"sql":',
                canonical_json(self.sql),
                b',"statement_name":',
                _json_or_null(self.statement_name),
                b',"ts":"',
                ts.encode(),  # format_ts: digits and -T:.Z
                b'","type":"statement","v":',
                _V,
                b"}",
            )
        )

    def to_payload(self) -> dict[str, Any]:
        return {
            "sql": self.sql,
            "protocol": self.protocol,
            "statement_name": self.statement_name,
            "portal": self.portal,
            "params": self._params(),
            "param_types": list(self.param_types),
            "classification": _json_mapping(self.classification),
            "decision": self.decision.to_dict(),
            "context": _json_mapping(self.context),
            "context_sources": _json_mapping(self.context_sources),
        }

    def _params(self) -> list[Any]:
        # str (a text parameter) and None first: an ABC check per parameter is slow
        return [
            p if p is None or isinstance(p, str) else dict(p) if isinstance(p, Mapping) else p
            for p in self.params
        ]

    @property
    def statement_hash(self) -> str:
        return statement_hash(self.sql, self.to_payload()["params"])


@dataclass(frozen=True, slots=True)
class ApprovalEvent:
    @property
    def type(self) -> str:
        return "approval"

    approval_id: str
    state: ApprovalState
    statement_hash: str
    actor: str | None = None  # who requested / decided (None for expiry)
    at: float | None = None  # when it happened (unix time; the event's ts if None)
    reason: str | None = None
    statement_seq: int | None = None
    expires_at: float | None = None

    def to_payload(self) -> dict[str, Any]:
        return {
            "approval_id": self.approval_id,
            "state": self.state,
            "actor": self.actor,
            "at": format_ts(self.at) if self.at is not None else None,
            "reason": self.reason,
            "statement_hash": self.statement_hash,
            "statement_seq": self.statement_seq,
            "expires_at": format_ts(self.expires_at) if self.expires_at is not None else None,
        }


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_oid: int = 0
    format: int = 0  # 0 text, 1 binary

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type_oid": self.type_oid, "format": self.format}


@dataclass(slots=True, init=False)  # its own __init__, as StatementEvent's
class ResultEvent:
    @property
    def type(self) -> str:
        return "result"

    columns: Sequence[Column]
    rows: Sequence[Sequence[Any]]  # recorded values (see encode_value), masked
    row_count: int
    command_tag: str | None
    digest: str
    truncated: bool
    masked: Mapping[str, int]
    statement_seq: int | None
    # canonical_json of the columns' dicts when the producer holds it (cached per description)
    columns_json: bytes | None = field(compare=False, repr=False)

    def __init__(
        self,
        columns: Sequence[Column],
        rows: Sequence[Sequence[Any]],
        row_count: int,
        command_tag: str | None,
        digest: str,
        truncated: bool = False,
        masked: Mapping[str, int] | None = None,
        statement_seq: int | None = None,
        columns_json: bytes | None = None,
    ) -> None:
        self.columns = columns
        self.rows = rows
        self.row_count = row_count
        self.command_tag = command_tag
        self.digest = digest
        self.truncated = truncated
        self.masked = {} if masked is None else masked
        self.statement_seq = statement_seq
        self.columns_json = columns_json

    def plain_body(self, session: bytes, seq: int, ts: str, prev: str) -> bytes:
        """The unencrypted body ``encode_event`` would write. ``session`` is its JSON; ``prev``
        (a hex digest: sealing refuses any other) and ``ts`` (from format_ts) go in as they are."""
        return b"".join(
            (
                b'{"columns":',
                self.columns_json or canonical_json(self._columns()),
                b',"command_tag":',
                _json_or_null(self.command_tag),
                b',"digest":',
                canonical_json(self.digest),
                b',"masked":',
                canonical_json(self._masked()) if self.masked else b"{}",
                b',"prev":"',
                prev.encode(),
                b'","row_count":',
                b"%d" % self.row_count,
                b',"rows":',
                canonical_json(_rows_as_lists(self.rows)) if self.rows else b"[]",
                b',"rows_recorded":',
                b"%d" % len(self.rows),
                b',"seq":',
                b"%d" % seq,
                b',"session":',
                session,
                b',"statement_seq":',
                _int_or_null(self.statement_seq),
                b',"truncated":',
                b"true" if self.truncated else b"false",
                b',"ts":"',
                ts.encode(),
                b'","type":"result","v":',
                _V,
                b"}",
            )
        )

    def _columns(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.columns]

    def _masked(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.masked.items()}

    def to_payload(self) -> dict[str, Any]:
        return {
            "statement_seq": self.statement_seq,
            "columns": self._columns(),
            "rows": _rows_as_lists(self.rows),
            "row_count": self.row_count,
            "rows_recorded": len(self.rows),
            "truncated": self.truncated,
            "command_tag": self.command_tag,
            "digest": self.digest,
            "masked": self._masked(),
        }


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    @property
    def type(self) -> str:
        return "error"

    sqlstate: str
    message: str
    severity: str = "ERROR"
    fields: Mapping[str, str] = field(default_factory=dict)
    source: Literal["server", "gateway"] = "server"
    statement_seq: int | None = None

    def to_payload(self) -> dict[str, Any]:
        return {
            "statement_seq": self.statement_seq,
            "source": self.source,
            "severity": self.severity,
            "sqlstate": self.sqlstate,
            "message": self.message,
            "fields": _json_mapping(self.fields),
        }


@dataclass(frozen=True, slots=True)
class NoticeEvent:
    @property
    def type(self) -> str:
        return "notice"

    message: str
    severity: str = "NOTICE"
    sqlstate: str = "00000"
    fields: Mapping[str, str] = field(default_factory=dict)
    statement_seq: int | None = None

    def to_payload(self) -> dict[str, Any]:
        return {
            "statement_seq": self.statement_seq,
            "severity": self.severity,
            "sqlstate": self.sqlstate,
            "message": self.message,
            "fields": _json_mapping(self.fields),
        }


@dataclass(frozen=True, slots=True)
class SessionEnd:
    @property
    def type(self) -> str:
        return "session_end"

    reason: str

    def to_payload(self) -> dict[str, Any]:
        return {"reason": self.reason}


# --------------------------------------------------------------------------------------------
# results


_EMPTY_DIGEST: Final = "sha256:" + hashlib.sha256().hexdigest()


class ResultBuilder:
    """Collects one result (one statement's rows) as it streams to the client.

    Feed it the columns (RowDescription), each row as sent to the client (already masked)
    and masking counts; ``finish(command_tag)`` gives the ``ResultEvent``. Only the first
    ``cap`` rows are kept; every row goes into the digest, which is SHA-256 over the DataRow
    bodies as on the wire (Int16 column count, then per value Int32 length, -1 for NULL,
    followed by the bytes), concatenated, so anyone holding the rows the client received can
    check them against the recording.
    """

    def __init__(self, cap: int = DEFAULT_RESULT_ROW_CAP, statement_seq: int | None = None):
        self.cap = cap
        self.statement_seq = statement_seq
        self._start()

    def _start(self) -> None:
        """Empty: no columns, rows, counts or digest yet (at creation and after ``finish``)."""
        self.columns: list[Column] = []
        self.columns_json: bytes | None = None
        self.rows: list[list[Any]] = []
        self.row_count = 0
        self.masked: dict[str, int] = {}
        self._digest: Any = None  # made at the first row: most results have one or none
        self._text_only = True  # no binary-format column: a value is recorded as its text

    def set_columns(self, columns: Sequence[Column], encoded: bytes | None = None) -> None:
        """``encoded``: canonical_json of the columns' dicts, when the caller holds it."""
        self.columns = list(columns)
        self.columns_json = encoded
        self._text_only = all(c.format != 1 for c in self.columns)

    def add_row(self, values: Sequence[bytes | None]) -> None:
        body = bytearray(struct.pack("!h", len(values)))
        for value in values:
            if value is None:
                body += struct.pack("!i", -1)
            else:
                body += struct.pack("!i", len(value)) + value
        self.add_row_body(bytes(body), values)

    def add_row_body(self, body: bytes, values: Sequence[bytes | None]) -> None:
        """Like ``add_row`` when the caller already holds the DataRow body bytes."""
        if self._digest is None:
            self._digest = hashlib.sha256(body)
        else:
            self._digest.update(body)
        self.row_count += 1
        if len(self.rows) < self.cap:
            if self._text_only:
                # encode_value's text case for the whole row; a value that is not UTF-8 needs
                # its tagged form: the loop below
                try:
                    self.rows.append([None if v is None else v.decode("utf-8") for v in values])
                    return
                except UnicodeDecodeError:
                    pass
            row: list[Any] = []
            for i, value in enumerate(values):
                col = self.columns[i] if i < len(self.columns) else None
                row.append(
                    encode_value(
                        value,
                        binary=bool(col and col.format == 1),
                        type_oid=col.type_oid if col else None,
                    )
                )
            self.rows.append(row)

    def count_masked(self, detector: str, n: int = 1) -> None:
        self.masked[detector] = self.masked.get(detector, 0) + n

    @property
    def digest(self) -> str:
        return _EMPTY_DIGEST if self._digest is None else "sha256:" + self._digest.hexdigest()

    def finish(self, command_tag: str | None, *, row_count: int | None = None) -> ResultEvent:
        """The result event. ``row_count`` overrides the counted rows (e.g. from the tag).
        The builder is then empty again (no columns, same statement), ready for the
        statement's next result: the event takes over its lists instead of copying them."""
        event = ResultEvent(
            columns=self.columns,
            rows=self.rows,
            row_count=self.row_count if row_count is None else row_count,
            command_tag=command_tag,
            digest=self.digest,
            truncated=self.row_count > len(self.rows),
            masked=self.masked,
            statement_seq=self.statement_seq,
            columns_json=self.columns_json,
        )
        self._start()
        return event


# --------------------------------------------------------------------------------------------
# events as read back


@dataclass(frozen=True, slots=True)
class Event:
    """One event as read from a recording (decrypted and migrated to the current version)."""

    v: int
    session: str
    seq: int
    ts: str
    type: str
    prev: str
    hash: str
    data: Mapping[str, Any] = field(default_factory=dict)
    raw: bytes = field(default=b"", repr=False, compare=False)  # the stored line, no newline
    encrypted: bool = False

    @property
    def time(self) -> float:
        return parse_ts(self.ts)

    def to_dict(self) -> dict[str, Any]:
        """Envelope and payload as one flat object (what ``export_jsonl`` prints)."""
        out = dict(self.data)
        out.update(
            v=self.v,
            session=self.session,
            seq=self.seq,
            ts=self.ts,
            type=self.type,
            prev=self.prev,
            hash=self.hash,
        )
        return out
