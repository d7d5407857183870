"""Agent context: sqlcommenter comments and the context in force for each statement.

``parse_sqlcommenter(sql)`` reads the sqlcommenter comment of a statement, per the spec: only
a ``/* ... */`` comment that is the last token of the statement counts (trailing whitespace
and semicolons aside); it holds ``key='value'`` pairs separated by commas; keys and values are
URL-encoded and then have the meta character ``'`` escaped as ``\\'``, so parsing undoes the
escaping first and then URL-decodes (``%20`` is a space, ``+`` stays a plus). The scan knows
PostgreSQL's lexical rules (string literals, ``E''`` strings, quoted identifiers, dollar
quotes, nested block comments, ``--`` comments), so comment-like text inside a literal is not
taken for a comment. Anything malformed gives ``{}``: a bad comment never fails a statement.

``ContextState`` tracks one session's context:

- ``application_name`` (the startup parameter, or ``SET application_name``),
- ``SET pgwarden.<name> = '...'`` values (``apply_set``; ``local=True`` for ``SET LOCAL``),
  undone by ``RESET`` (``apply_reset``) and by a rolled-back transaction (``begin``/``commit``/
  ``rollback`` — the caller reports transaction boundaries; ``SET LOCAL`` values end with the
  transaction),
- values posted to the API (``apply_api``; ``None`` removes a key),
- per statement, the sqlcommenter keys of that statement (never persisted).

``for_statement(sql)`` gives the merged context in force: a statement's own comment keys win,
then ``SET LOCAL`` values, then whichever of SET and the API set a key last, then
``application_name``. It also says where each key came from (``sources``). Keys are the names
without the ``pgwarden.`` prefix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote

__all__ = ["READ_ONLY_KEYS", "ContextState", "StatementContext", "parse_sqlcommenter"]

READ_ONLY_KEYS: Final = frozenset({"session_id"})  # SHOW pgwarden.session_id: set by the gateway
PREFIX: Final = "pgwarden."

_DOLLAR: Final = re.compile(r"\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$")
_IDENT_CHARS: Final = re.compile(r"[A-Za-z0-9_$\u0080-\uffff]+")
_PAIR: Final = re.compile(r"\s*((?:[^=,'\\\s]|\\.)+)\s*=\s*'((?:[^'\\]|\\.)*)'\s*(,|\Z)", re.DOTALL)
_UNESCAPE: Final = re.compile(r"\\(.)", re.DOTALL)


def _skip_string(sql: str, i: int, backslash: bool) -> int:
    """Index after the string literal whose opening quote is at ``i`` (-1 if unterminated)."""
    j = i + 1
    n = len(sql)
    while j < n:
        c = sql[j]
        if backslash and c == "\\":
            j += 2
            continue
        if c == "'":
            if j + 1 < n and sql[j + 1] == "'":
                j += 2
                continue
            return j + 1
        j += 1
    return -1


def _trailing_comment(sql: str) -> str | None:
    """The body of the block comment that is the statement's last token, if any."""
    if not sql.rstrip(" \t\n\r\f\v;").endswith("*/"):
        return None  # the common case, decided without scanning the statement
    i, n = 0, len(sql)
    last: tuple[str, int, int] | None = None  # (kind, start, end) of the last real token
    while i < n:
        c = sql[i]
        if c.isspace() or c == ";":
            i += 1
            continue
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
            last = ("line_comment", i, i)
            continue
        if sql.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                return None
            last = ("comment", i, j)
            i = j
            continue
        if c == "'":
            j = _skip_string(sql, i, backslash=False)
        elif c == '"':
            j = sql.find('"', i + 1)
            while j >= 0 and j + 1 < n and sql[j + 1] == '"':
                j = sql.find('"', j + 2)
            j = -1 if j < 0 else j + 1
        elif c == "$" and (m := _DOLLAR.match(sql, i)) is not None:
            close = sql.find(m.group(0), m.end())
            j = -1 if close < 0 else close + len(m.group(0))
        elif (m := _IDENT_CHARS.match(sql, i)) is not None:
            j = m.end()
            word = m.group(0)
            if j < n and sql[j] == "'":  # E'...', B'...', X'...', N'...', U&'...' prefixes
                j = _skip_string(sql, j, backslash=word in ("E", "e"))
        else:
            j = i + 1
        if j < 0:
            return None  # unterminated literal: not a statement we can read
        last = ("token", i, j)
        i = j
    if last is None or last[0] != "comment":
        return None
    return sql[last[1] + 2 : last[2] - 2]


def _decode(text: str) -> str:
    return unquote(_UNESCAPE.sub(r"\1", text), errors="strict")


def parse_sqlcommenter(sql: str) -> dict[str, str]:
    """The key/value pairs of the statement's trailing sqlcommenter comment ({} if none or
    malformed)."""
    body = _trailing_comment(sql)
    if body is None:
        return {}
    body = body.strip()
    out: dict[str, str] = {}
    pos = 0
    try:
        while pos < len(body):
            m = _PAIR.match(body, pos)
            if m is None:
                return {}
            key = _decode(m.group(1))
            if not key:
                return {}
            out[key] = _decode(m.group(2))
            pos = m.end()
            if m.group(3) == "," and pos >= len(body):
                return {}  # trailing comma
    except UnicodeDecodeError:
        return {}
    return out


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatementContext:
    """The context in force for one statement, and where each key came from (``comment``,
    ``set_local``, ``set``, ``api`` or ``application_name``)."""

    context: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)


