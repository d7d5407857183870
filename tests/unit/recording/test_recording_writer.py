"""RecordingWriter: chain, checkpoints, durability and group commit, fail closed, recovery."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from recording_helpers import MakeSession, lines_of, session_start, statement, write_session

from pgwarden.recording.canonical import ZERO_HASH, unseal
from pgwarden.recording.codec import read_events
from pgwarden.recording.errors import RecordingError
from pgwarden.recording.events import ErrorEvent, NoticeEvent, SessionEnd
from pgwarden.recording.signing import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    RecordingSigner,
    load_trusted_keys,
)
from pgwarden.recording.storage.base import RecordingNotFound, StorageError
from pgwarden.recording.storage.local import LocalFileStorage
from pgwarden.recording.storage.memory import MemoryStorage
from pgwarden.recording.verify import verify_recording
from pgwarden.recording.writer import GroupCommitter, RecordingWriter, Written, recover_session


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _objs(data: bytes) -> list[dict[str, object]]:
    return [json.loads(unseal(line)[0]) for line in lines_of(data)]


def test_chain_fields(make_session: MakeSession, storage: MemoryStorage) -> None:
    make_session()
    objs = _objs(storage.read("s1"))
    prev = ZERO_HASH
    for i, (obj, line) in enumerate(zip(objs, lines_of(storage.read("s1")), strict=True), 1):
        assert obj["v"] == 1
        assert obj["session"] == "s1"
        assert obj["seq"] == i
        assert obj["prev"] == prev
        assert str(obj["ts"]).endswith("Z")
        prev = unseal(line)[1]
    assert objs[0]["type"] == "session_start"
    assert "secret" not in objs[0]["claims"]  # type: ignore[operator]
    assert objs[0]["claims"] == {"sub": "agent-7", "iss": "pgwarden-local", "exp": 2000000000}


def test_stored_line_is_canonical_with_hash_last(
    make_session: MakeSession, storage: MemoryStorage
) -> None:
    make_session()
    for line in lines_of(storage.read("s1")):
        assert line.endswith(b'"}\n')
        body, digest = unseal(line)
        obj = json.loads(body)
        assert (
            body
            == json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        )
        assert line == body[:-1] + b',"hash":"' + digest.encode() + b'"}\n'


def test_checkpoint_every_n(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    make_session(statements=5, checkpoint_every=3)
    types = [o["type"] for o in _objs(storage.read("s1"))]
    positions = [i + 1 for i, t in enumerate(types) if t == "checkpoint"]
    assert positions[:3] == [4, 8, 12]
    assert types[-2:] == ["session_end", "checkpoint"]
    assert verify_recording(storage.read("s1"), signer.public_key).status == "intact"


def test_checkpoint_interval(storage: MemoryStorage, signer: RecordingSigner) -> None:
    clock = FakeClock()
    w = RecordingWriter("s1", storage, signer, clock=clock, checkpoint_interval=5.0)
    w.append(session_start())
    w.append(statement())
    assert "checkpoint" not in [o["type"] for o in _objs(storage.read("s1"))]
    clock.t += 5.0
    w.append(statement())
    types = [o["type"] for o in _objs(storage.read("s1"))]
    assert types == ["session_start", "statement", "statement", "checkpoint"]


async def test_tick_checkpoints_an_idle_session(
    storage: MemoryStorage, signer: RecordingSigner
) -> None:
    clock = FakeClock()
    seen: list[Written] = []
    w = RecordingWriter("s1", storage, signer, clock=clock, on_checkpoint=seen.append)
    await w.write_session_start(session_start())
    assert await w.tick() is None  # not due yet
    clock.t += 6
    cp = await w.tick()
    assert cp is not None and cp.type == "checkpoint" and cp.seq == 2
    assert seen == [cp]
    assert await w.tick() is None  # nothing new to cover


async def test_auto_checkpoint_timer(storage: MemoryStorage, signer: RecordingSigner) -> None:
    w = RecordingWriter("s1", storage, signer, checkpoint_interval=0.05)
    w.start_auto_checkpoint()
    w._last_checkpoint_at += 10  # the write itself must not checkpoint
    await w.write_session_start(session_start())
    w._last_checkpoint_at -= 10
    for _ in range(100):
        await asyncio.sleep(0.02)
        if _objs(storage.read("s1"))[-1]["type"] == "checkpoint":
            break
    assert _objs(storage.read("s1"))[-1]["type"] == "checkpoint"
    await w.end("done")
    assert w._timer is None


async def test_async_api_end_to_end(storage: MemoryStorage, signer: RecordingSigner) -> None:
    w = RecordingWriter("s1", storage, signer)
    await w.write_session_start(session_start())
    st = await w.write_statement(statement("SELECT 1/0"))
    await w.write_error(ErrorEvent("22012", "division by zero", statement_seq=st.seq))
    await w.write_notice(NoticeEvent("hello"))
    final = await w.end("client closed the connection")
    assert final.type == "checkpoint"
    assert storage.closed == {"s1"}
    events = read_events(storage.read("s1"))
    assert [e.type for e in events] == [
        "session_start",
        "statement",
        "error",
        "notice",
        "session_end",
        "checkpoint",
    ]
    assert events[2].data["statement_seq"] == 2
    assert events[4].data == {"reason": "client closed the connection"}
    with pytest.raises(RecordingError):
        await w.write_statement(statement())


def test_fail_closed_on_append_failure(storage: MemoryStorage, signer: RecordingSigner) -> None:
    w = RecordingWriter("s1", storage, signer)
    w.append(session_start())
    storage.fail_appends = True
    with pytest.raises(RecordingError):
        w.append(statement())
    storage.fail_appends = False
    with pytest.raises(RecordingError, match="failed earlier"):
        w.append(statement())  # stays failed: the session must end
    assert w.last_seq == 1


async def test_fail_closed_on_sync_failure(storage: MemoryStorage, signer: RecordingSigner) -> None:
    committer = GroupCommitter(storage)
    try:
        w = RecordingWriter("s1", storage, signer, durability="fsync", committer=committer)
        await w.write_session_start(session_start())
        storage.fail_syncs = True
        with pytest.raises(RecordingError):
            await w.write_statement(statement())
        storage.fail_syncs = False
        with pytest.raises(RecordingError):
            await w.write_statement(statement())
    finally:
        committer.close()


async def test_write_mode_does_not_sync_but_end_does(
    storage: MemoryStorage, signer: RecordingSigner
) -> None:
    w = RecordingWriter("s1", storage, signer, durability="write")
    await w.write_session_start(session_start())
    await w.write_statement(statement())
    assert storage.sync_calls == 0
    await w.end("bye")
    assert storage.sync_calls == 1
    assert storage.synced["s1"] == len(storage.read("s1"))


async def test_fsync_mode_returns_only_after_the_sync(
    storage: MemoryStorage, signer: RecordingSigner
) -> None:
    storage.sync_delay = 0.05
    committer = GroupCommitter(storage)
    try:
        w = RecordingWriter("s1", storage, signer, durability="fsync", committer=committer)
        for i in range(3):
            await w.write_statement(statement(f"SELECT {i}"))
            assert storage.synced["s1"] == len(storage.read("s1"))
    finally:
        committer.close()


async def test_fsync_without_a_committer(storage: MemoryStorage, signer: RecordingSigner) -> None:
    w = RecordingWriter("s1", storage, signer, durability="fsync")
    await w.write_statement(statement())
    assert storage.synced["s1"] == len(storage.read("s1"))


async def test_group_commit_coalesces_concurrent_sessions(signer: RecordingSigner) -> None:
    storage = MemoryStorage()
    storage.sync_delay = 0.01
    committer = GroupCommitter(storage)
    sessions, per_session = 20, 5
    violations: list[str] = []

    async def run(i: int) -> None:
        sid = f"s{i}"
        w = RecordingWriter(sid, storage, signer, durability="fsync", committer=committer)
        await w.write_session_start(session_start())
        for j in range(per_session):
            await w.write_statement(statement(f"SELECT {j}"))
            # control came back: everything this session wrote must be synced
            if storage.synced.get(sid, 0) != len(storage.read(sid)):
                violations.append(sid)
        await w.end("bye")

    try:
        await asyncio.gather(*(run(i) for i in range(sessions)))
    finally:
        committer.close()
    assert violations == []
    requests = sessions * (per_session + 2)
    assert committer.stats.requests == requests
    # one round (one storage.sync_many) serves many sessions at once
    assert committer.stats.rounds < requests / 3
    assert storage.sync_calls == committer.stats.syncs == committer.stats.rounds
    for i in range(sessions):
        data = storage.read(f"s{i}")
        assert storage.synced[f"s{i}"] == len(data)
        assert verify_recording(data, signer.public_key).status == "intact"


def test_group_commit_requests_during_a_round_wait_for_the_next(signer: RecordingSigner) -> None:
    """A sync that started before a request was made must not satisfy that request."""
    started = threading.Event()
    release = threading.Event()

    class SlowStorage(MemoryStorage):
        def sync_many(self, session_ids: Sequence[str]) -> dict[str, StorageError | None]:
            started.set()
            release.wait(5)
            return super().sync_many(session_ids)

    storage = SlowStorage()
    storage.append("a", b"x\n")
    committer = GroupCommitter(storage)
    try:
        first = committer.request("a")
        assert started.wait(5)
        storage.append("a", b"y\n")
        second = committer.request("a")
        release.set()
        first.result(5)
        second.result(5)
        assert committer.stats.rounds == 2
        assert storage.synced["a"] == 4
    finally:
        release.set()
        committer.close()


def test_group_commit_from_threads(tmp_path: Path, signer: RecordingSigner) -> None:
    storage = LocalFileStorage(tmp_path / "rec")
    committer = GroupCommitter(storage)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(10):
                storage.append(f"t{i}", f"line {j}\n".encode())
                committer.sync_blocking(f"t{i}", timeout=10)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    committer.close()
    assert errors == []
    assert committer.stats.requests == 80
    assert committer.stats.syncs == committer.stats.rounds <= 80
    for i in range(8):
        assert storage.read(f"t{i}").count(b"\n") == 10
    storage.shutdown()
    with pytest.raises(RecordingError):
        committer.request("t0")


def test_local_file_storage(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    storage = LocalFileStorage(root)
    storage.append("abc", b"one\n")
    storage.append("abc", b"two\n")
    storage.sync("abc")
    path = root / "abc.jsonl"
    assert path.read_bytes() == b"one\ntwo\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert storage.exists("abc") and not storage.exists("nope")
    assert storage.list() == ["abc"]
    storage.close("abc")
    storage.append("abc", b"three\n")  # reopens, still appending
    assert storage.read("abc") == b"one\ntwo\nthree\n"
    storage.delete("abc")
    storage.delete("abc")
    with pytest.raises(RecordingNotFound):
        storage.read("abc")
    for bad in ("../x", "", ".hidden", "a/b"):
        with pytest.raises(ValueError):
            storage.append(bad, b"x")
    storage.shutdown()


def test_local_file_storage_append_failure(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path / "rec")
    storage.append("abc", b"x\n")
    handle = storage._handles["abc"]
    os.close(handle.fd)  # the descriptor goes bad under the writer
    handle.fd = os.open(os.devnull, os.O_RDONLY)
    with pytest.raises(StorageError):
        storage.append("abc", b"y\n")
    storage.shutdown()


async def test_writer_on_local_files_with_fsync(tmp_path: Path, signer: RecordingSigner) -> None:
    storage = LocalFileStorage(tmp_path / "rec")
    committer = GroupCommitter(storage)
    try:
        w = RecordingWriter("sess-1", storage, signer, durability="fsync", committer=committer)
        await w.write_session_start(session_start())
        await w.write_statement(statement())
        await w.end("bye")
    finally:
        committer.close()
    data = (tmp_path / "rec" / "sess-1.jsonl").read_bytes()
    assert verify_recording(data, signer.public_key).status == "intact"


def test_recover_a_crashed_session(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    make_session(end=False)
    before = storage.read("s1")
    assert verify_recording(before, signer.public_key).status == "unterminated"
    final = recover_session("s1", storage, signer, reason="gateway crashed")
    after = storage.read("s1")
    assert after.startswith(before)
    assert verify_recording(after, signer.public_key).status == "intact"
    events = read_events(after)
    assert [e.type for e in events][-2:] == ["session_end", "checkpoint"]
    assert events[-2].data["reason"] == "gateway crashed"
    assert final.seq == events[-1].seq


def test_recover_when_only_the_final_checkpoint_is_missing(
    storage: MemoryStorage, signer: RecordingSigner
) -> None:
    w = RecordingWriter("s1", storage, signer)
    w.append(session_start())
    # a crash between the session_end and its checkpoint
    w._append_raw("session_end", SessionEnd("bye").to_payload(), w.clock())
    recover_session("s1", storage, signer)
    assert verify_recording(storage.read("s1"), signer.public_key).status == "intact"
    assert [e.type for e in read_events(storage.read("s1"))].count("session_end") == 1


def test_recover_refuses_a_tampered_recording(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    make_session(end=False)
    data = storage.read("s1").replace(b"SELECT 1 FROM", b"SELECT 2 FROM")
    storage.write_raw("s1", data)
    with pytest.raises(RecordingError):
        recover_session("s1", storage, signer)
    assert storage.read("s1") == data


def test_resume_continues_the_chain(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    make_session(end=False)
    w = RecordingWriter.resume("s1", storage, signer)
    n = w.last_seq
    w.append(statement("SELECT 'after restart'"))
    w.end_sync("bye")
    assert verify_recording(storage.read("s1"), signer.public_key).status == "intact"
    assert read_events(storage.read("s1"))[n].data["sql"] == "SELECT 'after restart'"


def test_signing_key_files(tmp_path: Path) -> None:
    a = RecordingSigner.load_or_create(tmp_path)
    priv = tmp_path / "keys" / PRIVATE_KEY_FILE
    pub = tmp_path / "keys" / PUBLIC_KEY_FILE
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert pub.read_bytes() == a.public_pem()
    b = RecordingSigner.load_or_create(tmp_path)
    assert a.key_id == b.key_id
    keys = load_trusted_keys(tmp_path)
    assert [k.public_bytes_raw() for k in keys] == [a.public_key.public_bytes_raw()]
    storage = MemoryStorage()
    write_session(RecordingWriter("s1", storage, a))
    assert verify_recording(storage.read("s1"), keys).status == "intact"


def test_writer_rejects_bad_arguments(storage: MemoryStorage, signer: RecordingSigner) -> None:
    with pytest.raises(ValueError):
        RecordingWriter("../etc", storage, signer)
    with pytest.raises(ValueError):
        RecordingWriter("s1", storage, signer, durability="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RecordingWriter("s1", storage, signer, checkpoint_every=0)


def test_local_sync_many(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path / "rec")
    for i in range(5):
        storage.append(f"m{i}", b"x\n")
    errors = storage.sync_many([f"m{i}" for i in range(5)] + ["never-written"])
    assert errors == {**{f"m{i}": None for i in range(5)}, "never-written": None}
    assert all(not h.new_file for h in storage._handles.values())
    storage.shutdown()
