"""What one statement costs the gateway, stage by stage (`make bench` prints it at the end).

    .venv/bin/python scripts/bench_stages.py [--seconds 0.5]

In-process, with the gateway's own components and its defaults (default policy, default
masking, recording to local files): one pgbench select-only statement and its one-row result,
through each stage the data path puts it through. Microseconds per statement, best of three;
"shape hit" is what pgbench sends (a new constant every time, a known shape), "exact hit" a
text seen before, "miss" a shape never seen. The sum is not the gateway's CPU per statement:
the relay (reading, decoding and writing messages, scheduling) and the kernel's socket work
come on top; `make bench` prints that measured figure next to this table.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from pgwarden.masking import Masker
from pgwarden.masking.config import load_masking
from pgwarden.policy import PolicyIdentity, evaluate
from pgwarden.policy.loader import default_policy
from pgwarden.protocol.errors import Side
from pgwarden.protocol.messages import (
    Column,
    CommandComplete,
    DataRow,
    Query,
    ReadyForQuery,
    RowDescription,
)
from pgwarden.protocol.reader import MessageReader
from pgwarden.recording.events import Column as RecordedColumn
from pgwarden.recording.events import Decision as RecordedDecision
from pgwarden.recording.events import ResultBuilder, StatementEvent
from pgwarden.recording.signing import RecordingSigner
from pgwarden.recording.storage.local import LocalFileStorage
from pgwarden.recording.writer import RecordingWriter
from pgwarden.sql.classifier import cache_clear, classify_cached

_TEXT = "SELECT abalance FROM pgbench_accounts WHERE aid = {};"
_COLUMNS = RowDescription.build([Column("abalance", 16397, 3, 23, 4, -1, 0)])
_ROW = DataRow.build([b"-4711"])
_SENSITIVE = RowDescription.build(
    [Column(n, 0, 0, 25, -1, -1, 0) for n in ("name", "card", "ssn", "email")]
)
_SENSITIVE_ROW = DataRow.build(
    [b"Customer 7", b"4111 1111 1111 1111", b"332-20-6469", b"customer7@example.com"]
)


def _per_call(fn: Callable[[], object], seconds: float) -> float:
    best = float("inf")
    for _ in range(3):
        n, start = 0, time.perf_counter()
        while True:
            for _ in range(20):
                fn()
            n += 20
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / 3:
                break
        best = min(best, elapsed / n)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per stage")
    args = parser.parse_args()
    numbers = itertools.count(1)
    rows: list[tuple[str, float]] = []

    def stage(name: str, fn: Callable[[], object]) -> float:
        us = _per_call(fn, args.seconds)
        rows.append((name, us))
        return us

    # classification
    def miss() -> object:
        cache_clear()
        return classify_cached(_TEXT.format(next(numbers)))

    stage("classify: miss (parse and walk)", miss)
    cache_clear()
    classify_cached(_TEXT.format(0))
    stage(
        "classify: shape hit (new constant)", lambda: classify_cached(_TEXT.format(next(numbers)))
    )
    stage("classify: exact hit", lambda: classify_cached(_TEXT.format(0)))

    # policy (decided once per shape in a session; this is the uncached evaluation)
    policy, who = default_policy(), PolicyIdentity("bench", ())
    c = classify_cached(_TEXT.format(1))
    stage("policy: evaluate (once per shape)", lambda: evaluate(policy, c, who, "bench"))

    # masking
    masker = Masker(load_masking("default"), b"bench-key-0123456789abcdef")
    sql = _TEXT.format(12345)
    stage("mask: statement text", lambda: masker.mask_text(sql))
    plain_rows = masker.for_columns(_COLUMNS)
    stage("mask: result row, nothing sensitive", lambda: plain_rows.mask_datarow(_ROW))
    sensitive_rows = masker.for_columns(_SENSITIVE)
    stage(
        "mask: result row, card + SSN + e-mail", lambda: sensitive_rows.mask_datarow(_SENSITIVE_ROW)
    )
    # the relay hands rows that arrive together to the masking as one run (one detector pass)
    run = [_SENSITIVE_ROW] * 256
    stage(
        "mask: same, per row of a 256-row run",
        lambda: sensitive_rows.mask_datarows(run),
    )
    rows[-1] = (rows[-1][0], rows[-1][1] / len(run))

    # wire: the statement's messages decoded as the relay reads them
    client_bytes = Query.build(sql).raw
    server_bytes = (
        _COLUMNS.raw
        + _ROW.raw
        + CommandComplete.build("SELECT 1").raw
        + ReadyForQuery.build(b"I").raw
    )

    def decode() -> None:
        sides: tuple[tuple[Side, bytes], ...] = (("client", client_bytes), ("server", server_bytes))
        for side, data in sides:
            reader = MessageReader(side, startup=False)
            reader.feed(data)
            while reader.next() is not None:
                pass

    stage("wire: decode query and its 4 replies", decode)

    # recording: the statement event (before forwarding) and the result event (before the
    # client sees the rows), hash-chained and written to the session's file
    with tempfile.TemporaryDirectory() as tmp:
        writer = RecordingWriter(
            str(uuid.uuid4()), LocalFileStorage(Path(tmp)), RecordingSigner.generate()
        )
        decision = RecordedDecision("allow", "allow-ordinary-work", "SELECT reading t", "enforce")
        cdict = c.to_dict()

        # append: what write_statement/write_result do with durability "write" (the default)
        def statement_event() -> object:
            return writer.append(
                StatementEvent(
                    sql=sql,
                    protocol="simple",
                    decision=decision,
                    classification=cdict,
                    context={"application_name": "pgbench"},
                    context_sources={"application_name": "application_name"},
                )
            )

        def result_event() -> object:
            builder = ResultBuilder(1000, statement_seq=1)
            builder.set_columns([RecordedColumn(name="abalance", type_oid=23, format=0)])
            builder.add_row_body(_ROW.raw[5:], _ROW.values())
            return writer.append(builder.finish("SELECT 1"))

        stage("record: statement event", statement_event)
        stage("record: result event (1 row)", result_event)

    print(f"{'stage (one pgbench -S statement)':<42}{'µs':>8}")
    for name, us in rows:
        print(f"{name:<42}{us:>8.1f}")
    path = {
        "classify: shape hit (new constant)",
        "mask: statement text",
        "mask: result row, nothing sensitive",
        "wire: decode query and its 4 replies",
        "record: statement event",
        "record: result event (1 row)",
    }
    total = sum(us for name, us in rows if name in path)
    print(f"{'sum of the stages pgbench -S goes through':<42}{total:>8.1f}")


if __name__ == "__main__":
    main()
