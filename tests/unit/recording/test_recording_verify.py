"""verify_recording: intact, unterminated, tampered, missing, and the first bad event."""

from __future__ import annotations

import base64
import json

import pytest
from recording_helpers import MakeSession, lines_of, rechain

from pgwarden.recording.canonical import ZERO_HASH, canonical_json, seal, unseal
from pgwarden.recording.signing import RecordingSigner
from pgwarden.recording.storage.memory import MemoryStorage
from pgwarden.recording.verify import IndexInfo, verify_recording, verify_session
from pgwarden.store.base import SessionRecord
from pgwarden.store.memory import MemoryStore

ENDED = IndexInfo(ended_cleanly=True)
CRASHED = IndexInfo(ended_cleanly=False)


def _types(data: bytes) -> list[str]:
    return [json.loads(unseal(line)[0])["type"] for line in lines_of(data)]


def test_intact_after_clean_end(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    make_session()
    data = storage.read("s1")
    result = verify_recording(data, signer.public_key, session_id="s1", index=ENDED)
    assert result.status == "intact", result.detail
    assert result.first_bad_seq is None
    assert result.events == len(lines_of(data))
    assert _types(data)[-2:] == ["session_end", "checkpoint"]
    assert result.ok


def test_session_id_taken_from_the_recording(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    make_session("abc")
    result = verify_recording(storage.read("abc"), [signer.public_key])
    assert result.status == "intact"
    assert result.session_id == "abc"


@pytest.mark.parametrize("seq", [1, 3, 5])
def test_flipped_byte_is_tampered_at_that_event(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner, seq: int
) -> None:
    make_session()
    lines = lines_of(storage.read("s1"))
    line = bytearray(lines[seq - 1])
    pos = line.index(b'"ts":"') + 8  # a digit of the timestamp: still valid JSON
    line[pos] = ord("9") if line[pos] != ord("9") else ord("8")
    lines[seq - 1] = bytes(line)
    result = verify_recording(b"".join(lines), signer.public_key, session_id="s1", index=ENDED)
    assert result.status == "tampered"
    assert result.first_bad_seq == seq
    assert "hash mismatch" in result.detail
    assert not result.ok


def test_flipped_byte_in_sql(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    make_session()
    data = storage.read("s1")
    assert data.count(b"SELECT 1 FROM customers") == 1
    bad = data.replace(b"SELECT 1 FROM customers", b"SELECT 1 FROM customerz")
    seq = next(i for i, line in enumerate(lines_of(bad), 1) if b"customerz" in line)
    result = verify_recording(bad, signer.public_key, session_id="s1")
    assert (result.status, result.first_bad_seq) == ("tampered", seq)


def test_flipped_byte_in_the_stored_hash(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    make_session()
    lines = lines_of(storage.read("s1"))
    line = lines[3]
    i = line.rindex(b'"hash":"') + 9
    lines[3] = line[:i] + (b"0" if line[i : i + 1] != b"0" else b"1") + line[i + 1 :]
    result = verify_recording(b"".join(lines), signer.public_key, session_id="s1")
    assert (result.status, result.first_bad_seq) == ("tampered", 4)


def test_deleted_line(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    make_session()
    lines = lines_of(storage.read("s1"))
    del lines[2]
    result = verify_recording(b"".join(lines), signer.public_key, session_id="s1", index=ENDED)
    assert (result.status, result.first_bad_seq) == ("tampered", 3)
    assert result.events == 2


def test_reordered_lines(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    make_session()
    lines = lines_of(storage.read("s1"))
    lines[3], lines[4] = lines[4], lines[3]
    result = verify_recording(b"".join(lines), signer.public_key, session_id="s1")
    assert (result.status, result.first_bad_seq) == ("tampered", 4)


def test_inserted_duplicate_line(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    make_session()
    lines = lines_of(storage.read("s1"))
    lines.insert(3, lines[2])
    result = verify_recording(b"".join(lines), signer.public_key, session_id="s1")
    assert (result.status, result.first_bad_seq) == ("tampered", 4)


@pytest.mark.parametrize("cut", [1, 2, 5])
def test_truncated_tail_of_a_cleanly_ended_session_is_tampered(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner, cut: int
) -> None:
    make_session()
    lines = lines_of(storage.read("s1"))
    kept = lines[:-cut]
    result = verify_recording(b"".join(kept), signer.public_key, session_id="s1", index=ENDED)
    assert result.status == "tampered"
    assert result.first_bad_seq == len(kept) + 1
    assert "truncated" in result.detail


@pytest.mark.parametrize("cut", [1, 2, 5])
def test_the_same_cut_after_a_crash_is_unterminated(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner, cut: int
) -> None:
    make_session()
    kept = lines_of(storage.read("s1"))[:-cut]
    for index in (CRASHED, None):
        result = verify_recording(b"".join(kept), signer.public_key, session_id="s1", index=index)
        assert result.status == "unterminated", result.detail
        assert result.first_bad_seq is None
        assert result.events == len(kept)
        assert result.ok


def test_crash_cut_session(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    make_session(statements=5, end=False, checkpoint_every=4)
    data = storage.read("s1")
    result = verify_recording(data, signer.public_key, session_id="s1", index=CRASHED)
    assert result.status == "unterminated"
    assert result.last_signed_seq is not None
    assert result.last_signed_seq < result.events
    assert "not signed" in result.detail


def test_partial_last_line_is_tampered(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    make_session(end=False)
    data = storage.read("s1")
    n = len(lines_of(data))
    partial = data + b'{"v":1,"session":"s1","seq'
    for index in (CRASHED, ENDED, None):
        result = verify_recording(partial, signer.public_key, session_id="s1", index=index)
        assert result.status == "tampered"
        assert result.first_bad_seq == n + 1
        assert "incomplete" in result.detail
    # a whole line cut short (its newline lost) too
    result = verify_recording(data[:-1], signer.public_key, session_id="s1")
    assert (result.status, result.first_bad_seq) == ("tampered", n)


def test_missing_recording(signer: RecordingSigner) -> None:
    result = verify_recording(None, signer.public_key, session_id="s1", index=ENDED)
    assert result.status == "missing"
    assert not result.ok


def test_verify_session_missing_file(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    store = MemoryStore()
    store.create_session(SessionRecord("s1", "agent-7", "pgwarden-local", "shop", 1.0))
    make_session("s1")
    store.end_session("s1", ended_at=2.0, reason="bye")
    assert verify_session("s1", storage, signer.public_key, store).status == "intact"
    saved = storage.read("s1")
    storage.delete("s1")
    assert verify_session("s1", storage, signer.public_key, store).status == "missing"
    storage.write_raw("s1", saved)  # restored
    assert verify_session("s1", storage, signer.public_key, store).status == "intact"
    assert verify_session("nope", storage, signer.public_key, store).status == "missing"


def test_verify_session_uses_the_index(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    store = MemoryStore()
    store.create_session(SessionRecord("s1", "agent-7", "pgwarden-local", "shop", 1.0))
    make_session("s1")
    full = storage.read("s1")
    storage.write_raw("s1", b"".join(lines_of(full)[:-3]))
    assert verify_session("s1", storage, signer.public_key, store).status == "unterminated"
    store.end_session("s1", ended_at=2.0, reason="bye")
    assert verify_session("s1", storage, signer.public_key, store).status == "tampered"


def test_bad_signature(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    make_session()
    lines = lines_of(storage.read("s1"))

    def forge(seq: int, obj: dict[str, object]) -> None:
        if obj["type"] == "checkpoint":
            sig = bytearray(base64.b64decode(str(obj["signature"])))
            sig[0] ^= 1
            obj["signature"] = base64.b64encode(bytes(sig)).decode()

    forged = rechain(lines, forge)
    result = verify_recording(forged, signer.public_key, session_id="s1")
    assert result.status == "tampered"
    assert result.first_bad_seq == len(lines)
    assert "bad checkpoint signature" in result.detail


def test_rechained_edit_is_caught_by_the_checkpoint(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    """An attacker who edits an event and recomputes the whole chain (no key needed for
    that) is caught by the first signed checkpoint after the edit."""
    make_session(checkpoint_every=4)
    lines = lines_of(storage.read("s1"))

    def edit(seq: int, obj: dict[str, object]) -> None:
        if seq == 3:
            obj["sql"] = "SELECT innocent"

    forged = rechain(lines, edit)
    assert verify_recording(storage.read("s1"), signer.public_key).status == "intact"
    result = verify_recording(forged, signer.public_key, session_id="s1")
    assert result.status == "tampered"
    assert result.first_bad_seq == 5  # the checkpoint covering events 1-4
    assert "does not cover" in result.detail


def test_checkpoint_from_another_key(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    make_session()
    data = storage.read("s1")
    other = RecordingSigner.generate()
    result = verify_recording(data, other.public_key, session_id="s1")
    assert result.status == "tampered"
    assert "untrusted key" in result.detail
    first_checkpoint = _types(data).index("checkpoint") + 1
    assert result.first_bad_seq == first_checkpoint
    # trusting both keys (rotation) accepts it
    assert verify_recording(data, [other.public_key, signer.public_key]).status == "intact"


def test_checkpoint_resigned_by_an_attacker_key(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    make_session()
    attacker = RecordingSigner.generate()
    lines = lines_of(storage.read("s1"))
    state: dict[str, object] = {}

    def resign(seq: int, obj: dict[str, object]) -> None:
        if obj["type"] == "checkpoint":
            obj.update(attacker.sign_checkpoint("s1", seq - 1, str(state["prev_hash"])))
            # claim the real key's id: the signature must then fail
            obj["key_id"] = signer.key_id

    # rechain while tracking the previous hash for re-signing
    out = []
    prev = ZERO_HASH
    for i, line in enumerate(lines, 1):
        obj = json.loads(unseal(line)[0])
        obj["prev"] = prev
        state["prev_hash"] = prev
        resign(i, obj)
        new, prev = seal(canonical_json(obj), prev)
        out.append(new)
    result = verify_recording(b"".join(out), signer.public_key, session_id="s1")
    assert result.status == "tampered"
    assert "bad checkpoint signature" in result.detail


def test_events_after_session_end(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    make_session()
    lines = lines_of(storage.read("s1"))
    extra = rechain([*lines, lines[2]])
    result = verify_recording(extra, signer.public_key, session_id="s1")
    assert result.status == "tampered"
    assert result.first_bad_seq == len(lines) + 1


def test_line_from_another_session(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    make_session("s1")
    make_session("s2")
    a, b = lines_of(storage.read("s1")), lines_of(storage.read("s2"))
    mixed = b"".join([*a[:2], b[2], *a[3:]])
    result = verify_recording(mixed, signer.public_key, session_id="s1")
    assert (result.status, result.first_bad_seq) == ("tampered", 3)
    assert "session" in result.detail


def test_index_progress_beyond_the_recording(
    make_session: MakeSession, storage: MemoryStorage, signer: RecordingSigner
) -> None:
    writer = make_session(end=False, checkpoint_every=2)
    data = storage.read("s1")
    n = writer.last_seq
    ok = verify_recording(data, signer.public_key, index=IndexInfo(False, n, writer.last_hash))
    assert ok.status == "unterminated"
    cut = b"".join(lines_of(data)[:-2])
    result = verify_recording(cut, signer.public_key, index=IndexInfo(False, n, writer.last_hash))
    assert (result.status, result.first_bad_seq) == ("tampered", n - 1)
    wrong = verify_recording(data, signer.public_key, index=IndexInfo(False, n, "0" * 64))
    assert (wrong.status, wrong.first_bad_seq) == ("tampered", n)


def test_garbage_and_empty(signer: RecordingSigner) -> None:
    assert verify_recording(b"", signer.public_key).status == "unterminated"
    assert verify_recording(b"", signer.public_key, index=ENDED).status == "tampered"
    result = verify_recording(b"not json\n", signer.public_key)
    assert (result.status, result.first_bad_seq) == ("tampered", 1)
    body = canonical_json(
        {"v": 1, "session": "s", "seq": 1, "ts": "x", "type": "t", "prev": "0" * 64}
    )
    line, _ = seal(body, "0" * 64)
    dup = line.replace(b'"v":1', b'"v":1,"v":1')
    line2, _ = seal(dup[: dup.rindex(b',"hash"')] + b"}", "0" * 64)
    assert verify_recording(line2, signer.public_key).status == "tampered"
    future = line.replace(b'"v":1', b'"v":9')
    line3, _ = seal(future[: future.rindex(b',"hash"')] + b"}", "0" * 64)
    result = verify_recording(line3, signer.public_key)
    assert result.status == "tampered"
    assert "version" in result.detail or "malformed" in result.detail
