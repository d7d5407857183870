"""Writing a session's recording: sequence numbers, the hash chain, checkpoints, durability.

Use from the data path (asyncio)::

    committer = GroupCommitter(storage)            # one per gateway, shared by all sessions
    signer = RecordingSigner.load_or_create(data_dir)
    w = RecordingWriter(session_id, storage, signer, durability="fsync", committer=committer,
                        cipher=RecordingCipher.from_env(), on_checkpoint=update_index)
    w.start_auto_checkpoint()                      # optional: timer for idle sessions
    await w.write_session_start(SessionStart(...))
    ev = await w.write_statement(StatementEvent(...))   # returns once recorded: then forward
    builder = ResultBuilder(statement_seq=ev.seq)       # fed while rows stream to the client
    await w.write_result(builder.finish(tag))
    await w.end("client closed the connection")         # session_end + final checkpoint, fsynced

Every ``write_*`` assigns ``seq``/``prev``/``hash``, encodes the line (encrypting when a cipher
is given) and appends it to the storage synchronously, so events are stored in call order even
when several tasks write; then, with ``durability="fsync"``, it waits for the group commit.
It returns a ``Written`` (seq and hash) only once the bytes are handed to the OS (``write``)
or on stable storage (``fsync``). Any failure raises ``RecordingError``, and the writer stays
failed: the caller must refuse the statement and end the session (fail closed).

A checkpoint (a signed ``checkpoint`` event covering the event before it) is appended after
every ``checkpoint_every`` events, when ``checkpoint_interval`` seconds have passed since the
last one (checked at each write, by ``tick()``, and by the auto-checkpoint timer), and right
after ``session_end``. ``on_checkpoint(Written)`` is called after each one (e.g. to store
``last_seq``/``last_hash`` in the session index; exceptions there are logged, not raised).

``end()`` always syncs (whatever the durability): once it returns, the index may say the
session ended cleanly, and verification will hold the recording to that.

``GroupCommitter`` coalesces ``sync`` requests: one background thread takes every request
queued since its last round, syncs all the sessions concerned with one
``storage.sync_many`` call (for local files: parallel ``fdatasync``s that the filesystem journal
commits together, and one directory fsync), and wakes all their waiters.
Requests made while a round is in progress wait for the next round, so a waiter is only woken
by a sync that started after its bytes were appended.

A writer belongs to one session and one event loop (it is not thread-safe); the storage and
the committer are shared by all sessions.

After a crash: ``recover_session`` continues an unterminated recording (verifying it first)
with a ``session_end`` and a final checkpoint, so it verifies as intact.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

from pgwarden.recording.canonical import ZERO_HASH, canonical_json, seal_object
from pgwarden.recording.codec import encode_event, iter_lines, parse_line
from pgwarden.recording.crypto import RecordingCipher
from pgwarden.recording.errors import FormatError, RecordingError
from pgwarden.recording.events import (
    ApprovalEvent,
    ContextEvent,
    ErrorEvent,
    EventPayload,
    NoticeEvent,
    ResultEvent,
    SessionEnd,
    SessionStart,
    StatementEvent,
    format_ts,
)
from pgwarden.recording.signing import RecordingSigner
from pgwarden.recording.storage.base import RecordingStorage, check_session_id
from pgwarden.recording.verify import verify_recording

__all__ = [
    "CommitStats",
    "Durability",
    "GroupCommitter",
    "RecordingWriter",
    "Written",
    "recover_session",
]

log: Final = logging.getLogger(__name__)

Durability = Literal["write", "fsync"]

# Event types that encode their own plain body (see StatementEvent.plain_body).
_PLAIN: Final = frozenset({StatementEvent, ResultEvent})


class Written(NamedTuple):
    """An event as appended: its position and hash (a tuple: two are made per statement)."""

    session: str
    seq: int
    hash: str
    type: str


# --------------------------------------------------------------------------------------------
# group commit


@dataclass(slots=True)
class CommitStats:
    requests: int = 0  # sync requests made
    rounds: int = 0  # batches processed by the thread
    syncs: int = 0  # storage.sync_many calls made (one per round)


class GroupCommitter:
    """Coalesces fsyncs of many sessions (see the module docstring)."""

    def __init__(self, storage: RecordingStorage, *, name: str = "pgwarden-group-commit"):
        self.storage = storage
        self.stats = CommitStats()
        self._name = name
        self._cond = threading.Condition()
        self._pending: dict[str, list[concurrent.futures.Future[None]]] = {}
        self._worker_thread: threading.Thread | None = None
        self._closed = False

    def request(self, session_id: str) -> concurrent.futures.Future[None]:
        """A future completed once a sync that started after this call has finished."""
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._cond:
            if self._closed:
                raise RecordingError("the group committer is closed")
            self.stats.requests += 1
            self._pending.setdefault(session_id, []).append(fut)
            if self._worker_thread is None:
                self._worker_thread = threading.Thread(
                    target=self._run, name=self._name, daemon=True
                )
                self._worker_thread.start()
            self._cond.notify()
        return fut

    async def sync(self, session_id: str) -> None:
        """Wait (without blocking the event loop) until the session's appended bytes are
        on stable storage."""
        await asyncio.wrap_future(self.request(session_id))

    def sync_blocking(self, session_id: str, timeout: float | None = None) -> None:
        self.request(session_id).result(timeout)

    def close(self) -> None:
        """Finish the queued requests and stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._worker_thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending and self._closed:
                    return
                batch, self._pending = self._pending, {}
                self.stats.rounds += 1
            try:
                errors: dict[str, BaseException | None] = dict(self.storage.sync_many(list(batch)))
            except BaseException as exc:
                errors = dict.fromkeys(batch, exc)
            with self._cond:
                self.stats.syncs += 1
            for session_id, futures in batch.items():
                error = errors.get(session_id)
                for fut in futures:
                    with contextlib.suppress(concurrent.futures.InvalidStateError):
                        if error is None:
                            fut.set_result(None)
                        else:
                            fut.set_exception(error)


