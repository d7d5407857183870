"""Trusted OIDC issuers: discovery, JWKS caching and signature checks for their tokens."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from ._jwt import (
    ASYMMETRIC_ALGORITHMS,
    ParsedToken,
    PublicKey,
    algorithms_for_key,
    check_audience,
    parse_token,
    quote,
    verify_signature,
)
from .identity import INVALID_AUTHORIZATION_SPECIFICATION, AuthError

__all__ = ["OidcIssuer", "OidcIssuerConfig", "OidcKeyFetchError"]

_log = logging.getLogger(__name__)

DISCOVERY_PATH = "/.well-known/openid-configuration"
MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_JWKS_KEYS = 100


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_fetch_url(url: str, what: str) -> None:
    """https only, except plain http to a loopback host (tests, local IdPs). ValueError if not."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise ValueError(f"{what} {url!r} is not a valid URL") from None
    if not host:
        raise ValueError(f"{what} {url!r} is not an absolute URL")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and is_loopback_host(host):
        return
    raise ValueError(f"{what} {url!r} must use https (plain http is only allowed for loopback)")


def normalize_issuer(issuer: str) -> str:
    return issuer.rstrip("/")


@dataclass(frozen=True)
class OidcIssuerConfig:
    """One trusted OIDC issuer (the ``identity.oidc`` entries of the configuration)."""

    issuer: str
    audience: str | None = None
    groups_claim: str = "groups"

    def __post_init__(self) -> None:
        if not isinstance(self.issuer, str) or not self.issuer:
            raise ValueError("oidc issuer must be a non-empty URL")
        check_fetch_url(self.issuer, "oidc issuer")
        parts = urlsplit(self.issuer)
        if parts.query or parts.fragment:
            raise ValueError(f"oidc issuer {self.issuer!r} may not have a query or fragment")
        if self.audience is not None and (not isinstance(self.audience, str) or not self.audience):
            raise ValueError("oidc audience must be a non-empty string when set")
        if not isinstance(self.groups_claim, str) or not self.groups_claim:
            raise ValueError("oidc groups_claim must be a non-empty string")

    @property
    def discovery_url(self) -> str:
        return normalize_issuer(self.issuer) + DISCOVERY_PATH


class OidcKeyFetchError(Exception):
    """Discovery or JWKS could not be fetched or made no sense."""


@dataclass(frozen=True, slots=True)
class JwksKey:
    kid: str | None
    key: PublicKey
    algorithms: frozenset[str]


