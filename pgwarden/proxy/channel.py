"""A connection's bytes while a session runs: the transport's protocol, in place of asyncio's
StreamReader and StreamWriter.

The streams are plain Python. Every chunk the kernel hands over went through
``StreamReaderProtocol.data_received``, ``StreamReader.feed_data`` (a copy into the reader's
buffer), ``StreamReader.read`` and ``_wait_for_data`` (a copy out of it), which is ~4 µs of
interpreted code for the two reads of each statement's round trip. A ``Channel`` is compiled
(pgwarden._native) and hands the relay the chunk it was given, copying only when several
arrive before the relay reads.

The session's setup (TLS, authentication) still uses the streams; ``Channel.take`` then
installs a channel as the transport's protocol, carrying over what the reader had buffered,
its end of file and its error.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

#: Bytes kept for the relay before the transport stops reading from the socket (backpressure
#: towards the peer); it reads again once the relay has taken them.
READ_LIMIT: Final = 256 * 1024


class Channel:
    """One connection's byte stream: ``read`` what arrived, ``write`` and ``drain``."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._eof = False
        self._error: BaseException | None = None
        self._lost = False
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        # The loop, found at the first wait: asyncio.get_running_loop() makes a getpid()
        # system call each time (to notice a fork), two per statement's round trip.
        self._loop: asyncio.AbstractEventLoop | None = None
        # Over TLS, end of file closes the connection (TLS has no half-close); over TCP the
        # write side stays open, as with asyncio's streams.
        self._over_tls = transport.get_extra_info("sslcontext") is not None

    @staticmethod
    async def take(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Channel:
        """The channel of the connection behind ``reader`` and ``writer``, installed as its
        transport's protocol. Waits for the writer to drain first, so the channel starts
        with writing not paused; what the reader holds is read first."""
        await writer.drain()
        transport: Any = writer.transport
        channel = Channel(transport)
        # StreamReader keeps these private; there is no public way to take its buffer over.
        buffered = bytes(reader._buffer)  # type: ignore[attr-defined]
        reader._buffer.clear()  # type: ignore[attr-defined]
        if buffered:
            channel._chunks.append(buffered)
            channel._buffered = len(buffered)
        channel._eof = bool(reader._eof)  # type: ignore[attr-defined]  # with bytes left or not
        channel._error = reader.exception()
        transport.set_protocol(channel)
        if getattr(reader, "_paused", False):
            reader._paused = False  # type: ignore[attr-defined]
            transport.resume_reading()
        return channel

    # -- protocol callbacks (from the event loop) ----------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not data:
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > READ_LIMIT and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return not self._over_tls

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost = True
        self._eof = True
        if exc is not None and self._error is None:
            self._error = exc
        self._wake()
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_exception(exc or ConnectionResetError("Connection lost"))
        self._drain_waiters = []

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters = []

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    # -- reading --------------------------------------------------------------------------------

    async def read(self) -> bytes:
        """What has arrived since the last read (waiting for something); b"" at end of file.
        Raises the connection's error, as StreamReader.read does."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            if self._waiter is not None:
                raise RuntimeError("Channel.read() called while another read is waiting")
            waiter: asyncio.Future[None] = self._running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._buffered = 0
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    def at_eof(self) -> bool:
        """End of file and nothing left to read."""
        return self._eof and not self._chunks

    def peer_closed(self) -> bool:
        """The peer closed its side or the connection is gone (bytes may remain to read)."""
        return self._eof

    def exception(self) -> BaseException | None:
        return self._error

    # -- writing --------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Hand ``data`` to the transport; raises ConnectionResetError once the connection
        is gone (uvloop would raise RuntimeError, asyncio drop the bytes with a warning)."""
        if self._lost:
            raise ConnectionResetError("Connection lost")
        self.transport.write(data)

    def backlogged(self) -> bool:
        """Whether drain() has anything to wait for: bytes the socket did not take at once,
        or a connection going away (drain raises its error). Most writes go out whole."""
        transport = self.transport
        return bool(transport.get_write_buffer_size()) or transport.is_closing()

    async def drain(self) -> None:
        """Wait until the transport takes more writes (as StreamWriter.drain)."""
        if self._error is not None:
            raise self._error
        if self.transport.is_closing():
            await asyncio.sleep(0)  # let connection_lost run, as StreamWriter.drain does
        if self._lost:
            raise ConnectionResetError("Connection lost")
        if not self._write_paused:
            return
        waiter: asyncio.Future[None] = self._running_loop().create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def is_closing(self) -> bool:
        return bool(self.transport.is_closing())

    def close(self) -> None:
        self.transport.close()
