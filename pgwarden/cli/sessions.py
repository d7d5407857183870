"""`pgwarden sessions ...`: the session index and recordings (list, export, prune)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pgwarden import __version__
from pgwarden.cli._common import (
    EXIT_CONFIG,
    ConfigOption,
    JsonOption,
    err_console,
    fail,
    load_cli_config,
    remember_config,
)
from pgwarden.cli._recordings import (
    PublicKeyOption,
    Recordings,
    is_encrypted,
    iso,
    load_recording,
    open_recordings,
    parse_time,
    read_lines,
)
from pgwarden.config import parse_duration
from pgwarden.recording.access import session_json
from pgwarden.recording.canonical import canonical_json
from pgwarden.recording.crypto import KEY_ENV
from pgwarden.recording.export import export_ocsf
from pgwarden.recording.retention import prune
from pgwarden.recording.verify import verify_session
from pgwarden.store.base import OUTCOMES, SESSION_STATES, SessionFilter

app = typer.Typer(
    help="Recorded sessions: list, export, prune.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

FORMATS = ("jsonl", "ocsf")
STATE_STYLES = {"active": "cyan", "ended": "green", "crashed": "yellow"}


@app.callback()
def sessions_group(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Recorded sessions: list, export, prune."""
    remember_config(ctx, config)


def stdout_console() -> Console:
    """A console on stdout; wide when not a terminal, so piped tables keep whole ids."""
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console.width = max(console.width, 200)
    return console


# --------------------------------------------------------------------------------------------
# list


