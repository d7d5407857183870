"""`pgwarden replay ID`, on real recordings written as the gateway writes them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_cli_sessions import (
    DELETE_SQL,
    DROP_SQL,
    PROMPT,
    TRACEPARENT,
    Env,
    make_env,
    rich_session,
    simple_session,
)
from typer.testing import CliRunner, Result

from pgwarden.cli import replay as replay_cli
from pgwarden.cli.main import app
from pgwarden.recording.crypto import KEY_ENV, RecordingCipher


@pytest.fixture
def env(
    tmp_path: Path, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Env]:
    monkeypatch.delenv(KEY_ENV, raising=False)
    e = make_env(tmp_path, write_config)
    yield e
    e.gw.close()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses replay makes (none really happen)."""
    made: list[float] = []
    monkeypatch.setattr(replay_cli, "sleep", made.append)
    return made


def _in_order(text: str, *parts: str) -> None:
    pos = 0
    for part in parts:
        found = text.find(part, pos)
        assert found >= 0, f"{part!r} not found after position {pos} in:\n{text}"
        pos = found + len(part)


def test_replay_shows_prompt_statement_decision_result(
    cli: Callable[..., Result], env: Env, sleeps: list[float]
) -> None:
    rich_session(env.gw)
    result = cli("replay", "s-rich", "--no-timing", "-c", str(env.config))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert sleeps == []
    # the identity
    _in_order(out, "session s-rich", "agent-7", "pgwarden-local", "shop", "127.0.0.1:50432")
    # statement 1: context, SQL, parameters, decision, result rows
    _in_order(
        out,
        "prompt",
        PROMPT,
        "traceparent",
        TRACEPARENT,
        "SELECT id, email FROM customers WHERE id = $1",
        "$1 = '42'",
        "ALLOW",
        "rule reads",
        "id",
        "email",
        "42",
        "j***@example.com",
        "1 row",
        "SELECT 1",
        "masked: email: 1",
    )
    # statement 2: API context, denied, the error
    _in_order(
        out,
        "intent = 'remove stale orders'",
        "intent",
        "remove stale orders",
        DELETE_SQL,
        "DENY",
        "no-unbounded-delete",
        "42501",
        "pgwarden: denied by rule no-unbounded-delete",
    )
    # statement 3: held, approved, run
    _in_order(
        out,
        DROP_SQL,
        "REVIEW",
        "ddl-needs-approval",
        "approval requested",
        "approval approved",
        "alice",
        "scratch table",
        "DROP TABLE",
        "session ended: client closed the connection",
        "INTACT",
    )


def test_replay_original_timing(cli: Callable[..., Result], env: Env, sleeps: list[float]) -> None:
    run = env.gw.start("s-t", gap=1.0)
    seq = run.statement("SELECT 1")
    run.result(seq, "SELECT 1", ["n"], [[b"1"]])
    seq = run.statement("SELECT 2", gap=100.0)  # a long think: capped
    run.result(seq, "SELECT 1", ["n"], [[b"2"]])
    run.end()

    result = cli("replay", "s-t", "-c", str(env.config))
    assert result.exit_code == 0, result.output
    assert sleeps == pytest.approx([1.0, 1.0, 2.0, 1.0, 1.0])

    sleeps.clear()
    cli("replay", "s-t", "--speed", "2", "-c", str(env.config))
    assert sleeps == pytest.approx([0.5, 0.5, 2.0, 0.5, 0.5])

    sleeps.clear()
    cli("replay", "s-t", "--speed", "4", "--max-gap", "60", "-c", str(env.config))
    assert sleeps == pytest.approx([0.25, 0.25, 25.0, 0.25, 0.25])

    sleeps.clear()
    result = cli("replay", "s-t", "--no-timing", "-c", str(env.config))
    assert result.exit_code == 0 and sleeps == []


def test_step_without_a_terminal_just_proceeds(
    cli: Callable[..., Result], env: Env, sleeps: list[float]
) -> None:
    rich_session(env.gw)
    result = cli("replay", "s-rich", "--step", "-c", str(env.config))
    assert result.exit_code == 0, result.output
    assert sleeps == []
    _in_order(result.stdout, PROMPT, DELETE_SQL, DROP_SQL, "INTACT")
    assert "next statement" not in result.stdout


