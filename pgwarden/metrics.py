"""Prometheus metrics of one gateway (served at ``GET /metrics`` on ``api.listen``).

Each ``Metrics`` owns its own ``CollectorRegistry``: several gateways can run in one process
(tests do) without their counts mixing or clashing on the global registry.

Families (all prefixed ``pgwarden_``)::

    pgwarden_build_info{version}                       gauge, always 1
    pgwarden_connections_total                         counter  connection_opened()
    pgwarden_connections_active                        gauge    opened - closed
    pgwarden_sessions_active                           gauge    at scrape time (sessions source)
    pgwarden_token_failures_total{reason}              counter  token_failure(reason)
    pgwarden_statements_total{decision}                counter  statement(decision, seconds)
    pgwarden_statement_duration_seconds{decision}      histogram, 100µs .. 10s
    pgwarden_approvals_pending                         gauge    at scrape time (pending source)
    pgwarden_masked_values_total{detector}             counter  masked({detector: n})
    pgwarden_recording_bytes_total                     counter  recording_bytes(n)
    pgwarden_recording_errors_total                    counter  recording_error()

``decision`` is one of ``STATEMENT_DECISIONS``, the statement's *final* outcome, reported once
per statement when it is over (so ``statements_total`` counts statements, not steps):

    allowed   the policy let it through (audit mode included) and it was forwarded
    denied    refused without asking anyone: a policy deny, or SQL the gateway cannot classify
    approved  held for approval, approved, then forwarded (its time includes the wait)
    rejected  held for approval, then denied, expired or withdrawn
    held      held for approval and abandoned before a verdict (client gone, gateway stopping)

The data path's own words are accepted too (``allow``, ``deny``, ``review``, ``expired``,
``withdrawn``, ...; see ``_DECISION_ALIASES``); anything else is counted as ``other`` rather
than raising or minting a new series, because metrics must never break a session nor let a
caller grow the label set without bound.

``reason`` is one of ``TOKEN_FAILURES``: pass the code, or the refusing ``AuthError``'s message
and it is classified (``token_failure_reason``); unknown text becomes ``other``.
``detector`` is a masking detector or column-rule name (bounded by the masking config).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from pgwarden import __version__
from pgwarden.tally import StatementTally

__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "STATEMENT_DECISIONS",
    "TOKEN_FAILURES",
    "Metrics",
    "token_failure_reason",
]

log = logging.getLogger("pgwarden.metrics")

STATEMENT_DECISIONS: tuple[str, ...] = ("allowed", "denied", "approved", "rejected", "held")
_DECISION_ALIASES: dict[str, str] = {
    "allow": "allowed",
    "deny": "denied",
    "approve": "approved",
    "reject": "rejected",
    "expired": "rejected",
    "withdrawn": "rejected",
    "review": "held",
    "reviewed": "held",
}

TOKEN_FAILURES: tuple[str, ...] = (
    "missing",  # no token at all
    "malformed",  # not a JWT, bad encoding, bad claim types
    "signature",  # bad signature, unknown key, refused algorithm
    "issuer",  # untrusted or missing issuer
    "audience",
    "expired",
    "not_yet_valid",  # nbf or iat in the future
    "lifetime",  # longer-lived than identity.max_token_ttl
    "subject",  # the token's subject is not the database user
    "keys_unavailable",  # an OIDC issuer's keys could not be fetched
    "other",
)

# 100µs .. 10s: a denied statement is answered in well under a millisecond, a forwarded one
# takes the database's time; beyond 10s (long queries, approval waits) lands in +Inf.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

# The classic text format, which every Prometheus (and every agent that scrapes it) reads; our
# metric names need none of the newer formats' escaping. (The library's CONTENT_TYPE_LATEST
# moved to version 1.0.0 in recent releases.)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_QUOTED = re.compile(r"'(?:\\.|[^'\\])*'")
# Checked in order against an AuthError message with its quoted (caller-controlled) parts
# removed, so a token claiming issuer 'expired.example' is not filed under "expired".
_TOKEN_FAILURE_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("keys_unavailable", ("could not be fetched",)),
    ("expired", ("expired",)),
    ("not_yet_valid", ("not valid before", "issued in the future")),
    ("lifetime", ("max_token_ttl",)),
    ("subject", ("does not match user",)),
    ("signature", ("signature", "signing key", "signed by", "not signed", "algorithm")),
    ("audience", ("audience",)),
    ("issuer", ("issuer",)),
    ("missing", ("no token", "token is required")),
    ("malformed", ("malformed", "not a token", "is not a", "too large", "not supported", "has no")),
)


def token_failure_reason(message: str) -> str:
    """The ``TOKEN_FAILURES`` code for a refusal message (an ``AuthError.message``)."""
    text = message.strip().lower()
    if text in TOKEN_FAILURES:
        return text
    text = _QUOTED.sub("''", text)
    for code, needles in _TOKEN_FAILURE_RULES:
        if any(n in text for n in needles):
            return code
    return "other"


class _CallbackGauge(Collector):
    """A gauge whose value is asked for at scrape time, so it can never drift from the truth
    (pending approvals live in the shared store, where other gateways change them too)."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self.source: Callable[[], float] | None = None

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation)
        if self.source is not None:
            try:
                family.add_metric([], float(self.source()))
            except Exception:
                # A failing source (store unreachable) must not fail the whole scrape: the
                # family is left without a sample, which Prometheus treats as absent.
                log.warning("metrics: cannot compute %s", self.name, exc_info=True)
        yield family


