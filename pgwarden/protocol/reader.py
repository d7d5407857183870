"""Sans-I/O framing: bytes in, typed messages out.

``feed()`` appends bytes, ``next()`` returns one message or None (need more data). Any byte
string either yields messages or raises ProtocolError, fed whole or split at any point. Memory
is bounded: a message larger than ``max_message`` is refused, except DataRow / CopyData, which
stream through as MessageParts so a 1 GB value never sits in the gateway's memory at once.

The buffer is immutable ``bytes``, not a ``bytearray``. A chunk fed when everything before it
was read becomes the buffer as it is, and a message is a slice of it: a chunk that holds one
whole message (most requests and many replies) is passed on without a copy, and any other
message is copied once (a ``bytearray`` needs two: the slice, then ``bytes()``). Chunks fed
behind unread bytes wait in a list and are joined only once they complete the message at the
front, so each byte of a message split over many reads is copied once, not at every read. It
is also what lets the reader run compiled (pgwarden._native): mypyc indexes and slices
``bytes`` natively, a ``bytearray`` only through generic calls.
"""

from __future__ import annotations

from typing import Final

from pgwarden.protocol.errors import ProtocolError, Side
from pgwarden.protocol.messages import (
    CopyData,
    Message,
    MessagePart,
    decode,
    decode_startup,
    int32_at,
)

MAX_STARTUP_PACKET: Final = 10_000
DEFAULT_MAX_MESSAGE: Final = 64 * 1024 * 1024
_STREAMABLE: Final = {"client": frozenset({0x64}), "server": frozenset({0x64, 0x44})}  # d, D


_SMALL: Final[dict[str, dict[bytes, Message]]] = {"client": {}, "server": {}}
# Messages that come back byte for byte with every execution of a statement: its
# RowDescription, its CommandComplete tag, the client's Parse, Describe and Execute. Decoded
# once per distinct bytes (and client encoding, which names are decoded with).
_REPEATING: Final = {
    "server": frozenset({0x54, 0x43, 0x74, 0x6E}),  # T, C, t, n
    "client": frozenset({0x50, 0x44, 0x45}),  # P, D, E
}
_REPEATED: Final[dict[tuple[str, str, bytes], Message]] = {}
_REPEATED_MAX_BYTES: Final = 2048
_REPEATED_KEPT: Final = 4096


class MessageReader:
    __slots__ = (
        "_buf",
        "_more",
        "_more_len",
        "_pos",
        "_repeating",
        "_small",
        "_stream_code",
        "_stream_left",
        "_stream_total",
        "encoding",
        "max_message",
        "run_messages",
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
        self._buf = b""
        self._pos = 0
        self._more: list[bytes] = []  # fed behind unread bytes, not yet joined to _buf
        self._more_len = 0
        self._small = _SMALL[side]
        self._repeating = _REPEATING[side]
        self._stream_code = b""
        self._stream_left = 0
        self._stream_total = 0
        self.run_messages = 0  # messages handed out whole in runs (next_run), undecoded

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos + self._more_len

    @property
    def streaming(self) -> bool:
        """True while in the middle of a message being streamed as parts."""
        return self._stream_left > 0

    def feed(self, data: bytes) -> None:
        if not data:
            return
        if self._pos >= len(self._buf) and not self._more_len:
            self._buf = data
            self._pos = 0
        else:
            self._more.append(data)
            self._more_len += len(data)

    def _gather(self, need: int) -> int:
        """The bytes available at the front: joins the chunks fed since only when that makes
        ``need`` bytes available (so a long message is joined once, when complete)."""
        avail = len(self._buf) - self._pos
        if avail >= need or not self._more_len or avail + self._more_len < need:
            return avail
        parts = self._more
        if avail:
            parts.insert(0, self._buf[self._pos :])
        self._buf = b"".join(parts)
        self._pos = 0
        self._more = []
        self._more_len = 0
        return len(self._buf)

    def next(self) -> Message | MessagePart | None:
        if self._stream_left:
            return self._next_part(first=False)
        if self.startup:
            return self._next_startup()
        buf, pos = self._buf, self._pos  # read once: this runs for every message
        avail = len(buf) - pos
        if avail < 5:
            if self._gather(5) < 5:
                return None
            buf, pos = self._buf, self._pos
            avail = len(buf)
        code = buf[pos]
        length = int32_at(buf, pos + 1)
        if length < 4:
            raise ProtocolError(f"invalid message length {length}", side=self.side)
        total = length + 1
        if total > self.max_message:
            if code in _STREAMABLE[self.side]:
                self._stream_code = bytes((code,))
                self._stream_total = total
                self._stream_left = total
                return self._next_part(first=True)
            raise ProtocolError(
                f"message of type {bytes((code,))!r} is {total} bytes, "
                f"over the {self.max_message}-byte limit",
                side=self.side,
            )
        if avail < total:
            if self._gather(total) < total:
                return None
            buf, pos = self._buf, 0
        end = pos + total
        # compiled, a slice of the whole is a copy (interpreted it is the same object)
        raw = buf if pos == 0 and end == len(buf) else buf[pos:end]
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
        if self._more_len:
            self._gather_front()
        buf, pos = self._buf, self._pos
        end = len(buf)
        out: list[bytes] = []
        size = 0
        while end - pos >= 5 and buf[pos] == code:
            length = int32_at(buf, pos + 1)
            if length < 4 or length + 1 > self.max_message:
                break  # let next() report or stream it
            stop = pos + 1 + length
            if stop > end:
                break
            out.append(buf if pos == 0 and stop == end else buf[pos:stop])
            size += length + 1
            pos = stop
            if size >= limit:
                break
        self._pos = pos
        self.run_messages += len(out)
        return out

    def _gather_front(self) -> None:
        """Join fed chunks if they complete the message at the front."""
        if self._gather(5) < 5:
            return
        length = int32_at(self._buf, self._pos + 1)
        if 4 <= length < self.max_message:
            self._gather(length + 1)

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

    def _next_startup(self) -> Message | None:
        if self._gather(4) < 4:
            return None
        length = int32_at(self._buf, self._pos)
        if length < 8 or length > MAX_STARTUP_PACKET:
            raise ProtocolError(f"invalid startup packet length {length}", side=self.side)
        if self._gather(length) < length:
            return None
        raw = self._buf[self._pos : self._pos + length]
        self._pos += length
        return decode_startup(raw, self.encoding)

    def _next_part(self, *, first: bool) -> MessagePart | None:
        avail = self._gather(self.buffered)  # a part takes all there is (up to the message's end)
        if avail == 0:
            return None
        n = min(avail, self._stream_left)
        data = self._buf[self._pos : self._pos + n]
        self._pos += n
        self._stream_left -= n
        return MessagePart(
            self._stream_code, self._stream_total, data, first, self._stream_left == 0
        )

    def take_rest(self) -> bytes:
        """Remove and return unparsed bytes (used to detect bytes smuggled before TLS)."""
        rest = b"".join([self._buf[self._pos :], *self._more])
        self._buf = b""
        self._pos = 0
        self._more = []
        self._more_len = 0
        return rest
