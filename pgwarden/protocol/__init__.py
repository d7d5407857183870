"""Sans-I/O PostgreSQL v3 wire protocol: typed messages and a framing reader. No sockets here."""

from pgwarden.protocol.errors import ProtocolError
from pgwarden.protocol.messages import *  # noqa: F403
from pgwarden.protocol.reader import MAX_STARTUP_PACKET, MessageReader

__all__ = ["MAX_STARTUP_PACKET", "MessageReader", "ProtocolError"]