def test_step_waits_for_enter(
    cli: Callable[..., Result],
    env: Env,
    sleeps: list[float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rich_session(env.gw)
    monkeypatch.setattr(replay_cli, "stdin_is_tty", lambda: True)
    runner_input = "\nq\n"  # Enter after statement 1, quit after statement 2

    result = CliRunner().invoke(
        app, ["replay", "s-rich", "--step", "-c", str(env.config)], input=runner_input
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.count("next statement") == 2
    _in_order(out, PROMPT, "next statement", DELETE_SQL, "next statement", "INTACT")
    assert DROP_SQL not in out
    assert sleeps == []


def test_replay_unknown_session(cli: Callable[..., Result], env: Env) -> None:
    result = cli("replay", "nope", "--no-timing", "-c", str(env.config))
    assert result.exit_code == 1
    assert "no session 'nope'" in result.stderr


def test_replay_unterminated(cli: Callable[..., Result], env: Env) -> None:
    simple_session(env.gw, "s-crash", end=False)
    result = cli("replay", "s-crash", "--no-timing", "-c", str(env.config))
    assert result.exit_code == 0, result.output
    _in_order(result.stdout, "SELECT 1", "UNTERMINATED", "cut off after event")


def test_replay_tampered(cli: Callable[..., Result], env: Env) -> None:
    rich_session(env.gw)
    path = env.gw.recording_path("s-rich")
    path.write_bytes(path.read_bytes().replace(b"DELETE FROM orders", b"DELETE FROM ordErs"))
    result = cli("replay", "s-rich", "--no-timing", "-c", str(env.config))
    assert result.exit_code == 1
    _in_order(result.stdout, "DELETE FROM ordErs", "TAMPERED", "first bad event: 6")


def test_replay_missing_recording(cli: Callable[..., Result], env: Env) -> None:
    simple_session(env.gw, "s1")
    env.gw.recording_path("s1").unlink()
    result = cli("replay", "s1", "--no-timing", "-c", str(env.config))
    assert result.exit_code == 1
    assert "missing" in result.stderr


def test_replay_shows_recorded_text_as_plain_text(cli: Callable[..., Result], env: Env) -> None:
    """Terminal escapes and rich markup in recorded values are shown, never interpreted."""
    run = env.gw.start("s-esc")
    seq = run.statement("SELECT '\x1b[2J' AS [bold]x[/bold]")
    run.result(seq, "SELECT 1", ["[red]c"], [[b"\x1b]0;owned\x07v"]])
    run.end()
    result = cli("replay", "s-esc", "--no-timing", "-c", str(env.config))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[2J" in out and "[bold]x[/bold]" in out
    assert "[red]c" in out and "\\x1b]0;owned\\x07v" in out


def test_replay_row_preview_cap(cli: Callable[..., Result], env: Env) -> None:
    run = env.gw.start("s-rows")
    seq = run.statement("SELECT n FROM generate_series(1, 30) n")
    run.result(seq, "SELECT 30", ["n"], [[f"row-{i}".encode()] for i in range(1, 31)])
    run.end()
    result = cli("replay", "s-rows", "--no-timing", "--rows", "5", "-c", str(env.config))
    assert result.exit_code == 0, result.output
    assert "row-5" in result.stdout and "row-6" not in result.stdout
    _in_order(result.stdout, "30 rows", "SELECT 30", "first 5 shown")


def test_replay_encrypted(cli: Callable[..., Result], env: Env) -> None:
    key = RecordingCipher.generate_key()
    rich_session(env.gw, cipher=RecordingCipher.from_env({KEY_ENV: key}))
    result = cli("replay", "s-rich", "--no-timing", "-c", str(env.config), env={KEY_ENV: ""})
    assert result.exit_code == 1
    assert KEY_ENV in result.stderr
    result = cli("replay", "s-rich", "--no-timing", "-c", str(env.config), env={KEY_ENV: key})
    assert result.exit_code == 0, result.output
    _in_order(result.stdout, PROMPT, "SELECT id, email", "ALLOW", "j***@example.com", "INTACT")


@pytest.mark.parametrize("args", [["--speed", "0"], ["--speed", "-1"], ["--rows", "-1"]])
def test_replay_bad_options(cli: Callable[..., Result], env: Env, args: list[str]) -> None:
    simple_session(env.gw, "s1")
    result = cli("replay", "s1", *args, "-c", str(env.config))
    assert result.exit_code == 2
    assert args[0] in result.stderr


def test_replay_config_anywhere(cli: Callable[..., Result], env: Env) -> None:
    simple_session(env.gw, "s1")
    cfg = str(env.config)
    for argv in (
        ["-c", cfg, "replay", "s1", "--no-timing"],
        ["replay", "-c", cfg, "s1", "--no-timing"],
        ["replay", "s1", "--no-timing", "--config", cfg],
    ):
        result = cli(*argv)
        assert result.exit_code == 0, (argv, result.output)
        assert "INTACT" in result.stdout
