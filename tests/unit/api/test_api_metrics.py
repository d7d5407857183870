"""``/metrics`` (Prometheus text, parsed with prometheus_client's own parser), ``/healthz``,
the ``Metrics`` class, and the Server's wiring of both."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from api_helpers import ApiClient, Env
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from pgwarden import __version__
from pgwarden.api.app import create_app
from pgwarden.app import Server
from pgwarden.auth import LocalIssuer
from pgwarden.config import Config
from pgwarden.metrics import (
    LATENCY_BUCKETS,
    STATEMENT_DECISIONS,
    TOKEN_FAILURES,
    Metrics,
    token_failure_reason,
)
from pgwarden.store import ApprovalRecord

FAMILIES = {
    "pgwarden_build_info": "gauge",
    "pgwarden_connections": "counter",
    "pgwarden_connections_active": "gauge",
    "pgwarden_sessions_active": "gauge",
    "pgwarden_token_failures": "counter",
    "pgwarden_statements": "counter",
    "pgwarden_statement_duration_seconds": "histogram",
    "pgwarden_approvals_pending": "gauge",
    "pgwarden_masked_values": "counter",
    "pgwarden_recording_bytes": "counter",
    "pgwarden_recording_errors": "counter",
}


def parse(text: str) -> dict[str, tuple[str, list[Sample]]]:
    return {f.name: (f.type, f.samples) for f in text_string_to_metric_families(text)}


def value(
    families: dict[str, tuple[str, list[Sample]]], family: str, sample: str, **labels: str
) -> float:
    for s in families[family][1]:
        if s.name == sample and s.labels == labels:
            return s.value
    raise AssertionError(f"no sample {sample}{labels} in {family}")


def scrape(metrics: Metrics) -> dict[str, tuple[str, list[Sample]]]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return parse(body.decode())


def test_every_family_after_the_data_path_calls() -> None:
    m = Metrics()
    pending = [2]
    m.set_pending_source(lambda: pending[0])
    m.set_sessions_source(lambda: 1)
    m.connection_opened()
    m.connection_opened()
    m.connection_closed()
    m.token_failure("expired")
    m.token_failure("token signature invalid")  # an AuthError message is classified
    m.statement("allowed", 0.0004)
    m.statement("allowed", 0.003)
    m.statement("denied", 0.00005)
    m.statement("approved", 42.0)  # beyond the last bucket: +Inf
    m.statement("rejected", 1.5)
    m.statement("held", 600.0)
    m.masked({"email": 3, "card": 1, "customers.ssn": 0})
    m.masked({"email": 2})
    m.recording_bytes(1000)
    m.recording_bytes(24)
    m.recording_error()

    f = scrape(m)
    assert {name: kind for name, (kind, _) in f.items()} == FAMILIES
    assert value(f, "pgwarden_build_info", "pgwarden_build_info", version=__version__) == 1
    assert value(f, "pgwarden_connections", "pgwarden_connections_total") == 2
    assert value(f, "pgwarden_connections_active", "pgwarden_connections_active") == 1
    assert value(f, "pgwarden_sessions_active", "pgwarden_sessions_active") == 1
    tf = "pgwarden_token_failures"
    assert value(f, tf, f"{tf}_total", reason="expired") == 1
    assert value(f, tf, f"{tf}_total", reason="signature") == 1
    assert value(f, tf, f"{tf}_total", reason="issuer") == 0  # known reasons start at zero
    st = "pgwarden_statements"
    for decision, n in {"allowed": 2, "denied": 1, "approved": 1, "rejected": 1, "held": 1}.items():
        assert value(f, st, f"{st}_total", decision=decision) == n
    h = "pgwarden_statement_duration_seconds"
    assert value(f, h, f"{h}_count", decision="allowed") == 2
    assert value(f, h, f"{h}_sum", decision="allowed") == pytest.approx(0.0034)
    assert value(f, h, f"{h}_bucket", decision="allowed", le="0.0005") == 1
    assert value(f, h, f"{h}_bucket", decision="allowed", le="0.005") == 2
    assert value(f, h, f"{h}_bucket", decision="denied", le="0.0001") == 1
    assert value(f, h, f"{h}_bucket", decision="approved", le="10.0") == 0
    assert value(f, h, f"{h}_bucket", decision="approved", le="+Inf") == 1
    buckets = {s.labels["le"] for s in f[h][1] if s.name == f"{h}_bucket"}
    assert buckets == {str(b) for b in LATENCY_BUCKETS} | {"+Inf"}
    mv = "pgwarden_masked_values"
    assert value(f, mv, f"{mv}_total", detector="email") == 5
    assert value(f, mv, f"{mv}_total", detector="card") == 1
    assert not any(s.labels.get("detector") == "customers.ssn" for s in f[mv][1])
    assert value(f, "pgwarden_recording_bytes", "pgwarden_recording_bytes_total") == 1024
    assert value(f, "pgwarden_recording_errors", "pgwarden_recording_errors_total") == 1
    assert value(f, "pgwarden_approvals_pending", "pgwarden_approvals_pending") == 2
    pending[0] = 0  # computed at scrape time
    assert value(scrape(m), "pgwarden_approvals_pending", "pgwarden_approvals_pending") == 0


def test_label_sets_stay_closed() -> None:
    m = Metrics()
    m.statement("allow", 0.001)  # the data path's own words
    m.statement("review", 0.001)
    m.statement("expired", 0.001)
    m.statement("SELECT * FROM secrets", 0.001)  # never a new series
    m.statement("denied", -1.0)  # a clock step back: counted, not observed
    m.token_failure("totally new failure")
    f = scrape(m)
    st = "pgwarden_statements"
    assert value(f, st, f"{st}_total", decision="allowed") == 1
    assert value(f, st, f"{st}_total", decision="held") == 1
    assert value(f, st, f"{st}_total", decision="rejected") == 1
    assert value(f, st, f"{st}_total", decision="other") == 1
    assert value(f, st, f"{st}_total", decision="denied") == 1
    h = "pgwarden_statement_duration_seconds"
    assert value(f, h, f"{h}_count", decision="denied") == 0
    decisions = {s.labels["decision"] for s in f[st][1]}
    assert decisions == {*STATEMENT_DECISIONS, "other"}
    reasons = {s.labels["reason"] for s in f["pgwarden_token_failures"][1]}
    assert reasons == set(TOKEN_FAILURES)
    assert value(f, "pgwarden_token_failures", "pgwarden_token_failures_total", reason="other") == 1


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("password is not a token (expected a JWT)", "malformed"),
        ("token expired at 2026-01-02T03:04:05Z", "expired"),
        ("token not valid before 2026-01-02T03:04:05Z", "not_yet_valid"),
        ("token lifetime 24h exceeds max_token_ttl 12h", "lifetime"),
        ("token signature invalid", "signature"),
        ("token signed by an unknown key (kid 'k1') of issuer 'pgwarden-local'", "signature"),
        ("token issuer 'https://expired.example' is not trusted", "issuer"),  # quoted: ignored
        ("token audience 'x' does not include 'pgwarden'", "audience"),
        ("token subject 'a' does not match user 'b'", "subject"),
        ("the signing keys of token issuer 'i' could not be fetched: timeout", "keys_unavailable"),
        ("token subject (sub) is not a non-empty string", "malformed"),
        ("missing", "missing"),
    ],
)
def test_token_failure_reasons(message: str, reason: str) -> None:
    assert token_failure_reason(message) == reason


def test_metrics_are_per_instance() -> None:
    a, b = Metrics(), Metrics()
    a.recording_error()
    assert value(scrape(a), "pgwarden_recording_errors", "pgwarden_recording_errors_total") == 1
    assert value(scrape(b), "pgwarden_recording_errors", "pgwarden_recording_errors_total") == 0


def test_a_failing_source_does_not_fail_the_scrape() -> None:
    m = Metrics()

    def broken() -> int:
        raise RuntimeError("store unreachable")

    m.set_pending_source(broken)
    f = scrape(m)
    assert f["pgwarden_approvals_pending"][1] == []
    assert value(f, "pgwarden_connections", "pgwarden_connections_total") == 0


# --------------------------------------------------------------------------------------------
# through the app


def test_metrics_endpoint_needs_no_token_and_counts_api_token_failures(env: Env) -> None:
    m = Metrics()
    m.statement("allowed", 0.01)
    expired = LocalIssuer(env.issuer._private_key, clock=lambda: time.time() - 7200).issue(
        "audrey", ["auditors"], ttl_seconds=60
    )
    with env.client(metrics=m) as c:
        assert c.get("/api/v1/sessions").status_code == 401  # no token: not a token failure
        for bad in ("not-a-token", expired, LocalIssuer.generate().issue("audrey")):
            r = c.get("/api/v1/sessions", headers={"Authorization": f"Bearer {bad}"})
            assert r.status_code == 401
        r = c.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    f = parse(r.text)
    assert set(FAMILIES) <= set(f)
    assert value(f, "pgwarden_statements", "pgwarden_statements_total", decision="allowed") == 1
    tf = "pgwarden_token_failures"
    assert value(f, tf, f"{tf}_total", reason="malformed") == 1
    assert value(f, tf, f"{tf}_total", reason="expired") == 1
    assert value(f, tf, f"{tf}_total", reason="signature") == 1
    assert value(f, tf, f"{tf}_total", reason="missing") == 0


def test_healthz_and_metrics_without_anything_configured() -> None:
    with ApiClient(create_app()) as c:
        health = c.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "version": __version__, "sessions": 0}
        r = c.get("/metrics")
        assert r.status_code == 200
        assert set(FAMILIES) <= set(parse(r.text))


def test_server_wires_metrics_and_sessions(tmp_path: Path) -> None:
    """Server builds one Metrics, counts pending approvals from its store at scrape time, and
    gives the API its recordings (index, storage, signing key)."""
    config = Config.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "listen": "127.0.0.1:0",
            "api": {"listen": "127.0.0.1:0"},
        }
    )
    server = Server(config)
    try:
        assert isinstance(server.metrics, Metrics)
        assert server.recordings.store is server.recording.store
        assert server.recordings.storage is server.recording.storage
        assert server.recording.signer.public_key in server.recordings.keys
        pending = "pgwarden_approvals_pending"
        assert value(scrape(server.metrics), pending, pending) == 0
        for i, state in enumerate(("pending", "pending", "approved")):
            server.recording.store.create_approval(
                ApprovalRecord(
                    id=f"apr_{i}",
                    session_id="s-1",
                    sql="DROP TABLE t",
                    requester="agent-7",
                    target="shop",
                    requested_at=time.time(),
                    statement_hash="h",
                    state=state,  # type: ignore[arg-type]
                )
            )
        assert value(scrape(server.metrics), pending, pending) == 2
    finally:
        asyncio.run(server.stop())
        server.recording.store.close()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["allowed", "denied", "approve", "held", "Something Else"]),
            st.one_of(
                st.sampled_from([*LATENCY_BUCKETS, -0.5, 0.0, 11.0, float("nan")]),
                st.floats(min_value=0, max_value=20, allow_nan=False),
            ),
        ),
        max_size=40,
    )
)
def test_statement_metrics_match_the_client_library(
    observations: list[tuple[str, float]],
) -> None:
    """The statement counter and latency histogram (counted by hand for speed) expose what
    the client library's Counter and Histogram would for the same statements."""

    ours = Metrics()
    registry = CollectorRegistry()
    counter = Counter("pgwarden_statements", "", ["decision"], registry=registry)
    histogram = Histogram(
        "pgwarden_statement_duration_seconds",
        "",
        ["decision"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    labels = {"allowed": "allowed", "denied": "denied", "approve": "approved", "held": "held"}
    for decision, seconds in observations:
        ours.statement(decision, seconds)
        label = labels.get(decision, "other")
        counter.labels(decision=label).inc()
        if seconds >= 0:
            histogram.labels(decision=label).observe(seconds)

    def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        out = {}
        for family in text_string_to_metric_families(text):
            if family.name in ("pgwarden_statements", "pgwarden_statement_duration_seconds"):
                for s in family.samples:
                    if not s.name.endswith("_created"):
                        out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    expected = samples(generate_latest(registry).decode())
    got = samples(ours.render()[0].decode())
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key
    # ours also exposes every known decision at zero before its first statement
    assert {k for k, v in got.items() if v} == {k for k, v in expected.items() if v}
