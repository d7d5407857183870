"""`pgwarden replay ID`: step through a recorded session in the terminal.

For each statement: the agent context in force (prompt, intent, traceparent, any other key),
the SQL (highlighted), the bind parameters, the decision and its rule, approval events, and
the result (columns and the first rows of the masked preview, row count, command tag) or the
error. With the original timing between events (scaled by ``--speed``, each gap capped at
``--max-gap``), step by step (``--step``: Enter between statements), or all at once
(``--no-timing``). Ends with the verification badge; exits 1 when the recording is tampered.

Everything printed from a recording is untrusted text: it is shown as plain text (never as
rich markup), and control characters (terminal escape sequences included) are made visible.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

import typer
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from pgwarden.cli._common import EXIT_CONFIG, ConfigOption, fail, load_cli_config
from pgwarden.cli._recordings import (
    PublicKeyOption,
    ReadLine,
    is_encrypted,
    load_recording,
    open_recordings,
    read_lines,
)
from pgwarden.recording.crypto import KEY_ENV
from pgwarden.recording.display import binary_summary, visible
from pgwarden.recording.events import Event
from pgwarden.recording.verify import VerifyResult, verify_session

__all__ = ["render_value", "replay_command"]

DEFAULT_MAX_GAP = 2.0
DEFAULT_ROWS = 10
CONTEXT_ORDER = ("prompt", "intent", "traceparent", "tracestate")

DECISION_STYLES = {"allow": "bold green", "deny": "bold red", "review": "bold yellow"}
APPROVAL_STYLES = {
    "requested": "yellow",
    "approved": "green",
    "denied": "red",
    "expired": "red",
    "withdrawn": "red",
}
STATUS_STYLES = {
    "intact": "bold white on green",
    "unterminated": "bold black on yellow",
    "tampered": "bold white on red",
    "missing": "bold white on red",
}

# Seams for tests: how to sleep, whether stdin is a terminal, how to read a line.
sleep: Callable[[float], None] = time.sleep


def stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def render_value(value: Any) -> Text:
    """A recorded value (see ``encode_value``) for display."""
    if value is None:
        return Text("NULL", style="dim italic")
    if isinstance(value, str):
        return Text(visible(value))
    if isinstance(value, Mapping) and value.get("encoding") == "base64":
        if isinstance(value.get("text"), str):
            return Text(visible(value["text"]))
        kind, size = binary_summary(value)
        return Text(f"<{kind} value, {size} bytes>", style="dim")
    return Text(visible(value))


def _short_ts(ts: str) -> str:
    return ts[11:23] if len(ts) >= 23 else ts


class Player:
    def __init__(
        self,
        console: Console,
        *,
        rows: int,
        timing: bool,
        speed: float,
        max_gap: float,
        step: bool,
    ) -> None:
        self.console = console
        self.rows = rows
        self.timing = timing
        self.speed = speed
        self.max_gap = max_gap
        # --step without a terminal to read Enter from just proceeds, without pauses
        self.step = step and stdin_is_tty()
        if step:
            self.timing = False
        self.last_time: float | None = None
        self.statements = 0
        self.quit = False

    # -------------------------------------------------------------- pacing

    def _pace(self, event: Event) -> None:
        try:
            t = event.time
        except ValueError:
            return
        if self.timing and self.last_time is not None:
            gap = min(max(t - self.last_time, 0.0) / self.speed, self.max_gap)
            if gap > 0:
                sleep(gap)
        self.last_time = t

    def _wait_for_enter(self) -> None:
        try:
            answer = self.console.input(
                Text("⏎ next statement, q to quit ", style="dim"), markup=False
            )
        except (EOFError, KeyboardInterrupt):
            self.step = False
            return
        if answer.strip().lower() in ("q", "quit"):
            self.quit = True

    # -------------------------------------------------------------- events

    def play(self, lines: Sequence[ReadLine]) -> None:
        for line in lines:
            if self.quit:
                return
            event = line.event
            if event is None:
                self.console.print(
                    Text(f"line {line.number}: unreadable: {visible(line.problem)}", "bold red")
                )
                continue
            if event.type == "checkpoint":
                continue
            if self.step:
                if event.type == "statement" and self.statements > 0:
                    self._wait_for_enter()
                    if self.quit:
                        return
            else:
                self._pace(event)
            handler = getattr(self, "on_" + event.type, None)
            if handler is None:
                self.on_other(event)
            else:
                handler(event)

    def on_session_start(self, event: Event) -> None:
        d = event.data
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        groups = ", ".join(visible(g) for g in d.get("groups") or [])
        rows: list[tuple[str, str]] = [
            ("subject", visible(d.get("subject", ""))),
            ("issuer", visible(d.get("issuer", ""))),
            ("groups", groups or "-"),
            ("target", visible(d.get("target", ""))),
            ("database user", visible(d.get("database_user") or "-")),
            ("client", visible(d.get("client_addr") or "-")),
            ("application", visible(d.get("application_name") or "-")),
            ("gateway", visible(d.get("gateway_instance") or "-")),
            ("tls", "yes" if d.get("tls") else "no"),
            ("started", visible(event.ts)),
        ]
        for key, value in rows:
            grid.add_row(key, Text(value))
        title = Text(f"session {visible(event.session)}", style="bold")
        self.console.print(Panel(grid, title=title, title_align="left", expand=False))

    def on_context(self, event: Event) -> None:
        d = event.data
        who = f" by {visible(d['actor'])}" if d.get("actor") else ""
        text = Text(f"{_short_ts(event.ts)}  context ({visible(d.get('source', '?'))}{who}):")
        text.stylize("magenta")
        changes = d.get("changes") or {}
        for key, value in changes.items():
            if value is None:
                text.append(f" {visible(key)} removed;", style="magenta")
            else:
                text.append(f" {visible(key)} = {visible(value)!r};", style="magenta")
        self.console.print(text)

    def _context_table(self, context: Mapping[str, Any], sources: Mapping[str, Any]) -> Table:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold magenta", no_wrap=True)
        grid.add_column()
        keys = [k for k in CONTEXT_ORDER if k in context]
        keys += sorted(k for k in context if k not in CONTEXT_ORDER)
        for key in keys:
            value = Text(visible(context[key]))
            if key in sources:
                value.append(f"  ({visible(sources[key])})", style="dim")
            grid.add_row(visible(key), value)
        return grid

    def on_statement(self, event: Event) -> None:
        self.statements += 1
        d = event.data
        proto = visible(d.get("protocol") or "")
        name = d.get("statement_name")
        title = f"#{event.seq}  {_short_ts(event.ts)}  statement"
        if proto:
            title += f" ({proto}{', ' + visible(name) if name else ''})"
        self.console.print()
        self.console.rule(Text(title, style="bold"), align="left")
        parts: list[RenderableType] = []
        context = d.get("context") or {}
        if context:
            parts.append(self._context_table(context, d.get("context_sources") or {}))
        sql = visible(d.get("sql", ""))
        parts.append(
            Syntax(sql, "sql", theme="ansi_dark", word_wrap=True, background_color="default")
        )
        params = d.get("params") or []
        if params:
            line = Text("params ", style="bold")
            for i, value in enumerate(params, start=1):
                line.append(f" ${i} = ")
                rendered = render_value(value)
                if isinstance(value, str):
                    rendered = Text(repr(visible(value)))
                line.append_text(rendered)
            parts.append(line)
        parts.append(self._decision(d.get("decision") or {}))
        self.console.print(Padding(Group(*parts, fit=True), (0, 0, 0, 2), expand=False))

    def _decision(self, decision: Mapping[str, Any]) -> Text:
        action = str(decision.get("action") or "?")
        text = Text("decision ", style="bold")
        text.append(f" {visible(action.upper())} ", style=DECISION_STYLES.get(action, "magenta"))
        if decision.get("rule"):
            text.append(f"  rule {visible(decision['rule'])}")
        if decision.get("reason"):
            text.append(f" — {visible(decision['reason'])}", style="dim")
        if decision.get("mode") == "audit":
            text.append("  [audit mode: not enforced]", style="italic")
        return text

    def on_approval(self, event: Event) -> None:
        d = event.data
        state = str(d.get("state") or "?")
        text = Text(f"  {_short_ts(event.ts)}  approval ", style="bold")
        text.append(visible(state), style=APPROVAL_STYLES.get(state, ""))
        text.append(f"  {visible(d.get('approval_id', ''))}", style="dim")
        if d.get("actor"):
            text.append(f"  by {visible(d['actor'])}")
        if d.get("reason"):
            text.append(f"  reason: {visible(d['reason'])}")
        if state == "requested" and d.get("expires_at"):
            text.append(f"  expires {visible(d['expires_at'])}", style="dim")
        self.console.print(text)

    def on_result(self, event: Event) -> None:
        d = event.data
        columns = d.get("columns") or []
        rows = d.get("rows") or []
        parts: list[RenderableType] = []
        if columns:
            table = Table(header_style="bold", show_edge=True, pad_edge=True)
            for col in columns:
                name = col.get("name", "?") if isinstance(col, Mapping) else col
                table.add_column(Text(visible(name)), overflow="fold")
            for row in rows[: self.rows]:
                table.add_row(*(render_value(v) for v in row))
            parts.append(table)
        row_count = d.get("row_count")
        summary = Text("result  ", style="bold")
        summary.append(f"{row_count} row{'' if row_count == 1 else 's'}")
        if d.get("command_tag"):
            summary.append(f"  {visible(d['command_tag'])}", style="cyan")
        if columns and len(rows) > self.rows:
            summary.append(f"  (first {self.rows} shown)", style="dim")
        if d.get("truncated"):
            summary.append(f"  (recording kept {d.get('rows_recorded', len(rows))})", style="dim")
        masked = d.get("masked") or {}
        if masked:
            what = ", ".join(f"{visible(k)}: {v}" for k, v in masked.items())
            summary.append(f"  masked: {what}", style="yellow")
        parts.append(summary)
        self.console.print(Padding(Group(*parts, fit=True), (0, 0, 0, 2), expand=False))

    def on_error(self, event: Event) -> None:
        d = event.data
        text = Text(f"  {visible(d.get('severity') or 'ERROR')} ", style="bold red")
        text.append(f"{visible(d.get('sqlstate', ''))} ", style="red")
        if d.get("source") == "gateway":
            text.append("(pgwarden) ", style="red")
        text.append(visible(d.get("message", "")), style="red")
        self.console.print(text)

    def on_notice(self, event: Event) -> None:
        d = event.data
        text = Text(f"  {visible(d.get('severity') or 'NOTICE')}: ", style="dim bold")
        text.append(visible(d.get("message", "")), style="dim")
        self.console.print(text)

    def on_session_end(self, event: Event) -> None:
        self.console.print()
        self.console.rule(
            Text(
                f"{_short_ts(event.ts)}  session ended: {visible(event.data.get('reason', ''))}",
                style="bold",
            ),
            align="left",
        )

    def on_other(self, event: Event) -> None:
        self.console.print(Text(f"  {_short_ts(event.ts)}  {visible(event.type)}", style="dim"))


def badge(result: VerifyResult) -> Text:
    text = Text(f" {result.status.upper()} ", style=STATUS_STYLES.get(result.status, "bold"))
    text.append(f"  {visible(result.detail)}")
    if result.first_bad_seq is not None:
        text.append(f"  (first bad event: {result.first_bad_seq})", style="bold")
    return text


def replay_command(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(metavar="ID", help="The session id.")],
    step: Annotated[
        bool,
        typer.Option("--step", help="Wait for Enter between statements (when stdin is a TTY)."),
    ] = False,
    speed: Annotated[
        float, typer.Option("--speed", help="Play the original timing X times faster.")
    ] = 1.0,
    no_timing: Annotated[
        bool, typer.Option("--no-timing", help="Print everything at once.")
    ] = False,
    max_gap: Annotated[
        float,
        typer.Option("--max-gap", help="Longest pause between two events, in seconds."),
    ] = DEFAULT_MAX_GAP,
    rows: Annotated[
        int, typer.Option("--rows", help="Result rows to show per statement.")
    ] = DEFAULT_ROWS,
    public_keys: PublicKeyOption = None,
    config: ConfigOption = None,
) -> None:
    """Step through a recorded session: prompt, statement, decision, result."""
    cfg = load_cli_config(ctx, config)
    if not speed > 0:
        fail("--speed: must be greater than zero", EXIT_CONFIG)
    if not max_gap >= 0:
        fail("--max-gap: must not be negative", EXIT_CONFIG)
    if rows < 0:
        fail("--rows: must not be negative", EXIT_CONFIG)
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 120)
    with open_recordings(cfg, keys=True, extra_keys=public_keys or (), cipher=True) as rec:
        _row, data = load_recording(rec, session_id)
        if rec.cipher is None and is_encrypted(data):
            fail(f"session {session_id}: the recording is encrypted: set {KEY_ENV} to replay it")
        lines = read_lines(data, rec.cipher)
        player = Player(
            console,
            rows=rows,
            timing=not no_timing,
            speed=speed,
            max_gap=max_gap,
            step=step,
        )
        player.play(lines)
        result = verify_session(session_id, rec.storage, rec.keys, rec.store)
    console.print()
    console.print(badge(result))
    if not result.ok:
        raise typer.Exit(1)
