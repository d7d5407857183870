"""Encryption at rest: round trip, tamper evidence, keys from the environment."""

from __future__ import annotations

import base64
import json
import os

import pytest
from recording_helpers import lines_of, rechain, write_session

from pgwarden.recording.canonical import unseal
from pgwarden.recording.codec import read_events
from pgwarden.recording.crypto import KEY_ENV, OLD_KEYS_ENV, RecordingCipher
from pgwarden.recording.errors import DecryptionError
from pgwarden.recording.signing import RecordingSigner
from pgwarden.recording.storage.memory import MemoryStorage
from pgwarden.recording.verify import verify_recording
from pgwarden.recording.writer import RecordingWriter


@pytest.fixture
def cipher() -> RecordingCipher:
    return RecordingCipher(os.urandom(32))


def _write(
    storage: MemoryStorage, signer: RecordingSigner, cipher: RecordingCipher | None
) -> bytes:
    write_session(RecordingWriter("s1", storage, signer, cipher=cipher, checkpoint_every=4))
    return storage.read("s1")


def test_round_trip(
    storage: MemoryStorage, signer: RecordingSigner, cipher: RecordingCipher
) -> None:
    data = _write(storage, signer, cipher)
    assert b"customers" not in data and b"agent-7" not in data  # payloads are ciphertext
    plain_storage = MemoryStorage()
    plain = read_events(_write(plain_storage, signer, None))
    events = read_events(data, cipher=cipher)
    assert [e.type for e in events] == [e.type for e in plain]
    for enc, clear in zip(events, plain, strict=True):
        assert enc.data == clear.data or enc.type == "checkpoint"
        assert enc.encrypted == (enc.type != "checkpoint")
    assert events[0].data["subject"] == "agent-7"
    assert events[2].data["sql"] == "SELECT 0 FROM customers"


def test_envelope_and_checkpoints_stay_in_the_clear(
    storage: MemoryStorage, signer: RecordingSigner, cipher: RecordingCipher
) -> None:
    data = _write(storage, signer, cipher)
    for line in lines_of(data):
        obj = json.loads(unseal(line)[0])
        assert {"v", "session", "seq", "ts", "type", "prev"} <= obj.keys()
        if obj["type"] == "checkpoint":
            assert "enc" not in obj and "signature" in obj
        else:
            assert set(obj) == {"v", "session", "seq", "ts", "type", "prev", "enc"}
            assert obj["enc"]["alg"] == "A256GCM" and obj["enc"]["kid"] == cipher.key_id


def test_verify_needs_no_data_key(
    storage: MemoryStorage, signer: RecordingSigner, cipher: RecordingCipher
) -> None:
    data = _write(storage, signer, cipher)
    assert verify_recording(data, signer.public_key).status == "intact"


def test_flipped_ciphertext_byte(
    storage: MemoryStorage, signer: RecordingSigner, cipher: RecordingCipher
) -> None:
    data = _write(storage, signer, cipher)
    lines = lines_of(data)
    obj = json.loads(unseal(lines[2])[0])
    ct = bytearray(base64.b64decode(obj["enc"]["ct"]))
    ct[0] ^= 0x01
    new_ct = base64.b64encode(bytes(ct))
    lines[2] = lines[2].replace(obj["enc"]["ct"].encode(), new_ct)
    tampered = b"".join(lines)
    result = verify_recording(tampered, signer.public_key)
    assert (result.status, result.first_bad_seq) == ("tampered", 3)
    # an attacker who also recomputes the chain is still caught: by the checkpoint, and by
    # GCM when reading
    rechained = rechain(lines)
    assert verify_recording(rechained, signer.public_key).status == "tampered"
    with pytest.raises(DecryptionError):
        read_events(rechained, cipher=cipher)


def test_ciphertext_moved_to_another_event(
    storage: MemoryStorage, signer: RecordingSigner, cipher: RecordingCipher
) -> None:
    """The associated data binds a ciphertext to its position."""
    data = _write(storage, signer, cipher)
    objs = [json.loads(unseal(line)[0]) for line in lines_of(data)]
    assert objs[2]["type"] == "statement"
    other = next(o for o in objs[3:] if o["type"] == "statement")

    def swap(seq: int, obj: dict[str, object]) -> None:
        if seq == 3:
            obj["enc"] = other["enc"]  # another statement's payload at event 3

    with pytest.raises(DecryptionError):
        read_events(rechain(lines_of(data), swap), cipher=cipher)


def test_wrong_key_and_old_keys(storage: MemoryStorage, signer: RecordingSigner) -> None:
    old_key = os.urandom(32)
    data = _write(storage, signer, RecordingCipher(old_key))
    with pytest.raises(DecryptionError, match="no key"):
        read_events(data, cipher=RecordingCipher(os.urandom(32)))
    with pytest.raises(DecryptionError, match="PGWARDEN_RECORDING_KEY"):
        read_events(data)
    rotated = RecordingCipher(os.urandom(32), old_keys=[old_key])
    assert read_events(data, cipher=rotated)[0].data["subject"] == "agent-7"
    assert len(read_events(data, strict=False)) == sum(
        1 for line in lines_of(data) if b'"checkpoint"' in line
    )


def test_from_env() -> None:
    assert RecordingCipher.from_env({}) is None
    key = RecordingCipher.generate_key()
    c = RecordingCipher.from_env({KEY_ENV: key})
    assert c is not None and len(c.key_id) == 16
    with pytest.raises(ValueError, match=KEY_ENV):
        RecordingCipher.from_env({KEY_ENV: "not base64!"})
    with pytest.raises(ValueError, match="32 bytes"):
        RecordingCipher.from_env({KEY_ENV: base64.b64encode(b"short").decode()})
    with pytest.raises(ValueError, match=OLD_KEYS_ENV):
        RecordingCipher.from_env({KEY_ENV: key, OLD_KEYS_ENV: "bad!"})
    two = RecordingCipher.from_env({KEY_ENV: key, OLD_KEYS_ENV: RecordingCipher.generate_key()})
    assert two is not None
