"""`pgwarden serve`: runs pgwarden.app.serve(config) until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from pgwarden.cli import serve as serve_cli
from pgwarden.config import Config, HostPort


class FakeServe:
    """Records its config, reports ready, then sends itself `sig` and waits to be cancelled."""

    def __init__(self, sig: signal.Signals | None = signal.SIGTERM, error: Exception | None = None):
        self.sig = sig
        self.error = error
        self.config: Config | None = None
        self.cancelled = False
        self.ready_called = False

    async def __call__(self, config: Config, *, ready: Callable[[], None] | None = None) -> None:
        self.config = config
        if self.error is not None:
            raise self.error
        if ready is not None:
            ready()
            self.ready_called = True
        if self.sig is None:
            return
        os.kill(os.getpid(), self.sig)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


@pytest.fixture
def fake_serve(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeServe]:
    def install(**kwargs: Any) -> FakeServe:
        fake = FakeServe(**kwargs)
        monkeypatch.setattr(serve_cli, "load_serve", lambda: fake)
        return fake

    return install


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_on_signal(
    cli: Callable[..., Result],
    write_config: Callable[..., Path],
    fake_serve: Callable[..., FakeServe],
    sig: signal.Signals,
) -> None:
    fake = fake_serve(sig=sig)
    cfg = write_config({"listen": "127.0.0.1:7432", "data_dir": "d"})
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    result = cli("serve", "-c", str(cfg))
    assert result.exit_code == 0, result.output
    assert fake.ready_called and fake.cancelled
    assert fake.config is not None and fake.config.listen == HostPort("127.0.0.1", 7432)
    assert "gateway on 127.0.0.1:7432" in result.stderr
    # The process's signal handling is as it was.
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_serve_overrides(cli: Callable[..., Result], fake_serve: Callable[..., FakeServe]) -> None:
    fake = fake_serve(sig=None)
    result = cli("serve", "--listen", "127.0.0.1:1111", "--api-listen", "[::1]:2222")
    assert result.exit_code == 0, result.output
    assert fake.config is not None
    assert fake.config.listen == HostPort("127.0.0.1", 1111)
    assert fake.config.api.listen == HostPort("::1", 2222)


def test_serve_bad_override(
    cli: Callable[..., Result], fake_serve: Callable[..., FakeServe]
) -> None:
    fake_serve(sig=None)
    result = cli("serve", "--listen", "nowhere")
    assert result.exit_code == 2
    assert "--listen" in result.stderr


def test_serve_bind_error_is_one_line(
    cli: Callable[..., Result], fake_serve: Callable[..., FakeServe]
) -> None:
    fake_serve(error=OSError(98, "Address already in use"))
    result = cli("serve")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "pgwarden: cannot start: Address already in use "
        "(gateway 127.0.0.1:6432, API 127.0.0.1:8080)"
    ]
