"""prune (deletes old ended sessions, recordings first) and start-up crash recovery."""

from __future__ import annotations

from recording_helpers import write_session

from pgwarden.recording.recovery import recover_crashed
from pgwarden.recording.retention import prune
from pgwarden.recording.signing import RecordingSigner
from pgwarden.recording.storage.memory import MemoryStorage
from pgwarden.recording.verify import verify_session
from pgwarden.recording.writer import RecordingWriter
from pgwarden.store.base import SessionRecord
from pgwarden.store.memory import MemoryStore


def test_prune() -> None:
    store, storage = MemoryStore(), MemoryStorage()
    for sid, ended, state in (
        ("old", 100.0, "ended"),
        ("crashed", 150.0, "crashed"),
        ("new", 950.0, "ended"),
        ("live", None, "active"),
    ):
        store.create_session(SessionRecord(sid, "a", "i", "shop", 50.0))
        storage.append(sid, b"x\n")
        if ended is not None:
            store.end_session(sid, ended_at=ended, reason="r", state=state)  # type: ignore[arg-type]
    assert sorted(prune(store, storage, 500, now=1000.0, dry_run=True).deleted) == [
        "crashed",
        "old",
    ]
    assert storage.list() == ["crashed", "live", "new", "old"]  # dry run deleted nothing
    result = prune(store, storage, 500, now=1000.0)
    assert sorted(result.deleted) == ["crashed", "old"]
    assert storage.list() == ["live", "new"]
    assert sorted(s.id for s in store.list_sessions()) == ["live", "new"]
    assert prune(store, storage, 500, now=1000.0).deleted == []


def test_prune_keeps_the_index_entry_when_the_recording_cannot_be_deleted() -> None:
    class Failing(MemoryStorage):
        def delete(self, session_id: str) -> None:
            raise OSError("read-only")

    store, storage = MemoryStore(), Failing()
    store.create_session(SessionRecord("s", "a", "i", "shop", 1.0))
    store.end_session("s", ended_at=2.0, reason="r")
    result = prune(store, storage, 0, now=10.0)
    assert result.deleted == [] and "read-only" in result.failed["s"]
    assert store.get_session("s") is not None


def test_recover_crashed_sessions() -> None:
    signer = RecordingSigner.generate()
    store, storage = MemoryStore(), MemoryStorage()
    for sid in ("cut", "clean", "gone", "forged"):
        store.create_session(SessionRecord(sid, "a", "i", "shop", 1.0, gateway_instance="gw"))
        write_session(RecordingWriter(sid, storage, signer), end=sid == "clean")
    store.end_session("clean", ended_at=5.0, reason="bye")
    storage.delete("gone")
    storage.write_raw("forged", storage.read("forged").replace(b"SELECT 1", b"SELECT 9"))
    assert verify_session("cut", storage, signer.public_key, store).status == "unterminated"

    report = recover_crashed(store, storage, signer, now=10.0)
    assert report.recovered == ["cut"]
    assert sorted(report.failed) == ["forged", "gone"]
    assert verify_session("cut", storage, signer.public_key, store).status == "intact"
    assert verify_session("clean", storage, signer.public_key, store).status == "intact"
    cut = store.get_session("cut")
    assert cut is not None and cut.state == "crashed" and cut.ended_at == 10.0
    assert verify_session("forged", storage, signer.public_key, store).status == "tampered"
    assert verify_session("gone", storage, signer.public_key, store).status == "missing"
