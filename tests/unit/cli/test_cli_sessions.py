"""`pgwarden sessions list|export|prune`, on real recordings written as the gateway writes them.

The helpers here (``Gateway``, ``SessionRun``, ``rich_session``, ``make_env``) are shared by
test_cli_replay.py and test_cli_verify.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from pgwarden.recording.crypto import KEY_ENV, RecordingCipher
from pgwarden.recording.events import (
    ApprovalEvent,
    Column,
    ContextEvent,
    Decision,
    ErrorEvent,
    ResultBuilder,
    SessionStart,
    StatementEvent,
    encode_params,
    statement_hash,
)
from pgwarden.recording.signing import RecordingSigner, load_trusted_keys
from pgwarden.recording.storage import RecordingStorage, open_storage
from pgwarden.recording.verify import verify_recording
from pgwarden.recording.writer import RecordingWriter, Written
from pgwarden.store import SessionRecord, Store, open_store

# --------------------------------------------------------------------------------------------
# writing sessions like the gateway


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class SessionRun:
    """One session being recorded: index entry, writer, counts, like the data path."""

    def __init__(
        self,
        gw: Gateway,
        session_id: str,
        *,
        subject: str,
        target: str,
        at: float,
        cipher: RecordingCipher | None,
        gap: float,
        groups: Sequence[str] = ("agents",),
    ) -> None:
        self.gw = gw
        self.id = session_id
        self.gap = gap
        self.clock = FakeClock(at)
        gw.store.create_session(
            SessionRecord(
                id=session_id,
                subject=subject,
                issuer="pgwarden-local",
                target=target,
                started_at=at,
                groups=tuple(groups),
                client_addr="127.0.0.1:50432",
                application_name="agent-runner",
                gateway_instance="gw-1",
            )
        )
        self.writer = RecordingWriter(
            session_id,
            gw.storage,
            gw.signer,
            cipher=cipher,
            clock=self.clock,
            on_checkpoint=lambda w: gw.store.record_progress(session_id, w.seq, w.hash),
        )
        self._write(
            SessionStart(
                subject=subject,
                issuer="pgwarden-local",
                groups=tuple(groups),
                client_addr="127.0.0.1:50432",
                application_name="agent-runner",
                target=target,
                gateway_instance="gw-1",
                tls=True,
                claims={"sub": subject, "iss": "pgwarden-local", "groups": list(groups)},
                token_id="jti-" + session_id,
                database_user="app",
            ),
            advance=False,
        )

    def _write(self, event: Any, *, advance: bool = True, gap: float | None = None) -> Written:
        if advance:
            self.clock.now += self.gap if gap is None else gap
        return self.writer.append(event)

    def context(
        self, source: str, changes: Mapping[str, Any], context: Mapping[str, Any], actor: str | None
    ) -> None:
        self._write(ContextEvent(source=source, changes=changes, context=context, actor=actor))

    def statement(
        self,
        sql: str,
        *,
        action: str = "allow",
        rule: str | None = "reads",
        reason: str = "",
        params: Sequence[bytes | None] = (),
        context: Mapping[str, Any] | None = None,
        sources: Mapping[str, str] | None = None,
        kinds: Sequence[str] = ("select",),
        tables: Sequence[str] = (),
        masked: bool = False,
        gap: float | None = None,
    ) -> int:
        written = self._write(
            StatementEvent(
                sql=sql,
                protocol="extended" if params else "simple",
                decision=Decision(action, rule=rule, reason=reason),
                classification={"kinds": list(kinds), "tables_read": list(tables)},
                params=encode_params(params),
                param_types=[23] * len(params),
                context=context or {},
                context_sources=sources or {},
            ),
            gap=gap,
        )
        outcome = {"allow": "allowed", "deny": "denied", "review": "reviewed"}[action]
        self.gw.store.count_statement(self.id, outcome, masked=masked)  # type: ignore[arg-type]
        return written.seq

    def result(
        self,
        statement_seq: int,
        tag: str,
        columns: Sequence[str] = (),
        rows: Sequence[Sequence[bytes | None]] = (),
        masked: Mapping[str, int] | None = None,
    ) -> None:
        builder = ResultBuilder(statement_seq=statement_seq)
        builder.set_columns([Column(name, 25) for name in columns])
        for row in rows:
            builder.add_row(list(row))
        for detector, n in (masked or {}).items():
            builder.count_masked(detector, n)
        self._write(builder.finish(tag))

    def error(self, statement_seq: int, sqlstate: str, message: str, source: str) -> None:
        self._write(
            ErrorEvent(
                sqlstate=sqlstate,
                message=message,
                source=source,  # type: ignore[arg-type]
                statement_seq=statement_seq,
            )
        )

    def approval(
        self, statement_seq: int, sql: str, state: str, actor: str, reason: str | None = None
    ) -> None:
        self._write(
            ApprovalEvent(
                approval_id="ap-1",
                state=state,  # type: ignore[arg-type]
                statement_hash=statement_hash(sql),
                actor=actor,
                at=self.clock.now,
                reason=reason,
                statement_seq=statement_seq,
            )
        )

    def end(self, reason: str = "client closed the connection") -> Written:
        self.clock.now += self.gap
        final = self.writer.end_sync(reason)
        self.gw.store.end_session(
            self.id,
            ended_at=self.clock.now,
            reason=reason,
            state="ended",
            last_seq=final.seq,
            last_hash=final.hash,
        )
        return final

    def crash(self) -> None:
        """The gateway dies: no session_end, the index still says active."""
        self.writer.close()


class Gateway:
    """Store, storage and signer opened exactly as the gateway opens them for a config with
    only ``data_dir`` set (SQLite at data_dir/pgwarden.db, files in data_dir/recordings,
    key in data_dir/keys)."""

    def __init__(self, data_dir: Path, store_url: str | None = None) -> None:
        self.data_dir = data_dir
        self.store: Store = open_store(store_url, data_dir)
        self.storage: RecordingStorage = open_storage(None, data_dir)
        self.signer = RecordingSigner.load_or_create(data_dir)

    def start(
        self,
        session_id: str,
        *,
        subject: str = "agent-7",
        target: str = "shop",
        at: float | None = None,
        cipher: RecordingCipher | None = None,
        gap: float = 0.25,
    ) -> SessionRun:
        return SessionRun(
            self,
            session_id,
            subject=subject,
            target=target,
            at=time.time() - 3600 if at is None else at,
            cipher=cipher,
            gap=gap,
        )

    def recording_path(self, session_id: str) -> Path:
        return self.data_dir / "recordings" / f"{session_id}.jsonl"

    def close(self) -> None:
        self.storage.shutdown()
        self.store.close()


PROMPT = "find the customer who complained"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SELECT_SQL = (
    "SELECT id, email FROM customers WHERE id = $1 "
    "/*prompt='find%20the%20customer%20who%20complained',"
    f"traceparent='{TRACEPARENT}'*/"
)
DELETE_SQL = "DELETE FROM orders"
DROP_SQL = "DROP TABLE tmp_import"


def simple_session(
    gw: Gateway,
    session_id: str,
    *,
    subject: str = "agent-7",
    target: str = "shop",
    at: float | None = None,
    end: bool = True,
    cipher: RecordingCipher | None = None,
) -> SessionRun:
    run = gw.start(session_id, subject=subject, target=target, at=at, cipher=cipher)
    seq = run.statement("SELECT 1", tables=())
    run.result(seq, "SELECT 1", ["?column?"], [[b"1"]])
    if end:
        run.end()
    else:
        run.crash()
    return run


def rich_session(
    gw: Gateway,
    session_id: str = "s-rich",
    *,
    at: float | None = None,
    cipher: RecordingCipher | None = None,
) -> SessionRun:
    """Prompt by sqlcommenter, SET pgwarden.prompt, API context, a parameterised read with
    masked rows, a denied DELETE, a DROP held for approval and approved."""
    run = gw.start(session_id, at=at, cipher=cipher)
    run.context("set", {"prompt": "tidy up"}, {"prompt": "tidy up"}, None)
    seq = run.statement(
        SELECT_SQL,
        params=[b"42"],
        context={"prompt": PROMPT, "traceparent": TRACEPARENT},
        sources={"prompt": "comment", "traceparent": "comment"},
        tables=["customers"],
        masked=True,
    )
    run.result(
        seq,
        "SELECT 1",
        ["id", "email"],
        [[b"42", b"j***@example.com"]],
        masked={"email": 1},
    )
    run.context(
        "api", {"intent": "remove stale orders"}, {"intent": "remove stale orders"}, "agent-7"
    )
    seq = run.statement(
        DELETE_SQL,
        action="deny",
        rule="no-unbounded-delete",
        reason="DELETE without WHERE",
        context={"prompt": "tidy up", "intent": "remove stale orders"},
        sources={"prompt": "set", "intent": "api"},
        kinds=["delete"],
        tables=["orders"],
    )
    run.error(seq, "42501", "pgwarden: denied by rule no-unbounded-delete", "gateway")
    seq = run.statement(
        DROP_SQL,
        action="review",
        rule="ddl-needs-approval",
        context={"prompt": "tidy up", "intent": "remove stale orders"},
        sources={"prompt": "set", "intent": "api"},
        kinds=["drop"],
    )
    run.approval(seq, DROP_SQL, "requested", "agent-7")
    run.approval(seq, DROP_SQL, "approved", "alice", "scratch table")
    run.result(seq, "DROP TABLE")
    run.end()
    return run


@dataclass
class Env:
    gw: Gateway
    config: Path
    data_dir: Path


def make_env(tmp_path: Path, write_config: Callable[..., Path], **extra: Any) -> Env:
    data_dir = tmp_path / "data"
    gw = Gateway(data_dir)
    cfg = write_config({"data_dir": str(data_dir), **extra})
    return Env(gw, cfg, data_dir)


@pytest.fixture
def env(
    tmp_path: Path, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Env]:
    monkeypatch.delenv(KEY_ENV, raising=False)
    e = make_env(tmp_path, write_config)
    yield e
    e.gw.close()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------
# list


@pytest.fixture
def three(env: Env) -> Env:
    now = time.time()
    rich_session(env.gw, "s-rich", at=now - 3 * 3600)
    simple_session(env.gw, "s-bob", subject="bob", target="analytics", at=now - 2 * 3600)
    simple_session(env.gw, "s-crash", at=now - 3600, end=False)
    return env


def test_list_json_shape(cli: Callable[..., Result], three: Env) -> None:
    result = cli("sessions", "list", "--json", "-c", str(three.config))
    assert result.exit_code == 0, result.output
    sessions = json.loads(result.stdout)
    assert [s["id"] for s in sessions] == ["s-crash", "s-bob", "s-rich"]  # newest first
    by_id = {s["id"]: s for s in sessions}
    rich = by_id["s-rich"]
    for key in ("id", "subject", "target", "started_at", "ended_at", "state"):
        assert key in rich
    assert rich["subject"] == "agent-7" and rich["target"] == "shop"
    assert rich["state"] == "ended"
    assert rich["started_at"].endswith("Z") and rich["ended_at"].endswith("Z")
    assert rich["started_at"] < rich["ended_at"]
    assert (rich["statements"], rich["allowed"], rich["denied"], rich["reviewed"]) == (3, 1, 1, 1)
    assert rich["masked"] == 1
    assert rich["last_seq"] > 0 and len(rich["last_hash"]) == 64
    crash = by_id["s-crash"]
    assert crash["state"] == "active" and crash["ended_at"] is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--subject", "bob"], ["s-bob"]),
        (["--target", "shop"], ["s-crash", "s-rich"]),
        (["--decision", "denied"], ["s-rich"]),
        (["--decision", "masked"], ["s-rich"]),
        (["--decision", "allowed"], ["s-crash", "s-bob", "s-rich"]),
        (["--state", "active"], ["s-crash"]),
        (["--state", "ended", "--subject", "agent-7"], ["s-rich"]),
        (["--since", "150m"], ["s-crash", "s-bob"]),
        (["--until", "150m"], ["s-rich"]),
        (["--limit", "1"], ["s-crash"]),
        (["--subject", "nobody"], []),
    ],
)
def test_list_filters(
    cli: Callable[..., Result], three: Env, args: list[str], expected: list[str]
) -> None:
    result = cli("sessions", "list", "--json", *args, "-c", str(three.config))
    assert result.exit_code == 0, result.output
    assert [s["id"] for s in json.loads(result.stdout)] == expected


def test_list_since_until_iso(cli: Callable[..., Result], three: Env) -> None:
    doc = json.loads(cli("sessions", "list", "--json", "-c", str(three.config)).stdout)
    bob_start = next(s["started_at"] for s in doc if s["id"] == "s-bob")
    result = cli(
        "sessions",
        "list",
        "--json",
        "--since",
        bob_start,
        "--until",
        "now",
        "-c",
        str(three.config),
    )
    assert [s["id"] for s in json.loads(result.stdout)] == ["s-crash", "s-bob"]


def test_list_table(cli: Callable[..., Result], three: Env) -> None:
    result = cli("sessions", "list", "-c", str(three.config))
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("s-rich", "s-bob", "s-crash", "agent-7", "analytics", "ended", "active"):
        assert text in out


def test_list_empty(cli: Callable[..., Result], env: Env) -> None:
    assert json.loads(cli("sessions", "list", "--json", "-c", str(env.config)).stdout) == []
    assert "no sessions" in cli("sessions", "list", "-c", str(env.config)).stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--decision", "maybe"],
        ["--state", "sleeping"],
        ["--since", "last tuesday"],
        ["--limit", "0"],
    ],
)
def test_list_bad_options(cli: Callable[..., Result], env: Env, args: list[str]) -> None:
    result = cli("sessions", "list", *args, "-c", str(env.config))
    assert result.exit_code == 2
    assert args[0] in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["-c", "{cfg}", "sessions", "list", "--json"],
        ["sessions", "-c", "{cfg}", "list", "--json"],
        ["sessions", "list", "-c", "{cfg}", "--json"],
        ["sessions", "list", "--json", "--config", "{cfg}"],
    ],
)
def test_config_anywhere(cli: Callable[..., Result], three: Env, argv: list[str]) -> None:
    result = cli(*[a.format(cfg=three.config) for a in argv])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 3


def test_default_config_file_in_cwd(
    cli: Callable[..., Result], tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    gw = Gateway(tmp_path / "pgwarden-data")  # the default data_dir, relative to cwd
    try:
        simple_session(gw, "s-default")
    finally:
        gw.close()
    result = cli("sessions", "list", "--json")
    assert [s["id"] for s in json.loads(result.stdout)] == ["s-default"]


def test_store_url_sqlite(
    cli: Callable[..., Result], tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    """``store: sqlite:///path`` is honoured (same open_store as the gateway)."""
    data_dir = tmp_path / "data"
    db = tmp_path / "elsewhere" / "index.db"
    gw = Gateway(data_dir, f"sqlite://{db}")
    try:
        simple_session(gw, "s-elsewhere")
    finally:
        gw.close()
    cfg = write_config({"data_dir": str(data_dir), "store": f"sqlite://{db}"})
    result = cli("sessions", "list", "--json", "-c", str(cfg))
    assert [s["id"] for s in json.loads(result.stdout)] == ["s-elsewhere"]
    assert not (data_dir / "pgwarden.db").exists()


