"""Verifying a recording: intact, unterminated, tampered or missing, and the first bad event.

``verify_recording(data, keys, session_id=..., index=...)`` needs only the stored bytes, the
trusted public signing keys and what the session index knows (``IndexInfo``). It never needs
the encryption key and never re-serialises: each line's hash is recomputed over its stored
bytes (``canonical.unseal``).

Checks, line by line (seq ``n`` is line ``n``, from 1):

- the line is complete (ends with a newline), has the hash suffix, parses as a JSON object
  with the envelope fields, has a format version we read, and ``session`` is the session;
- ``seq == n`` (catches deleted, inserted and reordered lines), ``prev`` equals the previous
  line's hash (``ZERO_HASH`` for the first), and ``sha256(prev || body)`` equals the stored
  hash (catches any changed byte);
- a ``checkpoint`` covers exactly the previous event (``signed_seq``, ``signed_hash``) and its
  Ed25519 signature verifies under a trusted key (by ``key_id``);
- nothing but the final checkpoint follows ``session_end``.

Then the verdict:

- ``intact``: all good, and the recording ends with ``session_end`` followed by a valid
  checkpoint covering it.
- ``unterminated``: all good up to the last complete line but no signed ``session_end``, and
  the index does not say the session ended cleanly (a crash cut it). Events after the last
  checkpoint are chained but unsigned; ``detail`` says how many.
- ``tampered``: any failed check above, an incomplete last line, a recording that stops short
  of a session the index says ended cleanly, or that stops before (or disagrees with) the
  ``last_seq``/``last_hash`` the index recorded.
- ``missing``: no recording (``data is None``) for a session the index knows.

``first_bad_seq`` names the first bad event (for truncation: the first missing seq).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pgwarden.recording.canonical import ZERO_HASH, chain_hash
from pgwarden.recording.codec import iter_lines, parse_line
from pgwarden.recording.compat import SUPPORTED_VERSIONS
from pgwarden.recording.errors import FormatError
from pgwarden.recording.signing import trusted_key_map, verify_checkpoint_signature
from pgwarden.recording.storage.base import RecordingNotFound, RecordingStorage

if TYPE_CHECKING:
    from pgwarden.store.base import Store

__all__ = ["IndexInfo", "VerifyResult", "VerifyStatus", "verify_recording", "verify_session"]

VerifyStatus = Literal["intact", "unterminated", "tampered", "missing"]


@dataclass(frozen=True, slots=True)
class IndexInfo:
    """What the session index says about a session."""

    ended_cleanly: bool
    last_seq: int | None = None  # as of the last checkpoint the index was told of
    last_hash: str | None = None


@dataclass(frozen=True, slots=True)
class VerifyResult:
    status: VerifyStatus
    first_bad_seq: int | None
    detail: str
    events: int  # complete, well-formed events read before the verdict
    session_id: str | None = None
    last_signed_seq: int | None = None

    @property
    def ok(self) -> bool:
        """True for intact and unterminated (``pgwarden verify`` exits 0)."""
        return self.status in ("intact", "unterminated")

    def to_dict(self) -> dict[str, object]:
        return {
            "session": self.session_id,
            "status": self.status,
            "first_bad_seq": self.first_bad_seq,
            "detail": self.detail,
            "events": self.events,
            "last_signed_seq": self.last_signed_seq,
        }


def verify_recording(
    data: bytes | None,
    keys: Ed25519PublicKey | Iterable[Ed25519PublicKey],
    *,
    session_id: str | None = None,
    index: IndexInfo | None = None,
) -> VerifyResult:
    """Verify one session's recording bytes (``None``: the recording is gone)."""
    trusted = trusted_key_map(keys)
    if data is None:
        return VerifyResult("missing", None, "the recording is missing", 0, session_id)

    def tampered(seq: int | None, detail: str, events: int, signed: int | None) -> VerifyResult:
        return VerifyResult("tampered", seq, detail, events, session_id, signed)

    prev = ZERO_HASH
    count = 0
    last_type: str | None = None
    last_signed: int | None = None
    ended_at: int | None = None  # seq of session_end
    hashes: builtins.list[str] = []

    for line, complete in iter_lines(data):
        seq = count + 1
        if not complete:
            return tampered(
                seq, f"event {seq}: incomplete last line ({len(line)} bytes)", count, last_signed
            )
        try:
            stored = parse_line(line)
        except FormatError as exc:
            return tampered(seq, f"event {seq}: malformed line: {exc}", count, last_signed)
        obj = stored.obj
        if obj["v"] not in SUPPORTED_VERSIONS:
            return tampered(
                seq, f"event {seq}: unknown format version {obj['v']}", count, last_signed
            )
        if session_id is None:
            session_id = obj["session"]
        if obj["session"] != session_id:
            return tampered(
                seq, f"event {seq}: belongs to session {obj['session']!r}", count, last_signed
            )
        if obj["seq"] != seq:
            return tampered(
                seq,
                f"event {seq}: sequence broken (found seq {obj['seq']} at line {seq})",
                count,
                last_signed,
            )
        if obj["prev"] != prev:
            return tampered(
                seq,
                f"event {seq}: prev does not match the hash of event {seq - 1}",
                count,
                last_signed,
            )
        try:
            computed = chain_hash(prev, stored.body)
        except FormatError as exc:
            return tampered(seq, f"event {seq}: {exc}", count, last_signed)
        if computed != stored.hash:
            return tampered(
                seq, f"event {seq}: hash mismatch (content altered)", count, last_signed
            )
        if ended_at is not None and not (obj["type"] == "checkpoint" and seq == ended_at + 1):
            return tampered(
                seq, f"event {seq}: {obj['type']} after session_end", count, last_signed
            )
        if obj["type"] == "checkpoint":
            if "enc" in obj:
                return tampered(seq, f"event {seq}: encrypted checkpoint", count, last_signed)
            if seq == 1:
                return tampered(seq, "event 1: a checkpoint covering nothing", count, last_signed)
            if obj.get("signed_seq") != seq - 1 or obj.get("signed_hash") != prev:
                return tampered(
                    seq,
                    f"event {seq}: checkpoint does not cover event {seq - 1}",
                    count,
                    last_signed,
                )
            problem = verify_checkpoint_signature(trusted, obj, obj["session"])
            if problem is not None:
                return tampered(seq, f"event {seq}: {problem}", count, last_signed)
            last_signed = seq - 1
        elif obj["type"] == "session_end":
            ended_at = seq
        prev = stored.hash
        hashes.append(stored.hash)
        last_type = obj["type"]
        count = seq

    if count == 0:
        if index is not None and index.ended_cleanly:
            return tampered(1, "the recording is empty but the session ended cleanly", 0, None)
        return VerifyResult("unterminated", None, "the recording is empty", 0, session_id, None)

    if index is not None and index.last_seq is not None and index.last_seq > 0:
        if index.last_seq > count:
            return tampered(
                count + 1,
                f"truncated: the index saw event {index.last_seq}, the recording stops at {count}",
                count,
                last_signed,
            )
        if index.last_hash is not None and hashes[index.last_seq - 1] != index.last_hash:
            return tampered(
                index.last_seq,
                f"event {index.last_seq}: hash differs from the one the index recorded",
                count,
                last_signed,
            )

    if ended_at is not None and last_type == "checkpoint" and last_signed == ended_at:
        return VerifyResult(
            "intact", None, f"{count} events, ended and signed", count, session_id, last_signed
        )
    if index is not None and index.ended_cleanly:
        return tampered(
            count + 1,
            f"truncated: the session ended cleanly but the recording stops at event {count} "
            "without a signed session_end",
            count,
            last_signed,
        )
    unsigned = count - (last_signed or 0)
    detail = f"cut off after event {count}"
    if last_signed:
        detail += f"; signed up to event {last_signed}"
    if unsigned:
        detail += f"; {unsigned} trailing event(s) chained but not signed"
    return VerifyResult("unterminated", None, detail, count, session_id, last_signed)


def verify_session(
    session_id: str,
    storage: RecordingStorage,
    keys: Ed25519PublicKey | Iterable[Ed25519PublicKey],
    store: Store | None = None,
) -> VerifyResult:
    """Verify a session using its recording in ``storage`` and its entry in ``store``."""
    index: IndexInfo | None = None
    if store is not None:
        row = store.get_session(session_id)
        if row is not None:
            index = IndexInfo(
                ended_cleanly=row.state == "ended",
                last_seq=row.last_seq or None,
                last_hash=row.last_hash,
            )
    try:
        data: bytes | None = storage.read(session_id)
    except RecordingNotFound:
        data = None
    if data is None and index is None:
        return VerifyResult("missing", None, "no such session", 0, session_id)
    return verify_recording(data, keys, session_id=session_id, index=index)
