"""``MemoryStorage``: recordings in a dict, for unit tests (with fault injection)."""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Sequence

from pgwarden.recording.storage.base import RecordingNotFound, StorageError, check_session_id

__all__ = ["MemoryStorage"]


class MemoryStorage:
    """In-memory backend. ``fail_appends``/``fail_syncs`` make the next calls raise
    StorageError; ``sync_delay`` makes every ``sync`` take that long (to test group commit);
    ``sync_calls`` counts them."""

    def __init__(self) -> None:
        self._data: dict[str, bytearray] = {}
        self._lock = threading.Lock()
        self.fail_appends = False
        self.fail_syncs = False
        self.sync_delay = 0.0
        self.sync_calls = 0
        self.synced: dict[str, int] = {}  # session -> bytes durable as of the last sync
        self.flushes: dict[str, int] = {}
        self.closed: set[str] = set()

    def append(self, session_id: str, data: bytes) -> None:
        check_session_id(session_id)
        if self.fail_appends:
            raise StorageError("injected append failure")
        with self._lock:
            self._data.setdefault(session_id, bytearray()).extend(data)
            self.closed.discard(session_id)

    def sync(self, session_id: str) -> None:
        error = self.sync_many([session_id])[session_id]
        if error is not None:
            raise error

    def sync_many(self, session_ids: Sequence[str]) -> dict[str, StorageError | None]:
        """One (simulated) flush for the whole batch: one ``sync_delay``, one call counted."""
        with self._lock:
            sizes = {sid: len(self._data.get(sid, b"")) for sid in session_ids}
        if self.sync_delay:
            time.sleep(self.sync_delay)
        with self._lock:
            self.sync_calls += 1
            if self.fail_syncs:
                return dict.fromkeys(sizes, StorageError("injected sync failure"))
            for sid, size in sizes.items():
                self.synced[sid] = max(self.synced.get(sid, 0), size)
        return dict.fromkeys(sizes)

    def flush(self, session_id: str) -> None:
        with self._lock:
            self.flushes[session_id] = self.flushes.get(session_id, 0) + 1

    def read(self, session_id: str) -> bytes:
        with self._lock:
            if session_id not in self._data:
                raise RecordingNotFound(session_id)
            return bytes(self._data[session_id])

    def write_raw(self, session_id: str, data: bytes) -> None:
        """Replace a recording's bytes (tests simulate tampering with it)."""
        with self._lock:
            self._data[session_id] = bytearray(data)

    def exists(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._data

    def list(self) -> builtins.list[str]:
        with self._lock:
            return sorted(self._data)

    def delete(self, session_id: str) -> None:
        with self._lock:
            self._data.pop(session_id, None)

    def close(self, session_id: str) -> None:
        with self._lock:
            self.closed.add(session_id)

    def shutdown(self) -> None:
        pass

    def describe(self) -> str:
        return "memory:"