# --------------------------------------------------------------------------------------------
# export


def test_export_jsonl_is_the_stored_bytes(cli: Callable[..., Result], env: Env) -> None:
    rich_session(env.gw)
    stored = env.gw.recording_path("s-rich").read_bytes()
    result = cli("sessions", "export", "s-rich", "-c", str(env.config))
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == stored
    assert result.stderr == ""
    verdict = verify_recording(result.stdout_bytes, load_trusted_keys(env.data_dir))
    assert verdict.status == "intact", verdict.detail
    events = json_lines(result.stdout)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    for e in events:
        assert {"session", "seq", "ts", "type", "prev", "hash"} <= e.keys()
    start = events[0]
    assert start["type"] == "session_start" and start["subject"] == "agent-7"
    statements = [e for e in events if e["type"] == "statement"]
    assert statements[0]["params"] == ["42"]
    assert statements[0]["context"] == {"prompt": PROMPT, "traceparent": TRACEPARENT}
    assert statements[1]["context"]["intent"] == "remove stale orders"
    results = [e for e in events if e["type"] == "result"]
    assert results[0]["rows"] == [["42", "j***@example.com"]]


def test_export_to_file(cli: Callable[..., Result], env: Env, tmp_path: Path) -> None:
    rich_session(env.gw)
    out = tmp_path / "out.jsonl"
    result = cli("sessions", "export", "s-rich", "--output", str(out), "-c", str(env.config))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert out.read_bytes() == env.gw.recording_path("s-rich").read_bytes()


