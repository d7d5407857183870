"""`pgwarden serve`: the gateway and the API until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Protocol

import typer

from pgwarden.cli._common import (
    ConfigOption,
    configure_logging,
    err_console,
    fail,
    load_cli_config,
    parse_host_port_option,
)
from pgwarden.cli._runtime import run_until_signal
from pgwarden.config import Config

log = logging.getLogger("pgwarden")


class ServeFunction(Protocol):
    def __call__(
        self, config: Config, *, ready: Callable[[], None] | None = None
    ) -> Coroutine[Any, Any, None]: ...


def load_serve() -> ServeFunction:
    """`pgwarden.app.serve`, imported late (tests replace this function)."""
    from pgwarden.app import serve  # noqa: PLC0415 - heavy import, only when serving

    return serve


def describe_bind_error(exc: OSError, config: Config) -> str:
    return f"cannot start: {exc.strerror or exc} (gateway {config.listen}, API {config.api.listen})"


LogLevelOption = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")]


def serve_command(
    ctx: typer.Context,
    config: ConfigOption = None,
    listen: Annotated[
        str | None, typer.Option("--listen", help="Override `listen` (host:port).")
    ] = None,
    api_listen: Annotated[
        str | None, typer.Option("--api-listen", help="Override `api.listen` (host:port).")
    ] = None,
    log_level: LogLevelOption = "info",
) -> None:
    """Run the gateway and the API until SIGTERM or Ctrl-C."""
    cfg = load_cli_config(ctx, config)
    overrides: dict[str, Any] = {}
    if (addr := parse_host_port_option(listen, "--listen")) is not None:
        overrides["listen"] = addr
    if (api_addr := parse_host_port_option(api_listen, "--api-listen")) is not None:
        overrides["api"] = cfg.api.model_copy(update={"listen": api_addr})
    if overrides:
        cfg = cfg.model_copy(update=overrides)
    configure_logging(log_level)
    serve = load_serve()

    def ready() -> None:
        err_console.print(
            f"pgwarden: gateway on {cfg.listen}, API on http://{cfg.api.listen}/ "
            "(Ctrl-C or SIGTERM to stop)"
        )

    try:
        sig = run_until_signal(lambda: serve(cfg, ready=ready))
    except OSError as exc:
        log.debug("serve failed", exc_info=True)
        fail(describe_bind_error(exc, cfg))
    except Exception:
        log.exception("pgwarden stopped on an error")
        raise typer.Exit(1) from None
    if sig is not None:
        log.info("stopped by %s", sig.name)
