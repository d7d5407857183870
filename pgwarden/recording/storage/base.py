"""The storage interface every recording backend implements.

A backend stores one append-only byte stream per session. The writer only ever appends whole
lines; backends never look inside them.

Contract (``RecordingStorage``):

- ``append(session_id, data)``: when it returns, ``data`` has been handed to the operating
  system (a ``write(2)`` on a local file that succeeded in full), after everything appended
  before for that session. Raises ``StorageError`` (or ``OSError``) otherwise. It must be quick
  (local I/O only), because the writer calls it on the event loop; network I/O happens in the
  backend's own threads.
- ``sync(session_id)``: when it returns, everything appended so far for the session survives a
  crash of the machine (fsync/fdatasync, plus the directory entry of a new file). Blocking:
  call it from a thread (``GroupCommitter`` does).
- ``sync_many(session_ids)``: ``sync`` for several sessions at once, as cheaply as the
  backend can (group commit calls it once per round); returns session -> error or None.
- ``flush(session_id)``: a hint that a signed checkpoint was just appended: a good moment to
  publish (S3 uploads a segment). No durability promise of its own.
- ``read(session_id)``: everything appended so far (raises ``RecordingNotFound``).
- ``exists``, ``list`` (session ids), ``delete`` (idempotent), ``close`` (release the session's
  handles; a later append reopens), ``shutdown`` (close all, finish background work).

All methods are thread-safe.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from typing import Protocol

__all__ = ["RecordingNotFound", "RecordingStorage", "StorageError", "check_session_id"]

_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")


class StorageError(Exception):
    """A recording could not be stored, read or deleted."""


class RecordingNotFound(StorageError):
    """There is no recording for that session."""


def check_session_id(session_id: str) -> str:
    """The id itself if it is safe as a file or object name, else ValueError."""
    if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
        raise ValueError(f"invalid session id {session_id!r}")
    return session_id


class RecordingStorage(Protocol):
    def append(self, session_id: str, data: bytes) -> None: ...

    def sync(self, session_id: str) -> None: ...

    def sync_many(self, session_ids: Sequence[str]) -> dict[str, StorageError | None]: ...

    def flush(self, session_id: str) -> None: ...

    def read(self, session_id: str) -> bytes: ...

    def exists(self, session_id: str) -> bool: ...

    def list(self) -> builtins.list[str]: ...

    def delete(self, session_id: str) -> None: ...

    def close(self, session_id: str) -> None: ...

    def shutdown(self) -> None: ...

    def describe(self) -> str: ...