def test_export_ocsf(cli: Callable[..., Result], env: Env) -> None:
    rich_session(env.gw)
    result = cli("sessions", "export", "s-rich", "--format", "ocsf", "-c", str(env.config))
    assert result.exit_code == 0, result.output
    records = json_lines(result.stdout)
    assert all(r["class_uid"] == 6005 for r in records)
    assert [r["activity_id"] for r in records] == [3, 4, 7, 7, 99]
    connect, select, delete, drop, end = records
    assert connect["actor"]["user"]["name"] == "agent-7"
    assert select["query_info"]["query_string"] == SELECT_SQL
    assert select["unmapped"]["pgwarden"]["context"]["prompt"] == PROMPT
    assert select["unmapped"]["pgwarden"]["params"] == ["42"]
    assert select["disposition"] == "Allowed" and select["status_code"] == "SELECT 1"
    assert delete["action_id"] == 2 and delete["status_id"] == 2
    assert delete["policy"]["name"] == "no-unbounded-delete"
    assert drop["disposition"] == "Approved"
    assert end["activity_name"] == "Disconnect"


def test_export_unknown_session(cli: Callable[..., Result], env: Env) -> None:
    for session_id in ("nope", "../../etc/passwd"):
        result = cli("sessions", "export", session_id, "-c", str(env.config))
        assert result.exit_code == 1
        assert result.stdout == ""
        assert "no session" in result.stderr