@app.command("list")
def list_command(
    ctx: typer.Context,
    json_output: JsonOption = False,
    subject: Annotated[
        str | None, typer.Option("--subject", "-s", help="Only sessions of this identity.")
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="Only sessions on this target.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only sessions started at or after TIME (ISO-8601, unix seconds, or a "
            "duration ago such as 2h or 7d).",
            metavar="TIME",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Only sessions started before TIME.", metavar="TIME"),
    ] = None,
    decision: Annotated[
        str | None,
        typer.Option(
            "--decision",
            help="Only sessions with at least one statement allowed|denied|reviewed|masked.",
        ),
    ] = None,
    state: Annotated[
        str | None, typer.Option("--state", help="Only sessions in state active|ended|crashed.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", help="At most N sessions (newest first).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """List recorded sessions, newest first."""
    cfg = load_cli_config(ctx, config)
    if decision is not None and decision not in OUTCOMES:
        fail(f"--decision: expected one of {', '.join(sorted(OUTCOMES))}", EXIT_CONFIG)
    if state is not None and state not in SESSION_STATES:
        fail(f"--state: expected one of {', '.join(sorted(SESSION_STATES))}", EXIT_CONFIG)
    if limit is not None and limit < 1:
        fail("--limit: must be at least 1", EXIT_CONFIG)
    now = time.time()
    filt = SessionFilter(
        subject=subject,
        target=target,
        # times print at microsecond precision (rounded): a start time copied from the output
        # must match its own session, hence the microsecond of slack
        since=parse_time(since, "--since", now=now) - 1e-6 if since is not None else None,
        until=parse_time(until, "--until", now=now) if until is not None else None,
        decision=decision,
        state=state,
        limit=limit,
    )
    with open_recordings(cfg) as rec:
        sessions = rec.store.list_sessions(filt)

    if json_output:
        typer.echo(json.dumps([session_json(s) for s in sessions], indent=2))
        return
    console = stdout_console()
    if not sessions:
        console.print("no sessions")
        return
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("ID", no_wrap=True, overflow="fold")
    table.add_column("SUBJECT", overflow="fold")
    table.add_column("TARGET", overflow="fold")
    table.add_column("STARTED (UTC)", no_wrap=True)
    table.add_column("ENDED (UTC)", no_wrap=True)
    table.add_column("STATE", no_wrap=True)
    table.add_column("STMTS", justify="right")
    table.add_column("ALLOWED", justify="right")
    table.add_column("DENIED", justify="right")
    table.add_column("REVIEWED", justify="right")
    table.add_column("MASKED", justify="right")
    for s in sessions:
        table.add_row(
            s.id,
            s.subject,
            s.target,
            _short_time(s.started_at),
            _short_time(s.ended_at),
            Text(s.state, style=STATE_STYLES.get(s.state, "")),
            str(s.statements),
            Text(str(s.allowed), style="green" if s.allowed else ""),
            Text(str(s.denied), style="red" if s.denied else ""),
            Text(str(s.reviewed), style="yellow" if s.reviewed else ""),
            str(s.masked),
        )
    console.print(table)


def _short_time(t: float | None) -> str:
    if t is None:
        return "-"
    text = iso(t) or "-"
    return text[:19].replace("T", " ")


# --------------------------------------------------------------------------------------------
# export


@app.command("export")
def export_command(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(metavar="ID", help="The session id.")],
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="jsonl: the recorded events, one JSON object a line (as stored, verifiable); "
            "ocsf: OCSF Datastore Activity (6005) records, one a line.",
        ),
    ] = "jsonl",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write to FILE instead of stdout.",
            metavar="FILE",
            dir_okay=False,
        ),
    ] = None,
    as_stored: Annotated[
        bool,
        typer.Option(
            "--as-stored",
            help=f"jsonl: keep encrypted payloads encrypted even when {KEY_ENV} is set.",
        ),
    ] = False,
    public_keys: PublicKeyOption = None,
    config: ConfigOption = None,
) -> None:
    """Print a session's events, one JSON object a line.

    A plain recording is exported byte for byte as stored (the export verifies).

    An encrypted one is decrypted with PGWARDEN_RECORDING_KEY when set, else exported as stored.
    """
    cfg = load_cli_config(ctx, config)
    if output_format not in FORMATS:
        fail(f"--format: expected one of {', '.join(FORMATS)}", EXIT_CONFIG)
    with open_recordings(cfg, keys=True, extra_keys=public_keys or (), cipher=True) as rec:
        _row, data = load_recording(rec, session_id)
        _warn_if_not_ok(rec, session_id)
        if output_format == "jsonl":
            payload = _jsonl(rec, data, as_stored=as_stored)
        else:
            payload = _ocsf(rec, session_id, data)
    if output is None:
        typer.echo(payload, nl=False)
        return
    try:
        output.write_bytes(payload)
    except OSError as exc:
        fail(f"--output {output}: {exc}")


def _warn_if_not_ok(rec: Recordings, session_id: str) -> None:
    result = verify_session(session_id, rec.storage, rec.keys, rec.store)
    if not result.ok:
        where = f" (first bad event: {result.first_bad_seq})" if result.first_bad_seq else ""
        err_console.print(
            f"pgwarden: warning: session {session_id} is {result.status}{where}: {result.detail}",
            markup=False,
        )


def _jsonl(rec: Recordings, data: bytes, *, as_stored: bool) -> bytes:
    if as_stored or rec.cipher is None or not is_encrypted(data):
        if rec.cipher is None and not as_stored and is_encrypted(data):
            err_console.print(
                f"pgwarden: warning: the recording is encrypted and {KEY_ENV} is not set: "
                "exported as stored",
                markup=False,
            )
        return data
    out = bytearray()
    bad = 0
    for line in read_lines(data, rec.cipher):
        if line.event is None:
            bad += 1
            out += line.raw + b"\n"  # unreadable: exactly as stored
        elif line.event.encrypted:
            out += canonical_json(line.event.to_dict()) + b"\n"
        else:
            out += line.raw + b"\n"
    if bad:
        err_console.print(
            f"pgwarden: warning: {bad} line(s) could not be decrypted or read: exported as stored",
            markup=False,
        )
    return bytes(out)


def _ocsf(rec: Recordings, session_id: str, data: bytes) -> bytes:
    lines = read_lines(data, rec.cipher)
    bad = [line for line in lines if line.event is None]
    if bad and rec.cipher is None and is_encrypted(data):
        fail(f"session {session_id}: the recording is encrypted: set {KEY_ENV} to export OCSF")
    if bad:
        err_console.print(
            f"pgwarden: warning: {len(bad)} unreadable line(s) left out (first: line "
            f"{bad[0].number}: {bad[0].problem})",
            markup=False,
        )
    events = [line.event for line in lines if line.event is not None]
    out = bytearray()
    for record in export_ocsf(events, product_version=__version__):
        out += json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    return bytes(out)


# --------------------------------------------------------------------------------------------
# prune


@app.command("prune")
def prune_command(
    ctx: typer.Context,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Delete sessions that ended longer ago than DURATION (e.g. 30d); "
            "default: recording.retention.",
            metavar="DURATION",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only print what would be deleted.")
    ] = False,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Delete old sessions (recording first, then index entry). Active sessions are kept."""
    cfg = load_cli_config(ctx, config)
    if older_than is not None:
        try:
            seconds = parse_duration(older_than)
        except ValueError as exc:
            fail(f"--older-than: {exc}", EXIT_CONFIG)
    elif cfg.recording.retention is not None:
        seconds = cfg.recording.retention
    else:
        fail("give --older-than DURATION or set recording.retention in the config", EXIT_CONFIG)
    now = time.time()
    with open_recordings(cfg) as rec:
        try:
            result = prune(rec.store, rec.storage, seconds, now=now, dry_run=dry_run)
        except ValueError as exc:
            fail(f"--older-than: {exc}", EXIT_CONFIG)

    if json_output:
        doc = {
            "dry_run": dry_run,
            "older_than": seconds,
            "cutoff": iso(now - seconds),
            "pruned": result.deleted,
            "failed": result.failed,
        }
        typer.echo(json.dumps(doc, indent=2))
    else:
        verb = "would prune" if dry_run else "pruned"
        noun = "session" if len(result.deleted) == 1 else "sessions"
        typer.echo(f"{verb} {len(result.deleted)} {noun} that ended before {iso(now - seconds)}")
        for session_id in result.deleted:
            typer.echo(f"  {session_id}")
        for session_id, why in result.failed.items():
            typer.echo(f"pgwarden: cannot prune session {session_id}: {why}", err=True)
    if result.failed:
        raise typer.Exit(1)
