"""``LocalFileStorage``: one append-only file per session, ``<root>/<session_id>.jsonl``.

Durability guarantee
====================
- ``append`` opens the file (first time) with ``O_WRONLY | O_APPEND | O_CREAT`` (mode 0600) and
  returns after ``write(2)`` accepted every byte: the data is in the kernel's page cache and
  survives a crash (even SIGKILL) of the gateway process, but not a crash of the machine.
- ``sync`` makes it survive a crash of the machine: ``fdatasync`` on the file, and the first
  time, ``fsync`` on the directory so the new file's entry is durable too. ``sync_many`` (used
  by group commit) runs the ``fdatasync`` calls of a batch in parallel, so the filesystem
  journal commits them together, and fsyncs the directory once for the batch.
- One ``write(2)`` per appended chunk on an ``O_APPEND`` descriptor: chunks of concurrent
  writers never interleave, and a process crash never leaves half a line (a machine crash or a
  full disk can; ``verify`` reports it).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pgwarden.recording.storage.base import RecordingNotFound, StorageError, check_session_id

__all__ = ["SUFFIX", "LocalFileStorage"]

SUFFIX: Final = ".jsonl"
SYNC_THREADS: Final = 8  # fdatasync calls in flight at once in a group-commit round


@dataclass(slots=True)
class _Handle:
    fd: int
    new_file: bool  # the directory entry still needs an fsync


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_datasync: Final = getattr(os, "fdatasync", os.fsync)


class LocalFileStorage:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._handles: dict[str, _Handle] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    def path(self, session_id: str) -> Path:
        return self.root / (check_session_id(session_id) + SUFFIX)

    def _handle(self, session_id: str) -> _Handle:
        handle = self._handles.get(session_id)
        if handle is None:
            path = self.path(session_id)
            existed = path.exists()
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(path, flags, 0o600)
            handle = _Handle(fd, new_file=not existed)
            self._handles[session_id] = handle
        return handle

    def append(self, session_id: str, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            try:
                handle = self._handles.get(session_id) or self._handle(session_id)
                written = os.write(handle.fd, data)
                if written < len(data):  # only on ENOSPC-like conditions or signals
                    view = memoryview(data)
                    while written < len(view):
                        n = os.write(handle.fd, view[written:])
                        if n <= 0:
                            raise OSError(errno.EIO, "short write")
                        written += n
            except OSError as exc:
                raise StorageError(f"cannot append to recording {session_id}: {exc}") from exc

    def sync(self, session_id: str) -> None:
        error = self.sync_many([session_id]).get(session_id)
        if error is not None:
            raise error

    def sync_many(self, session_ids: Sequence[str]) -> dict[str, StorageError | None]:
        """Sync several sessions at once: their ``fdatasync`` calls run in parallel (the
        filesystem's journal commits them together) and the directory is fsynced once for
        all files created since their last sync."""
        fds: dict[str, int] = {}
        errors: dict[str, StorageError | None] = {}
        new_files: list[str] = []
        with self._lock:
            for session_id in dict.fromkeys(session_ids):
                try:
                    handle = self._handles.get(session_id)
                    if handle is None:
                        path = self.path(session_id)
                        if not path.exists():
                            errors[session_id] = None
                            continue
                        fds[session_id] = os.open(path, os.O_RDONLY)
                    else:
                        fds[session_id] = os.dup(handle.fd)  # sync outside the lock
                        if handle.new_file:
                            new_files.append(session_id)
                except (OSError, ValueError) as exc:
                    errors[session_id] = StorageError(f"cannot sync recording {session_id}: {exc}")

        def one(item: tuple[str, int]) -> tuple[str, StorageError | None]:
            session_id, fd = item
            try:
                _datasync(fd)
                return session_id, None
            except OSError as exc:
                return session_id, StorageError(f"cannot sync recording {session_id}: {exc}")
            finally:
                os.close(fd)

        items = list(fds.items())
        if len(items) <= 1:
            results = [one(item) for item in items]
        else:
            results = list(self._pool().map(one, items))
        errors.update(results)
        if new_files:
            try:
                _fsync_dir(self.root)
            except OSError as exc:
                for session_id in new_files:
                    errors[session_id] = StorageError(f"cannot sync {self.root}: {exc}")
            else:
                with self._lock:
                    for session_id in new_files:
                        current = self._handles.get(session_id)
                        if current is not None and errors.get(session_id) is None:
                            current.new_file = False
        return errors

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=SYNC_THREADS, thread_name_prefix="pgwarden-fsync"
                )
            return self._executor

    def flush(self, session_id: str) -> None:
        pass

    def read(self, session_id: str) -> bytes:
        try:
            return self.path(session_id).read_bytes()
        except FileNotFoundError:
            raise RecordingNotFound(session_id) from None
        except OSError as exc:
            raise StorageError(f"cannot read recording {session_id}: {exc}") from exc

    def exists(self, session_id: str) -> bool:
        try:
            return self.path(session_id).exists()
        except ValueError:
            return False

    def list(self) -> builtins.list[str]:
        out: builtins.list[str] = []
        for path in self.root.glob("*" + SUFFIX):
            name = path.name[: -len(SUFFIX)]
            with contextlib.suppress(ValueError):
                out.append(check_session_id(name))
        return sorted(out)

    def delete(self, session_id: str) -> None:
        self.close(session_id)
        try:
            self.path(session_id).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"cannot delete recording {session_id}: {exc}") from exc

    def close(self, session_id: str) -> None:
        with self._lock:
            handle = self._handles.pop(session_id, None)
        if handle is not None:
            os.close(handle.fd)

    def shutdown(self) -> None:
        with self._lock:
            handles, self._handles = self._handles, {}
            executor, self._executor = self._executor, None
        for handle in handles.values():
            os.close(handle.fd)
        if executor is not None:
            executor.shutdown(wait=True)

    def describe(self) -> str:
        return str(self.root)
