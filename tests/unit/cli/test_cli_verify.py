"""`pgwarden verify [ID ...] [--all]`, on real recordings written as the gateway writes them:
intact, unterminated, tampered and missing, with the first bad event named."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_cli_sessions import Env, make_env, rich_session, simple_session
from typer.testing import Result

from pgwarden.recording.canonical import ZERO_HASH, canonical_json, seal, unseal
from pgwarden.recording.crypto import KEY_ENV, RecordingCipher
from pgwarden.recording.events import SessionStart
from pgwarden.recording.signing import RecordingSigner
from pgwarden.recording.writer import RecordingWriter


@pytest.fixture
def env(
    tmp_path: Path, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Env]:
    monkeypatch.delenv(KEY_ENV, raising=False)
    e = make_env(tmp_path, write_config)
    yield e
    e.gw.close()


def verify(cli: Callable[..., Result], env: Env, *args: str) -> tuple[int, list[dict[str, Any]]]:
    result = cli("verify", *args, "--json", "-c", str(env.config))
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_intact(cli: Callable[..., Result], env: Env) -> None:
    rich_session(env.gw)
    result = cli("verify", "s-rich", "-c", str(env.config))
    assert result.exit_code == 0, result.output
    assert "intact" in result.stdout and "s-rich" in result.stdout
    code, doc = verify(cli, env, "s-rich")
    assert code == 0
    (entry,) = doc
    assert entry["id"] == "s-rich" and entry["status"] == "intact"
    assert entry["first_bad_seq"] is None and entry["ok"] is True
    assert entry["indexed"] is True and entry["state"] == "ended"
    assert entry["events"] == len(lines(env.gw.recording_path("s-rich")))


@pytest.mark.parametrize("seq", [1, 3, 7])
def test_flipped_byte(cli: Callable[..., Result], env: Env, seq: int) -> None:
    rich_session(env.gw)
    path = env.gw.recording_path("s-rich")
    original = path.read_bytes()
    recording = lines(path)
    line = bytearray(recording[seq - 1])
    pos = line.index(b'"ts":"') + 8  # a digit of the timestamp: still valid JSON
    line[pos] = ord("9") if line[pos] != ord("9") else ord("8")
    recording[seq - 1] = bytes(line)
    path.write_bytes(b"".join(recording))

    result = cli("verify", "s-rich", "-c", str(env.config))
    assert result.exit_code == 1
    assert "tampered" in result.stdout
    assert f"event {seq}: hash mismatch" in result.stdout
    code, doc = verify(cli, env, "s-rich")
    assert code == 1
    assert (doc[0]["status"], doc[0]["first_bad_seq"]) == ("tampered", seq)

    path.write_bytes(original)  # restored
    assert verify(cli, env, "s-rich")[0] == 0


def test_cut_tail_of_a_closed_session(cli: Callable[..., Result], env: Env) -> None:
    rich_session(env.gw)
    path = env.gw.recording_path("s-rich")
    original = path.read_bytes()
    recording = lines(path)
    for keep in (len(recording) - 1, len(recording) - 2, 5):  # cut the last checkpoint, ...
        path.write_bytes(b"".join(recording[:keep]))
        code, doc = verify(cli, env, "s-rich")
        assert code == 1, keep
        assert doc[0]["status"] == "tampered"
        assert doc[0]["first_bad_seq"] == keep + 1
    path.write_bytes(original)
    assert verify(cli, env, "s-rich")[0] == 0


def test_crash_cut_session_is_unterminated(cli: Callable[..., Result], env: Env) -> None:
    simple_session(env.gw, "s-crash", end=False)
    code, doc = verify(cli, env, "s-crash")
    assert code == 0
    assert doc[0]["status"] == "unterminated" and doc[0]["state"] == "active"
    # the gateway restarts and marks it crashed (before recovery): still unterminated
    env.gw.store.mark_active_crashed(ended_at=0.0, reason="crash")
    code, doc = verify(cli, env, "s-crash")
    assert code == 0
    assert doc[0]["status"] == "unterminated" and doc[0]["state"] == "crashed"
    result = cli("verify", "s-crash", "-c", str(env.config))
    assert result.exit_code == 0 and "unterminated" in result.stdout


def test_deleted_recording_is_missing_then_restored(
    cli: Callable[..., Result], env: Env, tmp_path: Path
) -> None:
    rich_session(env.gw)
    path = env.gw.recording_path("s-rich")
    backup = tmp_path / "backup.jsonl"
    shutil.move(path, backup)
    result = cli("verify", "s-rich", "-c", str(env.config))
    assert result.exit_code == 1
    assert "missing" in result.stdout
    code, doc = verify(cli, env, "s-rich")
    assert code == 1 and doc[0]["status"] == "missing"
    code, doc = verify(cli, env, "--all")
    assert code == 1 and [d["status"] for d in doc] == ["missing"]

    shutil.move(backup, path)
    assert verify(cli, env, "s-rich")[0] == 0
    assert verify(cli, env, "--all")[0] == 0


def test_unknown_session(cli: Callable[..., Result], env: Env) -> None:
    simple_session(env.gw, "s1")
    code, doc = verify(cli, env, "s1", "nope", "../x")
    assert code == 1
    assert [(d["id"], d["status"]) for d in doc] == [
        ("s1", "intact"),
        ("nope", "missing"),
        ("../x", "missing"),
    ]
    assert doc[1]["indexed"] is False


def test_one_bad_among_several(cli: Callable[..., Result], env: Env) -> None:
    simple_session(env.gw, "s1")
    simple_session(env.gw, "s2")
    simple_session(env.gw, "s3", end=False)
    path = env.gw.recording_path("s2")
    path.write_bytes(path.read_bytes().replace(b"SELECT 1", b"SELECT 9", 1))
    code, doc = verify(cli, env, "s1", "s2", "s3")
    assert code == 1
    assert [d["status"] for d in doc] == ["intact", "tampered", "unterminated"]
    assert verify(cli, env, "s1", "s3")[0] == 0


def test_all_includes_recordings_not_in_the_index(cli: Callable[..., Result], env: Env) -> None:
    rich_session(env.gw)
    simple_session(env.gw, "s-crash", end=False)
    orphan = RecordingWriter("s-orphan", env.gw.storage, env.gw.signer)
    orphan.append(SessionStart(**_start_fields()))
    orphan.end_sync("done")
    code, doc = verify(cli, env, "--all")
    assert code == 0
    by_id = {d["id"]: d for d in doc}
    assert set(by_id) == {"s-rich", "s-crash", "s-orphan"}
    assert by_id["s-orphan"]["indexed"] is False and by_id["s-orphan"]["status"] == "intact"
    assert by_id["s-crash"]["status"] == "unterminated"
    result = cli("verify", "--all", "-c", str(env.config))
    assert result.exit_code == 0
    assert "not in the session index" in result.stdout
    assert "3 sessions" in result.stdout


def _start_fields() -> dict[str, Any]:
    return {
        "subject": "ghost",
        "issuer": "pgwarden-local",
        "groups": (),
        "client_addr": "127.0.0.1:1",
        "application_name": "",
        "target": "shop",
        "gateway_instance": "gw-1",
        "tls": False,
    }


def test_all_with_tampering(cli: Callable[..., Result], env: Env) -> None:
    simple_session(env.gw, "s1")
    simple_session(env.gw, "s2")
    path = env.gw.recording_path("s1")
    path.write_bytes(b"".join(lines(path)[:-1]))
    code, doc = verify(cli, env, "--all")
    assert code == 1
    assert {d["id"]: d["status"] for d in doc} == {"s1": "tampered", "s2": "intact"}


def test_all_empty(cli: Callable[..., Result], env: Env) -> None:
    assert verify(cli, env, "--all") == (0, [])


def test_needs_ids_or_all(cli: Callable[..., Result], env: Env) -> None:
    result = cli("verify", "-c", str(env.config))
    assert result.exit_code == 2
    assert "--all" in result.stderr


def test_rechained_by_an_attacker_is_tampered(cli: Callable[..., Result], env: Env) -> None:
    """Rewriting the SQL and recomputing every hash does not help without the signing key."""
    rich_session(env.gw)
    path = env.gw.recording_path("s-rich")
    out: list[bytes] = []
    prev = ZERO_HASH
    for line in lines(path):
        body, _ = unseal(line)
        obj = json.loads(body)
        obj["prev"] = prev
        if obj.get("sql") == "DELETE FROM orders":
            obj["sql"] = "SELECT 1"
        new_line, prev = seal(canonical_json(obj), prev)
        out.append(new_line)
    path.write_bytes(b"".join(out))
    code, doc = verify(cli, env, "s-rich")
    assert code == 1 and doc[0]["status"] == "tampered"
    assert doc[0]["first_bad_seq"] is not None


def test_signed_by_another_key_is_tampered(cli: Callable[..., Result], env: Env) -> None:
    other = RecordingSigner.generate()
    writer = RecordingWriter("s-forged", env.gw.storage, other)
    writer.append(SessionStart(**_start_fields()))
    writer.end_sync("done")
    code, doc = verify(cli, env, "s-forged")
    assert code == 1
    assert "untrusted key" in doc[0]["detail"]


def test_public_key_option(cli: Callable[..., Result], env: Env, tmp_path: Path) -> None:
    """An auditor without the gateway's keys directory passes the public key."""
    rich_session(env.gw)
    pub = tmp_path / "gateway.pub.pem"
    pub.write_bytes(env.gw.signer.public_pem())
    shutil.rmtree(env.data_dir / "keys")
    result = cli("verify", "s-rich", "-c", str(env.config))
    assert result.exit_code == 1
    assert "no trusted signing key" in result.stderr
    result = cli("verify", "s-rich", "--public-key", str(pub), "-c", str(env.config))
    assert result.exit_code == 0, result.output
    assert "intact" in result.stdout


def test_encrypted_recording_verifies_without_the_key(cli: Callable[..., Result], env: Env) -> None:
    cipher = RecordingCipher.from_env({KEY_ENV: RecordingCipher.generate_key()})
    rich_session(env.gw, cipher=cipher)
    code, doc = verify(cli, env, "s-rich")
    assert code == 0 and doc[0]["status"] == "intact"


@pytest.mark.parametrize(
    "argv",
    [
        ["-c", "{cfg}", "verify", "s1"],
        ["verify", "-c", "{cfg}", "s1"],
        ["verify", "s1", "-c", "{cfg}"],
        ["verify", "--all", "--config", "{cfg}"],
    ],
)
def test_config_anywhere(cli: Callable[..., Result], env: Env, argv: list[str]) -> None:
    simple_session(env.gw, "s1")
    result = cli(*[a.format(cfg=env.config) for a in argv])
    assert result.exit_code == 0, result.output
    assert "intact" in result.stdout
