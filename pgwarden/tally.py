"""Statements counted by final outcome, with their durations: plain numbers the data path adds
to once per statement, which ``pgwarden.metrics`` turns into ``pgwarden_statements`` and
``pgwarden_statement_duration_seconds`` at each scrape.

Apart from the metrics module because it is compiled (pgwarden._native): the relay calls
``record`` directly for every statement, where the metrics' Prometheus collectors are Python
classes it would call through the interpreter.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Mapping, Sequence


class StatementTally:
    """Per label (an outcome): one count per latency bucket (the last is +Inf), the sum of
    seconds and the count of statements, in that order in one list."""

    def __init__(
        self,
        labels: Sequence[str],
        buckets: Sequence[float],
        aliases: Mapping[str, str],
        other: str = "other",
    ) -> None:
        self.bounds: tuple[float, ...] = tuple(buckets)
        self._known = frozenset(labels)
        self._aliases = dict(aliases)
        self._other = other
        self._lock = threading.Lock()
        self._series: dict[str, list[float]] = {}
        # outcome as the data path spells it -> its label's series (at most 64 spellings)
        self._by_outcome: dict[str, list[float]] = {}
        for label in labels:
            self.series(label)

    def label(self, outcome: str) -> str:
        """The label an outcome is counted under: aliases resolved, anything unknown
        ``other``."""
        text = outcome.strip().lower()
        text = self._aliases.get(text, text)
        return text if text in self._known else self._other

    def series(self, label: str) -> list[float]:
        with self._lock:
            found = self._series.get(label)
            if found is None:
                found = self._series[label] = [0.0] * (len(self.bounds) + 1) + [0.0, 0.0]
            return found

    def record(self, outcome: str, seconds: float) -> None:
        """One statement is over; its duration observed unless negative or NaN (a clock
        stepped back)."""
        series = self._by_outcome.get(outcome)
        if series is None:
            series = self.series(self.label(outcome))
            if len(self._by_outcome) < 64:
                self._by_outcome[outcome] = series
        with self._lock:
            series[-1] += 1
            if seconds >= 0:
                series[bisect_left(self.bounds, seconds)] += 1
                series[-2] += seconds

    def snapshot(self) -> dict[str, list[float]]:
        """A copy of every label's series, taken under the lock."""
        with self._lock:
            return {k: list(v) for k, v in self._series.items()}
