"""The recorded-sessions endpoints of the HTTP API (bearer token required on every one):

    GET /api/v1/sessions                 the session index, newest first, as a JSON array
    GET /api/v1/sessions/{id}            one session's index entry plus its verification
    GET /api/v1/sessions/{id}/events     its recorded events, as a JSON array

``GET /api/v1/sessions`` takes the filters of ``pgwarden sessions list`` as query parameters:
``subject``, ``target``, ``since`` and ``until`` (ISO-8601, unix seconds, or a duration ago such
as ``2h``; they bound the start time), ``decision`` (``allowed|denied|reviewed|masked``: at
least one statement so decided), ``state`` (``active|ended|crashed``) and ``limit`` (default
1000, at most 10000: an HTTP answer is bounded even when the index is not). Each element is
what ``sessions list --json`` prints (``id``, ``subject``, ``target``, ``started_at``,
``ended_at``, ``state``, the statement counts, ...).

``GET /api/v1/sessions/{id}`` adds ``indexed`` (false for a recording the index has lost) and
``verification`` (``status``: ``intact|unterminated|tampered|missing``, ``first_bad_seq``,
``detail``, ...) computed as ``pgwarden verify`` does, over the bytes as stored now.

``GET /api/v1/sessions/{id}/events`` returns each event as one flat object (envelope and
payload, as ``sessions export`` prints it), decrypted when the gateway holds the recording key;
every ``statement`` event carries ``context``, the agent context (``prompt``, ...) in force for
it. ``after`` (a seq) and ``limit`` page through long recordings. Events are listed even when
the recording is tampered (an auditor wants to see what is left); the verdict is in the
``X-Pgwarden-Verification`` header. A line that cannot be read (encrypted without the key,
damaged) is listed in place with ``unreadable`` saying why.

Who may read: auditors and admins (``api.auditors``, ``api.admins``) read every session. Any
other caller reads only their own sessions (same subject and issuer as their token): an agent
may review what it did, and sees nothing it was not already shown. Everything else answers
403, an unknown session included, so a non-auditor cannot probe which session ids exist.
Listing without being an auditor requires ``subject`` equal to the caller's own subject (a
list of everybody's sessions is auditors' business). Without a recording setup every endpoint
answers 503 (after authentication).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import JSONResponse

from pgwarden.api.roles import roles_of
from pgwarden.auth.identity import Identity
from pgwarden.config import Config
from pgwarden.recording.access import (
    LoadedSession,
    RecordingAccess,
    event_json,
    parse_time,
    read_lines,
    session_json,
)
from pgwarden.recording.storage import StorageError
from pgwarden.store.base import OUTCOMES, SESSION_STATES, SessionFilter, SessionRecord

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "VERIFICATION_HEADER", "sessions_router"]

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10000
VERIFICATION_HEADER = "X-Pgwarden-Verification"


def _owns(who: Identity, row: SessionRecord | None) -> bool:
    return row is not None and (row.subject, row.issuer) == (who.subject, who.issuer)


def sessions_router(
    config: Config | None,
    access: RecordingAccess | None,
    caller: Callable[..., Awaitable[Identity]],
) -> APIRouter:
    """The session routes; ``caller`` is the app's bearer-token dependency, ``config`` gives
    the roles (``api.auditors``, ``api.admins``), ``access`` the index, storage and keys."""
    router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])

    def need_setup() -> tuple[Config, RecordingAccess]:
        if config is None or access is None:
            raise HTTPException(503, "recorded sessions are not available on this gateway")
        return config, access

    async def load(acc: RecordingAccess, session_id: str) -> LoadedSession | None:
        try:
            return await asyncio.to_thread(acc.load, session_id)
        except StorageError as exc:
            raise HTTPException(502, f"the recording storage cannot be read: {exc}") from None

    async def readable(session_id: str, who: Identity) -> tuple[RecordingAccess, LoadedSession]:
        """The session, if ``who`` may read it: 403 for a non-auditor whatever the reason
        (not theirs, or unknown), 404 for an auditor when it does not exist."""
        cfg, acc = need_setup()
        auditor = roles_of(who, cfg).reads_sessions
        loaded = await load(acc, session_id)
        if auditor:
            if loaded is None:
                raise HTTPException(404, f"no session {session_id!r}")
            return acc, loaded
        if loaded is None or not _owns(who, loaded.row):
            raise HTTPException(403, "only auditors and admins read other identities' sessions")
        return acc, loaded

    @router.get("")
    async def list_sessions(
        subject: str | None = None,
        target: str | None = None,
        since: str | None = None,
        until: str | None = None,
        decision: str | None = None,
        state: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        who: Identity = Depends(caller),  # noqa: B008 - Annotated[...] cannot name a local
    ) -> list[dict[str, Any]]:
        """Sessions in the index, newest first (see the module doc for the filters)."""
        cfg, acc = need_setup()
        own_only = not roles_of(who, cfg).reads_sessions
        if own_only and subject != who.subject:
            raise HTTPException(
                403,
                "only auditors and admins list every session; "
                "add subject=<your token's subject> to list your own",
            )
        if decision is not None and decision not in OUTCOMES:
            raise HTTPException(400, f"decision must be one of {', '.join(sorted(OUTCOMES))}")
        if state is not None and state not in SESSION_STATES:
            raise HTTPException(400, f"state must be one of {', '.join(sorted(SESSION_STATES))}")
        now = time.time()
        try:
            # printed times are rounded to the microsecond: a start time copied from a listing
            # must match its own session (as `sessions list --since` does)
            start = parse_time(since, now=now) - 1e-6 if since is not None else None
        except ValueError as exc:
            raise HTTPException(400, f"since: {exc}") from None
        try:
            end = parse_time(until, now=now) if until is not None else None
        except ValueError as exc:
            raise HTTPException(400, f"until: {exc}") from None
        filt = SessionFilter(
            subject=subject,
            target=target,
            since=start,
            until=end,
            decision=decision,
            state=state,
            # the issuer is filtered below for a caller's own list: cut after that
            limit=None if own_only else limit,
        )
        rows = await asyncio.to_thread(acc.store.list_sessions, filt)
        if own_only:
            rows = [r for r in rows if _owns(who, r)][:limit]
        return [session_json(r) for r in rows]

    @router.get("/{session_id}")
    async def get_session(
        session_id: str,
        who: Identity = Depends(caller),  # noqa: B008
    ) -> dict[str, Any]:
        """The index entry (``indexed`` false when only the recording exists) and the
        recording's verification verdict."""
        _acc, loaded = await readable(session_id, who)
        out: dict[str, Any] = (
            session_json(loaded.row) if loaded.row is not None else {"id": session_id}
        )
        out["indexed"] = loaded.row is not None
        out["verification"] = loaded.verification.to_dict()
        return out

    @router.get("/{session_id}/events")
    async def get_events(
        session_id: str,
        after: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int | None, Query(ge=1)] = None,
        who: Identity = Depends(caller),  # noqa: B008
    ) -> JSONResponse:
        """The recorded events with seq greater than ``after`` (at most ``limit``)."""
        acc, loaded = await readable(session_id, who)
        status = loaded.verification.status
        if loaded.data is None:
            raise HTTPException(
                404,
                f"session {session_id}: the recording is missing from {acc.storage.describe()}",
                headers={VERIFICATION_HEADER: status},
            )
        data = loaded.data
        lines = await asyncio.to_thread(read_lines, data, acc.cipher)
        # seq n is line n in an untampered recording; in a damaged one the line number is
        # the only position every line has
        events = [event_json(line) for line in lines if line.number > after]
        if limit is not None:
            events = events[:limit]
        return JSONResponse(events, headers={VERIFICATION_HEADER: status})

    return router
