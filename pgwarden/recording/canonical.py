"""Canonical encoding and the hash chain: the exact bytes a recording is made of.

Canonical JSON
==============
``canonical_json(obj)`` is what orjson writes with sorted keys: UTF-8, keys sorted by code
point, no whitespace, non-ASCII characters as themselves, control characters (newline included)
escaped, floats as the shortest text that reads back the same (``1e-7``, not ``1e-07``), NaN
and infinities as ``null`` (always standard JSON). A line of a recording therefore never
contains a raw newline. Strings, integers, booleans and nulls come out byte for byte as
``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` writes them
(the encoder of recordings made before orjson): nothing that is re-serialised to be checked
(encryption's associated data, checkpoint signatures, approval bindings) holds a float. A value
orjson cannot write (an integer beyond 64 bits, a non-string key) falls back to that encoder.

orjson because encoding is most of what recording a statement costs: it is ~10x faster than
the standard library's encoder on an event.

The stored line and its hash
============================
For an event ``E`` (a JSON object holding ``v``, ``session``, ``seq``, ``ts``, ``type``,
``prev`` and the payload fields, but not ``hash``)::

    B    = canonical_json(E)                          # begins with "{" and ends with "}"
    H    = sha256(bytes.fromhex(E["prev"]) || B)      # 32 bytes; written as 64 lowercase hex
    line = B[:-1] || b',"hash":"' || hex(H) || b'"}' || b"\\n"

So the stored line is B with the hash appended as the *last* member (the one place where the
stored key order is not sorted), and ``prev`` of the first event is 64 zeros (``ZERO_HASH``).

Verification never re-serialises a parsed object: ``unseal(line)`` cuts the fixed-shape suffix
``,"hash":"<64 hex>"}`` off the stored bytes, puts the ``}`` back, and hashes exactly those
bytes (``B``). Any change to any stored byte of an event changes its hash or breaks the suffix;
the next event's ``prev`` pins the previous hash, so deleting, reordering or inserting lines
breaks the chain too. Signed checkpoints (``signing.py``) pin the chain to a key.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Final

import orjson

from pgwarden.recording.errors import FormatError

__all__ = [
    "HASH_KEY",
    "ZERO_HASH",
    "canonical_json",
    "chain_hash",
    "is_hex_hash",
    "seal",
    "seal_object",
    "unseal",
]

ZERO_HASH = "0" * 64
HASH_KEY = "hash"

_SUFFIX: Final = re.compile(rb',"hash":"([0-9a-f]{64})"\}\Z')
_HEX64: Final = re.compile(r"[0-9a-f]{64}\Z")
_SORTED: Final = orjson.OPT_SORT_KEYS


def canonical_json(obj: Any) -> bytes:
    """The canonical UTF-8 JSON bytes of ``obj`` (sorted keys, compact)."""
    try:
        return orjson.dumps(obj, option=_SORTED)
    except TypeError:
        # Integers beyond 64 bits, non-string keys; a lone surrogate fails here too (it cannot
        # be UTF-8), as before.
        return json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")


def is_hex_hash(value: object) -> bool:
    """True for a string of exactly 64 lowercase hex digits."""
    return isinstance(value, str) and _HEX64.match(value) is not None


# Digests this process computed, hex -> bytes: the next event's ``prev`` is almost always the
# digest just computed, which needs neither the format check nor the hex decoding again.
_COMPUTED: Final[dict[str, bytes]] = {}
_COMPUTED_KEPT: Final = 1024


def chain_hash(prev: str, body: bytes) -> str:
    """``hex(sha256(bytes.fromhex(prev) || body))``."""
    raw = _COMPUTED.get(prev)
    if raw is None:
        if not is_hex_hash(prev):
            raise FormatError(f"prev is not a SHA-256 hex digest: {prev!r}")
        raw = bytes.fromhex(prev)
    h = hashlib.sha256(raw)
    h.update(body)  # not prev + body: that would copy the body
    digest = h.digest()
    hexdigest = digest.hex()
    if len(_COMPUTED) >= _COMPUTED_KEPT:
        _COMPUTED.clear()
    _COMPUTED[hexdigest] = digest
    return hexdigest


def seal(body: bytes, prev: str) -> tuple[bytes, str]:
    """Append the chain hash to a canonical event body: returns ``(line, hash)``; the line
    ends with a newline."""
    if len(body) < 3 or body[:1] != b"{" or body[-1:] != b"}":
        raise ValueError("an event body must be a non-empty JSON object")
    return seal_object(body, prev)


def seal_object(body: bytes, prev: str) -> tuple[bytes, str]:
    """``seal`` for a body the caller built as a JSON object itself (no shape check)."""
    digest = chain_hash(prev, body)
    return b"".join((body[:-1], b',"hash":"', digest.encode("ascii"), b'"}\n')), digest


def unseal(line: bytes) -> tuple[bytes, str]:
    """Split one stored line (with or without its newline) into ``(body, hash)`` where
    ``body`` is exactly the bytes the hash was computed over. Raises FormatError."""
    if line.endswith(b"\n"):
        line = line[:-1]
    match = _SUFFIX.search(line)
    if match is None or match.start() < 2:
        raise FormatError('the line does not end with ,"hash":"<64 hex digits>"}')
    return line[: match.start()] + b"}", match.group(1).decode("ascii")
