"""Errors raised by the recording layer.

``RecordingError`` is the one the data path must act on: it means an event could not be made
durable as promised, so the statement it describes must not be forwarded and the session must
end (fail closed). Once a ``RecordingWriter`` has raised it, every later call raises it too.
"""

from __future__ import annotations

__all__ = ["DecryptionError", "FormatError", "RecordingError"]


class RecordingError(Exception):
    """Recording failed: refuse the statement and end the session."""


class FormatError(ValueError):
    """A stored line is not a well-formed recording event (of a version we can read)."""


class DecryptionError(ValueError):
    """An encrypted event could not be decrypted (no key, wrong key, or altered ciphertext)."""