class _StatementMetrics(Collector):
    """``pgwarden_statements`` and ``pgwarden_statement_duration_seconds``, counted as plain
    numbers (``pgwarden.tally``, which the relay adds to directly) and turned into the two
    families at each scrape. Once per statement, the client library's ``Counter.inc`` and
    ``Histogram.observe`` (a lock each and a bucket scan in Python) cost more than everything
    else the metrics do; this is one lock and a bisect. The exposition is the same: a counter,
    and a histogram with these buckets and ``+Inf``."""

    def __init__(self, tally: StatementTally) -> None:
        self.tally = tally
        self._le: list[str] = [
            floatToGoString(b)  # type: ignore[no-untyped-call] # untyped in the library
            for b in (*tally.bounds, math.inf)
        ]

    def describe(self) -> list[Any]:
        return list(self._families({}))

    def collect(self) -> Iterator[Any]:
        yield from self._families(self.tally.snapshot())

    def _families(self, snapshot: Mapping[str, list[float]]) -> Iterator[Any]:
        counter = CounterMetricFamily(
            "pgwarden_statements",
            "Statements by final outcome (allowed, denied, approved, rejected, held)",
            labels=["decision"],
        )
        histogram = HistogramMetricFamily(
            "pgwarden_statement_duration_seconds",
            "Statement time through the gateway, from receipt to its last reply, by outcome",
            labels=["decision"],
        )
        for decision, series in snapshot.items():
            counter.add_metric([decision], series[-1])
            cumulative, buckets = 0.0, []
            for le, n in zip(self._le, series[:-2], strict=True):
                cumulative += n
                buckets.append((le, cumulative))
            histogram.add_metric([decision], buckets, series[-2])
        yield counter
        yield histogram


class Metrics:
    """One gateway's metrics. Every method is cheap and thread-safe and never raises on
    unexpected input (the data path calls them)."""

    def __init__(self) -> None:
        # The client library's ``*_created`` series (a timestamp per counter and label set)
        # double the exposition for nothing a dashboard uses; the switch is process-wide, and
        # this process is the gateway.
        disable_created_metrics()  # type: ignore[no-untyped-call] # untyped in the library
        self._masked_children: dict[str, Any] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        info = Gauge("pgwarden_build_info", "pgwarden version", ["version"], registry=r)
        info.labels(version=__version__).set(1)
        self._connections = Counter(
            "pgwarden_connections", "Client connections accepted", registry=r
        )
        self._active = Gauge(
            "pgwarden_connections_active", "Client connections open now", registry=r
        )
        self._token_failures = Counter(
            "pgwarden_token_failures",
            "Tokens refused (wire connections and HTTP API calls), by reason",
            ["reason"],
            registry=r,
        )
        # Known decisions start at zero, so rates and alerts work before the first statement.
        #: what the relay counts each statement into
        self.tally = StatementTally(STATEMENT_DECISIONS, LATENCY_BUCKETS, _DECISION_ALIASES)
        r.register(_StatementMetrics(self.tally))
        self._masked = Counter(
            "pgwarden_masked_values",
            "Values masked in what the database sent back, by detector or column rule",
            ["detector"],
            registry=r,
        )
        self._recording_bytes = Counter(
            "pgwarden_recording_bytes", "Bytes appended to session recordings", registry=r
        )
        self._recording_errors = Counter(
            "pgwarden_recording_errors",
            "Recording failures (each ends its session: recording fails closed)",
            registry=r,
        )
        self._pending = _CallbackGauge(
            "pgwarden_approvals_pending", "Approval requests waiting for a decision"
        )
        self._sessions = _CallbackGauge(
            "pgwarden_sessions_active", "Authenticated sessions open now on this gateway"
        )
        r.register(self._pending)
        r.register(self._sessions)
        # Known label values start at zero, so rates and alerts work before the first event
        # (an absent series is not a zero in PromQL).
        for reason in TOKEN_FAILURES:
            self._token_failures.labels(reason=reason)

    # ---- data path -------------------------------------------------------------------------

    def connection_opened(self) -> None:
        self._connections.inc()
        self._active.inc()

    def connection_closed(self) -> None:
        self._active.dec()

    def token_failure(self, reason: str) -> None:
        """A refused token: ``reason`` is a ``TOKEN_FAILURES`` code or an AuthError message."""
        self._token_failures.labels(reason=token_failure_reason(reason)).inc()

    def statement(self, decision: str, seconds: float) -> None:
        """One statement is over: its final outcome (see the module doc) and its duration."""
        self.tally.record(decision, seconds)

    def masked(self, counts: Mapping[str, int]) -> None:
        """Values masked, per detector or column rule (the recorder's ``masked`` counts)."""
        children = self._masked_children
        for detector, n in counts.items():
            if n > 0:
                child = children.get(detector)
                if child is None:
                    # labels() costs more than the increment, and this runs for every row a
                    # value was masked in: resolved once per detector name
                    child = self._masked.labels(detector=str(detector))
                    if len(children) < 256:
                        children[detector] = child
                child.inc(n)

    def recording_bytes(self, n: int) -> None:
        if n > 0:
            self._recording_bytes.inc(n)

    def recording_error(self) -> None:
        self._recording_errors.inc()

    # ---- scrape-time values ----------------------------------------------------------------

    def set_pending_source(self, fn: Callable[[], int]) -> None:
        """``fn()`` -> the number of pending approvals, called at each scrape (may block:
        ``render`` runs in a worker thread from the API)."""
        self._pending.source = fn

    def set_sessions_source(self, fn: Callable[[], int]) -> None:
        """``fn()`` -> the number of active sessions, called at each scrape."""
        self._sessions.source = fn

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE
