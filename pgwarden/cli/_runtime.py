"""Running a long-lived coroutine from the CLI: uvloop when available, clean stop on signals."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

__all__ = ["loop_factory", "run_until_signal", "sigterm_raises_keyboard_interrupt"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop factory if uvloop is installed, else asyncio's default."""
    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run_until_signal(
    main: Callable[[], Coroutine[Any, Any, None]],
    *,
    on_signal: Callable[[signal.Signals], None] | None = None,
) -> signal.Signals | None:
    """Run `main()` until it returns or SIGINT/SIGTERM arrives (then it is cancelled and
    awaited, so its `finally` blocks run). Returns the signal that stopped it, if any.
    Exceptions from `main()` propagate."""
    received: list[signal.Signals] = []

    async def runner() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(main())

        def handle(sig: signal.Signals) -> None:
            if received:
                return  # already stopping
            received.append(sig)
            if on_signal is not None:
                on_signal(sig)
            task.cancel()

        installed: list[tuple[signal.Signals, Any]] = []
        for sig in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                previous = signal.getsignal(sig)
                loop.add_signal_handler(sig, handle, sig)
                installed.append((sig, previous))
        try:
            await task
        except asyncio.CancelledError:
            if not received:
                raise
        finally:
            for sig, previous in installed:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
                    if previous is not None:
                        signal.signal(sig, previous)

    with asyncio.Runner(loop_factory=loop_factory()) as runner_ctx:
        runner_ctx.run(runner())
    return received[0] if received else None


@contextlib.contextmanager
def sigterm_raises_keyboard_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises KeyboardInterrupt (like Ctrl-C) so `finally` blocks run
    during synchronous start-up work."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
