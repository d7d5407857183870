"""S3Storage against a real S3 API server (moto in server mode on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "recording"))
from recording_helpers import lines_of, session_start, statement, write_session

from pgwarden.recording import open_storage
from pgwarden.recording.codec import read_events
from pgwarden.recording.crypto import RecordingCipher
from pgwarden.recording.signing import RecordingSigner
from pgwarden.recording.storage.base import RecordingNotFound
from pgwarden.recording.storage.s3 import S3Storage
from pgwarden.recording.verify import IndexInfo, verify_recording
from pgwarden.recording.writer import GroupCommitter, RecordingWriter, recover_session

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

BUCKET = "recordings"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Standard AWS variables pointing at the server, and a fresh bucket."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    yield client
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    client.delete_bucket(Bucket=BUCKET)


@pytest.fixture
def signer() -> RecordingSigner:
    return RecordingSigner.generate()


def _keys(client: Any, prefix: str = "") -> list[str]:
    return sorted(
        o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    )


def test_session_round_trip(s3: Any, tmp_path: Path, signer: RecordingSigner) -> None:
    storage = open_storage(f"s3://{BUCKET}/pg/recs", tmp_path / "gw")
    assert isinstance(storage, S3Storage)
    writer = RecordingWriter("sess-1", storage, signer, checkpoint_every=3)
    write_session(writer, statements=4)
    assert storage.drain(30)
    keys = _keys(s3, "pg/recs/sess-1/")
    assert len(keys) >= 3  # one segment per checkpoint, plus the end
    assert keys[0] == "pg/recs/sess-1/0000000000000000.jsonl"
    # every segment holds whole lines
    for key in keys:
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert body.endswith(b"\n")
    # the spool is gone once S3 holds everything
    assert not (tmp_path / "gw" / "recordings-spool" / "sess-1.jsonl").exists()
    # another machine (no spool) reads the same bytes, and they verify
    elsewhere = S3Storage(BUCKET, "pg/recs", spool_dir=tmp_path / "other")
    data = elsewhere.read("sess-1")
    assert verify_recording(data, signer.public_key, index=IndexInfo(True)).status == "intact"
    assert elsewhere.list() == ["sess-1"]
    assert elsewhere.exists("sess-1") and not elsewhere.exists("sess-2")
    events = read_events(data)
    assert events[0].data["subject"] == "agent-7"
    elsewhere.delete("sess-1")
    assert _keys(s3, "pg/recs/") == []
    with pytest.raises(RecordingNotFound):
        elsewhere.read("sess-1")
    storage.shutdown()
    elsewhere.shutdown()


def test_append_goes_to_the_spool_first(s3: Any, tmp_path: Path, signer: RecordingSigner) -> None:
    storage = S3Storage(BUCKET, "", spool_dir=tmp_path / "spool")
    writer = RecordingWriter("sess-2", storage, signer, checkpoint_every=1000)
    writer.append(session_start())
    writer.append(statement())
    spooled = (tmp_path / "spool" / "sess-2.jsonl").read_bytes()
    assert len(lines_of(spooled)) == 2
    assert _keys(s3) == []  # nothing published before a checkpoint
    assert storage.read("sess-2") == spooled  # but the gateway reads it all
    writer.checkpoint_now()
    assert storage.drain(30)
    assert _keys(s3) == ["sess-2/0000000000000000.jsonl"]
    writer.end_sync("bye")
    assert storage.drain(30)
    assert verify_recording(storage.read("sess-2"), signer.public_key).status == "intact"
    storage.shutdown()


def test_segment_size_threshold(s3: Any, tmp_path: Path, signer: RecordingSigner) -> None:
    storage = S3Storage(BUCKET, "big", spool_dir=tmp_path / "spool", segment_bytes=600)
    writer = RecordingWriter("sess-3", storage, signer, checkpoint_every=1000)
    writer.append(session_start())
    for i in range(6):
        writer.append(statement(f"SELECT {i}, '{'x' * 200}'"))
    assert storage.drain(30)
    assert len(_keys(s3, "big/sess-3/")) >= 2
    writer.end_sync("bye")
    assert storage.drain(30)
    fresh = S3Storage(BUCKET, "big", spool_dir=tmp_path / "fresh")
    assert verify_recording(fresh.read("sess-3"), signer.public_key).status == "intact"
    storage.shutdown()


def test_crash_and_recovery(s3: Any, tmp_path: Path, signer: RecordingSigner) -> None:
    spool = tmp_path / "spool"
    first = S3Storage(BUCKET, "r", spool_dir=spool)
    writer = RecordingWriter("sess-4", first, signer, checkpoint_every=4)
    write_session(writer, statements=4, end=False)  # the last 2 events follow a checkpoint
    assert first.drain(30)
    written = first.read("sess-4")
    # the gateway dies here: no close, no shutdown; whatever was not published is in the spool
    published = S3Storage(BUCKET, "r", spool_dir=tmp_path / "reader").read("sess-4")
    assert written.startswith(published) and len(published) < len(written)

    second = S3Storage(BUCKET, "r", spool_dir=spool)  # the restarted gateway
    assert second.recover() == ["sess-4"]
    assert S3Storage(BUCKET, "r", spool_dir=tmp_path / "reader2").read("sess-4") == written
    assert verify_recording(written, signer.public_key).status == "unterminated"
    recover_session("sess-4", second, signer)
    assert second.drain(30)
    assert not (spool / "sess-4.jsonl").exists()
    final = S3Storage(BUCKET, "r", spool_dir=tmp_path / "reader3").read("sess-4")
    assert final.startswith(written)
    assert verify_recording(final, signer.public_key, index=IndexInfo(True)).status == "intact"
    first.shutdown()
    second.shutdown()


def test_tampering_in_s3_is_detected(s3: Any, tmp_path: Path, signer: RecordingSigner) -> None:
    storage = S3Storage(BUCKET, "t", spool_dir=tmp_path / "spool")
    write_session(RecordingWriter("sess-5", storage, signer, checkpoint_every=3), statements=4)
    assert storage.drain(30)
    keys = _keys(s3, "t/sess-5/")
    reader = S3Storage(BUCKET, "t", spool_dir=tmp_path / "reader")
    assert verify_recording(reader.read("sess-5"), signer.public_key).status == "intact"

    body = s3.get_object(Bucket=BUCKET, Key=keys[1])["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=keys[1], Body=body.replace(b"SELECT", b"SELECt", 1))
    result = verify_recording(reader.read("sess-5"), signer.public_key, index=IndexInfo(True))
    assert result.status == "tampered"
    first_seq_in_segment = (
        len(lines_of(s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read())) + 1
    )
    assert result.first_bad_seq is not None and result.first_bad_seq >= first_seq_in_segment

    s3.put_object(Bucket=BUCKET, Key=keys[1], Body=body)  # restored
    assert verify_recording(reader.read("sess-5"), signer.public_key).status == "intact"

    s3.delete_object(Bucket=BUCKET, Key=keys[-1])  # the tail of a cleanly ended session
    result = verify_recording(reader.read("sess-5"), signer.public_key, index=IndexInfo(True))
    assert result.status == "tampered" and "truncated" in result.detail

    s3.delete_object(Bucket=BUCKET, Key=keys[1])  # a middle segment
    result = verify_recording(reader.read("sess-5"), signer.public_key, index=IndexInfo(True))
    assert result.status == "tampered"
    storage.shutdown()


def test_upload_failures_are_retried(s3: Any, tmp_path: Path, signer: RecordingSigner) -> None:
    storage = S3Storage(
        "no-such-bucket", "", spool_dir=tmp_path / "spool", max_attempts=2, retry_delay=0.01
    )
    writer = RecordingWriter("sess-6", storage, signer, checkpoint_every=2)
    writer.append(session_start())
    writer.append(statement())  # checkpoint -> upload, which fails
    assert storage.drain(30)
    assert storage.pending_failures() == {"sess-6": 1}
    assert storage.last_error
    s3.create_bucket(Bucket="no-such-bucket")
    try:
        writer.end_sync("bye")  # close retries the failed segment, then publishes the rest
        assert storage.drain(30)
        assert storage.pending_failures() == {}
        data = S3Storage("no-such-bucket", "", spool_dir=tmp_path / "r").read("sess-6")
        assert verify_recording(data, signer.public_key).status == "intact"
        assert not (tmp_path / "spool" / "sess-6.jsonl").exists()
    finally:
        for obj in s3.list_objects_v2(Bucket="no-such-bucket").get("Contents", []):
            s3.delete_object(Bucket="no-such-bucket", Key=obj["Key"])
        s3.delete_bucket(Bucket="no-such-bucket")
        storage.shutdown()


def test_async_fsync_and_encryption(s3: Any, tmp_path: Path, signer: RecordingSigner) -> None:
    storage = S3Storage(BUCKET, "enc", spool_dir=tmp_path / "spool")
    cipher = RecordingCipher(os.urandom(32))

    async def scenario() -> None:
        committer = GroupCommitter(storage)
        try:
            writers = [
                RecordingWriter(
                    f"a{i}",
                    storage,
                    signer,
                    durability="fsync",
                    committer=committer,
                    cipher=cipher,
                    checkpoint_every=3,
                )
                for i in range(5)
            ]

            async def run(w: RecordingWriter) -> None:
                await w.write_session_start(session_start())
                for j in range(4):
                    await w.write_statement(statement(f"SELECT {j} FROM customers"))
                await w.end("bye")

            await asyncio.gather(*(run(w) for w in writers))
        finally:
            committer.close()

    asyncio.run(scenario())
    assert storage.drain(30)
    reader = S3Storage(BUCKET, "enc", spool_dir=tmp_path / "reader")
    assert reader.list() == [f"a{i}" for i in range(5)]
    for i in range(5):
        data = reader.read(f"a{i}")
        assert b"customers" not in data
        assert verify_recording(data, signer.public_key).status == "intact"
        assert read_events(data, cipher=cipher)[1].data["sql"] == "SELECT 0 FROM customers"
    storage.shutdown()


def test_recovering_a_published_session_without_spool(
    s3: Any, tmp_path: Path, signer: RecordingSigner
) -> None:
    """A session closed without session_end (its spool gone): recovery appends after what S3
    holds and never overwrites a segment."""
    storage = S3Storage(BUCKET, "p", spool_dir=tmp_path / "spool")
    writer = RecordingWriter("sess-7", storage, signer, checkpoint_every=3)
    write_session(writer, statements=2, end=False)
    writer.close()  # e.g. the session was ended after a recording failure
    assert storage.drain(30)
    assert not (tmp_path / "spool" / "sess-7.jsonl").exists()
    before = storage.read("sess-7")
    assert verify_recording(before, signer.public_key).status == "unterminated"
    recover_session("sess-7", storage, signer)
    assert storage.drain(30)
    after = S3Storage(BUCKET, "p", spool_dir=tmp_path / "reader").read("sess-7")
    assert after.startswith(before)
    assert verify_recording(after, signer.public_key).status == "intact"
    storage.shutdown()
