"""pgwarden: identity-aware PostgreSQL gateway."""

from pathlib import Path as _Path

from pgwarden import _native

__version__ = "0.1.0"

_native.guard(_Path(__file__).parent)
