"""Protocol errors say whose fault they are, so the proxy knows which side to blame."""

from __future__ import annotations

from typing import Literal

Side = Literal["client", "server"]


class ProtocolError(Exception):
    """Bytes that are not a valid PostgreSQL v3 message stream."""

    def __init__(self, message: str, *, side: Side) -> None:
        super().__init__(f"{side} protocol error: {message}")
        self.message = message
        self.side = side
