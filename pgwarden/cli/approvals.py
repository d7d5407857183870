"""`pgwarden approvals ...`: list held statements, approve or deny them.

- `list` reads the control-plane store of the config directly (an operator on the gateway
  host): every approval, or only those in `--state`.
- `approve` and `deny` act through the HTTP API (`api.listen` of the config, or `--api URL`)
  as the identity in the token: `--token T`, else `$PGWARDEN_TOKEN` (prefer the variable: a
  token on the command line shows in the process list and the shell history). The gateway
  decides (approver groups, never one's own statement, `min_approvals`); its refusal is
  printed on stderr and the exit code is 1.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
from rich.table import Table
from rich.text import Text

from pgwarden.approvals.render import approval_json
from pgwarden.cli._common import (
    EXIT_CONFIG,
    ConfigOption,
    JsonOption,
    fail,
    load_cli_config,
    remember_config,
)
from pgwarden.cli.sessions import stdout_console
from pgwarden.config import Config, HostPort, redact_url
from pgwarden.recording.events import format_ts
from pgwarden.store import DEFAULT_DB_NAME, Store, StoreError, open_store
from pgwarden.store.base import APPROVAL_STATES

__all__ = ["TOKEN_ENV", "api_base_url", "app"]

TOKEN_ENV = "PGWARDEN_TOKEN"  # noqa: S105 - the name of a variable, not a secret
API_ENV = "PGWARDEN_API"
STATE_STYLES = {
    "pending": "yellow",
    "approved": "green",
    "denied": "red",
    "expired": "magenta",
    "withdrawn": "dim",
}
SQL_WIDTH = 60
HTTP_TIMEOUT = 15.0

app = typer.Typer(
    help="Statements held for approval: list, approve, deny.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        "-t",
        help=f"Your bearer token (default: ${TOKEN_ENV}).",
        metavar="TOKEN",
        envvar=TOKEN_ENV,
        show_envvar=False,
        show_default=False,
    ),
]
ReasonOption = Annotated[
    str | None,
    typer.Option("--reason", "-r", help="Why (recorded with the decision).", metavar="TEXT"),
]
ApiOption = Annotated[
    str | None,
    typer.Option(
        "--api",
        help=f"The gateway's API, e.g. http://127.0.0.1:8080 (default: ${API_ENV}, then "
        "api.listen of the config).",
        metavar="URL",
        envvar=API_ENV,
        show_envvar=False,
        show_default=False,
    ),
]
IdArgument = Annotated[str, typer.Argument(metavar="ID", help="The approval id (apr_...).")]


@app.callback()
def approvals_group(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Statements held for approval: list, approve, deny."""
    remember_config(ctx, config)


# --------------------------------------------------------------------------------------------
# list


@contextlib.contextmanager
def _open_store(cfg: Config) -> Iterator[Store]:
    data_dir = Path(cfg.data_dir)
    try:
        store = open_store(cfg.store, data_dir)
    except StoreError as exc:
        fail(f"cannot open the control-plane store: {exc}", EXIT_CONFIG)
    except Exception as exc:  # sqlite3.Error, OSError, ...
        where = redact_url(cfg.store) if cfg.store else data_dir / DEFAULT_DB_NAME
        fail(f"cannot open the control-plane store {where}: {exc}")
    try:
        yield store
    finally:
        with contextlib.suppress(Exception):
            store.close()


