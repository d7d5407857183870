"""Recorded values shown to a person: what the console's timeline and the terminal replay share.

Recorded text is untrusted (a statement, a row, a prompt): control characters, terminal escape
sequences included, are shown as ``\\xNN`` so nothing invisible hides in plain sight or drives
the terminal; newlines and tabs are kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["binary_summary", "visible"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(value: object) -> str:
    """``str(value)`` with control characters shown as ``\\xNN`` (newlines and tabs kept)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def binary_summary(value: Mapping[str, Any]) -> tuple[str, int]:
    """A value recorded as base64 without a text form (see ``encode_value``): its format
    (made visible) and its size in bytes."""
    data = str(value.get("data", ""))
    return visible(value.get("format", "binary")), len(data) * 3 // 4 - data.count("=")
