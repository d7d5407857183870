"""Control-plane state: the session index and approvals (see ``base.py`` for the contract).

``open_store(url, data_dir)``: ``None`` -> ``SqliteStore(data_dir / "pgwarden.db")``;
``sqlite:///path`` -> that file. ``postgresql://`` (a store shared by several gateways) is not
implemented yet and raises ``StoreError``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from pgwarden.store.base import (
    APPROVAL_STATES,
    SESSION_STATES,
    ApprovalRecord,
    ApprovalState,
    Outcome,
    SessionFilter,
    SessionRecord,
    SessionState,
    Store,
    StoreError,
)
from pgwarden.store.memory import MemoryStore
from pgwarden.store.sqlite import SCHEMA_VERSION, SqliteStore

__all__ = [
    "APPROVAL_STATES",
    "DEFAULT_DB_NAME",
    "SCHEMA_VERSION",
    "SESSION_STATES",
    "ApprovalRecord",
    "ApprovalState",
    "MemoryStore",
    "Outcome",
    "SessionFilter",
    "SessionRecord",
    "SessionState",
    "SqliteStore",
    "Store",
    "StoreError",
    "open_store",
]

DEFAULT_DB_NAME = "pgwarden.db"


def open_store(url: str | None, data_dir: Path | str) -> Store:
    if url is None:
        return SqliteStore(Path(data_dir) / DEFAULT_DB_NAME)
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise StoreError(f"no file in {url!r}")
        return SqliteStore(Path(path))
    if parts.scheme in ("postgresql", "postgres"):
        raise StoreError("a PostgreSQL control-plane store is not implemented yet")
    raise StoreError(f"unsupported store {url!r}")
