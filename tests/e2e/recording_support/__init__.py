"""Helpers for the recording end-to-end tests (tests/e2e/test_recording_*.py).

- ``RecordedGateway``: an in-process gateway (``RunningGateway``) plus the config file the CLI
  reads (``cfg_path``) and its ``data_dir``.
- ``ServeProcess``: ``pgwarden serve -c cfg.yaml`` as a separate process (SIGKILL-able).
- ``verify(...)``, ``export(...)``, ``sessions_list(...)``: the CLI commands (``pgwarden verify``,
  ``pgwarden sessions export|list``) when the installed CLI has them, else the library
  (``pgwarden.recording``) doing what the command does. ``USED`` says which path ran.
- ``read_recording(...)``: a session's events straight from ``data_dir/recordings``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from pgwarden.auth.local_issuer import LocalIssuer
from pgwarden.recording import (
    export_jsonl,
    export_ocsf,
    load_trusted_keys,
    open_storage,
    read_events,
    verify_session,
)
from pgwarden.store import open_store
from tests.support.gateway import RunningGateway, gateway_config

REPO = Path(__file__).resolve().parents[3]
PGWARDEN = str(REPO / ".venv" / "bin" / "pgwarden")
if not Path(PGWARDEN).exists():  # pragma: no cover - installed elsewhere
    PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))

# Which implementation each helper used ("cli" or "library"), for the report.
USED: dict[str, str] = {}

ENFORCE_ALLOW_ALL: dict[str, Any] = {"mode": "enforce", "default": "allow", "rules": []}


# ---------------------------------------------------------------------------------------------
# the CLI, when it has the command


@functools.cache
def cli_has(*command: str) -> bool:
    """True when ``pgwarden <command> --help`` works with the installed CLI."""
    try:
        done = subprocess.run(
            [PGWARDEN, *command, "--help"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGWARDEN_")}
    env.update(COLUMNS="200", NO_COLOR="1", TERM="dumb")
    return subprocess.run(
        [PGWARDEN, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


# ---------------------------------------------------------------------------------------------
# configs and gateways


def write_config(path: Path, doc: Mapping[str, Any]) -> Path:
    """Write a config document (JSON is valid YAML, and the CLI accepts it)."""
    path.write_text(json.dumps(doc, indent=2))
    return path


@dataclass
class RecordedGateway:
    gw: RunningGateway
    cfg_path: Path
    data_dir: Path
    doc: dict[str, Any]

    @property
    def recordings(self) -> Path:
        return self.data_dir / "recordings"

    def recording_path(self, session_id: str) -> Path:
        return self.recordings / f"{session_id}.jsonl"


def start_recorded_gateway(
    base: Path, targets: Mapping[str, Mapping[str, Any]], **overrides: Any
) -> RecordedGateway:
    base.mkdir(parents=True, exist_ok=True)
    data_dir = base / "data"
    doc = gateway_config(data_dir, targets=targets, **overrides)
    cfg_path = write_config(base / "pgwarden.yaml", doc)
    gw = RunningGateway(doc).start()
    return RecordedGateway(gw, cfg_path, data_dir, doc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """``pgwarden serve -c CFG`` in its own process, output in files beside the config."""

    def __init__(self, cfg_path: Path, api_port: int, name: str = "serve") -> None:
        self.cfg_path = cfg_path
        self.api_port = api_port
        self.log_path = cfg_path.parent / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> ServeProcess:
        log = self.log_path.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGWARDEN_")}
        self.proc = subprocess.Popen(
            [PGWARDEN, "serve", "-c", str(self.cfg_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"pgwarden serve exited {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(f"http://127.0.0.1:{self.api_port}/healthz", timeout=1)
                if r.status_code == 200:
                    return self
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"pgwarden serve did not come up:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 20) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def show_session_id(conn: psycopg.Connection[Any]) -> str:
    """``SHOW pgwarden.session_id`` through the gateway."""
    row = conn.execute("SHOW pgwarden.session_id").fetchone()
    assert row is not None
    return str(row[0])


def local_token(data_dir: Path, subject: str, groups: Iterable[str] = (), ttl: float = 900) -> str:
    return LocalIssuer.load_or_create(data_dir).issue(subject, list(groups), ttl_seconds=ttl)


# ---------------------------------------------------------------------------------------------
# reading recordings


def read_recording(data_dir: Path, session_id: str, *, strict: bool = True) -> list[dict[str, Any]]:
    """A session's events (envelope and payload flat, as exported), from the local files."""
    data = (Path(data_dir) / "recordings" / f"{session_id}.jsonl").read_bytes()
    return [e.to_dict() for e in read_events(data, strict=strict)]


def recorded_session_ids(data_dir: Path) -> list[str]:
    return sorted(p.name[: -len(".jsonl")] for p in (Path(data_dir) / "recordings").glob("*.jsonl"))


