"""The `pgwarden` command line (see CONTRACT.md, "CLI").

Every command, and every group on the way to it, takes `-c/--config FILE`, so the option
works anywhere among the arguments. Config errors print one line and exit with code 2.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pgwarden import __version__
from pgwarden.cli import approvals as approvals_cli
from pgwarden.cli import policy as policy_cli
from pgwarden.cli import sessions as sessions_cli
from pgwarden.cli import token as token_cli
from pgwarden.cli._common import ConfigOption, remember_config
from pgwarden.cli.demo import demo_command
from pgwarden.cli.replay import replay_command
from pgwarden.cli.serve import serve_command
from pgwarden.cli.verify import verify_command

app = typer.Typer(
    name="pgwarden",
    help="pgwarden: an identity-aware gateway for PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals could hold secrets
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pgwarden {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    config: ConfigOption = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """pgwarden: an identity-aware gateway for PostgreSQL."""
    remember_config(ctx, config)


app.command("serve")(serve_command)
app.command("demo")(demo_command)
app.add_typer(token_cli.app, name="token")
app.add_typer(policy_cli.app, name="policy")
app.add_typer(sessions_cli.app, name="sessions")
app.command("replay")(replay_command)
app.command("verify")(verify_command)
app.add_typer(approvals_cli.app, name="approvals")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="pgwarden")


if __name__ == "__main__":  # pragma: no cover
    main()
