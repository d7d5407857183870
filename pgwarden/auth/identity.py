"""The verified identity behind a connection, and the error raised when a token is refused."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["AuthError", "Identity", "format_duration", "format_timestamp"]

# SQLSTATEs used for authentication failures.
INVALID_PASSWORD = "28P01"  # noqa: S105 - SQLSTATE invalid_password: the token is bad
# SQLSTATE invalid_authorization_specification: the token is not for this user, or we can't tell
INVALID_AUTHORIZATION_SPECIFICATION = "28000"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is on the other end of a connection, as proven by a verified token."""

    subject: str
    groups: tuple[str, ...]
    issuer: str  # "pgwarden-local" for the local issuer, else the OIDC issuer URL
    expires_at: float  # unix seconds
    issued_at: float | None
    token_id: str | None  # the token's jti, if it has one
    # The verified claims (never the raw token). Read-only; excluded from hashing.
    claims: Mapping[str, Any] = field(hash=False, repr=False)

    def expired(self, now: float) -> bool:
        """True once the token behind this identity has expired (no leeway)."""
        return now >= self.expires_at


class AuthError(Exception):
    """A token was refused. ``message`` says precisely why; it never contains the token."""

    def __init__(self, message: str, sqlstate: str = INVALID_PASSWORD) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate

    def __repr__(self) -> str:
        return f"AuthError({self.message!r}, sqlstate={self.sqlstate!r})"


def format_timestamp(ts: float) -> str:
    """``2026-01-02T03:04:05Z`` for a unix time (falls back to the number if out of range)."""
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{ts:.0f} (unix time)"


def format_duration(seconds: float) -> str:
    """Compact duration: ``24h``, ``12h``, ``15m``, ``1h30m``, ``45s``, ``0.5s``."""
    if not math.isfinite(seconds):
        return "forever" if seconds > 0 else str(seconds)
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1:
        return f"{seconds:g}s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if secs or not parts:
        parts.append(f"{secs}s")
    return "".join(parts)
