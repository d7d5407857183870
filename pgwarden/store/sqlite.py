"""``SqliteStore``: the control-plane store in one SQLite file (WAL mode).

One connection per store object, guarded by a lock (thread-safe; the gateway, its API thread
and the CLI may open the same file at once: WAL lets readers run beside the one writer, and
``busy_timeout`` waits out short write locks). ``synchronous=FULL`` so that an "ended" state,
once committed, survives a machine crash (verification trusts it).

Schema versioning: table ``schema_version`` holds one row, the version; ``MIGRATIONS[n]`` is
the list of statements taking the schema from n-1 to n, applied in one ``BEGIN IMMEDIATE``
transaction at open. A file whose version is newer than this code knows is refused.
"""

# Only module constants and names checked against fixed sets are interpolated into SQL; values
# are always bound parameters.
# ruff: noqa: S608

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pgwarden.store.base import (
    APPROVAL_STATES,
    SESSION_STATES,
    ApprovalRecord,
    ApprovalState,
    Outcome,
    SessionFilter,
    SessionRecord,
    SessionState,
    StoreError,
    check_vote,
)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqliteStore"]

MIGRATIONS: dict[int, Sequence[str]] = {
    1: (
        """CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            subject TEXT NOT NULL,
            issuer TEXT NOT NULL,
            groups TEXT NOT NULL DEFAULT '[]',
            target TEXT NOT NULL,
            client_addr TEXT NOT NULL DEFAULT '',
            application_name TEXT NOT NULL DEFAULT '',
            gateway_instance TEXT NOT NULL DEFAULT '',
            started_at REAL NOT NULL,
            ended_at REAL,
            end_reason TEXT,
            state TEXT NOT NULL CHECK (state IN ('active', 'ended', 'crashed')),
            last_seq INTEGER NOT NULL DEFAULT 0,
            last_hash TEXT,
            statements INTEGER NOT NULL DEFAULT 0,
            allowed INTEGER NOT NULL DEFAULT 0,
            denied INTEGER NOT NULL DEFAULT 0,
            reviewed INTEGER NOT NULL DEFAULT 0,
            masked INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX sessions_started ON sessions (started_at)",
        "CREATE INDEX sessions_subject ON sessions (subject, started_at)",
        "CREATE INDEX sessions_target ON sessions (target, started_at)",
        "CREATE INDEX sessions_state ON sessions (state, ended_at)",
        """CREATE TABLE approvals (
            id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL,
            state TEXT NOT NULL
                CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'withdrawn')),
            sql TEXT NOT NULL,
            params TEXT NOT NULL DEFAULT '[]',
            requester TEXT NOT NULL,
            requester_groups TEXT NOT NULL DEFAULT '[]',
            target TEXT NOT NULL,
            rule TEXT,
            requested_at REAL NOT NULL,
            expires_at REAL,
            decided_at REAL,
            deciders TEXT NOT NULL DEFAULT '[]',
            reasons TEXT NOT NULL DEFAULT '[]',
            statement_hash TEXT NOT NULL
        )""",
        "CREATE INDEX approvals_state ON approvals (state, requested_at)",
        "CREATE INDEX approvals_session ON approvals (session_id)",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)

_SESSION_COLUMNS = (
    "id, subject, issuer, groups, target, client_addr, application_name, gateway_instance, "
    "started_at, ended_at, end_reason, state, last_seq, last_hash, statements, allowed, "
    "denied, reviewed, masked"
)
_APPROVAL_COLUMNS = (
    "id, session_id, state, sql, params, requester, requester_groups, target, rule, "
    "requested_at, expires_at, decided_at, deciders, reasons, statement_hash"
)


def _session(row: sqlite3.Row) -> SessionRecord:
    return SessionRecord(
        id=row["id"],
        subject=row["subject"],
        issuer=row["issuer"],
        groups=tuple(json.loads(row["groups"])),
        target=row["target"],
        client_addr=row["client_addr"],
        application_name=row["application_name"],
        gateway_instance=row["gateway_instance"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        end_reason=row["end_reason"],
        state=row["state"],
        last_seq=row["last_seq"],
        last_hash=row["last_hash"],
        statements=row["statements"],
        allowed=row["allowed"],
        denied=row["denied"],
        reviewed=row["reviewed"],
        masked=row["masked"],
    )


def _approval(row: sqlite3.Row) -> ApprovalRecord:
    return ApprovalRecord(
        id=row["id"],
        session_id=row["session_id"],
        state=row["state"],
        sql=row["sql"],
        params=tuple(json.loads(row["params"])),
        requester=row["requester"],
        requester_groups=tuple(json.loads(row["requester_groups"])),
        target=row["target"],
        rule=row["rule"],
        requested_at=row["requested_at"],
        expires_at=row["expires_at"],
        decided_at=row["decided_at"],
        deciders=tuple(json.loads(row["deciders"])),
        reasons=tuple(json.loads(row["reasons"])),
        statement_hash=row["statement_hash"],
    )


class SqliteStore:
    def __init__(self, path: Path | str, *, timeout: float = 10.0) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(path), timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: a commit survives a crash of the process, only a power loss
            # may drop the last ones. The index is rebuilt from the recordings (which have
            # their own durability setting), and FULL cost an fsync per progress update in
            # the data path's event loop.
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    @property
    def schema_version(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT version FROM schema_version").fetchone()
            return int(row[0]) if row else 0

    def _migrate(self) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
                )
                row = self._db.execute("SELECT version FROM schema_version").fetchone()
                current = int(row[0]) if row else 0
                if current > SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.path}: store schema v{current} is newer than this pgwarden "
                        f"(v{SCHEMA_VERSION})"
                    )
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[version]:
                        self._db.execute(statement)
                if row is None:
                    self._db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                elif current != SCHEMA_VERSION:
                    self._db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, params)

    # ------------------------------------------------------------ sessions

    def create_session(self, session: SessionRecord) -> None:
        if session.state not in SESSION_STATES:
            raise ValueError(f"bad state {session.state!r}")
        try:
            self._exec(
                f"INSERT INTO sessions ({_SESSION_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session.id,
                    session.subject,
                    session.issuer,
                    json.dumps(list(session.groups)),
                    session.target,
                    session.client_addr,
                    session.application_name,
                    session.gateway_instance,
                    session.started_at,
                    session.ended_at,
                    session.end_reason,
                    session.state,
                    session.last_seq,
                    session.last_hash,
                    session.statements,
                    session.allowed,
                    session.denied,
                    session.reviewed,
                    session.masked,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"session {session.id} exists") from exc

    def get_session(self, session_id: str) -> SessionRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
        return _session(row) if row else None

    def list_sessions(self, filter: SessionFilter | None = None) -> builtins.list[SessionRecord]:
        f = filter or SessionFilter()
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("subject", f.subject), ("target", f.target), ("state", f.state)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if f.since is not None:
            where.append("started_at >= ?")
            params.append(f.since)
        if f.until is not None:
            where.append("started_at < ?")
            params.append(f.until)
        if f.decision is not None:  # validated against a fixed set in SessionFilter
            where.append(f"{f.decision} > 0")
        if f.ended_before is not None:
            where.append("ended_at IS NOT NULL AND ended_at < ?")
            params.append(f.ended_before)
        sql = f"SELECT {_SESSION_COLUMNS} FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, id DESC"
        if f.limit is not None:
            sql += " LIMIT ?"
            params.append(int(f.limit))
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [_session(r) for r in rows]

    def _require(self, cursor: sqlite3.Cursor, session_id: str) -> None:
        if cursor.rowcount == 0:
            raise StoreError(f"no session {session_id}")

    def record_progress(self, session_id: str, last_seq: int, last_hash: str) -> None:
        with self._lock:
            cur = self._db.execute(
                "UPDATE sessions SET last_seq = ?, last_hash = ? WHERE id = ? AND last_seq < ?",
                (last_seq, last_hash, session_id, last_seq),
            )
            if cur.rowcount == 0 and self.get_session(session_id) is None:
                raise StoreError(f"no session {session_id}")

    def count_statement(self, session_id: str, outcome: Outcome, *, masked: bool = False) -> None:
        if outcome not in ("allowed", "denied", "reviewed"):
            raise ValueError(f"bad outcome {outcome!r}")
        cur = self._exec(
            f"UPDATE sessions SET statements = statements + 1, {outcome} = {outcome} + 1, "
            "masked = masked + ? WHERE id = ?",
            (1 if masked else 0, session_id),
        )
        self._require(cur, session_id)

    def add_counts(
        self,
        session_id: str,
        *,
        allowed: int = 0,
        denied: int = 0,
        reviewed: int = 0,
        masked: int = 0,
    ) -> None:
        cur = self._exec(
            "UPDATE sessions SET statements = statements + ?, allowed = allowed + ?, "
            "denied = denied + ?, reviewed = reviewed + ?, masked = masked + ? WHERE id = ?",
            (allowed + denied + reviewed, allowed, denied, reviewed, masked, session_id),
        )
        self._require(cur, session_id)

    def end_session(
        self,
        session_id: str,
        *,
        ended_at: float,
        reason: str,
        state: SessionState = "ended",
        last_seq: int | None = None,
        last_hash: str | None = None,
    ) -> None:
        if state not in ("ended", "crashed"):
            raise ValueError(f"bad end state {state!r}")
        if last_seq is None:
            cur = self._exec(
                "UPDATE sessions SET ended_at = ?, end_reason = ?, state = ? WHERE id = ?",
                (ended_at, reason, state, session_id),
            )
        else:
            cur = self._exec(
                "UPDATE sessions SET ended_at = ?, end_reason = ?, state = ?, last_seq = ?, "
                "last_hash = ? WHERE id = ?",
                (ended_at, reason, state, last_seq, last_hash, session_id),
            )
        self._require(cur, session_id)

    def mark_active_crashed(
        self, *, ended_at: float, reason: str, gateway_instance: str | None = None
    ) -> builtins.list[str]:
        cond = "state = 'active'"
        params: list[Any] = []
        if gateway_instance is not None:
            cond += " AND gateway_instance = ?"
            params.append(gateway_instance)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                ids = [
                    r[0] for r in self._db.execute(f"SELECT id FROM sessions WHERE {cond}", params)
                ]
                self._db.execute(
                    "UPDATE sessions SET state = 'crashed', ended_at = ?, end_reason = ? "
                    f"WHERE {cond}",
                    [ended_at, reason, *params],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return sorted(ids)

    def delete_session(self, session_id: str) -> bool:
        return self._exec("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0

    # ------------------------------------------------------------ approvals

    def create_approval(self, approval: ApprovalRecord) -> None:
        if approval.state not in APPROVAL_STATES:
            raise ValueError(f"bad state {approval.state!r}")
        try:
            self._exec(
                f"INSERT INTO approvals ({_APPROVAL_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    approval.id,
                    approval.session_id,
                    approval.state,
                    approval.sql,
                    json.dumps(list(approval.params)),
                    approval.requester,
                    json.dumps(list(approval.requester_groups)),
                    approval.target,
                    approval.rule,
                    approval.requested_at,
                    approval.expires_at,
                    approval.decided_at,
                    json.dumps(list(approval.deciders)),
                    json.dumps(list(approval.reasons)),
                    approval.statement_hash,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"approval {approval.id} exists") from exc

    def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE id = ?", (approval_id,)
            ).fetchone()
        return _approval(row) if row else None

    def list_approvals(
        self, *, state: str | None = None, session_id: str | None = None
    ) -> builtins.list[ApprovalRecord]:
        where: list[str] = []
        params: list[Any] = []
        if state is not None:
            where.append("state = ?")
            params.append(state)
        if session_id is not None:
            where.append("session_id = ?")
            params.append(session_id)
        sql = f"SELECT {_APPROVAL_COLUMNS} FROM approvals"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY requested_at, id"
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [_approval(r) for r in rows]

    def decide_approval(
        self,
        approval_id: str,
        *,
        state: ApprovalState,
        decided_at: float,
        decider: str | None = None,
        reason: str | None = None,
        expected_state: ApprovalState = "pending",
    ) -> ApprovalRecord | None:
        if state not in APPROVAL_STATES:
            raise ValueError(f"bad state {state!r}")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                current = self.get_approval(approval_id)
                if current is None or current.state != expected_state:
                    self._db.execute("ROLLBACK")
                    return None
                deciders = [*current.deciders, *([decider] if decider else [])]
                reasons = [*current.reasons, *([reason] if reason else [])]
                self._db.execute(
                    "UPDATE approvals SET state = ?, decided_at = ?, deciders = ?, reasons = ? "
                    "WHERE id = ?",
                    (state, decided_at, json.dumps(deciders), json.dumps(reasons), approval_id),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return self.get_approval(approval_id)

    def add_approval_vote(
        self,
        approval_id: str,
        *,
        decider: str,
        reason: str,
        at: float,
        expected_deciders: Sequence[str],
        state: ApprovalState = "pending",
    ) -> ApprovalRecord | None:
        check_vote(state, decider)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                current = self.get_approval(approval_id)
                if (
                    current is None
                    or current.state != "pending"
                    or current.deciders != tuple(expected_deciders)
                ):
                    self._db.execute("ROLLBACK")
                    return None
                deciders = [*current.deciders, decider]
                reasons = [*current.reasons, reason]
                self._db.execute(
                    "UPDATE approvals SET state = ?, decided_at = ?, deciders = ?, reasons = ? "
                    "WHERE id = ?",
                    (
                        state,
                        None if state == "pending" else at,
                        json.dumps(deciders),
                        json.dumps(reasons),
                        approval_id,
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return self.get_approval(approval_id)

    def delete_approval(self, approval_id: str) -> bool:
        return self._exec("DELETE FROM approvals WHERE id = ?", (approval_id,)).rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
