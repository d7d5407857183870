"""Signing people in to the web console, and keeping them signed in.

OpenID Connect, authorization code flow with PKCE (RFC 7636, ``S256``):

1. ``LoginTransaction.new()`` makes a fresh ``state``, ``nonce`` and PKCE ``code_verifier``;
   they travel in a short-lived signed cookie (``LOGIN_COOKIE``), never in the URL, so only
   the browser that started a sign-in can finish it.
2. ``OidcLogin.authorization_url(tx)`` sends the browser to the provider's authorization
   endpoint (from discovery) with the state, nonce and ``code_challenge``.
3. ``OidcLogin.finish(tx, query)`` on the callback: refuses a provider error, a missing or
   different ``state`` (compared in constant time) and a foreign ``iss`` (RFC 9207), then
   exchanges the code at the token endpoint together with the ``code_verifier`` (a code
   stolen in transit is useless without it), and verifies the ID token with the gateway's own
   ``TokenVerifier`` (signature from the issuer's JWKS, issuer, audience = the client id,
   expiry, not-before, lifetime at most ``identity.max_token_ttl``), then its ``nonce`` and,
   for a multi-audience token, ``azp``.

The signed-in person is a ``ConsoleUser`` kept in a signed cookie (``SESSION_COOKIE``:
HttpOnly, SameSite=Lax, Secure over https) that expires with the ID token. Its HMAC key is
generated once into ``data_dir/console-session.key``. The cookie also carries the CSRF token
that every console form posts back. Only the groups that give a console role are kept, so the
cookie stays small whatever the provider puts in its groups claim.

Why authlib only for the protocol pieces (PKCE challenge, authorization URL, token request
body): its full client would bring a second JWKS cache and a second set of rules for what a
valid token is; here the console trusts exactly what the wire protocol trusts.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from itsdangerous import BadSignature, URLSafeTimedSerializer

from pgwarden.auth.identity import AuthError, Identity
from pgwarden.auth.oidc import (
    DISCOVERY_PATH,
    OidcIssuerConfig,
    check_fetch_url,
    normalize_issuer,
)
from pgwarden.auth.verifier import TokenVerifier
from pgwarden.config import Config

__all__ = [
    "LOGIN_COOKIE",
    "LOGIN_TTL",
    "SECRET_FILE",
    "SESSION_COOKIE",
    "ConsoleUser",
    "CookieCodec",
    "LoginTransaction",
    "OidcClient",
    "OidcLogin",
    "SignInError",
    "console_groups",
    "load_or_create_secret",
    "safe_next",
]

SESSION_COOKIE = "pgwarden_console"
LOGIN_COOKIE = "pgwarden_console_login"
LOGIN_CSRF_COOKIE = "pgwarden_console_csrf"
LOGIN_TTL = 600  # seconds a sign-in may take at the provider
SECRET_FILE = "console-session.key"  # noqa: S105 - a file name, not a secret
METADATA_MAX_AGE = 3600.0
MAX_RESPONSE_BYTES = 1024 * 1024
HTTP_TIMEOUT = 10.0
HOME = "/console"


class SignInError(Exception):
    """A sign-in attempt was refused; ``message`` is fit to show the person (never a secret)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# --------------------------------------------------------------------------------------------
# the cookie key


def load_or_create_secret(data_dir: Path) -> bytes:
    """The console's cookie-signing key: ``data_dir/console-session.key``, made once (32
    random bytes, mode 0600). Made under a temporary name and linked into place, so two
    processes starting together agree on one key and never read a half-written file."""
    data_dir = Path(data_dir)
    path = data_dir / SECRET_FILE
    with contextlib.suppress(FileNotFoundError):
        return _read_secret(path)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = data_dir / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_hex(32).encode("ascii") + b"\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process linked its key first
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    key = path.read_bytes().strip()
    if len(key) < 32:
        raise ValueError(f"{path} holds no usable console key (delete it to make a new one)")
    return key


# --------------------------------------------------------------------------------------------
# who is signed in


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """A signed-in person: identity from a verified token, until ``expires_at``."""

    subject: str
    groups: tuple[str, ...]
    issuer: str
    expires_at: float
    csrf: str  # posted back by every console form
    via: Literal["oidc", "token"]

    def identity(self) -> Identity:
        """The identity the console acts as (approval decisions)."""
        return Identity(
            subject=self.subject,
            groups=self.groups,
            issuer=self.issuer,
            expires_at=self.expires_at,
            issued_at=None,
            token_id=None,
            claims={},
        )

    def csrf_ok(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.csrf.encode())


