"""Recording storage backends behind one small interface (``RecordingStorage``).

- ``LocalFileStorage(data_dir / "recordings")``: the default; one append-only file per session.
- ``S3Storage(bucket, prefix, spool_dir=...)``: S3-compatible object storage with a local spool.
- ``MemoryStorage()``: for unit tests.

``open_storage(recordings, data_dir)`` maps the ``recordings`` config value to a backend.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from pgwarden.recording.storage.base import (
    RecordingNotFound,
    RecordingStorage,
    StorageError,
    check_session_id,
)
from pgwarden.recording.storage.local import LocalFileStorage
from pgwarden.recording.storage.memory import MemoryStorage
from pgwarden.recording.storage.s3 import S3Storage

__all__ = [
    "LocalFileStorage",
    "MemoryStorage",
    "RecordingNotFound",
    "RecordingStorage",
    "S3Storage",
    "StorageError",
    "check_session_id",
    "open_storage",
]


def open_storage(recordings: str | None, data_dir: Path | str) -> RecordingStorage:
    """``None`` -> ``data_dir/recordings``; ``s3://bucket/prefix`` -> S3 (spool in
    ``data_dir/recordings-spool``); ``file:///path`` or a path -> that directory."""
    data_dir = Path(data_dir)
    if recordings is None:
        return LocalFileStorage(data_dir / "recordings")
    parts = urlsplit(recordings)
    if parts.scheme == "s3":
        return S3Storage.from_url(recordings, spool_dir=data_dir / "recordings-spool")
    if parts.scheme == "file":
        return LocalFileStorage(Path(unquote(parts.path)))
    if "://" in recordings:
        raise ValueError(f"unsupported recordings location {recordings!r}")
    return LocalFileStorage(Path(recordings))
