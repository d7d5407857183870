"""The two ways masking says no.

``MaskingError`` is a configuration problem (raised at start-up, names the key).
``MaskingFailure`` is raised while masking data: the value or statement must be withheld.
Every public masking entry point turns any unexpected exception into ``MaskingFailure``, so
the relay only needs to catch that one type to fail closed.
"""

from __future__ import annotations


class MaskingError(ValueError):
    """The ``masking`` configuration is invalid. ``key`` is the dotted path of the bad key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class MaskingFailure(Exception):
    """Masking could not be done safely. The caller must withhold what it was about to send
    (end the statement with an error); it must never forward the unmasked message."""
