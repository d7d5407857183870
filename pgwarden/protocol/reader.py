"""Sans-I/O framing: bytes in, typed messages out.

``feed()`` appends bytes, ``next()`` returns one message or None (need more data). Any byte
string either yields messages or raises ProtocolError, fed whole or split at any point. Memory
is bounded: a message larger than ``max_message`` is refused, except DataRow / CopyData, which
stream through as MessageParts so a 1 GB value never sits in the gateway's memory at once.
"""

from __future__ import annotations

import struct

from pgwarden.protocol.errors import ProtocolError, Side
from pgwarden.protocol.messages import CopyData, Message, MessagePart, decode, decode_startup

MAX_STARTUP_PACKET = 10_000
DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024
_STREAMABLE = {"client": frozenset({b"d"}), "server": frozenset({b"d", b"D"})}
_HEADER = struct.Struct("!ci")
_LEN = struct.Struct("!i")


_SMALL: dict[str, dict[bytes, Message]] = {"client": {}, "server": {}}
# Messages that come back byte for byte with every execution of a statement: its
# RowDescription, its CommandComplete tag, the client's Parse, Describe and Execute. Decoded
# once per distinct bytes (and client encoding, which names are decoded with).
_REPEATING = {
    "server": frozenset({b"T", b"C", b"t", b"n"}),
    "client": frozenset({b"P", b"D", b"E"}),
}
_REPEATED: dict[tuple[str, str, bytes], Message] = {}
_REPEATED_MAX_BYTES = 2048
_REPEATED_KEPT = 4096


class MessageReader:
    __slots__ = (
        "_buf",
        "_pos",
        "_repeating",
        "_small",
        "_stream_code",
        "_stream_left",
        "_stream_total",
        "encoding",
        "max_message",
        "side",
        "startup",
    )

    def __init__(
        self,
        side: Side,
        *,
        startup: bool = False,
        max_message: int = DEFAULT_MAX_MESSAGE,
        encoding: str = "utf-8",
    ) -> None:
        self.side: Side = side
        self.startup = startup  # next packet is untyped (StartupMessage, SSLRequest, ...)
        self.max_message = max_message
        self.encoding = encoding
        self._buf = bytearray()
        self._pos = 0
        self._small = _SMALL[side]
        self._repeating = _REPEATING[side]
        self._stream_code = b""
        self._stream_left = 0
        self._stream_total = 0

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    @property
    def streaming(self) -> bool:
        """True while in the middle of a message being streamed as parts."""
        return self._stream_left > 0

    def feed(self, data: bytes) -> None:
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif self._pos > 65536 and self._pos * 2 > len(self._buf):
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next(self) -> Message | MessagePart | None:
        if self._stream_left:
            return self._next_part(first=False)
        buf, pos = self._buf, self._pos  # read once: this runs for every message
        avail = len(buf) - pos
        if self.startup:
            return self._next_startup(avail)
        if avail < 5:
            return None
        code, length = _HEADER.unpack_from(buf, pos)
        if length < 4:
            raise ProtocolError(f"invalid message length {length}", side=self.side)
        total = length + 1
        if total > self.max_message:
            if code in _STREAMABLE[self.side]:
                self._stream_code = code
                self._stream_total = total
                self._stream_left = total
                return self._next_part(first=True)
            raise ProtocolError(
                f"message of type {code!r} is {total} bytes, "
                f"over the {self.max_message}-byte limit",
                side=self.side,
            )
        if avail < total:
            return None
        end = pos + total
        raw = bytes(buf[pos:end])
        self._pos = end
        if total <= 6:
            # ParseComplete, BindComplete, ReadyForQuery, Sync, ...: a handful of distinct
            # byte strings; decoded once each (messages are immutable, so they are shared).
            small = self._small.get(raw)
            if small is None:
                small = decode(self.side, raw, self.encoding)
                if len(self._small) < 256:
                    self._small[raw] = small
            return small
        if total <= _REPEATED_MAX_BYTES and code in self._repeating:
            key = (self.side, self.encoding, raw)
            seen = _REPEATED.get(key)
            if seen is None:
                seen = decode(self.side, raw, self.encoding)
                if len(_REPEATED) >= _REPEATED_KEPT:
                    _REPEATED.clear()
                _REPEATED[key] = seen
            return seen
        return decode(self.side, raw, self.encoding)

    def next_copy_run(self, limit: int = 256 * 1024) -> list[bytes]:
        """The raw bytes of the complete CopyData messages at the head of the buffer (up to
        about ``limit`` bytes), each message whole; empty when the next message is not a
        complete CopyData."""
        return self.next_run(0x64, limit)  # b"d"

    def next_run(self, code: int, limit: int = 256 * 1024) -> list[bytes]:
        """The raw bytes of the complete messages of type ``code`` at the head of the buffer
        (up to about ``limit`` bytes), each whole and undecoded."""
        if self._stream_left or self.startup:
            return []
        buf, pos, end = self._buf, self._pos, len(self._buf)
        out: list[bytes] = []
        size = 0
        while end - pos >= 5 and buf[pos] == code:
            (length,) = _LEN.unpack_from(buf, pos + 1)
            if length < 4 or length + 1 > self.max_message:
                break  # let next() report or stream it
            stop = pos + 1 + length
            if stop > end:
                break
            out.append(bytes(buf[pos:stop]))
            size += length + 1
            pos = stop
            if size >= limit:
                break
        self._pos = pos
        return out

    def next_copy_data(self, limit: int = 256 * 1024) -> CopyData | None:
        """The complete CopyData messages at the head of the buffer joined into one, or None
        when the next message is not a complete CopyData. Only for data sent *to* the
        server: PostgreSQL accepts COPY data split anywhere, while clients reading COPY TO
        STDOUT (psycopg's rows()) expect one row per message as the server sends them."""
        run = self.next_copy_run(limit)
        if not run:
            return None
        if len(run) == 1:
            return CopyData(run[0])
        return CopyData.build(b"".join([r[5:] for r in run]))

    def _next_startup(self, avail: int) -> Message | None:
        if avail < 4:
            return None
        (length,) = _LEN.unpack_from(self._buf, self._pos)
        if length < 8 or length > MAX_STARTUP_PACKET:
            raise ProtocolError(f"invalid startup packet length {length}", side=self.side)
        if avail < length:
            return None
        raw = bytes(self._buf[self._pos : self._pos + length])
        self._pos += length
        return decode_startup(raw, self.encoding)

    def _next_part(self, *, first: bool) -> MessagePart | None:
        avail = len(self._buf) - self._pos
        if avail == 0:
            return None
        n = min(avail, self._stream_left)
        data = bytes(self._buf[self._pos : self._pos + n])
        self._pos += n
        self._stream_left -= n
        return MessagePart(
            self._stream_code, self._stream_total, data, first, self._stream_left == 0
        )

    def take_rest(self) -> bytes:
        """Remove and return unparsed bytes (used to detect bytes smuggled before TLS)."""
        rest = bytes(self._buf[self._pos :])
        self._buf.clear()
        self._pos = 0
        return rest