# --------------------------------------------------------------------------------------------
# the writer


class RecordingWriter:
    def __init__(
        self,
        session_id: str,
        storage: RecordingStorage,
        signer: RecordingSigner,
        *,
        durability: Durability = "write",
        committer: GroupCommitter | None = None,
        cipher: RecordingCipher | None = None,
        checkpoint_every: int = 100,
        checkpoint_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
        on_checkpoint: Callable[[Written], None] | None = None,
    ) -> None:
        if durability not in ("write", "fsync"):
            raise ValueError(f"durability must be 'write' or 'fsync', not {durability!r}")
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.session_id = check_session_id(session_id)
        self.storage = storage
        self.signer = signer
        self.durability = durability
        self.committer = committer
        self.cipher = cipher
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self.clock = clock
        self.on_checkpoint = on_checkpoint
        self.last_seq = 0
        self.bytes_written = 0  # stored bytes of every event so far (for metrics)
        self.last_hash = ZERO_HASH
        self.last_type: str | None = None
        self.ended = False
        self.closed = False
        self.error: BaseException | None = None
        self._since_checkpoint = 0
        self._last_checkpoint_at = clock()
        self._timer: asyncio.Task[None] | None = None
        self._session_json = canonical_json(self.session_id)

    # ------------------------------------------------------------ synchronous core

    def _check_usable(self) -> None:
        if self.error is not None:
            raise RecordingError(
                f"recording of session {self.session_id} failed earlier: {self.error}"
            )
        if self.closed:
            raise RecordingError(f"recording of session {self.session_id} is closed")

    def _append_raw(
        self,
        type_: str,
        payload: dict[str, object] | None,
        now: float,
        plain: StatementEvent | ResultEvent | None = None,
    ) -> Written:
        """Append one event: ``payload`` encoded by ``encode_event``, or ``plain``'s own body
        (the two event types of every statement, when the recording is not encrypted)."""
        seq = self.last_seq + 1
        try:
            if plain is not None:
                prev = self.last_hash
                body = plain.plain_body(self._session_json, seq, format_ts(now), prev)
                line, digest = seal_object(body, prev)
            else:
                line, digest = encode_event(
                    session=self.session_id,
                    seq=seq,
                    ts=format_ts(now),
                    type_=type_,
                    prev=self.last_hash,
                    payload=payload or {},
                    cipher=self.cipher,
                )
            self.storage.append(self.session_id, line)
            self.bytes_written += len(line)
        except Exception as exc:
            self.error = exc
            raise RecordingError(f"cannot record {type_} event {seq}: {exc}") from exc
        self.last_seq, self.last_hash, self.last_type = seq, digest, type_
        # tuple.__new__: a NamedTuple's own __new__ is an interpreted lambda (two per statement)
        return tuple.__new__(Written, (self.session_id, seq, digest, type_))

    def append(self, event: EventPayload) -> Written:
        """Append one event (and a checkpoint when one is due) without waiting for fsync."""
        self._check_usable()
        if self.ended:
            raise RecordingError(f"session {self.session_id} already ended")
        now = self.clock()
        type_ = event.type  # a property since events are compiled: read once
        if self.cipher is None and type(event) in _PLAIN:
            written = self._append_raw(type_, None, now, event)  # type: ignore[arg-type]
        else:
            written = self._append_raw(type_, event.to_payload(), now)
        if type_ == "session_end":
            self.ended = True
            self.checkpoint_now()
            return written
        self._since_checkpoint += 1
        if (
            self._since_checkpoint >= self.checkpoint_every
            or now - self._last_checkpoint_at >= self.checkpoint_interval
        ):
            self.checkpoint_now()
        return written

    def checkpoint_now(self) -> Written | None:
        """Append a signed checkpoint covering the last event (None if nothing to cover)."""
        self._check_usable()
        if self.last_type in (None, "checkpoint"):
            return None
        payload = self.signer.sign_checkpoint(self.session_id, self.last_seq, self.last_hash)
        now = self.clock()
        written = self._append_raw("checkpoint", dict(payload), now)
        self._since_checkpoint = 0
        self._last_checkpoint_at = now
        with contextlib.suppress(Exception):
            self.storage.flush(self.session_id)
        if self.on_checkpoint is not None:
            try:
                self.on_checkpoint(written)
            except Exception:
                log.exception("session %s: on_checkpoint failed", self.session_id)
        return written

    # ------------------------------------------------------------ async API

    async def sync(self) -> None:
        """Wait until every event appended so far is on stable storage."""
        try:
            if self.committer is not None:
                await self.committer.sync(self.session_id)
            else:
                await asyncio.to_thread(self.storage.sync, self.session_id)
        except Exception as exc:
            self.error = exc
            raise RecordingError(
                f"cannot sync recording of session {self.session_id}: {exc}"
            ) from exc

    async def write(self, event: EventPayload) -> Written:
        """Append ``event``; return once it is as durable as ``durability`` says."""
        written = self.append(event)
        if self.durability == "fsync":
            await self.sync()
        return written

    async def write_session_start(self, event: SessionStart) -> Written:
        return await self.write(event)

    async def write_context(self, event: ContextEvent) -> Written:
        return await self.write(event)

    async def write_statement(self, event: StatementEvent) -> Written:
        return await self.write(event)

    async def write_approval(self, event: ApprovalEvent) -> Written:
        return await self.write(event)

    async def write_result(self, event: ResultEvent) -> Written:
        return await self.write(event)

    async def write_error(self, event: ErrorEvent) -> Written:
        return await self.write(event)

    async def write_notice(self, event: NoticeEvent) -> Written:
        return await self.write(event)

    async def tick(self) -> Written | None:
        """Checkpoint if events are waiting and ``checkpoint_interval`` has passed."""
        if self.error is not None or self.closed or self.ended:
            return None
        if (
            self._since_checkpoint
            and self.clock() - self._last_checkpoint_at >= self.checkpoint_interval
        ):
            written = self.checkpoint_now()
            if self.durability == "fsync":
                await self.sync()
            return written
        return None

    def start_auto_checkpoint(self) -> None:
        """Run ``tick()`` every ``checkpoint_interval`` seconds until ``end``/``close``."""
        if self._timer is not None:
            return

        async def timer() -> None:
            while not (self.closed or self.ended or self.error is not None):
                await asyncio.sleep(self.checkpoint_interval)
                try:
                    await self.tick()
                except RecordingError:
                    log.warning("session %s: periodic checkpoint failed", self.session_id)
                    return

        self._timer = asyncio.get_running_loop().create_task(timer())

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def end(self, reason: str) -> Written:
        """Append ``session_end`` and the final checkpoint, sync, and close the storage
        handle. Returns the final checkpoint."""
        self._stop_timer()
        self.append(SessionEnd(reason))
        await self.sync()
        final = Written(self.session_id, self.last_seq, self.last_hash, "checkpoint")
        self.close()
        return final

    def end_sync(self, reason: str) -> Written:
        """``end`` for synchronous callers (tests, CLI)."""
        self._stop_timer()
        self.append(SessionEnd(reason))
        try:
            self.storage.sync(self.session_id)
        except Exception as exc:
            self.error = exc
            raise RecordingError(
                f"cannot sync recording of session {self.session_id}: {exc}"
            ) from exc
        final = Written(self.session_id, self.last_seq, self.last_hash, "checkpoint")
        self.close()
        return final

    def close(self) -> None:
        """Release the storage handle (no session_end: use ``end`` for a clean end)."""
        self._stop_timer()
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                self.storage.close(self.session_id)

    # ------------------------------------------------------------ resuming

    @classmethod
    def resume(
        cls,
        session_id: str,
        storage: RecordingStorage,
        signer: RecordingSigner,
        *,
        durability: Durability = "write",
        committer: GroupCommitter | None = None,
        cipher: RecordingCipher | None = None,
        checkpoint_every: int = 100,
        checkpoint_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
        on_checkpoint: Callable[[Written], None] | None = None,
    ) -> RecordingWriter:
        """A writer that continues an existing recording after verifying it (chain and
        signatures) with the signer's own key. Raises RecordingError when it is tampered."""
        try:
            data = storage.read(session_id)
        except Exception as exc:
            raise RecordingError(f"cannot resume recording {session_id}: {exc}") from exc
        result = verify_recording(data, signer.public_key, session_id=session_id)
        if result.status not in ("intact", "unterminated"):
            raise RecordingError(f"cannot resume recording {session_id}: {result.detail}")
        writer = cls(
            session_id,
            storage,
            signer,
            durability=durability,
            committer=committer,
            cipher=cipher,
            checkpoint_every=checkpoint_every,
            checkpoint_interval=checkpoint_interval,
            clock=clock,
            on_checkpoint=on_checkpoint,
        )
        for line, _complete in iter_lines(data):
            try:
                stored = parse_line(line)
            except FormatError as exc:  # verify_recording accepted it, so unreachable
                raise RecordingError(str(exc)) from exc
            writer.last_seq = stored.obj["seq"]
            writer.last_hash = stored.hash
            writer.last_type = stored.obj["type"]
            if stored.obj["type"] == "session_end":
                writer.ended = True
        return writer


def recover_session(
    session_id: str,
    storage: RecordingStorage,
    signer: RecordingSigner,
    *,
    reason: str = "gateway restarted: the session was cut off by a crash",
    cipher: RecordingCipher | None = None,
) -> Written:
    """Close an unterminated recording after a crash: append ``session_end`` (unless it is
    there) and a final checkpoint, sync, close. Returns the final event. Raises
    RecordingError if the recording is tampered (it is then left as it is)."""
    writer = RecordingWriter.resume(session_id, storage, signer, cipher=cipher)
    if writer.ended:
        writer.checkpoint_now()
        storage.sync(session_id)
        final = Written(session_id, writer.last_seq, writer.last_hash, writer.last_type or "")
        writer.close()
        return final
    return writer.end_sync(reason)