def test_export_missing_recording(cli: Callable[..., Result], env: Env) -> None:
    simple_session(env.gw, "s1")
    env.gw.recording_path("s1").unlink()
    result = cli("sessions", "export", "s1", "-c", str(env.config))
    assert result.exit_code == 1
    assert "missing" in result.stderr


def test_export_bad_format(cli: Callable[..., Result], env: Env) -> None:
    simple_session(env.gw, "s1")
    result = cli("sessions", "export", "s1", "--format", "csv", "-c", str(env.config))
    assert result.exit_code == 2
    assert "--format" in result.stderr


def test_export_warns_when_tampered(cli: Callable[..., Result], env: Env) -> None:
    simple_session(env.gw, "s1")
    path = env.gw.recording_path("s1")
    path.write_bytes(path.read_bytes().replace(b"SELECT 1", b"SELECT 2", 1))
    result = cli("sessions", "export", "s1", "-c", str(env.config))
    assert result.exit_code == 0
    assert result.stdout_bytes == path.read_bytes()
    assert "tampered" in result.stderr


def test_export_encrypted(cli: Callable[..., Result], env: Env) -> None:
    key = RecordingCipher.generate_key()
    cipher = RecordingCipher.from_env({KEY_ENV: key})
    rich_session(env.gw, cipher=cipher)
    stored = env.gw.recording_path("s-rich").read_bytes()
    assert b"customers" not in stored

    # without the key: exported as stored (still verifiable), with a warning
    result = cli("sessions", "export", "s-rich", "-c", str(env.config), env={KEY_ENV: ""})
    assert result.exit_code == 0
    assert result.stdout_bytes == stored
    assert "encrypted" in result.stderr
    result = cli(
        "sessions", "export", "s-rich", "-f", "ocsf", "-c", str(env.config), env={KEY_ENV: ""}
    )
    assert result.exit_code == 1
    assert KEY_ENV in result.stderr

    # with the key: decrypted
    result = cli("sessions", "export", "s-rich", "-c", str(env.config), env={KEY_ENV: key})
    assert result.exit_code == 0, result.output
    events = json_lines(result.stdout)
    assert "enc" not in events[0]
    statements = [e for e in events if e["type"] == "statement"]
    assert statements[0]["sql"] == SELECT_SQL
    assert [e["hash"] for e in events] == [
        json.loads(line)["hash"] for line in stored.decode().splitlines()
    ]
    result = cli(
        "sessions", "export", "s-rich", "--as-stored", "-c", str(env.config), env={KEY_ENV: key}
    )
    assert result.stdout_bytes == stored
    result = cli(
        "sessions", "export", "s-rich", "-f", "ocsf", "-c", str(env.config), env={KEY_ENV: key}
    )
    assert result.exit_code == 0, result.output
    assert json_lines(result.stdout)[1]["query_info"]["query_string"] == SELECT_SQL


