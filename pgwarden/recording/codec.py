"""Stored lines <-> events: encoding (with optional encryption) and reading back.

``encode_event`` builds one stored line (see ``canonical.py`` for the exact bytes and
``crypto.py`` for the encrypted form). ``parse_line`` splits a stored line into the bytes the
hash covers, the stored hash and the parsed object, without judging the chain.
``read_events`` turns a whole recording into ``Event`` values (decrypted, migrated): it is for
export and replay and does no integrity checking; ``verify.verify_recording`` does that.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pgwarden.recording.canonical import canonical_json, seal, seal_object, unseal
from pgwarden.recording.compat import migrate
from pgwarden.recording.crypto import RecordingCipher
from pgwarden.recording.errors import DecryptionError, FormatError
from pgwarden.recording.events import ENVELOPE_KEYS, FORMAT_VERSION, Event

__all__ = ["StoredLine", "encode_event", "iter_lines", "parse_line", "read_events"]

_AAD_KEYS = ("prev", "seq", "session", "ts", "type", "v")


def _aad(envelope: Mapping[str, Any]) -> bytes:
    return canonical_json({k: envelope[k] for k in _AAD_KEYS})


def encode_event(
    *,
    session: str,
    seq: int,
    ts: str,
    type_: str,
    prev: str,
    payload: Mapping[str, Any],
    cipher: RecordingCipher | None = None,
) -> tuple[bytes, str]:
    """One stored line (ending with a newline) and its hash."""
    if not ENVELOPE_KEYS.isdisjoint(payload):
        clash = ENVELOPE_KEYS.intersection(payload)
        raise ValueError(f"payload uses reserved names: {sorted(clash)}")
    envelope: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "session": session,
        "seq": seq,
        "ts": ts,
        "type": type_,
        "prev": prev,
    }
    if cipher is not None and type_ != "checkpoint":
        envelope["enc"] = cipher.encrypt(canonical_json(dict(payload)), _aad(envelope))
        return seal(canonical_json(envelope), prev)
    # The plain case (two per statement): the body is a JSON object by construction.
    return seal_object(canonical_json({**payload, **envelope}), prev)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise FormatError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise FormatError(f"non-standard JSON constant {name}")


@dataclass(frozen=True, slots=True)
class StoredLine:
    body: bytes  # the bytes the hash covers
    hash: str  # the hash as stored
    obj: dict[str, Any]  # the parsed body (stored version, not migrated)


def parse_line(line: bytes) -> StoredLine:
    """Parse one stored line. Raises FormatError for anything but a JSON object line with
    the hash suffix and the envelope fields."""
    body, digest = unseal(line)
    try:
        obj = json.loads(
            body.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"not a JSON object: {exc}") from exc
    if not isinstance(obj, dict):
        raise FormatError("not a JSON object")
    if "hash" in obj:
        raise FormatError("duplicate key 'hash'")
    for key, kind in (("session", str), ("ts", str), ("type", str), ("prev", str)):
        if not isinstance(obj.get(key), kind):
            raise FormatError(f"missing or malformed {key!r}")
    for key in ("v", "seq"):
        value = obj.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise FormatError(f"missing or malformed {key!r}")
    return StoredLine(body, digest, obj)


def iter_lines(data: bytes) -> Iterator[tuple[bytes, bool]]:
    """``(line, complete)`` for each line of a recording; only the last can be incomplete
    (no trailing newline)."""
    start = 0
    n = len(data)
    while start < n:
        end = data.find(b"\n", start)
        if end < 0:
            yield data[start:], False
            return
        yield data[start:end], True
        start = end + 1


def _to_event(stored: StoredLine, raw: bytes, cipher: RecordingCipher | None) -> Event:
    obj = stored.obj
    encrypted = "enc" in obj
    if encrypted:
        if cipher is None:
            raise DecryptionError(
                f"event {obj['seq']} is encrypted: set PGWARDEN_RECORDING_KEY to read it"
            )
        enc = obj["enc"]
        if not isinstance(enc, dict):
            raise FormatError("malformed 'enc'")
        plaintext = cipher.decrypt(enc, _aad(obj))
        payload = json.loads(plaintext, object_pairs_hook=_no_duplicates)
        if not isinstance(payload, dict):
            raise FormatError("encrypted payload is not an object")
        obj = {**payload, **{k: v for k, v in obj.items() if k != "enc"}}
    obj = migrate(dict(obj))
    data = {k: v for k, v in obj.items() if k not in ENVELOPE_KEYS}
    return Event(
        v=obj["v"],
        session=obj["session"],
        seq=obj["seq"],
        ts=obj["ts"],
        type=obj["type"],
        prev=obj["prev"],
        hash=stored.hash,
        data=data,
        raw=raw,
        encrypted=encrypted,
    )


def read_events(
    data: bytes, *, cipher: RecordingCipher | None = None, strict: bool = True
) -> list[Event]:
    """Every event of a recording. ``strict=False`` skips lines that do not parse (and an
    incomplete last line) instead of raising FormatError/DecryptionError."""
    events: list[Event] = []
    for line, complete in iter_lines(data):
        try:
            if not complete:
                raise FormatError("incomplete last line")
            events.append(_to_event(parse_line(line), line, cipher))
        except (FormatError, DecryptionError):
            if strict:
                raise
    return events
