"""`pgwarden policy ...`: what the policy would decide, without running anything."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Annotated

import typer

from pgwarden.cli._common import (
    EXIT_CONFIG,
    ConfigOption,
    fail,
    load_cli_config,
    remember_config,
)
from pgwarden.cli.token import split_groups
from pgwarden.config import TargetConfig
from pgwarden.guard.estimator import Estimator
from pgwarden.policy import PolicyError, PolicyIdentity, default_policy_text, explain, load_policy
from pgwarden.policy.model import RowEstimate
from pgwarden.sql import classify_cached

app = typer.Typer(
    help="Inspect the statement policy.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def policy_group(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Inspect the statement policy."""
    remember_config(ctx, config)


@app.command("explain")
def explain_command(
    ctx: typer.Context,
    sql: Annotated[str, typer.Argument(help="The SQL to judge (not run).")],
    subject: Annotated[str, typer.Option("--subject", "-s", help="Who would run it.")],
    target: Annotated[str, typer.Option("--target", "-t", help="The target (database) name.")],
    groups: Annotated[
        list[str] | None,
        typer.Option("--groups", "-g", help="Comma-separated groups; may be repeated."),
    ] = None,
    estimate: Annotated[
        bool,
        typer.Option(
            "--estimate",
            help="Ask the target for row estimates (EXPLAIN, never executing) for blast radius.",
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Print the decision on SQL and why, as JSON, without running it."""
    cfg = load_cli_config(ctx, config)
    try:
        policy = load_policy(cfg.policy)
    except PolicyError as exc:
        fail(str(exc), EXIT_CONFIG)
    if target not in cfg.targets and cfg.targets:
        fail(f"--target: no target named {target!r} in the config", EXIT_CONFIG)
    identity = PolicyIdentity(subject, tuple(split_groups(groups)))
    estimates: list[RowEstimate | None] | None = None
    if estimate and target in cfg.targets:
        estimates = asyncio.run(_estimates(cfg.targets, target, sql))
    result = explain(policy, sql, identity, target, estimates)
    if estimates is not None:  # what the decision read, per statement (null: none)
        result["estimates"] = [
            None
            if e is None
            else {"rows": e.rows, "table_rows": e.table_rows, "cascaded": e.cascaded}
            for e in estimates
        ]
    typer.echo(json.dumps(result, indent=2, sort_keys=False, default=str))


async def _estimates(
    targets: Mapping[str, TargetConfig], target: str, sql: str
) -> list[RowEstimate | None]:
    est = Estimator(targets)
    try:
        out: list[RowEstimate | None] = []
        for st in classify_cached(sql).statements:
            out.append(
                await est.estimate(target, st.estimate_sql, key=st.key_lookup)
                if st.estimate_sql
                else None
            )
        return out
    finally:
        await est.close()


@app.command("show-default")
def show_default(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Print the built-in default policy (YAML), to copy and adapt."""
    remember_config(ctx, config)
    typer.echo(default_policy_text())
