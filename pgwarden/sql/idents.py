"""SQL identifiers written back into SQL text the gateway sends itself."""

from __future__ import annotations

__all__ = ["quote_ident"]


def quote_ident(name: str) -> str:
    """``name`` as a quoted identifier (always quoted: its case and any character kept)."""
    return '"' + name.replace('"', '""') + '"'