def wait_for(predicate: Any, timeout: float = 10, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def wait_ended(data_dir: Path, session_id: str, timeout: float = 10) -> list[dict[str, Any]]:
    """Wait until the recording holds session_end and its final checkpoint."""

    def done() -> list[dict[str, Any]] | None:
        try:
            events = read_recording(data_dir, session_id, strict=False)
        except FileNotFoundError:
            return None
        if len(events) >= 2 and events[-2]["type"] == "session_end":
            if events[-1]["type"] == "checkpoint":
                return events
        return None

    events: list[dict[str, Any]] = wait_for(done, timeout, f"the end of session {session_id}")
    return events


def of_type(events: Iterable[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == type_]


def statement_with(events: Iterable[dict[str, Any]], needle: str) -> dict[str, Any]:
    found = [e for e in events if e["type"] == "statement" and needle in e["sql"]]
    assert len(found) == 1, f"expected one statement containing {needle!r}, found {len(found)}"
    return found[0]


def following(
    events: list[dict[str, Any]], statement: dict[str, Any], type_: str
) -> list[dict[str, Any]]:
    """The events of ``type_`` that refer to ``statement`` (by statement_seq)."""
    return [e for e in events if e["type"] == type_ and e.get("statement_seq") == statement["seq"]]


def value_bytes(value: Any) -> bytes | None:
    """The wire bytes of a recorded value (string, null, or tagged base64 object)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    assert isinstance(value, Mapping) and value.get("encoding") == "base64", value
    return base64.b64decode(value["data"])


def normalize_sql(sql: str) -> str:
    return " ".join(sql.split()).rstrip(";").strip()


# ---------------------------------------------------------------------------------------------
# verify / export / list: the CLI when it has them, else the library


@dataclass
class VerifyOutcome:
    code: int
    output: str
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # session -> result
    via: str = "library"

    @property
    def statuses(self) -> dict[str, str]:
        return {sid: str(r["status"]) for sid, r in self.records.items()}

    def first_bad(self, session_id: str) -> int | None:
        value = self.records[session_id].get("first_bad_seq")
        return None if value is None else int(value)


def verify(
    rg_or_cfg: RecordedGateway | tuple[Path, Path],
    ids: Iterable[str] = (),
    *,
    all_sessions: bool = False,
    human: bool = False,
) -> VerifyOutcome:
    """``pgwarden verify [ID ...] [--all] [--json] -c CFG``: exit code, output and the
    per-session results (from ``--json``; ``human=True`` runs the table form instead)."""
    cfg_path, data_dir = (
        (rg_or_cfg.cfg_path, rg_or_cfg.data_dir)
        if isinstance(rg_or_cfg, RecordedGateway)
        else rg_or_cfg
    )
    ids = list(ids)
    if cli_has("verify"):
        USED["verify"] = "cli"
        args = ["verify", *ids, *(["--all"] if all_sessions else []), "-c", str(cfg_path)]
        if human:
            done = run_cli(*args)
            return VerifyOutcome(done.returncode, done.stdout + done.stderr, {}, "cli")
        done = run_cli(*args, "--json")
        assert done.returncode in (0, 1), done.stdout + done.stderr
        records: dict[str, dict[str, Any]] = {}
        for item in json.loads(done.stdout):
            records[str(item.get("session") or item["id"])] = item
        return VerifyOutcome(done.returncode, done.stdout + done.stderr, records, "cli")
    USED["verify"] = "library"
    return _verify_library(Path(data_dir), ids, all_sessions)


def _verify_library(data_dir: Path, ids: list[str], all_sessions: bool) -> VerifyOutcome:
    store = open_store(None, data_dir)
    storage = open_storage(None, data_dir)
    try:
        if all_sessions:
            ids = sorted({s.id for s in store.list_sessions()} | set(storage.list()) | set(ids))
        keys = load_trusted_keys(data_dir)
        lines: list[str] = []
        records: dict[str, dict[str, Any]] = {}
        code = 0
        for sid in ids:
            result = verify_session(sid, storage, keys, store)
            records[sid] = result.to_dict()
            where = f" (first bad event: {result.first_bad_seq})" if result.first_bad_seq else ""
            lines.append(f"{sid}: {result.status}{where}: {result.detail}")
            if not result.ok:
                code = 1
        return VerifyOutcome(code, "\n".join(lines), records, "library")
    finally:
        with contextlib.suppress(Exception):
            storage.shutdown()
        store.close()


def export(rg: RecordedGateway, session_id: str, fmt: str = "jsonl") -> list[dict[str, Any]]:
    """``pgwarden sessions export ID [--format ocsf] -c CFG`` as a list of objects."""
    if cli_has("sessions", "export"):
        USED["export"] = "cli"
        done = run_cli("sessions", "export", session_id, "--format", fmt, "-c", str(rg.cfg_path))
        assert done.returncode == 0, done.stdout + done.stderr
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    USED["export"] = "library"
    events = read_events(rg.recording_path(session_id).read_bytes())
    if fmt == "ocsf":
        return [dict(r) for r in export_ocsf(events)]
    return [json.loads(line) for line in export_jsonl(events)]


def sessions_list(cfg_path: Path, data_dir: Path) -> list[dict[str, Any]]:
    """``pgwarden sessions list --json -c CFG``."""
    if cli_has("sessions", "list"):
        USED["sessions list"] = "cli"
        done = run_cli("sessions", "list", "--json", "-c", str(cfg_path))
        assert done.returncode == 0, done.stdout + done.stderr
        result: list[dict[str, Any]] = json.loads(done.stdout)
        return result
    USED["sessions list"] = "library"
    store = open_store(None, data_dir)
    try:
        return [s.to_dict() for s in store.list_sessions()]
    finally:
        store.close()


@contextlib.contextmanager
def saved_bytes(path: Path) -> Iterator[bytes]:
    """Keep a file's bytes, and put them back afterwards (tamper tests)."""
    original = path.read_bytes()
    try:
        yield original
    finally:
        path.write_bytes(original)