def parse_jwks(document: Any) -> list[JwksKey]:
    """The usable signature keys of a JWKS document. Symmetric and encryption keys are skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise OidcKeyFetchError("the JWKS document has no 'keys' list")
    keys: list[JwksKey] = []
    for jwk in document["keys"][:MAX_JWKS_KEYS]:
        if not isinstance(jwk, dict):
            continue
        if jwk.get("use", "sig") != "sig":
            continue
        key_ops = jwk.get("key_ops")
        if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
            continue
        if jwk.get("kty") not in ("RSA", "EC", "OKP"):  # never "oct": no shared secrets
            continue
        jwk_alg = jwk.get("alg")
        if jwk_alg is not None and jwk_alg not in ASYMMETRIC_ALGORITHMS:
            continue
        public = {k: v for k, v in jwk.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
        try:
            parsed: Any = jwt.PyJWK(public).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            _log.warning("skipping unusable JWKS key %r: %s", jwk.get("kid"), exc)
            continue
        if not isinstance(parsed, PublicKey):
            continue
        allowed = algorithms_for_key(parsed, jwk_alg)
        if not allowed:
            continue
        kid = jwk.get("kid")
        keys.append(
            JwksKey(kid=kid if isinstance(kid, str) else None, key=parsed, algorithms=allowed)
        )
    return keys


class OidcIssuer:
    """Verifies token signatures for one trusted issuer, with its keys fetched and cached.

    Keys come from discovery (``issuer + /.well-known/openid-configuration``) then ``jwks_uri``.
    They are refetched when older than ``max_key_age``, and when a token names an unknown key
    (at most once per ``min_refresh_interval``). If the issuer cannot be reached, keys younger
    than ``max_stale_age`` are still used; without keys every token is refused (fail closed).
    """

    def __init__(
        self,
        config: OidcIssuerConfig,
        *,
        clock: Callable[[], float] = time.time,
        min_refresh_interval: float = 30.0,
        max_key_age: float = 3600.0,
        max_stale_age: float = 24 * 3600.0,
        failure_backoff: float = 5.0,
        timeout: float = 3.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._min_refresh_interval = min_refresh_interval
        self._max_key_age = max_key_age
        self._max_stale_age = max_stale_age
        self._failure_backoff = failure_backoff
        self._timeout = timeout
        self._transport = transport
        self._keys: list[JwksKey] | None = None
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last fetch attempt, successful or not
        self._last_error: str | None = None
        self._generation = 0
        self._lock = asyncio.Lock()
        self.fetch_count = 0  # completed fetch attempts, for tests and metrics

    @property
    def issuer(self) -> str:
        return self.config.issuer

    def matches(self, iss: str) -> bool:
        return normalize_issuer(iss) == normalize_issuer(self.config.issuer)

    async def verify(self, token: str | ParsedToken) -> dict[str, Any]:
        """Check signature, issuer and (if configured) audience; return the verified claims.

        Expiry, lifetime and subject are checked by TokenVerifier, which calls this.
        """
        parsed = token if isinstance(token, ParsedToken) else parse_token(token)
        iss = parsed.claims.get("iss")
        if not isinstance(iss, str) or not self.matches(iss):
            raise AuthError(f"token issuer {quote(iss)} is not {quote(self.config.issuer)}")

        keys, generation = await self._current_keys()
        if not self._check(parsed, keys):
            if await self._refresh_after_miss(generation):
                keys, _ = await self._current_keys()
                if self._check(parsed, keys):
                    return self._verified(parsed)
            raise self._miss_error(parsed, keys)
        return self._verified(parsed)

    def _verified(self, parsed: ParsedToken) -> dict[str, Any]:
        if self.config.audience is not None:
            check_audience(parsed.claims, self.config.audience)
        return dict(parsed.claims)

    def _check(self, parsed: ParsedToken, keys: list[JwksKey]) -> bool:
        """True: verified. False: no key of ours is known for it (a refresh might help).

        Raises AuthError when a known key says the token is bad.
        """
        kid = parsed.kid
        if kid is not None:
            candidates = [k for k in keys if k.kid == kid] or [k for k in keys if k.kid is None]
            if not candidates:
                return False
            usable = [k for k in candidates if parsed.alg in k.algorithms]
            if not usable:
                # Known key, wrong algorithm for it: let verify_signature say so.
                verify_signature(parsed, candidates[0].key, candidates[0].algorithms)
            error: AuthError | None = None
            for key in usable:
                try:
                    verify_signature(parsed, key.key, key.algorithms)
                    return True
                except AuthError as exc:
                    error = exc
            assert error is not None
            raise error
        # No kid: any of the issuer's keys that allows the token's algorithm may have signed it.
        for key in keys:
            if parsed.alg in key.algorithms:
                try:
                    verify_signature(parsed, key.key, key.algorithms)
                    return True
                except AuthError:
                    continue
        return False

    def _miss_error(self, parsed: ParsedToken, keys: list[JwksKey]) -> AuthError:
        if parsed.kid is not None:
            return AuthError(
                f"token signed by an unknown key (kid {quote(parsed.kid)}) "
                f"of issuer {quote(self.config.issuer)}"
            )
        if any(parsed.alg in k.algorithms for k in keys):
            return AuthError("token signature invalid")
        return AuthError(
            f"token algorithm {quote(parsed.alg)} matches no signing key of issuer "
            f"{quote(self.config.issuer)}"
        )

    def _fetch_failed(self) -> AuthError:
        return AuthError(
            f"the signing keys of token issuer {quote(self.config.issuer)} could not be fetched: "
            f"{self._last_error}",
            INVALID_AUTHORIZATION_SPECIFICATION,
        )

    async def _current_keys(self) -> tuple[list[JwksKey], int]:
        if self._fresh():
            assert self._keys is not None
            return self._keys, self._generation
        async with self._lock:
            if self._fresh():
                assert self._keys is not None
                return self._keys, self._generation
            now = self._clock()
            in_backoff = (
                self._last_error is not None
                and self._attempted_at is not None
                and now - self._attempted_at < self._failure_backoff
            )
            if not in_backoff:
                try:
                    await self._fetch()
                    assert self._keys is not None
                    return self._keys, self._generation
                except OidcKeyFetchError:
                    pass
            if (
                self._keys is not None
                and self._fetched_at is not None
                and (now - self._fetched_at < self._max_stale_age)
            ):
                _log.warning(
                    "using cached keys of %s: refresh failed: %s",
                    self.config.issuer,
                    self._last_error,
                )
                return self._keys, self._generation
            raise self._fetch_failed()

    def _fresh(self) -> bool:
        return (
            self._keys is not None
            and self._fetched_at is not None
            and self._clock() - self._fetched_at < self._max_key_age
        )

    async def _refresh_after_miss(self, seen_generation: int) -> bool:
        """Refetch keys for a token naming a key we don't know; rate-limited. True if refetched."""
        async with self._lock:
            if self._generation != seen_generation:
                return True  # someone else refreshed while we waited
            now = self._clock()
            if self._attempted_at is not None and now - self._attempted_at < (
                self._min_refresh_interval
            ):
                return False
            try:
                await self._fetch()
            except OidcKeyFetchError:
                raise self._fetch_failed() from None
            return True

    async def refresh(self) -> None:
        """Fetch discovery and JWKS now (e.g. at start-up). Raises OidcKeyFetchError."""
        async with self._lock:
            await self._fetch()

    async def _fetch(self) -> None:
        self._attempted_at = self._clock()
        try:
            keys = await self._download()
        except OidcKeyFetchError as exc:
            self._last_error = str(exc)
            _log.warning("fetching keys of %s failed: %s", self.config.issuer, exc)
            raise
        finally:
            self.fetch_count += 1
        self._keys = keys
        self._fetched_at = self._clock()
        self._last_error = None
        self._generation += 1
        _log.info("fetched %d signing keys of %s", len(keys), self.config.issuer)

    async def _download(self) -> list[JwksKey]:
        timeout = httpx.Timeout(self._timeout)
        async with httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            transport=self._transport,
            headers={"Accept": "application/json"},
        ) as client:
            discovery_url = self.config.discovery_url
            discovery = await self._get_json(client, discovery_url)
            if not isinstance(discovery, dict):
                raise OidcKeyFetchError(f"{discovery_url} is not a JSON object")
            doc_issuer = discovery.get("issuer")
            if not isinstance(doc_issuer, str) or not self.matches(doc_issuer):
                raise OidcKeyFetchError(
                    f"{discovery_url} names issuer {quote(doc_issuer)}, not "
                    f"{quote(self.config.issuer)}"
                )
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise OidcKeyFetchError(f"{discovery_url} has no jwks_uri")
            try:
                check_fetch_url(jwks_uri, "jwks_uri")
            except ValueError as exc:
                raise OidcKeyFetchError(str(exc)) from None
            keys = parse_jwks(await self._get_json(client, jwks_uri))
            if not keys:
                raise OidcKeyFetchError(f"{jwks_uri} has no usable signature keys")
            return keys

    async def _get_json(self, client: httpx.AsyncClient, url: str) -> Any:
        try:
            async with client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise OidcKeyFetchError(f"HTTP {response.status_code} from {url}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise OidcKeyFetchError(f"{url} is larger than {MAX_DOCUMENT_BYTES} bytes")
        except httpx.TimeoutException:
            raise OidcKeyFetchError(f"timed out fetching {url}") from None
        except httpx.HTTPError as exc:
            raise OidcKeyFetchError(f"{type(exc).__name__} fetching {url}: {exc}") from None
        try:
            return json.loads(bytes(body))
        except (ValueError, RecursionError):
            raise OidcKeyFetchError(f"{url} did not return valid JSON") from None

    def status(self) -> Mapping[str, Any]:
        """For health checks: how many keys are cached, since when, and the last error."""
        return {
            "issuer": self.config.issuer,
            "keys": len(self._keys or ()),
            "fetched_at": self._fetched_at,
            "last_error": self._last_error,
        }

    async def aclose(self) -> None:
        """Nothing is held open between fetches; kept for symmetry with TokenVerifier."""