@app.command("list")
def list_command(
    ctx: typer.Context,
    json_output: JsonOption = False,
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            "-s",
            help="Only approvals in this state: pending|approved|denied|expired|withdrawn.",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """List approval requests, oldest first (read from the gateway's store)."""
    cfg = load_cli_config(ctx, config)
    if state is not None and state not in APPROVAL_STATES:
        fail(f"--state: expected one of {', '.join(sorted(APPROVAL_STATES))}", EXIT_CONFIG)
    with _open_store(cfg) as store:
        try:
            records = store.list_approvals(state=state)
        except Exception as exc:
            fail(f"cannot read the approvals: {exc}")
    if json_output:
        required = cfg.approvals.min_approvals
        docs = [approval_json(r, required=required) for r in records]
        typer.echo(json.dumps(docs, indent=2, ensure_ascii=False))
        return
    console = stdout_console()
    if not records:
        console.print("no approvals" + (f" in state {state}" if state else ""))
        return
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("ID", no_wrap=True)
    table.add_column("STATE", no_wrap=True)
    table.add_column("REQUESTER", overflow="fold")
    table.add_column("TARGET", overflow="fold")
    table.add_column("REQUESTED (UTC)", no_wrap=True)
    table.add_column("EXPIRES (UTC)", no_wrap=True)
    table.add_column("VOTES", justify="right")
    table.add_column("DECIDED BY", overflow="fold")
    table.add_column("RULE", overflow="fold")
    table.add_column("SQL", overflow="ellipsis", no_wrap=True, max_width=SQL_WIDTH)
    needed = cfg.approvals.min_approvals
    for r in records:
        table.add_row(
            r.id,
            Text(r.state, style=STATE_STYLES.get(r.state, "")),
            r.requester,
            r.target,
            _short_time(r.requested_at),
            _short_time(r.expires_at),
            f"{len(r.deciders)}/{needed}" if r.state == "pending" else str(len(r.deciders)),
            ", ".join(r.deciders) or "-",
            r.rule or "-",
            _one_line(r.sql, SQL_WIDTH),
        )
    console.print(table)


def _short_time(t: float | None) -> str:
    return format_ts(t)[:19].replace("T", " ") if t is not None else "-"


def _one_line(sql: str, width: int) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# --------------------------------------------------------------------------------------------
# approve / deny


def api_base_url(listen: HostPort) -> str:
    """``http://host:port`` for reaching an API that listens on ``listen`` from this host
    (a wildcard address means loopback)."""
    host = listen.host
    if host in ("", "0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{listen.port}"


def _decide(
    ctx: typer.Context,
    approval_id: str,
    *,
    approve: bool,
    token: str | None,
    reason: str | None,
    api: str | None,
    json_output: bool,
    config: Path | None,
) -> None:
    cfg = load_cli_config(ctx, config)
    if not token or not token.strip():
        fail(f"give your token with --token TOKEN or ${TOKEN_ENV}", EXIT_CONFIG)
    if api:
        base = api.rstrip("/")
        if not base.startswith(("http://", "https://")):
            fail("--api: expected an http:// or https:// URL", EXIT_CONFIG)
    else:
        if cfg.api.listen.port == 0:
            fail("api.listen has port 0 (any free port): give the API with --api URL", EXIT_CONFIG)
        base = api_base_url(cfg.api.listen)
    verb = "approve" if approve else "deny"
    url = f"{base}/api/v1/approvals/{quote(approval_id, safe='')}/{verb}"
    body: dict[str, Any] = {"reason": reason} if reason is not None else {}
    try:
        # trust_env=False: the bearer token goes straight to the gateway, never via a proxy
        with httpx.Client(timeout=HTTP_TIMEOUT, trust_env=False) as client:
            response = client.post(
                url, json=body, headers={"Authorization": f"Bearer {token.strip()}"}
            )
    except httpx.HTTPError as exc:
        fail(f"cannot reach the pgwarden API at {base}: {exc or type(exc).__name__}")
    if response.status_code != 200:
        fail(f"cannot {verb} {approval_id}: {_api_error(response)}")
    try:
        record = response.json()
    except ValueError:
        fail(f"the API at {base} answered with something that is not JSON")
    if not isinstance(record, dict):
        fail(f"the API at {base} answered with something that is not an approval")
    if json_output:
        typer.echo(json.dumps(record, indent=2, ensure_ascii=False))
        return
    needed = record.get("approvals_required")
    if not isinstance(needed, int):
        needed = cfg.approvals.min_approvals
    _print_record(record, approve=approve, needed=needed)


def _api_error(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, str) and detail:
        return f"{detail} (HTTP {response.status_code})"
    if detail is not None:
        return f"{json.dumps(detail)} (HTTP {response.status_code})"
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()


def _print_record(record: dict[str, Any], *, approve: bool, needed: int) -> None:
    state = str(record.get("state"))
    deciders = [str(d) for d in record.get("deciders") or []]
    aid = record.get("id")
    if state == "pending" and approve:
        headline = f"{aid}: approval recorded ({len(deciders)} of {needed} needed); still pending"
    else:
        headline = f"{aid}: {state}"
    console = stdout_console()
    console.print(headline, markup=False)
    reasons = [str(x) for x in record.get("reasons") or []]
    rows = [
        ("state", state),
        ("requester", str(record.get("requester"))),
        ("target", str(record.get("target"))),
        ("session", str(record.get("session_id"))),
        ("requested", str(record.get("requested_at"))),
        ("expires", str(record.get("expires_at"))),
        ("decided", str(record.get("decided_at") or "-")),
        ("deciders", ", ".join(deciders) or "-"),
        ("reasons", "; ".join(r for r in reasons if r) or "-"),
        ("sql", str(record.get("sql"))),
    ]
    table = Table(show_header=False, show_edge=False, pad_edge=False, box=None)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, Text(value))
    console.print(table)


@app.command("approve")
def approve_command(
    ctx: typer.Context,
    approval_id: IdArgument,
    token: TokenOption = None,
    reason: ReasonOption = None,
    api: ApiOption = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Approve a held statement, as the identity in the token (through the HTTP API)."""
    _decide(
        ctx,
        approval_id,
        approve=True,
        token=token,
        reason=reason,
        api=api,
        json_output=json_output,
        config=config,
    )


@app.command("deny")
def deny_command(
    ctx: typer.Context,
    approval_id: IdArgument,
    token: TokenOption = None,
    reason: ReasonOption = None,
    api: ApiOption = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Deny a held statement, as the identity in the token (through the HTTP API)."""
    _decide(
        ctx,
        approval_id,
        approve=False,
        token=token,
        reason=reason,
        api=api,
        json_output=json_output,
        config=config,
    )