def console_groups(groups: Sequence[str], config: Config) -> tuple[str, ...]:
    """The groups that give a console role (auditor, admin, approver): all the cookie keeps."""
    wanted = set(config.api.auditors) | set(config.api.admins) | set(config.approvals.approvers)
    return tuple(g for g in groups if g in wanted)


def user_from_identity(
    identity: Identity, config: Config, via: Literal["oidc", "token"]
) -> ConsoleUser:
    return ConsoleUser(
        subject=identity.subject,
        groups=console_groups(identity.groups, config),
        issuer=identity.issuer,
        expires_at=identity.expires_at,
        csrf=secrets.token_urlsafe(24),
        via=via,
    )


# --------------------------------------------------------------------------------------------
# a sign-in in progress


@dataclass(frozen=True, slots=True)
class LoginTransaction:
    """What the callback must match: ``state`` (this browser started it), ``nonce`` (the ID
    token was minted for it) and ``verifier`` (the PKCE secret behind the code challenge)."""

    state: str
    nonce: str
    verifier: str
    redirect_uri: str
    next: str = HOME

    @classmethod
    def new(cls, redirect_uri: str, next_url: str = HOME) -> LoginTransaction:
        return cls(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            # 64 random bytes -> 86 characters of [A-Za-z0-9_-]: within RFC 7636's 43..128
            verifier=secrets.token_urlsafe(64),
            redirect_uri=redirect_uri,
            next=safe_next(next_url),
        )

    @property
    def code_challenge(self) -> str:
        return str(create_s256_code_challenge(self.verifier))


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path inside the console, never another site (an open
    redirect would let a link to our sign-in page forward people anywhere)."""
    if not value or not value.startswith(HOME):
        return HOME
    if "\\" in value or any(ord(c) < 0x20 for c in value):
        return HOME
    parts = urlsplit(value)
    if (
        parts.scheme
        or parts.netloc
        or not (parts.path == HOME or parts.path.startswith(HOME + "/"))
    ):
        return HOME
    return value


# --------------------------------------------------------------------------------------------
# cookies


class CookieCodec:
    """Signs and reads the console's cookies (itsdangerous, HMAC-SHA1 over a per-purpose
    salt, timestamped). A cookie that was changed, is too old, or does not parse reads as
    None: the person is simply not signed in."""

    def __init__(self, secret: bytes, *, clock: Callable[[], float] = time.time) -> None:
        self._session = URLSafeTimedSerializer(secret, salt="pgwarden-console-session")
        self._login = URLSafeTimedSerializer(secret, salt="pgwarden-console-login")
        self._csrf = URLSafeTimedSerializer(secret, salt="pgwarden-console-login-csrf")
        self._clock = clock

    def dump_user(self, user: ConsoleUser) -> str:
        return str(
            self._session.dumps(
                {
                    "sub": user.subject,
                    "groups": list(user.groups),
                    "iss": user.issuer,
                    "exp": user.expires_at,
                    "csrf": user.csrf,
                    "via": user.via,
                }
            )
        )

    def load_user(self, value: str | None) -> ConsoleUser | None:
        if not value:
            return None
        try:
            doc = self._session.loads(value)
        except BadSignature:
            return None
        try:
            user = ConsoleUser(
                subject=_str(doc["sub"]),
                groups=tuple(_str(g) for g in doc["groups"]),
                issuer=_str(doc["iss"]),
                expires_at=float(doc["exp"]),
                csrf=_str(doc["csrf"]),
                via="oidc" if doc["via"] == "oidc" else "token",
            )
        except (KeyError, TypeError, ValueError):
            return None
        if user.expires_at <= self._clock():
            return None
        return user

    def dump_login(self, tx: LoginTransaction) -> str:
        return str(
            self._login.dumps(
                {
                    "state": tx.state,
                    "nonce": tx.nonce,
                    "verifier": tx.verifier,
                    "redirect_uri": tx.redirect_uri,
                    "next": tx.next,
                }
            )
        )

    def load_login(self, value: str | None) -> LoginTransaction | None:
        if not value:
            return None
        try:
            doc = self._login.loads(value, max_age=LOGIN_TTL)
        except BadSignature:  # also SignatureExpired
            return None
        try:
            return LoginTransaction(
                state=_str(doc["state"]),
                nonce=_str(doc["nonce"]),
                verifier=_str(doc["verifier"]),
                redirect_uri=_str(doc["redirect_uri"]),
                next=safe_next(_str(doc["next"])),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def dump_login_csrf(self, value: str) -> str:
        return str(self._csrf.dumps(value))

    def load_login_csrf(self, value: str | None) -> str | None:
        if not value:
            return None
        try:
            doc = self._csrf.loads(value, max_age=LOGIN_TTL * 6)
        except BadSignature:
            return None
        return doc if isinstance(doc, str) else None


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


# --------------------------------------------------------------------------------------------
# the provider


@dataclass(frozen=True, slots=True)
class OidcClient:
    """The console as an OAuth client of one issuer (from ``identity.oidc``)."""

    issuer: str
    client_id: str
    client_secret: str | None
    scopes: tuple[str, ...]
    groups_claim: str

    @classmethod
    def from_config(cls, config: Config) -> OidcClient | None:
        """The first ``identity.oidc`` entry with a ``client_id``; when none has one, the first
        entry with its ``audience`` as the client id; None when that leaves no client id."""
        entries = config.identity.oidc
        entry = next((o for o in entries if o.client_id), entries[0] if entries else None)
        if entry is None:
            return None
        client_id = entry.client_id or entry.audience
        if not client_id:
            return None
        return cls(
            issuer=entry.issuer,
            client_id=client_id,
            client_secret=entry.client_secret,
            scopes=tuple(entry.scopes),
            groups_claim=entry.groups_claim,
        )


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    authorization_endpoint: str
    token_endpoint: str
    end_session_endpoint: str | None = None


class OidcLogin:
    """The authorization-code-with-PKCE client of one provider (see the module docstring)."""

    def __init__(
        self,
        client: OidcClient,
        *,
        max_token_ttl: float,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self._transport = transport
        self._clock = clock
        # The same verifier class as the wire protocol, with the client id as the audience:
        # an ID token is minted for this client, an access token for the API's audience.
        self._verifier = TokenVerifier(
            local_issuer=None,
            oidc=[
                OidcIssuerConfig(
                    issuer=client.issuer,
                    audience=client.client_id,
                    groups_claim=client.groups_claim,
                )
            ],
            max_token_ttl=max_token_ttl,
            clock=clock,
            http_transport=transport,
        )
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = 0.0

    @property
    def issuer_host(self) -> str:
        return urlsplit(self.client.issuer).netloc or self.client.issuer

    def _http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=HTTP_TIMEOUT,
            follow_redirects=False,
            transport=self._transport,
            headers={"Accept": "application/json"},
        )

    async def metadata(self) -> ProviderMetadata:
        """The provider's endpoints from its discovery document (cached for an hour)."""
        now = self._clock()
        if self._metadata is not None and now - self._metadata_at < METADATA_MAX_AGE:
            return self._metadata
        url = normalize_issuer(self.client.issuer) + DISCOVERY_PATH
        async with self._http() as http:
            doc = await _get_json(http, url)
        if not isinstance(doc, dict):
            raise SignInError(f"{url} is not a JSON object", 502)
        issuer = doc.get("issuer")
        if not isinstance(issuer, str) or normalize_issuer(issuer) != normalize_issuer(
            self.client.issuer
        ):
            raise SignInError(f"{url} names another issuer ({issuer!r})", 502)
        endpoints: dict[str, str] = {}
        for key in ("authorization_endpoint", "token_endpoint"):
            value = doc.get(key)
            if not isinstance(value, str):
                raise SignInError(f"{url} has no {key}", 502)
            try:
                check_fetch_url(value, key)
            except ValueError as exc:
                raise SignInError(str(exc), 502) from None
            endpoints[key] = value
        end_session = doc.get("end_session_endpoint")
        meta = ProviderMetadata(
            authorization_endpoint=endpoints["authorization_endpoint"],
            token_endpoint=endpoints["token_endpoint"],
            end_session_endpoint=end_session if isinstance(end_session, str) else None,
        )
        self._metadata, self._metadata_at = meta, now
        return meta

    async def authorization_url(self, tx: LoginTransaction) -> str:
        meta = await self.metadata()
        return str(
            prepare_grant_uri(
                meta.authorization_endpoint,
                client_id=self.client.client_id,
                response_type="code",
                redirect_uri=tx.redirect_uri,
                scope=list(self.client.scopes),
                state=tx.state,
                nonce=tx.nonce,
                code_challenge=tx.code_challenge,
                code_challenge_method="S256",
            )
        )

    async def finish(self, tx: LoginTransaction, query: Mapping[str, str]) -> Identity:
        """Check the callback's query against the sign-in ``tx``, redeem the code and return
        the verified identity. Raises ``SignInError``."""
        error = query.get("error")
        if error:
            detail = query.get("error_description") or ""
            raise SignInError(
                f"the identity provider refused the sign-in: {error}"
                + (f" ({detail})" if detail else ""),
                400,
            )
        state = query.get("state")
        if not state or not hmac.compare_digest(state.encode(), tx.state.encode()):
            raise SignInError(
                "this sign-in does not match the one this browser started (state mismatch); "
                "start again"
            )
        iss = query.get("iss")  # RFC 9207: present when the provider supports it
        if iss is not None and normalize_issuer(iss) != normalize_issuer(self.client.issuer):
            raise SignInError(f"the answer came from another issuer ({iss!r})")
        code = query.get("code")
        if not code:
            raise SignInError("the identity provider sent no authorization code")
        tokens = await self._redeem(code, tx)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise SignInError("the identity provider returned no ID token", 502)
        try:
            identity = await self._verifier.identify(id_token)
        except AuthError as exc:
            raise SignInError(f"the ID token was refused: {exc.message}") from None
        nonce = identity.claims.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode(), tx.nonce.encode()):
            raise SignInError("the ID token was not minted for this sign-in (nonce mismatch)")
        aud = identity.claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1:
            if identity.claims.get("azp") != self.client.client_id:
                raise SignInError("the ID token was issued to another client (azp)")
        return identity

    async def _redeem(self, code: str, tx: LoginTransaction) -> Mapping[str, Any]:
        meta = await self.metadata()
        body: dict[str, str] = {"code_verifier": tx.verifier}
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if self.client.client_secret is not None:
            # client_secret_basic, each part form-encoded first (RFC 6749 section 2.3.1)
            pair = (
                f"{quote(self.client.client_id, safe='')}:"
                f"{quote(self.client.client_secret, safe='')}"
            )
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            body["client_id"] = self.client.client_id  # a public client: PKCE is its proof
        content = str(
            prepare_token_request(
                "authorization_code", code=code, redirect_uri=tx.redirect_uri, **body
            )
        )
        async with self._http() as http:
            try:
                response = await http.post(meta.token_endpoint, content=content, headers=headers)
            except httpx.HTTPError as exc:
                raise SignInError(
                    f"the token endpoint could not be reached: {type(exc).__name__}", 502
                ) from None
        if len(response.content) > MAX_RESPONSE_BYTES:
            raise SignInError("the token endpoint's answer is too large", 502)
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if response.status_code != 200:
            what = ""
            if isinstance(doc, dict) and isinstance(doc.get("error"), str):
                what = f": {doc['error']}"
                if isinstance(doc.get("error_description"), str):
                    what += f" ({doc['error_description']})"
            raise SignInError(f"the identity provider refused the code{what}", 400)
        if not isinstance(doc, dict):
            raise SignInError("the token endpoint did not answer with a JSON object", 502)
        return doc

    async def aclose(self) -> None:
        await self._verifier.aclose()


async def _get_json(http: httpx.AsyncClient, url: str) -> Any:
    try:
        check_fetch_url(url, "discovery URL")
    except ValueError as exc:
        raise SignInError(str(exc), 502) from None
    try:
        response = await http.get(url)
    except httpx.HTTPError as exc:
        raise SignInError(
            f"the identity provider could not be reached ({type(exc).__name__} on {url})", 502
        ) from None
    if response.status_code != 200:
        raise SignInError(f"HTTP {response.status_code} from {url}", 502)
    if len(response.content) > MAX_RESPONSE_BYTES:
        raise SignInError(f"{url} is too large", 502)
    try:
        return response.json()
    except ValueError:
        raise SignInError(f"{url} did not return JSON", 502) from None
