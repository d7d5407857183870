"""Memory legs of `make bench` (imported by scripts/bench.py): a process's resident set.

- `RssSampler`: reads /proc/<pid>/status (VmRSS) every 50 ms in a thread while a leg runs and
  keeps the maximum; used around every gateway and pgbouncer run of the throughput legs.
- `idle_connections`: RSS before and after opening N authenticated, idle connections (psycopg,
  nothing sent after the start-up), after a settle; (after - before) / N is the cost of one.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import psycopg


def status_kb(pid: int, key: str) -> int:
    """A `kB` line of /proc/<pid>/status (VmRSS, VmHWM, ...); 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def rss_kb(pid: int) -> int:
    return status_kb(pid, "VmRSS")


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far, user plus system (all its threads)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hwm_kb(pid: int) -> int:
    """The peak resident set over the process's life so far."""
    return status_kb(pid, "VmHWM")


class RssSampler:
    """`with RssSampler(pid) as s: ...` then `s.peak_kb`: the largest VmRSS seen."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        self.peak_kb = max(self.peak_kb, rss_kb(self.pid))
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> Self:
        self._sample()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


@dataclass
class IdleResult:
    wanted: int
    opened: int
    before_kb: int
    after_kb: int
    closed_kb: int  # after closing them all again, and a settle
    connect_seconds: float
    error: str | None = None
    server_sessions: int | None = None  # probe() while the connections were open

    @property
    def per_conn_kb(self) -> float:
        return (self.after_kb - self.before_kb) / self.opened if self.opened else float("nan")


def idle_connections(
    pid: int,
    connect: Callable[[], psycopg.Connection[Any]],
    n: int = 200,
    settle: float = 2.0,
    warmup: int = 5,
    probe: Callable[[], int] | None = None,
) -> IdleResult:
    """Open `n` connections with `connect` (after `warmup` opened and closed, so one-off
    allocations of the first sessions are not counted), measure RSS, close them."""
    for _ in range(warmup):
        connect().close()
    time.sleep(settle)
    before = rss_kb(pid)
    conns: list[psycopg.Connection[Any]] = []
    error = None
    start = time.perf_counter()
    try:
        for _ in range(n):
            conns.append(connect())
    except psycopg.Error as exc:
        error = f"{type(exc).__name__}: {exc}".strip()
    seconds = time.perf_counter() - start
    time.sleep(settle)
    after = rss_kb(pid)
    sessions = probe() if probe else None
    for conn in conns:
        conn.close()
    time.sleep(settle)
    return IdleResult(n, len(conns), before, after, rss_kb(pid), seconds, error, sessions)
