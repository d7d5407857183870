"""Reading older recording formats (mitmproxy's ``io/compat.py`` habit).

Recordings are never rewritten. A reader parses a stored line, and ``migrate(obj)`` brings the
parsed object, one version step at a time, up to ``FORMAT_VERSION`` before anything else looks
at it. Integrity is not affected: verification hashes the stored bytes of each line under the
rules of that line's own version, never the migrated object.

To add version 2: bump ``FORMAT_VERSION`` in ``events.py``, add ``_v1_to_v2`` below and
register it in ``_MIGRATIONS[1]``; keep a recording of each old version under tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pgwarden.recording.errors import FormatError
from pgwarden.recording.events import FORMAT_VERSION

__all__ = ["SUPPORTED_VERSIONS", "migrate"]

# from-version -> function returning the object at from-version + 1
_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}

SUPPORTED_VERSIONS = frozenset({1, *_MIGRATIONS})


def migrate(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` (a parsed event, envelope and payload) in the current format version."""
    version = obj.get("v")
    if not isinstance(version, int) or isinstance(version, bool):
        raise FormatError(f"event has no format version: v={version!r}")
    if version > FORMAT_VERSION:
        raise FormatError(
            f"recording format v{version} is newer than this pgwarden reads (v{FORMAT_VERSION})"
        )
    while version < FORMAT_VERSION:
        step = _MIGRATIONS.get(version)
        if step is None:
            raise FormatError(f"no migration from recording format v{version}")
        obj = step(obj)
        version = obj["v"]
    return obj
