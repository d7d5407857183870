"""The web console's pages, under ``/console`` of the API's address.

    GET  /console                       -> the first page this person may use (or sign-in)
    GET  /console/login                 sign-in page (OIDC button; token form for local dev)
    GET  /console/login/oidc            start the OIDC sign-in (redirect to the provider)
    GET  /console/callback              the provider's redirect back (the OAuth redirect URI)
    POST /console/login/token           sign in with a local-issuer token
    POST /console/logout                sign out
    GET  /console/sessions              sessions, filtered            (auditors, admins)
    GET  /console/sessions/{id}         a session's replay and verify badge (auditors, admins)
    GET  /console/approvals             the approvals queue           (everyone signed in*)
    GET  /console/approvals.json        ids of the pending requests one sees (for the queue's
                                        script: reload when they change)
    GET  /console/approvals/{id}        one approval                  (everyone signed in*)
    POST /console/approvals/{id}/decide approve or deny               (approvers)
    GET  /console/policy                the policy and "explain this statement" (admins)
    GET  /console/static/{name}         the stylesheet and script

(*) approvers, auditors and admins see every request; anyone else only their own. Deciding
goes through ``ApprovalService.decide`` as the signed-in identity, with its rules (approvers
only, never one's own statement). Every POST carries the CSRF token of the console session.
Pages work without JavaScript; the script only adds the replay's step/play controls and the
queue's refresh.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from pgwarden.api.roles import Roles, roles_of
from pgwarden.approvals.errors import ApprovalError
from pgwarden.approvals.rules import same_person
from pgwarden.auth.identity import AuthError
from pgwarden.auth.local_issuer import LocalIssuer
from pgwarden.console.auth import (
    HOME,
    LOGIN_COOKIE,
    LOGIN_CSRF_COOKIE,
    LOGIN_TTL,
    SESSION_COOKIE,
    ConsoleUser,
    CookieCodec,
    LoginTransaction,
    OidcClient,
    OidcLogin,
    SignInError,
    load_or_create_secret,
    safe_next,
    user_from_identity,
)
from pgwarden.console.timeline import build_timeline
from pgwarden.console.web import asset, html, read_form
from pgwarden.policy import PolicyIdentity, default_policy_text, explain
from pgwarden.policy.model import Policy, When
from pgwarden.recording.access import RecordingAccess, is_encrypted, parse_time, read_lines
from pgwarden.recording.crypto import KEY_ENV
from pgwarden.store.base import ApprovalRecord, SessionFilter

if TYPE_CHECKING:
    from pgwarden.app import Server
    from pgwarden.approvals.service import ApprovalService
    from pgwarden.auth.verifier import TokenVerifier
    from pgwarden.config import Config

__all__ = ["console_for", "console_router"]

SESSIONS_LIMIT = 200
DECIDED_SHOWN = 25
OUTCOMES = {"blocked": "denied", "held": "reviewed", "masked": "masked", "allowed": "allowed"}
SESSION_STATES = ("active", "ended", "crashed")
NextParam = Annotated[str, Query(alias="next")]  # where to go after signing in


def console_for(server: Server) -> APIRouter:
    """The console of a gateway (``pgwarden.app.Server``): the recordings it reads for the
    session endpoints (index, storage, verifying keys), its policy, approvals and verifier."""
    return console_router(
        server.config,
        access=server.recordings,
        policy=server.policy,
        approvals=server.approvals,
        verifier=server.verifier,
    )


def console_router(
    config: Config,
    *,
    access: RecordingAccess,
    policy: Policy,
    approvals: ApprovalService | None = None,
    verifier: TokenVerifier | None = None,
    oidc: OidcLogin | None = None,
    clock: Callable[[], float] = time.time,
) -> APIRouter:
    """The ``/console`` routes. ``oidc`` overrides the sign-in client built from
    ``identity.oidc`` (tests); ``verifier`` checks pasted local-issuer tokens."""
    router = APIRouter(prefix="/console", include_in_schema=False)
    cookies = CookieCodec(load_or_create_secret(config.data_dir), clock=clock)
    if oidc is None:
        client = OidcClient.from_config(config)
        if client is not None:
            oidc = OidcLogin(client, max_token_ttl=config.identity.max_token_ttl, clock=clock)
    token_login = config.identity.local_issuer and verifier is not None

    # ---------------------------------------------------------------- helpers

    def signed_in(request: Request) -> ConsoleUser | None:
        return cookies.load_user(request.cookies.get(SESSION_COOKIE))

    def to_login(request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        login = f"{HOME}/login?next={_quote(safe_next(target))}"
        return RedirectResponse(login, status_code=303)

    def secure(request: Request) -> bool:
        return request.url.scheme == "https"

    async def page(
        request: Request,
        name: str,
        user: ConsoleUser | None,
        *,
        nav: str = "",
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        roles = roles_of(user.identity(), config) if user is not None else None
        pending = 0
        if user is not None and roles is not None and roles.approver and approvals is not None:
            pending = len(await asyncio.to_thread(approvals.list, state="pending"))
        return html(
            request,
            name,
            {
                "user": user,
                "roles": roles,
                "role_names": _role_names(roles),
                "nav": nav,
                "pending_count": pending,
                **context,
            },
            status=status,
        )

    async def forbidden(request: Request, user: ConsoleUser, needs: str) -> HTMLResponse:
        return await page(request, "forbidden.html", user, status=403, needs=needs)

    async def not_found(request: Request, user: ConsoleUser, what: str) -> HTMLResponse:
        return await page(request, "not_found.html", user, status=404, what=what)

    def set_user_cookie(request: Request, response: Response, user: ConsoleUser) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            cookies.dump_user(user),
            max_age=max(int(user.expires_at - clock()), 1),
            path="/console",
            httponly=True,
            samesite="lax",
            secure=secure(request),
        )

    def roles(user: ConsoleUser) -> Roles:
        return roles_of(user.identity(), config)

    # ---------------------------------------------------------------- sign-in

    @router.get("")
    async def home(request: Request) -> Response:
        user = signed_in(request)
        if user is None:
            return to_login(request)
        where = "sessions" if roles(user).reads_sessions else "approvals"
        return RedirectResponse(f"{HOME}/{where}", status_code=303)

    @router.get("/login")
    async def login_page(request: Request, next_url: NextParam = HOME) -> Response:
        user = signed_in(request)
        target = safe_next(next_url)
        if user is not None:
            return RedirectResponse(target, status_code=303)
        csrf = cookies.load_login_csrf(request.cookies.get(LOGIN_CSRF_COOKIE))
        fresh = csrf is None
        if csrf is None:
            csrf = _token()
        response = await login_form(request, target, csrf, error=None)
        if fresh:
            response.set_cookie(
                LOGIN_CSRF_COOKIE,
                cookies.dump_login_csrf(csrf),
                max_age=LOGIN_TTL * 6,
                path="/console",
                httponly=True,
                samesite="lax",
                secure=secure(request),
            )
        return response

    async def login_form(
        request: Request, target: str, csrf: str, *, error: str | None, status: int = 200
    ) -> HTMLResponse:
        return await page(
            request,
            "login.html",
            None,
            status=status,
            next=target,
            login_csrf=csrf,
            error=error,
            oidc_issuer=oidc.client.issuer if oidc is not None else None,
            oidc_host=oidc.issuer_host if oidc is not None else None,
            token_login=token_login,
            signed_out=request.query_params.get("signed_out") == "1",
            callback_url=f"{str(request.base_url).rstrip('/')}{HOME}/callback",
        )

    @router.get("/login/oidc")
    async def login_oidc(request: Request, next_url: NextParam = HOME) -> Response:
        if oidc is None:
            return RedirectResponse(f"{HOME}/login", status_code=303)
        redirect_uri = f"{str(request.base_url).rstrip('/')}{HOME}/callback"
        tx = LoginTransaction.new(redirect_uri, next_url)
        try:
            url = await oidc.authorization_url(tx)
        except SignInError as exc:
            return await page(
                request, "signin_error.html", None, status=exc.status, message=exc.message
            )
        response = RedirectResponse(url, status_code=303)
        response.set_cookie(
            LOGIN_COOKIE,
            cookies.dump_login(tx),
            max_age=LOGIN_TTL,
            path="/console",
            httponly=True,
            samesite="lax",  # the provider's redirect back is a top-level GET: Lax sends it
            secure=secure(request),
        )
        return response

    @router.get("/callback", name="console_callback")
    async def callback(request: Request) -> Response:
        if oidc is None:
            return RedirectResponse(f"{HOME}/login", status_code=303)
        tx = cookies.load_login(request.cookies.get(LOGIN_COOKIE))
        try:
            if tx is None:
                raise SignInError(
                    "no sign-in was started in this browser in the last "
                    f"{LOGIN_TTL // 60} minutes (or its cookie was refused); start again"
                )
            identity = await oidc.finish(tx, dict(request.query_params))
        except SignInError as exc:
            response: Response = await page(
                request, "signin_error.html", None, status=exc.status, message=exc.message
            )
            response.delete_cookie(LOGIN_COOKIE, path="/console")
            return response
        user = user_from_identity(identity, config, "oidc")
        response = RedirectResponse(tx.next, status_code=303)
        set_user_cookie(request, response, user)
        response.delete_cookie(LOGIN_COOKIE, path="/console")
        return response

    @router.post("/login/token")
    async def login_token(request: Request) -> Response:
        form = await read_form(request)
        target = safe_next(form.get("next"))
        csrf = cookies.load_login_csrf(request.cookies.get(LOGIN_CSRF_COOKIE))
        if csrf is None or not _same(form.get("csrf"), csrf):
            return await login_form(
                request,
                target,
                csrf or _token(),
                error="the sign-in form expired; try again",
                status=400,
            )
        if not token_login or verifier is None:
            return await login_form(
                request, target, csrf, error="token sign-in is off on this gateway", status=403
            )
        token = "".join(form.get("token", "").split())
        try:
            identity = await verifier.identify(token)
        except AuthError as exc:
            return await login_form(request, target, csrf, error=exc.message, status=401)
        if identity.issuer != LocalIssuer.ISSUER:
            return await login_form(
                request,
                target,
                csrf,
                error="only local-issuer tokens (pgwarden token issue) sign in here; "
                "accounts of an identity provider use its sign-in button",
                status=401,
            )
        response = RedirectResponse(target, status_code=303)
        set_user_cookie(request, response, user_from_identity(identity, config, "token"))
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        form = await read_form(request)
        user = signed_in(request)
        if user is not None and not user.csrf_ok(form.get("csrf")):
            return await page(request, "signin_error.html", user, status=400, message=_CSRF)
        response = RedirectResponse(f"{HOME}/login?signed_out=1", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/console")
        return response

    # ---------------------------------------------------------------- sessions

    @router.get("/sessions")
    async def sessions(
        request: Request,
        subject: str = "",
        target: str = "",
        since: str = "",
        until: str = "",
        outcome: str = "",
        state: str = "",
    ) -> Response:
        user = signed_in(request)
        if user is None:
            return to_login(request)
        if not roles(user).reads_sessions:
            return await forbidden(request, user, "auditors and admins")
        problems: list[str] = []
        now = clock()
        since_t = _time(since, "from", now, problems)
        until_t = _time(until, "to", now, problems)
        filt = SessionFilter(
            subject=subject.strip() or None,
            target=target.strip() or None,
            since=since_t,
            until=until_t,
            decision=OUTCOMES.get(outcome),
            state=state if state in SESSION_STATES else None,
            limit=SESSIONS_LIMIT + 1,
        )
        rows = await asyncio.to_thread(access.store.list_sessions, filt)
        return await page(
            request,
            "sessions.html",
            user,
            nav="sessions",
            rows=rows[:SESSIONS_LIMIT],
            more=len(rows) > SESSIONS_LIMIT,
            limit=SESSIONS_LIMIT,
            problems=problems,
            targets=sorted(config.targets),
            filters={
                "subject": subject,
                "target": target,
                "since": since,
                "until": until,
                "outcome": outcome if outcome in OUTCOMES else "",
                "state": state if state in SESSION_STATES else "",
            },
            filtered=any((subject, target, since, until, outcome, state)),
            now=now,
        )

    @router.get("/sessions/{session_id}")
    async def session_page(request: Request, session_id: str) -> Response:
        user = signed_in(request)
        if user is None:
            return to_login(request)
        if not roles(user).reads_sessions:
            return await forbidden(request, user, "auditors and admins")
        loaded = await asyncio.to_thread(access.load, session_id)
        if loaded is None:
            return await not_found(request, user, f"session {session_id}")
        sealed = False
        steps: list[Any] = []
        cut = False
        if loaded.data is not None:
            sealed = access.cipher is None and is_encrypted(loaded.data)
            lines = await asyncio.to_thread(read_lines, loaded.data, access.cipher)
            steps, cut = build_timeline(lines)
        start = next((s for s in steps if s.kind == "session_start"), None)
        return await page(
            request,
            "session.html",
            user,
            nav="sessions",
            sid=session_id,
            row=loaded.row,
            start=start.data if start is not None else {},
            verification=loaded.verification,
            steps=steps,
            cut=cut,
            sealed=sealed,
            key_env=KEY_ENV,
            statements=sum(1 for s in steps if s.kind == "statement"),
        )

    # ---------------------------------------------------------------- approvals

    def visible_to(user: ConsoleUser, record: ApprovalRecord) -> bool:
        r = roles(user)
        return r.approver or r.reads_sessions or same_person(user.subject, record.requester)

    def decidable_by(user: ConsoleUser, record: ApprovalRecord) -> bool:
        return (
            roles(user).approver
            and record.state == "pending"
            and not same_person(user.subject, record.requester)
            and not any(same_person(user.subject, d) for d in record.deciders)
        )

    def approval_view(user: ConsoleUser, record: ApprovalRecord) -> dict[str, Any]:
        own = same_person(user.subject, record.requester)
        return {
            "r": record,
            "decidable": decidable_by(user, record),
            "own": own,
            "voted": any(same_person(user.subject, d) for d in record.deciders),
            "votes": list(zip(record.deciders, record.reasons, strict=False)),
            "extra_reasons": list(record.reasons[len(record.deciders) :]),
            "required": approvals.config.min_approvals if approvals is not None else 1,
        }

    @router.get("/approvals")
    async def approvals_page(request: Request) -> Response:
        user = signed_in(request)
        if user is None:
            return to_login(request)
        if approvals is None:
            return await page(
                request,
                "approvals.html",
                user,
                nav="approvals",
                off=True,
                pending=[],
                decided=[],
                reads=False,
                approver=False,
            )
        records = await asyncio.to_thread(approvals.list)
        mine = [r for r in records if visible_to(user, r)]
        pending = [approval_view(user, r) for r in mine if r.state == "pending"]
        decided = [approval_view(user, r) for r in reversed(mine) if r.state != "pending"]
        return await page(
            request,
            "approvals.html",
            user,
            nav="approvals",
            off=False,
            pending=pending,
            decided=decided[:DECIDED_SHOWN],
            reads=roles(user).reads_sessions,
            approver=roles(user).approver,
            approvers=approvals.config.approvers,
        )

    @router.get("/approvals.json")
    async def approvals_ids(request: Request) -> Response:
        user = signed_in(request)
        if user is None:
            return JSONResponse({"error": "not signed in"}, status_code=401)
        if approvals is None:
            return JSONResponse({"pending": []})
        records = await asyncio.to_thread(approvals.list, state="pending")
        ids = sorted(r.id for r in records if visible_to(user, r))
        return JSONResponse({"pending": ids}, headers={"Cache-Control": "no-store"})

    @router.get("/approvals/{approval_id}")
    async def approval_page(request: Request, approval_id: str, done: str = "") -> Response:
        user = signed_in(request)
        if user is None:
            return to_login(request)
        return await show_approval(request, user, approval_id, done=done)

    async def show_approval(
        request: Request,
        user: ConsoleUser,
        approval_id: str,
        *,
        done: str = "",
        error: str | None = None,
        status: int = 200,
        reason: str = "",
    ) -> Response:
        if approvals is None:
            return await not_found(request, user, f"approval {approval_id}")
        record = await asyncio.to_thread(approvals.get, approval_id)
        if record is None or not visible_to(user, record):
            return await not_found(request, user, f"approval {approval_id}")
        return await page(
            request,
            "approval.html",
            user,
            nav="approvals",
            status=status,
            a=approval_view(user, record),
            done=done if done in ("approve", "deny") else "",
            error=error,
            reason=reason,
            reads=roles(user).reads_sessions,
            approvers=approvals.config.approvers,
        )

    @router.post("/approvals/{approval_id}/decide")
    async def decide(request: Request, approval_id: str) -> Response:
        user = signed_in(request)
        if user is None:
            return to_login(request)
        form = await read_form(request)
        if not user.csrf_ok(form.get("csrf")):
            return await page(request, "signin_error.html", user, status=400, message=_CSRF)
        choice = form.get("decision")
        reason = form.get("reason", "").strip()
        if choice not in ("approve", "deny"):
            return await show_approval(
                request, user, approval_id, error="choose approve or deny", status=400
            )
        if choice == "deny" and not reason:
            return await show_approval(
                request,
                user,
                approval_id,
                error="say why you deny it: the reason reaches the client and the recording",
                status=400,
            )
        if approvals is None:
            return await not_found(request, user, f"approval {approval_id}")
        try:
            await approvals.decide(
                approval_id, user.identity(), approve=choice == "approve", reason=reason or None
            )
        except ApprovalError as exc:
            if exc.status == 404:
                return await not_found(request, user, f"approval {approval_id}")
            return await show_approval(
                request, user, approval_id, error=exc.message, status=exc.status, reason=reason
            )
        return RedirectResponse(f"{HOME}/approvals/{approval_id}?done={choice}", status_code=303)

    # ---------------------------------------------------------------- policy

    @router.get("/policy")
    async def policy_page(
        request: Request,
        sql: str = "",
        subject: str = "",
        groups: str = "",
        target: str = "",
    ) -> Response:
        user = signed_in(request)
        if user is None:
            return to_login(request)
        if not roles(user).admin:
            return await forbidden(request, user, "admins")
        targets = sorted(config.targets)
        chosen_target = target if target else (targets[0] if targets else "")
        who = subject.strip() or user.subject
        group_list = tuple(g for g in (p.strip() for p in groups.split(",")) if g)
        result = None
        if sql.strip():
            # pure: classification and rules only, nothing runs and no estimate is asked for
            result = explain(policy, sql, PolicyIdentity(who, group_list), chosen_target)
        if isinstance(config.policy, str):
            source = default_policy_text() if config.policy == "default" else config.policy
        else:
            source = yaml.safe_dump(config.policy, sort_keys=False, allow_unicode=True)
        return await page(
            request,
            "policy.html",
            user,
            nav="policy",
            policy=policy,
            rules=[(rule, _conditions(rule.when)) for rule in policy.rules],
            source=source,
            sql=sql,
            subject=who,
            groups=", ".join(group_list),
            target=chosen_target,
            targets=targets,
            result=result,
        )

    # ---------------------------------------------------------------- assets

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        return asset(name)

    return router


# --------------------------------------------------------------------------------------------
# small helpers

_CSRF = "this form is stale or came from another site (CSRF check failed); reload the page"


def _token() -> str:
    return secrets.token_urlsafe(24)


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


def _quote(value: str) -> str:
    return quote(value, safe="/")


def _time(value: str, label: str, now: float, problems: list[str]) -> float | None:
    if not value.strip():
        return None
    try:
        return parse_time(value, now=now)
    except ValueError as exc:
        problems.append(f"{label}: {exc}")
        return None


def _role_names(roles: Roles | None) -> str:
    if roles is None:
        return ""
    names = [
        n
        for n, on in (
            ("admin", roles.admin),
            ("auditor", roles.auditor),
            ("approver", roles.approver),
        )
        if on
    ]
    return ", ".join(names) or "no console role"


def _conditions(when: When) -> list[tuple[str, str]]:
    """A rule's conditions as (key, value) text, in the order the dataclass declares them."""
    out: list[tuple[str, str]] = []
    for f in dataclasses.fields(when):
        value = getattr(when, f.name)
        if value is None:
            continue
        if isinstance(value, frozenset | tuple | list):
            text = (
                ", ".join(sorted(str(v) for v in value))
                if isinstance(value, frozenset)
                else (", ".join(str(v) for v in value))
            )
        elif isinstance(value, bool):
            text = "yes" if value else "no"
        else:
            text = f"{value:g}" if isinstance(value, float) else str(value)
        out.append((f.name, text))
    return out
