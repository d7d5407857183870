"""Reading recorded sessions for people: what the CLI (``pgwarden sessions|replay|verify``) and
the HTTP API (``pgwarden.api.sessions``) share, with no CLI or HTTP concerns in it.

- ``RecordingAccess``: the session index, the recording storage, the trusted public signing
  keys and the optional decryption key, with ``load(session_id)`` -> ``LoadedSession`` (index
  entry, stored bytes, verification verdict) computed from one read of each.
- ``read_lines``: a recording decoded line by line, tolerantly (an unreadable line does not
  stop the rest: an auditor wants to see what survives of a tampered recording).
- ``session_json`` / ``event_json``: the JSON shapes both the CLI and the API print.
- ``parse_time``: the points in time ``--since``/``--until`` and ``since``/``until`` accept.

Everything here blocks (store, file or S3 reads): from asyncio, call it via
``asyncio.to_thread``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pgwarden.config import parse_duration
from pgwarden.recording.codec import iter_lines, parse_line, read_events
from pgwarden.recording.crypto import RecordingCipher
from pgwarden.recording.errors import DecryptionError, FormatError
from pgwarden.recording.events import ENVELOPE_KEYS, Event, format_ts
from pgwarden.recording.storage import RecordingNotFound, RecordingStorage, check_session_id
from pgwarden.recording.verify import IndexInfo, VerifyResult, verify_recording
from pgwarden.store.base import SessionRecord, Store

__all__ = [
    "LoadedSession",
    "ReadLine",
    "RecordingAccess",
    "event_json",
    "index_info",
    "is_encrypted",
    "iso",
    "parse_time",
    "read_lines",
    "session_json",
    "valid_session_id",
]


def valid_session_id(session_id: str) -> bool:
    """True when ``session_id`` is safe as a storage name (anything else is never a session)."""
    try:
        check_session_id(session_id)
    except ValueError:
        return False
    return True


def index_info(row: SessionRecord | None) -> IndexInfo | None:
    """What the session index tells verification (as ``verify.verify_session`` builds it)."""
    if row is None:
        return None
    return IndexInfo(
        ended_cleanly=row.state == "ended", last_seq=row.last_seq or None, last_hash=row.last_hash
    )


@dataclass(frozen=True, slots=True)
class LoadedSession:
    """A session as found: its index entry and its stored bytes (either may be absent, not
    both) and the verification verdict over exactly those bytes."""

    id: str
    row: SessionRecord | None
    data: bytes | None
    verification: VerifyResult


@dataclass(slots=True)
class RecordingAccess:
    """Read access to recorded sessions: the index, the storage, the keys that verify
    checkpoint signatures, and the key that decrypts payloads (None: payloads stay sealed)."""

    store: Store
    storage: RecordingStorage
    keys: Sequence[Ed25519PublicKey] = field(default_factory=list)
    cipher: RecordingCipher | None = None

    def session(self, session_id: str) -> SessionRecord | None:
        if not valid_session_id(session_id):
            return None
        return self.store.get_session(session_id)

    def read(self, session_id: str) -> bytes | None:
        """The stored bytes of a recording, None when there is none (StorageError when the
        storage cannot answer)."""
        if not valid_session_id(session_id):
            return None
        try:
            return self.storage.read(session_id)
        except RecordingNotFound:
            return None

    def load(self, session_id: str) -> LoadedSession | None:
        """The session's index entry, recording and verdict; None when neither exists.

        The verdict is computed over the very bytes returned (one read), so what a caller
        shows and what it says about its integrity cannot disagree."""
        row = self.session(session_id)
        data = self.read(session_id)
        if row is None and data is None:
            return None
        if data is not None and row is not None and row.state == "active":
            # A live session's writer may be mid-append: a last line without its newline is
            # in flight, not damage. It is left out until complete (a crashed or ended
            # session gets no such allowance: there it is a truncation).
            data = data[: data.rfind(b"\n") + 1]
        result = verify_recording(data, self.keys, session_id=session_id, index=index_info(row))
        return LoadedSession(session_id, row, data, result)


# --------------------------------------------------------------------------------------------
# reading events tolerantly


@dataclass(frozen=True, slots=True)
class ReadLine:
    """One stored line: its event when readable, else why not."""

    number: int  # 1-based line number
    raw: bytes  # the stored line, without its newline
    event: Event | None
    problem: str | None = None


def is_encrypted(data: bytes) -> bool:
    """True when any stored line carries an encrypted payload."""
    for line, _complete in iter_lines(data):
        try:
            if "enc" in parse_line(line).obj:
                return True
        except FormatError:
            continue
    return False


def read_lines(data: bytes, cipher: RecordingCipher | None) -> list[ReadLine]:
    """Every line of a recording, decoded one by one (a bad line does not stop the rest)."""
    out: list[ReadLine] = []
    for number, (line, complete) in enumerate(iter_lines(data), start=1):
        if not complete:
            out.append(ReadLine(number, line, None, "incomplete last line"))
            continue
        try:
            events = read_events(line + b"\n", cipher=cipher)
        except (FormatError, DecryptionError) as exc:
            out.append(ReadLine(number, line, None, str(exc)))
            continue
        out.append(ReadLine(number, line, events[0] if events else None))
    return out


def event_json(line: ReadLine) -> dict[str, Any]:
    """A recorded event as one flat JSON object (envelope and payload, as ``sessions export``
    prints it, decrypted when the line could be).

    An unreadable line (encrypted without the key, damaged) still shows its place: ``line``,
    ``unreadable`` (why), and whatever envelope fields it visibly carries, so a reader sees
    the gap instead of a silently shorter list."""
    if line.event is not None:
        return line.event.to_dict()
    out: dict[str, Any] = {"line": line.number, "unreadable": line.problem or "unreadable"}
    try:
        stored = parse_line(line.raw)
    except FormatError:
        return out
    envelope = {k: v for k, v in stored.obj.items() if k in ENVELOPE_KEYS and k != "enc"}
    envelope["hash"] = stored.hash
    return {**envelope, **out}


# --------------------------------------------------------------------------------------------
# shapes and times


def iso(t: float | None) -> str | None:
    """ISO-8601 UTC (``2026-01-02T03:04:05.123456Z``, as in recordings), None stays None."""
    return None if t is None else format_ts(t)


def session_json(s: SessionRecord) -> dict[str, Any]:
    """A session as ``sessions list --json`` prints it (times ISO-8601 UTC)."""
    out = s.to_dict()
    out["started_at"] = iso(s.started_at)
    out["ended_at"] = iso(s.ended_at)
    return out


_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?\Z")


def parse_time(value: str, *, now: float | None = None) -> float:
    """A point in time: ISO-8601 (a date, or a date and time; no offset means UTC), unix
    seconds (``@1767225600``, or 9+ digits), ``now``, or a duration ago (``15m``, ``2h``,
    ``7d``). ValueError (with a message fit for a person) otherwise."""
    text = value.strip()
    current = time.time() if now is None else now
    if text.lower() == "now":
        return current
    if text.startswith("@") and _NUMBER.match(text[1:]):  # @unix-seconds, as in date(1)
        return float(text[1:])
    if _NUMBER.match(text) and len(text.split(".")[0]) >= 9:  # unix seconds
        return float(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        pass
    else:
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    try:
        ago = parse_duration(text)
    except ValueError:
        raise ValueError(
            f"cannot read {value!r} as a time: give ISO-8601 (2026-01-02T15:04:05Z), "
            "unix seconds, or a duration ago (15m, 2h, 7d)"
        ) from None
    return current - ago
