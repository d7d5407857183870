"""``ApprovalError``: why a decision (or a request) was refused, with the HTTP status to say it."""

from __future__ import annotations

__all__ = ["ApprovalError"]


class ApprovalError(Exception):
    """A refused approvals operation. ``status`` is the HTTP status the API answers with:
    400 (bad input), 403 (not allowed for this identity), 404 (no such approval), 409 (not
    pending any more, or already voted), 503 (the service is shut down)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"ApprovalError({self.status}, {self.message!r})"
