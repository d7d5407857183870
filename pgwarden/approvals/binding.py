"""What an approval is bound to: one statement, with its parameters, in one session, on one
target, for one requester.

``statement_hash`` is the SHA-256 (64 lowercase hex digits) of the canonical JSON
(``pgwarden.recording.canonical.canonical_json``: sorted keys, compact, UTF-8, no NaN) of::

    {"kind": "pgwarden.approval/1", "params": [...], "requester": "...",
     "session_id": "...", "sql": "...", "target": "..."}

The ``kind`` member separates this hash from every other hash pgwarden computes (the recording's
``statement_hash`` of a statement event, for one, covers only ``sql`` and ``params``).

Parameters are hashed as recorded (``pgwarden.recording.events.encode_params``: ``None``, text
strings, or base64-tagged objects); ``bytes`` are accepted and become
``{"encoding": "base64", "data": ...}``, tuples become lists. Anything that is not a JSON
value (a ``Decimal``, a ``datetime``, NaN) is refused with ``TypeError``/``ValueError`` rather
than hashed ambiguously.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pgwarden.recording.canonical import canonical_json

__all__ = ["HASH_KIND", "jsonable_params", "statement_hash"]

HASH_KIND = "pgwarden.approval/1"


def _jsonable(value: Any, where: str) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not a JSON number")
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return {"encoding": "base64", "data": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: object keys must be strings, not {key!r}")
            out[key] = _jsonable(item, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(f"{where}: {type(value).__name__} is not a JSON value")


def jsonable_params(params: Sequence[Any]) -> list[Any]:
    """``params`` as JSON values (what is stored and hashed); see the module docstring."""
    if isinstance(params, str | bytes):
        raise TypeError("params must be a sequence of values, not a single string")
    return [_jsonable(p, f"params[{i}]") for i, p in enumerate(params)]


def statement_hash(
    sql: str, params: Sequence[Any], *, session_id: str, target: str, requester: str
) -> str:
    """The hex SHA-256 binding an approval to exactly this statement (see module docstring)."""
    doc = {
        "kind": HASH_KIND,
        "params": jsonable_params(params),
        "requester": requester,
        "session_id": session_id,
        "sql": sql,
        "target": target,
    }
    return hashlib.sha256(canonical_json(doc)).hexdigest()
