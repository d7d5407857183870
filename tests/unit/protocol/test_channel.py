"""The relay's byte channel (pgwarden.proxy.channel) over real loopback sockets, under both
event loops the gateway may run on: what the stream had buffered is not lost when the channel
takes over, end of file and resets reach the reader, and backpressure holds both ways."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

from pgwarden.proxy.channel import READ_LIMIT, Channel

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}

Scenario = Callable[[Reader, Writer, socket.socket], Awaitable[None]]


def _run(loop_name: str, scenario: Scenario) -> None:
    """Accept one loopback connection and run ``scenario`` with the server side's streams
    and the client's plain socket."""

    async def main() -> None:
        accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.get_running_loop().create_future()
        )

        async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            accepted.set_result((r, w))

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        peer = socket.create_connection(("127.0.0.1", port))
        peer.setblocking(False)
        try:
            reader, writer = await asyncio.wait_for(accepted, 10)
            await asyncio.wait_for(scenario(reader, writer, peer), 30)
            writer.close()
        finally:
            peer.close()
            server.close()

    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(main())


async def _until(check: Callable[[], bool]) -> None:
    while not check():
        await asyncio.sleep(0.005)


async def _read_all(channel: Channel, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        data = await channel.read()
        assert data, "end of file before every byte arrived"
        got += data
    return bytes(got)


@pytest.fixture(params=sorted(LOOPS))
def loop_name(request: Any) -> str:
    return str(request.param)


def test_what_the_stream_buffered_is_read_first(loop_name: str) -> None:
    async def scenario(r: Reader, w: Writer, peer: socket.socket) -> None:
        peer.sendall(b"Xhello ")
        assert await r.readexactly(1) == b"X"
        await _until(lambda: len(r._buffer) == 6)  # type: ignore[attr-defined]
        channel = await Channel.take(r, w)
        peer.sendall(b"world")
        assert await _read_all(channel, 11) == b"hello world"

    _run(loop_name, scenario)


def test_waiting_reads_look_the_loop_up_once(
    loop_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # asyncio.get_running_loop() is a getpid() system call: two per statement when each
    # waiting read asked for it
    calls = []
    real = asyncio.get_running_loop

    def counted() -> asyncio.AbstractEventLoop:
        calls.append(1)
        return real()

    async def scenario(r: Reader, w: Writer, peer: socket.socket) -> None:
        channel = await Channel.take(r, w)
        monkeypatch.setattr(asyncio, "get_running_loop", counted)
        for i in range(5):
            reading = asyncio.ensure_future(channel.read())
            await asyncio.sleep(0.01)  # the read waits on a future of the loop's
            peer.sendall(b"%d" % i)
            assert await reading == b"%d" % i
        monkeypatch.undo()
        assert len(calls) == 1

    _run(loop_name, scenario)


def test_end_of_file_reads_empty_after_the_last_bytes(loop_name: str) -> None:
    async def scenario(r: Reader, w: Writer, peer: socket.socket) -> None:
        channel = await Channel.take(r, w)
        peer.sendall(b"last words")
        peer.shutdown(socket.SHUT_WR)
        await _until(channel.peer_closed)
        assert not channel.at_eof()  # the bytes before it are still to be read
        assert await channel.read() == b"last words"
        assert channel.at_eof()
        assert await channel.read() == b""
        assert await channel.read() == b""

    _run(loop_name, scenario)


def test_end_of_file_seen_by_the_stream_before_take_is_kept(loop_name: str) -> None:
    async def scenario(r: Reader, w: Writer, peer: socket.socket) -> None:
        peer.sendall(b"bye")
        peer.shutdown(socket.SHUT_WR)
        await _until(lambda: bool(r._eof))  # type: ignore[attr-defined]
        channel = await Channel.take(r, w)
        assert channel.peer_closed()
        assert await channel.read() == b"bye"
        assert await channel.read() == b""

    _run(loop_name, scenario)


def test_a_reset_connection_raises_once_its_bytes_are_read(loop_name: str) -> None:
    async def scenario(r: Reader, w: Writer, peer: socket.socket) -> None:
        channel = await Channel.take(r, w)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # linger 0: an RST, not a FIN
        await _until(channel.peer_closed)
        with pytest.raises(ConnectionError):
            while await channel.read():
                pass
        with pytest.raises(ConnectionError):
            channel.write(b"x")
            await channel.drain()

    _run(loop_name, scenario)


def test_reading_stops_past_the_limit_and_resumes_when_read(loop_name: str) -> None:
    total = 64 * READ_LIMIT  # far more than the kernel's socket buffers hold

    async def scenario(r: Reader, w: Writer, peer: socket.socket) -> None:
        channel = await Channel.take(r, w)
        loop = asyncio.get_running_loop()
        sending = loop.create_task(loop.sock_sendall(peer, b"a" * total))
        # Nobody reads the channel: the transport stops reading once the limit is passed,
        # so the sender is left with bytes the kernel would not take.
        await _until(lambda: not channel.transport.is_reading())
        await asyncio.sleep(0.05)
        assert channel._buffered <= READ_LIMIT + 256 * 1024  # one more chunk at most
        assert not sending.done()
        assert await _read_all(channel, total) == b"a" * total
        await sending
        assert channel.transport.is_reading()

    _run(loop_name, scenario)


def test_drain_waits_for_a_peer_that_does_not_read(loop_name: str) -> None:
    async def scenario(r: Reader, w: Writer, peer: socket.socket) -> None:
        channel = await Channel.take(r, w)
        chunk = b"b" * (1 << 20)
        sent = 0
        high = channel.transport.get_write_buffer_limits()[1]
        while channel.transport.get_write_buffer_size() <= high:
            channel.write(chunk)
            sent += len(chunk)
        assert channel.backlogged()
        draining = asyncio.ensure_future(channel.drain())
        await asyncio.sleep(0.1)
        assert not draining.done(), "drain returned while the peer read nothing"
        loop = asyncio.get_running_loop()
        got = 0
        while got < sent:
            got += len(await loop.sock_recv(peer, 1 << 20))
        await draining
        assert got == sent

    _run(loop_name, scenario)


def test_a_second_reader_is_refused(loop_name: str) -> None:
    async def scenario(r: Reader, w: Writer, peer: socket.socket) -> None:
        channel = await Channel.take(r, w)
        first = asyncio.ensure_future(channel.read())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError):
            await channel.read()
        peer.sendall(b"one")
        assert await first == b"one"

    _run(loop_name, scenario)
