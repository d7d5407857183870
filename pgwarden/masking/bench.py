"""Masking throughput on synthetic data: ``python -m pgwarden.masking.bench [--rows N]``.

Prints MB/s (message bytes in per second of masking) for DataRows one by one and in batches,
and for text and binary COPY, each with ordinary rows and with rows that carry a card
number, an SSN and an e-mail. The ``values() only`` line decodes each row's values without
masking: a yardstick for what touching every value of every row costs in Python.
"""

from __future__ import annotations

import argparse
import struct
import time
from collections.abc import Callable

from pgwarden.masking.config import load_masking
from pgwarden.masking.copy import SIGNATURE
from pgwarden.masking.engine import Masker
from pgwarden.protocol.messages import Column, CopyData, DataRow, RowDescription

_COLUMNS = (
    Column("id", 16384, 1, 23, 4, -1, 0),
    Column("name", 16384, 2, 25, -1, -1, 0),
    Column("contact", 16384, 3, 25, -1, -1, 0),
    Column("amount", 16384, 4, 1700, -1, -1, 0),
    Column("created_at", 16384, 5, 1184, 8, -1, 0),
    Column("status", 16384, 6, 25, -1, -1, 0),
    Column("note", 16384, 7, 25, -1, -1, 0),
)


def _values(i: int, sensitive: bool) -> list[bytes]:
    contact = b"ada.lovelace%d@example.com" % i if sensitive else b"+1 202 555 %04d" % (i % 10000)
    note = (
        b"card 4111 1111 1111 1111 ssn 332-20-6469 ref %d" % i
        if sensitive
        else b"order %d shipped by ground, 3 parcels, 12.5 kg" % i
    )
    return [
        b"%d" % i,
        b"Customer %d" % i,
        contact,
        b"%d.%02d" % (i * 7 % 100000, i % 100),
        b"2024-03-%02d 10:%02d:%02d+00" % (i % 28 + 1, i % 60, i * 7 % 60),
        b"paid",
        note,
    ]


def _time(fn: Callable[[], object], nbytes: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return nbytes / best / 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args(argv)
    n = args.rows
    masker = Masker(load_masking("default"), b"bench-key-0123456789abcdef")
    rows = masker.for_columns(RowDescription.build(_COLUMNS))
    print(f"masking: default (card, ssn, email; redact), {n} rows per stream")
    print(f"{'stream':<44}{'MB/s':>10}")
    for label, sensitive in (("ordinary rows", False), ("every row sensitive", True)):
        msgs = [DataRow.build(_values(i, sensitive)) for i in range(n)]
        size = sum(len(m.raw) for m in msgs)

        def parse(msgs: list[DataRow] = msgs) -> None:
            for m in msgs:
                m.values()

        def one(msgs: list[DataRow] = msgs) -> None:
            mask = rows.mask_datarow
            for m in msgs:
                mask(m)

        def batch(msgs: list[DataRow] = msgs) -> None:
            mask = rows.mask_datarows
            for k in range(0, len(msgs), 256):
                mask(msgs[k : k + 256])

        if not sensitive:
            print(f"{'DataRow.values() only (parsing, no masking)':<44}{_time(parse, size):>10.1f}")
        print(f"{'DataRow one by one, ' + label:<44}{_time(one, size):>10.1f}")
        print(f"{'DataRow batches of 256, ' + label:<44}{_time(batch, size):>10.1f}")

        lines = [CopyData.build(b"\t".join(_values(i, sensitive)) + b"\n") for i in range(n)]
        csize = sum(len(m.raw) for m in lines)

        def copy_text(lines: list[CopyData] = lines) -> None:
            cm = masker.for_copy(0, [0] * len(_COLUMNS))
            feed = cm.feed
            for m in lines:
                feed(m)

        print(f"{'COPY text, ' + label:<44}{_time(copy_text, csize):>10.1f}")

        tuples = []
        for i in range(n):
            vals = _values(i, sensitive)
            body = struct.pack("!h", len(vals)) + b"".join(
                struct.pack("!i", len(v)) + v for v in vals
            )
            tuples.append(body)
        tuples[0] = SIGNATURE + struct.pack("!ii", 0, 0) + tuples[0]
        tuples.append(struct.pack("!h", -1))
        bin_msgs = [CopyData.build(t) for t in tuples]
        bsize = sum(len(m.raw) for m in bin_msgs)

        def copy_binary(bin_msgs: list[CopyData] = bin_msgs) -> None:
            cm = masker.for_copy(1, [1] * len(_COLUMNS))
            feed = cm.feed
            for m in bin_msgs:
                feed(m)
            cm.end()

        print(f"{'COPY binary, ' + label:<44}{_time(copy_binary, bsize):>10.1f}")


if __name__ == "__main__":
    main()
