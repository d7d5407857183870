"""`pgwarden demo`: a throwaway PostgreSQL with the shop data, the gateway and its console.

What it does, in order: checks the gateway and API ports are free, starts a DevCluster (as the
`postgres` user when root), loads the shop database owned by role `app` with a random password,
writes a config (0600) into the data directory, issues tokens for `agent-7` (group `agents`) and
`alice` (groups `dba`, `auditors`: approves and reads sessions in the console), runs
`pgwarden.app.serve()` and prints ready-to-paste psql lines. On
SIGINT/SIGTERM it stops the gateway, then the cluster, and removes the temporary data directory
(kept with --keep or when --data-dir is given).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from pgwarden.cli._common import (
    EXIT_CONFIG,
    ConfigOption,
    config_path_from_context,
    configure_logging,
    err_console,
    fail,
    fail_config,
    parse_host_port_option,
)
from pgwarden.cli._runtime import run_until_signal, sigterm_raises_keyboard_interrupt
from pgwarden.cli.serve import LogLevelOption, describe_bind_error, load_serve
from pgwarden.config import Config, ConfigError, HostPort, load_config
from pgwarden.demo import ShopDatabase, load_shop
from pgwarden.devcluster import DevCluster, DevClusterError, conninfo

log = logging.getLogger("pgwarden.demo")

AGENT_SUBJECT = "agent-7"
AGENT_GROUPS = ("agents",)
APPROVER_SUBJECT = "alice"
APPROVER_GROUPS = ("dba", "auditors")
TOKEN_TTL = 8 * 3600.0
TARGET = "shop"


@dataclass(frozen=True)
class DemoTokens:
    agent: str
    approver: str


def _connect_host(addr: HostPort) -> str:
    if addr.host in {"0.0.0.0", "::", ""}:
        return "127.0.0.1"
    return addr.host


def ensure_port_free(addr: HostPort, what: str) -> HostPort:
    """Fail early and clearly when the port is taken; pick a free port for port 0."""
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((addr.host, addr.port))
        except OSError as exc:
            option = "--listen" if what == "gateway" else "--api-listen"
            fail(
                f"cannot use {addr} for the {what}: {exc.strerror or exc} "
                f"(is another pgwarden running? choose another address with {option})"
            )
        port: int = sock.getsockname()[1]
    return HostPort(addr.host, port)


def _base_document(config_path: Path | None) -> dict[str, Any]:
    """The explicitly given config (if any) as a plain document, secrets included."""
    if config_path is None:
        return {}
    try:
        base = load_config(config_path)
    except ConfigError as exc:
        fail_config(exc)
    data: dict[str, Any] = base.model_dump(mode="json", exclude_none=True)
    for name, target in base.targets.items():
        if target.password is not None:
            data["targets"][name]["password"] = target.password.get_secret_value()
    return data


def build_demo_document(
    base: dict[str, Any],
    *,
    listen: HostPort,
    api_listen: HostPort,
    data_dir: Path,
    shop: ShopDatabase,
) -> dict[str, Any]:
    doc = dict(base)
    doc["listen"] = str(listen)
    doc["api"] = {**doc.get("api", {}), "listen": str(api_listen)}
    doc["data_dir"] = str(data_dir)
    targets = dict(doc.get("targets", {}))
    targets[TARGET] = {
        "host": shop.host,
        "port": shop.port,
        "dbname": shop.dbname,
        "user": shop.owner,
        "password": shop.password,
        "sslmode": "prefer",
    }
    doc["targets"] = targets
    doc.setdefault("policy", "default")
    doc.setdefault("masking", "default")
    return doc


def write_config(path: Path, document: dict[str, Any]) -> None:
    header = (
        "# Written by `pgwarden demo` for a throwaway PostgreSQL; deleted when the demo stops.\n"
        "# It holds the database password, so it is readable by its owner only.\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(header)
        yaml.safe_dump(document, fh, sort_keys=False, default_flow_style=False)


def issue_tokens(config: Config) -> DemoTokens:
    from pgwarden.auth.local_issuer import LocalIssuer  # noqa: PLC0415

    ttl = min(TOKEN_TTL, config.identity.max_token_ttl)
    issuer = LocalIssuer.load_or_create(config.data_dir)
    return DemoTokens(
        agent=issuer.issue(AGENT_SUBJECT, list(AGENT_GROUPS), ttl),
        approver=issuer.issue(APPROVER_SUBJECT, list(APPROVER_GROUPS), ttl),
    )


def _cli_name() -> str:
    """How to call this CLI from the current directory."""
    candidate = Path(sys.executable).parent / "pgwarden"
    if candidate.exists():
        found = shutil.which("pgwarden")
        if found and Path(found).resolve() == candidate.resolve():
            return "pgwarden"
        with contextlib.suppress(ValueError):
            return "./" + str(candidate.absolute().relative_to(Path.cwd()))
        return str(candidate)
    return "pgwarden"


def psql_line(token: str, listen: HostPort, subject: str) -> str:
    params = conninfo(
        host=_connect_host(listen), port=listen.port, dbname=TARGET, user=subject, sslmode="prefer"
    )
    return f'PGPASSWORD={token} psql "{params}"'


def print_instructions(
    console: Console,
    *,
    config: Config,
    config_path: Path,
    tokens: DemoTokens,
    cluster: DevCluster,
) -> None:
    cli = _cli_name()
    api = f"http://{_connect_host(config.api.listen)}:{config.api.listen.port}/"
    out = console.file

    def paste(line: str) -> None:
        # Plain print: ready-to-paste lines must never be wrapped or styled.
        console.file.flush()
        print(line, file=out, flush=True)

    console.print()
    console.print("[bold green]pgwarden demo is running[/] (Ctrl-C to stop)")
    console.print(f"  gateway      {config.listen}   (PostgreSQL protocol)")
    console.print(f"  web console  {api}console   (sign in with the approver token below)")
    console.print(f"  HTTP API     {api}   (/api/v1/..., /metrics, /healthz)")
    console.print(
        f"  database     {cluster.host}:{cluster.port}, database {TARGET} "
        "(only the gateway knows its password)"
    )
    console.print(f"  server log   {cluster.logfile}   (every statement that reached PostgreSQL)")
    console.print(f"  config       {config_path}")
    console.print()
    console.print(
        f"[bold]Connect as the agent[/] [cyan]{AGENT_SUBJECT}[/] "
        f"(groups: {', '.join(AGENT_GROUPS)}):"
    )
    paste(psql_line(tokens.agent, config.listen, AGENT_SUBJECT))
    console.print()
    console.print("[bold]Then try:[/]")
    console.print(
        "  SELECT * FROM customers LIMIT 5;   -- SSNs, cards and e-mails come back masked"
    )
    console.print("  DELETE FROM orders;                -- denied: no WHERE clause")
    console.print("  DROP TABLE orders;                 -- denied or held for a human")
    console.print("  ALTER TABLE orders ADD COLUMN note text;   -- held for approval")
    console.print()
    console.print(
        f"[bold]Approve as[/] [cyan]{APPROVER_SUBJECT}[/] "
        f"(groups: {', '.join(APPROVER_GROUPS)}), in another terminal:"
    )
    paste(f"export PGWARDEN_CONFIG={config_path}")
    paste(f"export ALICE_TOKEN={tokens.approver}")
    paste(f"{cli} approvals list")
    paste(f'{cli} approvals approve ID --token "$ALICE_TOKEN" --reason "looks fine"')
    console.print(f"or in the web console ({api}console): sign in with $ALICE_TOKEN")
    console.print()
    console.print(f"[bold]Or connect as[/] [cyan]{APPROVER_SUBJECT}[/]:")
    paste(psql_line(tokens.approver, config.listen, APPROVER_SUBJECT))
    console.print()
    console.print("[bold]Afterwards:[/]")
    paste(f"{cli} sessions list -c {config_path}")
    paste(f"{cli} verify --all -c {config_path}")
    console.print()


def demo_command(
    ctx: typer.Context,
    config: ConfigOption = None,
    listen: Annotated[
        str, typer.Option("--listen", help="Gateway address (host:port).")
    ] = "127.0.0.1:6432",
    api_listen: Annotated[
        str, typer.Option("--api-listen", help="Web console and API address (host:port).")
    ] = "127.0.0.1:8080",
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Keep keys, recordings and the config here (default: a temporary directory "
            "removed on exit).",
            file_okay=False,
        ),
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Do not delete the temporary data directory.")
    ] = False,
    log_level: LogLevelOption = "warning",
) -> None:
    """Run a throwaway PostgreSQL with sample data, the gateway and its console.

    Prints ready-to-paste psql lines.
    Ctrl-C or SIGTERM stops everything and frees the ports.
    """
    listen_addr = parse_host_port_option(listen, "--listen")
    api_addr = parse_host_port_option(api_listen, "--api-listen")
    if listen_addr is None or api_addr is None:  # pragma: no cover - options have defaults
        fail("--listen and --api-listen are required", EXIT_CONFIG)
    base = _base_document(config_path_from_context(ctx, config))
    configure_logging(log_level)
    console = Console(highlight=False, soft_wrap=True)

    listen_addr = ensure_port_free(listen_addr, "gateway")
    api_addr = ensure_port_free(api_addr, "API")
    if listen_addr == api_addr:
        fail("--listen and --api-listen must differ", EXIT_CONFIG)

    temporary = data_dir is None
    if data_dir is None:
        data_path = Path(tempfile.mkdtemp(prefix="pgwarden-demo-"))
    else:
        data_path = data_dir.expanduser().absolute()
        data_path.mkdir(parents=True, exist_ok=True, mode=0o700)

    cluster: DevCluster | None = None
    exit_code = 0
    with sigterm_raises_keyboard_interrupt():
        try:
            err_console.print("pgwarden demo: starting a throwaway PostgreSQL ...")
            cluster = running = DevCluster(log_statement="all")
            running.start()
            shop = load_shop(running, TARGET, "app", secrets.token_urlsafe(24))
            config_path = data_path / "pgwarden.yaml"
            document = build_demo_document(
                base, listen=listen_addr, api_listen=api_addr, data_dir=data_path, shop=shop
            )
            write_config(config_path, document)
            cfg = load_config(config_path)
            tokens = issue_tokens(cfg)
            serve = load_serve()
            err_console.print("pgwarden demo: starting the gateway ...")

            def ready() -> None:
                print_instructions(
                    console, config=cfg, config_path=config_path, tokens=tokens, cluster=running
                )

            def on_signal(sig: object) -> None:
                err_console.print("pgwarden demo: stopping ...")

            try:
                run_until_signal(lambda: serve(cfg, ready=ready), on_signal=on_signal)
            except OSError as exc:
                log.debug("serve failed", exc_info=True)
                err_console.print(f"pgwarden: {describe_bind_error(exc, cfg)}")
                exit_code = 1
        except KeyboardInterrupt:
            err_console.print("pgwarden demo: interrupted, cleaning up ...")
            exit_code = 130
        except DevClusterError as exc:
            err_console.print(f"pgwarden: cannot start PostgreSQL: {exc}", markup=False)
            exit_code = 1
        except ConfigError as exc:  # pragma: no cover - the config is generated
            err_console.print(f"pgwarden: demo config error: {exc}", markup=False)
            exit_code = 1
        except Exception:
            log.exception("pgwarden demo stopped on an error")
            exit_code = 1
        finally:
            if cluster is not None:
                cluster.stop()
            if temporary and not keep:
                shutil.rmtree(data_path, ignore_errors=True)
            elif temporary:
                err_console.print(f"pgwarden demo: kept {data_path}")
    err_console.print("pgwarden demo: stopped")
    if exit_code:
        raise typer.Exit(exit_code)
