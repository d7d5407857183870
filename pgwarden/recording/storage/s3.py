"""``S3Storage``: recordings in S3-compatible object storage, behind a local spool.

Layout: each session is a sequence of immutable segment objects
``<prefix><session_id>/<offset:016d>.jsonl``; ``offset`` is the byte offset of the segment in
the session's stream, so the concatenation of the segments in key order is the recording,
and re-uploading a segment (a retry) rewrites the same key with the same bytes. Segments
always hold whole lines.

Credentials, region and endpoint come from the standard AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``
or ``AWS_ENDPOINT_URL_S3``, profiles...) through boto3. ``PGWARDEN_S3_ADDRESSING_STYLE``
(``auto`` | ``path`` | ``virtual``) overrides the addressing style.

Durability guarantee
====================
- ``append`` writes to the local spool first (``<spool_dir>/<session_id>.jsonl``, a
  ``LocalFileStorage``) and returns once the bytes are handed to the OS there; ``sync``
  fsyncs the spool. Write-before-forward therefore holds exactly as for local files, with the
  spool as the first copy.
- Bytes reach S3 asynchronously, from one uploader thread: a segment is PUT when the writer
  appends a signed checkpoint (``flush``: every N events / T seconds), when the unpublished
  tail exceeds ``segment_bytes``, and at ``close`` (session end). Failed PUTs are retried with
  backoff (``max_attempts``), then kept and retried at the session's next flush/close.
- The spool file of a session is deleted only after ``close`` and once S3 holds every byte of
  it. After a gateway crash, ``recover()`` uploads what the spool holds beyond S3; the writer's
  crash recovery then ends the session and ``close`` removes the spool.
- So: a crash of the gateway loses nothing that ``append`` accepted; the loss of the gateway's
  disk loses at most the events appended since the last published segment (at most one
  checkpoint interval, plus upload time).
- ``read`` returns the S3 segments followed by any spool bytes beyond them, so the gateway sees
  everything it wrote; another machine sees what S3 holds.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pgwarden.recording.storage.base import RecordingNotFound, StorageError, check_session_id
from pgwarden.recording.storage.local import LocalFileStorage

__all__ = ["S3Storage"]

log = logging.getLogger(__name__)

_SEGMENT_SUFFIX = ".jsonl"


@dataclass(slots=True)
class _Session:
    published: int  # stream offset of the first byte not yet handed to the uploader
    pending: bytearray = field(default_factory=bytearray)


@dataclass(frozen=True, slots=True)
class _Upload:
    session_id: str
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class _Finalize:
    session_id: str


def _make_client() -> Any:
    # imported here: only S3 users pay for importing boto3
    import boto3  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    style = os.environ.get("PGWARDEN_S3_ADDRESSING_STYLE", "auto")
    config = Config(
        s3={"addressing_style": style},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
    )
    return boto3.client("s3", config=config)


class S3Storage:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        spool_dir: Path | str,
        client: Any = None,
        segment_bytes: int = 8 << 20,
        max_attempts: int = 5,
        retry_delay: float = 0.2,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 bucket name is required")
        self.bucket = bucket
        prefix = prefix.strip("/")
        self.prefix = prefix + "/" if prefix else ""
        self.spool = LocalFileStorage(spool_dir)
        self._client = client if client is not None else _make_client()
        self.segment_bytes = segment_bytes
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self._sessions: dict[str, _Session] = {}
        self._failed: dict[str, list[_Upload]] = {}
        self._known_end: dict[str, int] = {}  # session -> S3 end offset seen by read()
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Upload | _Finalize | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.uploads = 0  # successful PUTs, for tests and metrics
        self.last_error: str | None = None

    @classmethod
    def from_url(cls, url: str, *, spool_dir: Path | str, **kwargs: Any) -> S3Storage:
        """``s3://bucket/prefix``."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"expected s3://bucket/prefix, got {url!r}")
        return cls(parts.netloc, parts.path, spool_dir=spool_dir, **kwargs)

    # ---------------------------------------------------------------- object naming and listing

    def _session_prefix(self, session_id: str) -> str:
        return f"{self.prefix}{check_session_id(session_id)}/"

    def _key(self, session_id: str, offset: int) -> str:
        return f"{self._session_prefix(session_id)}{offset:016d}{_SEGMENT_SUFFIX}"

    def _segments(self, session_id: str) -> builtins.list[tuple[int, str, int]]:
        """``(offset, key, size)`` of the session's segments, by offset."""
        prefix = self._session_prefix(session_id)
        out: builtins.list[tuple[int, str, int]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._client.list_objects_v2(**kwargs)
            for obj in page.get("Contents", []):
                name = str(obj["Key"])[len(prefix) :]
                if not name.endswith(_SEGMENT_SUFFIX):
                    continue
                with contextlib.suppress(ValueError):
                    out.append(
                        (int(name[: -len(_SEGMENT_SUFFIX)]), str(obj["Key"]), int(obj["Size"]))
                    )
            if not page.get("IsTruncated"):
                break
            token = page.get("NextContinuationToken")
        out.sort()
        return out

    def _s3_end(self, session_id: str) -> int:
        return max((off + size for off, _key, size in self._segments(session_id)), default=0)

    # ---------------------------------------------------------------- the interface

    def append(self, session_id: str, data: bytes) -> None:
        with self._lock:
            state = self._sessions.get(session_id)
            if state is None:
                state = self._load_state(session_id)
                self._sessions[session_id] = state
            self.spool.append(session_id, data)
            state.pending += data
            if len(state.pending) >= self.segment_bytes:
                self._enqueue_locked(session_id, state)

    def _load_state(self, session_id: str) -> _Session:
        """State for a session this process has not touched: new unless a spool exists (a
        restart), in which case S3 says how much of the spool is already published."""
        if not self.spool.exists(session_id):
            # new, or already published and closed: then ``read`` (which ``RecordingWriter.
            # resume`` calls first) noted where S3 ends, so nothing is overwritten
            return _Session(published=self._known_end.pop(session_id, 0))
        try:
            spooled = self.spool.read(session_id)
            end = self._s3_end(session_id)
        except Exception as exc:
            raise StorageError(f"cannot resume recording {session_id}: {exc}") from exc
        if end >= len(spooled):
            return _Session(published=end)
        return _Session(published=end, pending=bytearray(spooled[end:]))

    def _enqueue_locked(self, session_id: str, state: _Session) -> None:
        for failed in self._failed.pop(session_id, []):
            self._queue.put(failed)
        if state.pending:
            self._queue.put(_Upload(session_id, state.published, bytes(state.pending)))
            state.published += len(state.pending)
            state.pending.clear()
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="pgwarden-s3-uploader", daemon=True
            )
            self._thread.start()

    def sync(self, session_id: str) -> None:
        self.spool.sync(session_id)

    def sync_many(self, session_ids: Sequence[str]) -> dict[str, StorageError | None]:
        return self.spool.sync_many(session_ids)

    def flush(self, session_id: str) -> None:
        with self._lock:
            state = self._sessions.get(session_id)
            if state is not None:
                self._enqueue_locked(session_id, state)

    def close(self, session_id: str) -> None:
        with self._lock:
            state = self._sessions.pop(session_id, None)
            if state is not None:
                self._enqueue_locked(session_id, state)
            self._queue.put(_Finalize(session_id))
            self._ensure_thread()
        self.spool.close(session_id)

    def read(self, session_id: str) -> bytes:
        try:
            segments = self._segments(session_id)
            buf = bytearray()
            end = 0
            for offset, key, size in segments:
                body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                buf += body
                end = max(end, offset + size)
        except Exception as exc:
            raise StorageError(f"cannot read recording {session_id} from S3: {exc}") from exc
        spooled: bytes | None = None
        with contextlib.suppress(RecordingNotFound):
            spooled = self.spool.read(session_id)
        if not segments and spooled is None:
            raise RecordingNotFound(session_id)
        with self._lock:
            if session_id not in self._sessions:
                if len(self._known_end) >= 10_000:
                    self._known_end.clear()
                self._known_end[session_id] = end
        if spooled is not None and len(spooled) > end:
            buf += spooled[end:]
        return bytes(buf)

    def exists(self, session_id: str) -> bool:
        if self.spool.exists(session_id):
            return True
        try:
            page = self._client.list_objects_v2(
                Bucket=self.bucket, Prefix=self._session_prefix(session_id), MaxKeys=1
            )
        except Exception as exc:
            raise StorageError(f"cannot look up recording {session_id} in S3: {exc}") from exc
        return bool(page.get("Contents"))

    def list(self) -> builtins.list[str]:
        ids: set[str] = set(self.spool.list())
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "Bucket": self.bucket,
                "Prefix": self.prefix,
                "Delimiter": "/",
            }
            if token:
                kwargs["ContinuationToken"] = token
            try:
                page = self._client.list_objects_v2(**kwargs)
            except Exception as exc:
                raise StorageError(f"cannot list recordings in {self.describe()}: {exc}") from exc
            for common in page.get("CommonPrefixes", []):
                name = str(common["Prefix"])[len(self.prefix) :].rstrip("/")
                with contextlib.suppress(ValueError):
                    ids.add(check_session_id(name))
            if not page.get("IsTruncated"):
                break
            token = page.get("NextContinuationToken")
        return sorted(ids)

    def delete(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)
            self._failed.pop(session_id, None)
            self._known_end.pop(session_id, None)
        self.spool.delete(session_id)
        try:
            keys = [key for _off, key, _size in self._segments(session_id)]
            for i in range(0, len(keys), 1000):
                self._client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True},
                )
        except Exception as exc:
            raise StorageError(f"cannot delete recording {session_id} from S3: {exc}") from exc

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued upload has been tried; True if the queue emptied."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def pending_failures(self) -> dict[str, int]:
        """Session -> segments whose upload failed and awaits a retry."""
        with self._lock:
            return {sid: len(v) for sid, v in self._failed.items() if v}

    def recover(self) -> builtins.list[str]:
        """After a restart: upload whatever each spooled session holds beyond S3 (blocking).
        Spools stay until the session is closed. Returns the spooled session ids."""
        recovered: builtins.list[str] = []
        for session_id in self.spool.list():
            with self._lock:
                if session_id in self._sessions:
                    continue
            spooled = self.spool.read(session_id)
            end = self._s3_end(session_id)
            if len(spooled) > end and not self._put(_Upload(session_id, end, spooled[end:])):
                raise StorageError(f"cannot upload recording {session_id}: {self.last_error}")
            recovered.append(session_id)
        return recovered

    def shutdown(self) -> None:
        with self._lock:
            for session_id, state in self._sessions.items():
                self._enqueue_locked(session_id, state)
            self._sessions.clear()
            self._stopped = True
            thread = self._thread
            self._queue.put(None)
        if thread is not None and thread.is_alive():
            thread.join()
        self.spool.shutdown()

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    # ---------------------------------------------------------------- uploader thread

    def _put(self, upload: _Upload) -> bool:
        key = self._key(upload.session_id, upload.offset)
        for attempt in range(max(1, self.max_attempts)):
            try:
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=upload.data,
                    ContentType="application/x-ndjson",
                )
                self.uploads += 1
                return True
            except Exception as exc:
                self.last_error = f"{key}: {exc}"
                log.warning(
                    "recording upload failed (attempt %d): %s", attempt + 1, self.last_error
                )
                if attempt + 1 < self.max_attempts:
                    time.sleep(self.retry_delay * (2**attempt))
        return False

    def _finalize(self, session_id: str) -> None:
        """The session is closed: publish any spool bytes S3 lacks, then drop the spool."""
        with self._lock:
            if session_id in self._sessions or self._failed.get(session_id):
                return  # reopened meanwhile, or uploads still owed: keep the spool
        try:
            spooled = self.spool.read(session_id)
        except RecordingNotFound:
            return
        try:
            end = self._s3_end(session_id)
        except Exception as exc:
            self.last_error = f"{session_id}: {exc}"
            log.warning("cannot finalize recording %s: %s", session_id, exc)
            return
        if len(spooled) > end and not self._put(_Upload(session_id, end, spooled[end:])):
            return
        with self._lock:
            if session_id in self._sessions:
                return
            self.spool.delete(session_id)

    def _run(self) -> None:
        while True:
            task = self._queue.get()
            try:
                if task is None:
                    return
                if isinstance(task, _Upload):
                    if not self._put(task):
                        with self._lock:
                            self._failed.setdefault(task.session_id, []).append(task)
                else:
                    self._finalize(task.session_id)
            except Exception:
                log.exception("recording uploader")
            finally:
                self._queue.task_done()
