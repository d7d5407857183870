"""`pgwarden verify` on real recordings: intact after clean use; a flipped byte, a cut tail of
a cleanly closed session and a deleted recording file are caught (exit 1, first bad event
named); the original bytes put back verify again (issue 4, second check)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.e2e.recording_support import (
    ENFORCE_ALLOW_ALL,
    RecordedGateway,
    read_recording,
    saved_bytes,
    show_session_id,
    start_recorded_gateway,
    statement_with,
    verify,
    wait_ended,
)
from tests.support.databases import TargetDb


@pytest.fixture
def rg(tmp_path: Path, shop: TargetDb) -> Iterator[RecordedGateway]:
    rg = start_recorded_gateway(tmp_path / "gw", {"shop": shop.target()}, policy=ENFORCE_ALLOW_ALL)
    try:
        yield rg
    finally:
        rg.gw.stop()


def _one_session(rg: RecordedGateway) -> str:
    with psycopg.connect(rg.gw.dsn("auditor-1"), autocommit=True) as conn:
        session_id = show_session_id(conn)
        conn.execute("SELECT 'alpha' AS word").fetchall()
        conn.execute("SELECT %s::text AS word, 'bravo' AS marker", ("charlie",)).fetchall()
        conn.execute("SELECT g FROM generate_series(1, 3) g").fetchall()
        # while the session is live, it is not yet ended: unterminated, and verify exits 0
        live = verify(rg, [session_id])
        assert live.code == 0, live.output
        assert live.statuses == {session_id: "unterminated"}, live.output
    wait_ended(rg.data_dir, session_id)
    return str(session_id)


def _line_of(data: bytes, seq: int) -> tuple[int, int]:
    """Start and end offsets of line ``seq`` (1-based) in the recording."""
    start = 0
    for _ in range(seq - 1):
        start = data.index(b"\n", start) + 1
    return start, data.index(b"\n", start)


def test_verify_intact_flipped_cut_deleted_restored(rg: RecordedGateway) -> None:
    session_id = _one_session(rg)
    path = rg.recording_path(session_id)

    clean = verify(rg, [session_id])
    assert clean.code == 0, clean.output
    assert clean.statuses == {session_id: "intact"}, clean.output
    everything = verify(rg, all_sessions=True)
    assert everything.code == 0, everything.output
    assert everything.statuses == {session_id: "intact"}, everything.output

    events = read_recording(rg.data_dir, session_id)
    bravo = statement_with(events, "'bravo'")
    total = len(events)
    assert events[-2]["type"] == "session_end" and events[-1]["type"] == "checkpoint"

    with saved_bytes(path) as original:
        # ---- one byte flipped inside a statement's SQL text (still valid JSON)
        start, end = _line_of(original, bravo["seq"])
        offset = original.index(b"bravo", start, end)
        flipped = bytearray(original)
        flipped[offset] ^= 0x20  # 'b' -> 'B'
        path.write_bytes(bytes(flipped))
        bad = verify(rg, [session_id])
        assert bad.code == 1, bad.output
        assert bad.statuses == {session_id: "tampered"}, bad.output
        assert bad.first_bad(session_id) == bravo["seq"], bad.output
        table = verify(rg, [session_id], human=True)  # the human form names it too
        assert table.code == 1
        row = next(line for line in table.output.splitlines() if session_id in line)
        assert "tampered" in row
        assert re.search(rf"\b{bravo['seq']}\b", row), table.output

        # ---- one byte flipped in the hash chain itself (a prev field)
        start, end = _line_of(original, 2)
        prev_at = original.index(b'"prev":"', start, end) + len(b'"prev":"')
        flipped = bytearray(original)
        flipped[prev_at] = ord("0") if flipped[prev_at] != ord("0") else ord("1")
        path.write_bytes(bytes(flipped))
        bad = verify(rg, [session_id])
        assert bad.code == 1, bad.output
        assert bad.statuses == {session_id: "tampered"}
        assert bad.first_bad(session_id) == 2, bad.output

        # ---- restored: intact again
        path.write_bytes(original)
        again = verify(rg, [session_id])
        assert again.code == 0, again.output
        assert again.statuses == {session_id: "intact"}

        # ---- the tail cut off a cleanly closed session: session_end and final checkpoint
        lines = original.splitlines(keepends=True)
        assert len(lines) == total
        path.write_bytes(b"".join(lines[:-2]))
        cut = verify(rg, [session_id])
        assert cut.code == 1, cut.output
        assert cut.statuses == {session_id: "tampered"}, cut.output
        assert cut.first_bad(session_id) == total - 1, cut.output

        # ---- more of the tail cut, down to the middle of a line
        path.write_bytes(b"".join(lines[: total // 2]) + lines[total // 2][:20])
        cut = verify(rg, [session_id])
        assert cut.code == 1, cut.output
        assert cut.statuses == {session_id: "tampered"}, cut.output
        assert cut.first_bad(session_id) == total // 2 + 1, cut.output

        # ---- the recording file deleted
        path.unlink()
        gone = verify(rg, [session_id])
        assert gone.code == 1, gone.output
        assert gone.statuses == {session_id: "missing"}, gone.output
        gone_all = verify(rg, all_sessions=True)
        assert gone_all.code == 1, gone_all.output
        assert gone_all.statuses == {session_id: "missing"}, gone_all.output

    # ---- the original bytes back: intact, exit 0
    restored = verify(rg, [session_id])
    assert restored.code == 0, restored.output
    assert restored.statuses == {session_id: "intact"}, restored.output
    assert verify(rg, all_sessions=True).code == 0