def test_export_bad_key(cli: Callable[..., Result], env: Env) -> None:
    simple_session(env.gw, "s1")
    result = cli("sessions", "export", "s1", "-c", str(env.config), env={KEY_ENV: "short"})
    assert result.exit_code == 2
    assert KEY_ENV in result.stderr


def test_export_config_anywhere(cli: Callable[..., Result], env: Env) -> None:
    simple_session(env.gw, "s1")
    stored = env.gw.recording_path("s1").read_bytes()
    for argv in (
        ["sessions", "export", "s1", "-c", str(env.config)],
        ["sessions", "export", "-c", str(env.config), "s1"],
        ["sessions", "-c", str(env.config), "export", "s1"],
        ["-c", str(env.config), "sessions", "export", "s1"],
    ):
        result = cli(*argv)
        assert result.exit_code == 0, (argv, result.output)
        assert result.stdout_bytes == stored


# --------------------------------------------------------------------------------------------
# prune


def _prune_env(env: Env) -> None:
    now = time.time()
    simple_session(env.gw, "s-old", at=now - 40 * 86400)
    simple_session(env.gw, "s-new", at=now - 3600)
    simple_session(env.gw, "s-old-active", at=now - 40 * 86400, end=False)


def test_prune(cli: Callable[..., Result], env: Env) -> None:
    _prune_env(env)
    result = cli(
        "sessions", "prune", "--older-than", "30d", "--dry-run", "--json", "-c", str(env.config)
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["dry_run"] is True and doc["pruned"] == ["s-old"] and doc["failed"] == {}
    assert env.gw.recording_path("s-old").exists()

    result = cli("sessions", "prune", "--older-than", "30d", "-c", str(env.config))
    assert result.exit_code == 0, result.output
    assert "pruned 1 session" in result.stdout and "s-old" in result.stdout
    assert not env.gw.recording_path("s-old").exists()
    assert env.gw.store.get_session("s-old") is None
    assert env.gw.recording_path("s-new").exists()
    assert env.gw.recording_path("s-old-active").exists()  # still active: kept


def test_prune_uses_recording_retention(
    cli: Callable[..., Result], tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    e = make_env(tmp_path, write_config, recording={"retention": "30d"})
    try:
        _prune_env(e)
        result = cli("sessions", "prune", "--json", "-c", str(e.config))
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["pruned"] == ["s-old"]
    finally:
        e.gw.close()


def test_prune_needs_a_duration(cli: Callable[..., Result], env: Env) -> None:
    result = cli("sessions", "prune", "-c", str(env.config))
    assert result.exit_code == 2
    assert "--older-than" in result.stderr and "recording.retention" in result.stderr
    result = cli("sessions", "prune", "--older-than", "soon", "-c", str(env.config))
    assert result.exit_code == 2
