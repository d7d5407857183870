"""`pgwarden verify [ID ...] [--all]`: are the recordings intact?

Each session is reported as ``intact`` (ended, every event chained and signed),
``unterminated`` (cut off by a crash, intact up to its last event), ``tampered`` (the first
bad event is named) or ``missing`` (the index knows the session, the recording is gone; or
neither knows the id). Exit 0 when every session is intact or unterminated, else 1.

``--all`` verifies every session in the index and every recording in storage; a recording
the index does not know is reported too (``indexed: false``): it is verified on its own, so a
cut tail can only show as ``unterminated`` there.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pgwarden.cli._common import (
    EXIT_CONFIG,
    ConfigOption,
    JsonOption,
    err_console,
    fail,
    load_cli_config,
)
from pgwarden.cli._recordings import (
    PublicKeyOption,
    Recordings,
    open_recordings,
    valid_session_id,
)
from pgwarden.cli.replay import STATUS_STYLES
from pgwarden.recording.display import visible
from pgwarden.recording.storage import StorageError
from pgwarden.recording.verify import VerifyResult, verify_session
from pgwarden.store.base import SessionRecord

__all__ = ["verify_command", "verify_one"]


def verify_one(rec: Recordings, session_id: str) -> tuple[VerifyResult, SessionRecord | None]:
    """The verdict on one session and its index entry (None when not indexed)."""
    if not valid_session_id(session_id):
        invalid = VerifyResult("missing", None, "no such session (not a valid id)", 0, session_id)
        return invalid, None
    row = rec.store.get_session(session_id)
    try:
        result = verify_session(session_id, rec.storage, rec.keys, rec.store)
    except StorageError as exc:
        fail(f"session {session_id}: {exc}")
    return result, row


def _record(result: VerifyResult, row: SessionRecord | None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": result.session_id}
    out.update(result.to_dict())
    out["ok"] = result.ok
    out["indexed"] = row is not None
    out["state"] = row.state if row is not None else None
    if row is not None:
        out["subject"] = row.subject
        out["target"] = row.target
    return out


def verify_command(
    ctx: typer.Context,
    session_ids: Annotated[
        list[str] | None, typer.Argument(metavar="ID", help="Session ids to verify.")
    ] = None,
    all_sessions: Annotated[
        bool,
        typer.Option("--all", help="Every session in the index and every recording in storage."),
    ] = False,
    json_output: JsonOption = False,
    public_keys: PublicKeyOption = None,
    config: ConfigOption = None,
) -> None:
    """Check recordings: intact, unterminated, tampered or missing.

    Exit 0 when every session is intact or unterminated (cut off by a crash).

    Exit 1 when any is tampered or missing (the first bad event is named).
    """
    cfg = load_cli_config(ctx, config)
    ids = list(dict.fromkeys(session_ids or []))
    if not ids and not all_sessions:
        fail("give one or more session IDs, or --all", EXIT_CONFIG)
    results: list[tuple[VerifyResult, SessionRecord | None]] = []
    with open_recordings(cfg, keys=True, extra_keys=public_keys or ()) as rec:
        if not rec.keys:
            err_console.print(
                f"pgwarden: warning: no trusted signing key in {cfg.data_dir / 'keys'} "
                "(use --public-key FILE): no signature can verify",
                markup=False,
            )
        if all_sessions:
            indexed = [s.id for s in rec.store.list_sessions()]
            try:
                stored = rec.storage.list()
            except StorageError as exc:
                fail(f"cannot list the recordings in {rec.storage.describe()}: {exc}")
            for session_id in sorted(set(indexed) | set(stored)):
                if session_id not in ids:
                    ids.append(session_id)
        for session_id in ids:
            results.append(verify_one(rec, session_id))

    ok = all(result.ok for result, _row in results)
    if json_output:
        typer.echo(json.dumps([_record(r, row) for r, row in results], indent=2))
    else:
        _print_table(results, all_sessions)
    raise typer.Exit(0 if ok else 1)


def _print_table(
    results: list[tuple[VerifyResult, SessionRecord | None]], all_sessions: bool
) -> None:
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 200)
    if not results:
        console.print("no sessions" if all_sessions else "nothing to verify")
        return
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("SESSION", no_wrap=True, overflow="fold")
    table.add_column("STATUS", no_wrap=True)
    table.add_column("EVENTS", justify="right")
    table.add_column("FIRST BAD", justify="right")
    table.add_column("DETAIL", overflow="fold")
    for result, row in results:
        detail = Text(visible(result.detail))
        if row is None and result.status != "missing":
            detail.append("  (not in the session index)", style="yellow")
        elif row is not None and row.state != "ended":
            detail.append(f"  (index: {row.state})", style="dim")
        table.add_row(
            Text(visible(result.session_id or "?")),
            Text(result.status, style=STATUS_STYLES.get(result.status, "")),
            str(result.events),
            "-" if result.first_bad_seq is None else str(result.first_bad_seq),
            detail,
        )
    console.print(table)
    counts: dict[str, int] = {}
    for result, _row in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    console.print(f"{len(results)} session{'' if len(results) == 1 else 's'}: {summary}")