def _key(name: str) -> str:
    key = name[len(PREFIX) :] if name.lower().startswith(PREFIX) else name
    if not key:
        raise ValueError(f"empty context name {name!r}")
    return key


class ContextState:
    def __init__(self, application_name: str | None = None) -> None:
        self._application_name = application_name or None
        # The merged context while nothing changes (most sessions never change it): every
        # change below drops it.
        self._merged_cache: StatementContext | None = None
        self._counter = 0
        self._set: dict[str, tuple[str, int]] = {}
        self._api: dict[str, tuple[Any, int]] = {}
        self._local: dict[str, str] = {}
        self._tx_snapshot: dict[str, tuple[str, int]] | None = None

    @property
    def application_name(self) -> str | None:
        return self._application_name

    def _tick(self) -> int:
        self._counter += 1
        return self._counter

    # ------------------------------------------------------------ changes (each returns the
    # changes made, key -> new value or None, for a ``context`` event)

    def set_application_name(self, name: str | None) -> dict[str, Any]:
        self._merged_cache = None
        self._application_name = name or None
        return {"application_name": self._application_name}

    def apply_set(self, name: str, value: str, *, local: bool = False) -> dict[str, Any]:
        """``SET [LOCAL] pgwarden.<name> = value`` (``name`` with or without the prefix)."""
        key = _key(name)
        if key in READ_ONLY_KEYS:
            raise ValueError(f"pgwarden.{key} is read-only")
        self._merged_cache = None
        if local:
            self._local[key] = value
        else:
            self._set[key] = (value, self._tick())
        return {key: value}

    def apply_reset(self, name: str | None = None) -> dict[str, Any]:
        """``RESET pgwarden.<name>``, or with no name every ``pgwarden.*`` SET value
        (``RESET ALL``/``DISCARD ALL``)."""
        self._merged_cache = None
        if name is None:
            changes: dict[str, Any] = dict.fromkeys([*self._set, *self._local])
            self._set.clear()
            self._local.clear()
            return changes
        key = _key(name)
        self._set.pop(key, None)
        self._local.pop(key, None)
        return {key: None}

    def apply_api(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Values posted to ``/api/v1/sessions/{id}/context`` (``None`` removes a key)."""
        keys = [_key(str(name)) for name in values]
        for key in keys:  # all checked before any applies: refused whole
            if key in READ_ONLY_KEYS:
                raise ValueError(f"{key} is read-only")
        changes: dict[str, Any] = {}
        self._merged_cache = None
        for key, value in zip(keys, values.values(), strict=True):
            if value is None:
                self._api.pop(key, None)
            else:
                self._api[key] = (value, self._tick())
            changes[key] = value
        return changes

    def begin(self) -> None:
        """A transaction block started (snapshot for rollback)."""
        if self._tx_snapshot is None:
            self._tx_snapshot = dict(self._set)

    def commit(self) -> dict[str, Any]:
        """The transaction committed: ``SET LOCAL`` values end."""
        self._merged_cache = None
        self._tx_snapshot = None
        changes: dict[str, Any] = dict.fromkeys(self._local)
        self._local.clear()
        return changes

    def rollback(self) -> dict[str, Any]:
        """The transaction rolled back: its SETs are undone, ``SET LOCAL`` values end."""
        self._merged_cache = None
        changes: dict[str, Any] = dict.fromkeys(self._local)
        self._local.clear()
        if self._tx_snapshot is not None:
            before = self._tx_snapshot
            for key in set(before) | set(self._set):
                if before.get(key) != self._set.get(key):
                    changes[key] = before[key][0] if key in before else None
            self._set = before
            self._tx_snapshot = None
        return changes

    # ------------------------------------------------------------ reading

    def _merged(self) -> StatementContext:
        if self._merged_cache is None:
            self._merged_cache = self._merge()
        return self._merged_cache

    def _merge(self) -> StatementContext:
        ctx: dict[str, Any] = {}
        sources: dict[str, str] = {}
        if self.application_name:
            ctx["application_name"] = self.application_name
            sources["application_name"] = "application_name"
        if not (self._set or self._api or self._local):
            return StatementContext(ctx, sources)  # most sessions: nothing set
        entries: list[tuple[int, str, Any, str]] = [
            (order, key, value, "set") for key, (value, order) in self._set.items()
        ]
        entries += [(order, key, value, "api") for key, (value, order) in self._api.items()]
        for _order, key, value, source in sorted(entries, key=lambda e: e[0]):
            ctx[key] = value
            sources[key] = source
        for key, value in self._local.items():
            ctx[key] = value
            sources[key] = "set_local"
        return StatementContext(ctx, sources)

    def session_context(self) -> dict[str, Any]:
        """The session-scoped context in force (no statement comment)."""
        return dict(self._merged().context)

    def for_statement(
        self, sql: str | None = None, *, comment: Mapping[str, str] | None = None
    ) -> StatementContext:
        """The context in force for a statement: ``comment`` if given, else the statement's
        own sqlcommenter keys (parsed from ``sql``), over the session context."""
        merged = self._merged()
        keys = dict(comment) if comment is not None else (parse_sqlcommenter(sql) if sql else {})
        if not keys:
            return merged  # shared while the context is unchanged: read it, never change it
        ctx, sources = dict(merged.context), dict(merged.sources)
        for key, value in keys.items():
            ctx[key] = value
            sources[key] = "comment"
        return StatementContext(ctx, sources)
