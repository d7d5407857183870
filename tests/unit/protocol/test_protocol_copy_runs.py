"""Runs of CopyData taken from the reader's buffer at once (the COPY fast paths)."""

from __future__ import annotations

from pgwarden.masking import DEFAULT_CONFIG, Masker
from pgwarden.protocol.messages import CommandComplete, CopyData, CopyDone
from pgwarden.protocol.reader import MessageReader


def _reader(*raws: bytes) -> MessageReader:
    r = MessageReader("server")
    r.feed(b"".join(raws))
    return r


def test_copy_run_keeps_each_message_whole_and_stops_at_other_messages() -> None:
    rows = [CopyData.build(b"%d\tx\n" % i).raw for i in range(5)]
    r = _reader(*rows, CopyDone.build().raw, CommandComplete.build("COPY 5").raw)
    assert r.next_copy_run() == rows
    assert r.next_copy_run() == []
    assert isinstance(r.next(), CopyDone)
    assert isinstance(r.next(), CommandComplete)


def test_copy_run_leaves_an_incomplete_message_in_the_buffer() -> None:
    whole = CopyData.build(b"1\n").raw
    cut = CopyData.build(b"2\n").raw
    r = _reader(whole, cut[:4])
    assert r.next_copy_run() == [whole]
    r.feed(cut[4:])
    assert r.next_copy_run() == [cut]


def test_copy_run_stops_near_the_limit() -> None:
    rows = [CopyData.build(b"x" * 100).raw for _ in range(10)]
    r = _reader(*rows)
    first = r.next_copy_run(limit=250)
    assert 1 < len(first) < 10
    assert first + r.next_copy_run() == rows


def test_joined_copy_data_carries_all_the_data() -> None:
    r = MessageReader("client")
    r.feed(b"".join(CopyData.build(b"%d\n" % i).raw for i in range(3)))
    joined = r.next_copy_data()
    assert joined is not None and joined.data == b"0\n1\n2\n"


def test_copy_masker_lets_clean_rows_pass_and_not_others() -> None:
    m = Masker(DEFAULT_CONFIG, b"k" * 32)
    copy = m.for_copy(0, (0, 0))
    assert copy.can_pass(b"1\tAda\n2\tAlan\n")
    assert not copy.can_pass(b"1\tada@example.com\n")
    assert not copy.can_pass(b"1\t4111 1111 1111 1111\n")
    assert not m.for_copy(1, (1, 1)).can_pass(b"anything")  # binary: always row by row
