"""What every command shares: the `-c/--config` option and config loading with clean errors.

Every command, and every group on the way to it, declares `ConfigOption`, so `-c FILE` works
anywhere among the arguments (`pgwarden -c F token issue`, `pgwarden token issue ... -c F`).
Groups record the value with `remember_config(ctx, config)`; commands take `ctx` and call
`load_cli_config(ctx, config)`, which uses the innermost value given.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from pgwarden.config import Config, ConfigError, HostPort, load_config

__all__ = [
    "EXIT_CONFIG",
    "ConfigOption",
    "JsonOption",
    "config_path_from_context",
    "configure_logging",
    "err_console",
    "fail",
    "fail_config",
    "load_cli_config",
    "parse_host_port_option",
    "remember_config",
]

EXIT_CONFIG = 2
_META_KEY = "pgwarden.config_path"

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "-c",
        "--config",
        help="Config file (default: $PGWARDEN_CONFIG, then ./pgwarden.yaml).",
        metavar="FILE",
        show_default=False,
        dir_okay=False,
    ),
]

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def remember_config(ctx: typer.Context, config: Path | None) -> None:
    """Record a group-level `-c` so that the command below it can find it."""
    if config is not None:
        ctx.meta[_META_KEY] = config


def config_path_from_context(ctx: typer.Context | None, config: Path | None = None) -> Path | None:
    """The innermost `-c` given: the command's own, else the nearest group's."""
    if config is not None:
        return config
    if ctx is None:
        return None
    value = ctx.meta.get(_META_KEY)
    return value if isinstance(value, Path) else None


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `pgwarden: <message>` as one line on stderr and exit with `code`."""
    one_line = " ".join(message.split())
    typer.echo(f"pgwarden: {one_line}", err=True)
    raise typer.Exit(code)


def fail_config(error: ConfigError) -> NoReturn:
    message = str(error)
    where = ""
    if error.source is not None and str(error.source) not in message:
        where = f" in {error.source}"
    fail(f"config error{where}: {message}", EXIT_CONFIG)


def load_cli_config(ctx: typer.Context | None, config: Path | None = None) -> Config:
    """Load the config for a command, exiting with code 2 and one clear line on error."""
    try:
        return load_config(config_path_from_context(ctx, config))
    except ConfigError as exc:
        fail_config(exc)


def parse_host_port_option(value: str | None, option: str) -> HostPort | None:
    if value is None:
        return None
    try:
        return HostPort.parse(value)
    except ValueError as exc:
        fail(f"{option}: {exc}", EXIT_CONFIG)


def configure_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        fail(f"--log-level: unknown level {level!r}", EXIT_CONFIG)
    logging.basicConfig(
        level=numeric,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
