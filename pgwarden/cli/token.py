"""`pgwarden token ...`: tokens from the local issuer (a key in data_dir)."""

from __future__ import annotations

import json
from typing import Annotated

import jwt
import typer

from pgwarden.cli._common import (
    EXIT_CONFIG,
    ConfigOption,
    JsonOption,
    err_console,
    fail,
    load_cli_config,
    remember_config,
)
from pgwarden.config import parse_duration

app = typer.Typer(
    help="Issue tokens signed by the gateway's local issuer.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

DEFAULT_TTL = "15m"


@app.callback()
def token_group(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Issue tokens signed by the gateway's local issuer."""
    remember_config(ctx, config)


def split_groups(values: list[str] | None) -> list[str]:
    """`--groups a,b --groups c` -> [a, b, c] (order kept, duplicates and blanks dropped)."""
    groups: list[str] = []
    for value in values or []:
        for part in value.split(","):
            name = part.strip()
            if name and name not in groups:
                groups.append(name)
    return groups


@app.command("issue")
def issue(
    ctx: typer.Context,
    subject: Annotated[
        str, typer.Option("--subject", "-s", help="Who the token is for (the psql user name).")
    ],
    groups: Annotated[
        list[str] | None,
        typer.Option("--groups", "-g", help="Comma-separated groups; may be repeated."),
    ] = None,
    ttl: Annotated[
        str, typer.Option("--ttl", help="Lifetime, e.g. 15m, 1h, 12h, 1d.")
    ] = DEFAULT_TTL,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Print one token on stdout (use it as the PostgreSQL password)."""
    cfg = load_cli_config(ctx, config)
    if not subject.strip():
        fail("--subject must not be empty", EXIT_CONFIG)
    try:
        ttl_seconds = parse_duration(ttl)
    except ValueError as exc:
        fail(f"--ttl: {exc}", EXIT_CONFIG)
    if ttl_seconds <= 0:
        fail("--ttl: must be greater than zero", EXIT_CONFIG)
    group_list = split_groups(groups)

    if not cfg.identity.local_issuer:
        err_console.print(
            "pgwarden: warning: identity.local_issuer is false; the gateway will refuse this token"
        )
    if ttl_seconds > cfg.identity.max_token_ttl:
        err_console.print(
            f"pgwarden: warning: --ttl {ttl} is longer than identity.max_token_ttl "
            f"({cfg.identity.max_token_ttl:g}s); the gateway will refuse this token"
        )

    from pgwarden.auth.local_issuer import LocalIssuer  # noqa: PLC0415 - keep CLI start fast

    try:
        issuer = LocalIssuer.load_or_create(cfg.data_dir)
        token = issuer.issue(subject, group_list, ttl_seconds)
    except (OSError, ValueError) as exc:
        fail(f"cannot issue a token: {exc}")

    if json_output:
        typer.echo(
            json.dumps(
                {
                    "token": token,
                    "subject": subject,
                    "groups": group_list,
                    "expires_at": jwt.decode(token, options={"verify_signature": False}).get("exp"),
                }
            )
        )
    else:
        typer.echo(token)
