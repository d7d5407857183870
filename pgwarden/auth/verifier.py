"""TokenVerifier: turns the password a client sends into a verified Identity, or refuses it."""

from __future__ import annotations

import math
import time
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from ._jwt import (
    ParsedToken,
    algorithms_for_key,
    check_audience,
    numeric_date,
    parse_groups,
    parse_token,
    quote,
    verify_signature,
)
from .identity import (
    INVALID_AUTHORIZATION_SPECIFICATION,
    AuthError,
    Identity,
    format_duration,
    format_timestamp,
)
from .local_issuer import LocalIssuer
from .oidc import OidcIssuer, OidcIssuerConfig, OidcKeyFetchError, normalize_issuer

__all__ = ["TokenVerifier"]

LOCAL_GROUPS_CLAIM = "groups"


class TokenVerifier:
    """Verifies tokens from the local issuer and any number of trusted OIDC issuers.

    The issuer is chosen by the token's (unverified) ``iss``; everything else is checked against
    that issuer's keys only, so a token signed by one issuer can never pass as another's.
    """

    def __init__(
        self,
        *,
        local_issuer: LocalIssuer | None,
        oidc: Sequence[OidcIssuerConfig],
        max_token_ttl: float = 12 * 3600,
        leeway: float = 30,
        clock: Callable[[], float] = time.time,
        jwks_min_refresh_interval: float = 30.0,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not math.isfinite(max_token_ttl) or max_token_ttl <= 0:
            raise ValueError("max_token_ttl must be a positive number of seconds")
        if not math.isfinite(leeway) or leeway < 0:
            raise ValueError("leeway must be a non-negative number of seconds")
        self._local = local_issuer
        self._max_ttl = float(max_token_ttl)
        self._leeway = float(leeway)
        self._clock = clock
        self._oidc: dict[str, OidcIssuer] = {}
        for config in oidc:
            key = normalize_issuer(config.issuer)
            if key in self._oidc:
                raise ValueError(f"oidc issuer {config.issuer!r} is configured twice")
            if key == LocalIssuer.ISSUER:  # pragma: no cover - OidcIssuerConfig requires a URL
                raise ValueError("an oidc issuer cannot be named like the local issuer")
            self._oidc[key] = OidcIssuer(
                config,
                clock=clock,
                min_refresh_interval=jwks_min_refresh_interval,
                transport=http_transport,
            )

    @property
    def max_token_ttl(self) -> float:
        return self._max_ttl

    @property
    def oidc_issuers(self) -> Mapping[str, OidcIssuer]:
        return types.MappingProxyType(self._oidc)

    async def verify(self, token: str, *, user: str) -> Identity:
        """Verify ``token`` as the password of database user ``user``. Raises AuthError."""
        identity = await self.identify(token)
        if identity.subject != user:
            raise AuthError(
                f"token subject {quote(identity.subject)} does not match user {quote(user)}",
                INVALID_AUTHORIZATION_SPECIFICATION,
            )
        return identity

    async def identify(self, token: str) -> Identity:
        """Verify ``token`` without a user to match (HTTP API bearer tokens). Raises AuthError."""
        parsed = parse_token(token)
        iss = parsed.claims.get("iss")
        if iss is None:
            raise AuthError("token has no issuer (iss)")
        if not isinstance(iss, str):
            raise AuthError("token issuer (iss) is not a string")

        groups_claim: str
        if iss == LocalIssuer.ISSUER and self._local is not None:
            claims = self._verify_local(parsed, self._local)
            issuer = LocalIssuer.ISSUER
            groups_claim = LOCAL_GROUPS_CLAIM
        elif (oidc := self._oidc.get(normalize_issuer(iss))) is not None:
            claims = await oidc.verify(parsed)
            issuer = oidc.config.issuer
            groups_claim = oidc.config.groups_claim
        else:
            raise AuthError(f"token issuer {quote(iss)} is not trusted")

        expires_at, issued_at = self._check_times(claims)

        sub = claims.get("sub")
        if sub is None:
            raise AuthError("token has no subject (sub)")
        if not isinstance(sub, str) or not sub:
            raise AuthError("token subject (sub) is not a non-empty string")
        jti = claims.get("jti")
        return Identity(
            subject=sub,
            groups=parse_groups(claims, groups_claim),
            issuer=issuer,
            expires_at=expires_at,
            issued_at=issued_at,
            token_id=jti if isinstance(jti, str) else None,
            claims=types.MappingProxyType(claims),
        )

    def _verify_local(self, parsed: ParsedToken, local: LocalIssuer) -> dict[str, Any]:
        kid = parsed.kid
        if kid is not None and kid != local.kid:
            raise AuthError(
                f"token signed by an unknown key (kid {quote(kid)}) of issuer "
                f"{quote(LocalIssuer.ISSUER)}"
            )
        verify_signature(parsed, local.public_key, algorithms_for_key(local.public_key))
        check_audience(parsed.claims, LocalIssuer.AUDIENCE)
        return dict(parsed.claims)

    def _check_times(self, claims: Mapping[str, Any]) -> tuple[float, float | None]:
        now = self._clock()
        exp = numeric_date(claims, "exp")
        nbf = numeric_date(claims, "nbf")
        iat = numeric_date(claims, "iat")
        if exp is None:
            raise AuthError("token has no expiry (exp)")
        if exp <= now - self._leeway:
            raise AuthError(f"token expired at {format_timestamp(exp)}")
        if nbf is not None and nbf > now + self._leeway:
            raise AuthError(f"token not valid before {format_timestamp(nbf)}")
        if iat is not None and iat > now + self._leeway:
            raise AuthError(f"token issued in the future (iat {format_timestamp(iat)})")
        start = iat if iat is not None else nbf if nbf is not None else now
        lifetime = exp - start
        if lifetime > self._max_ttl:
            raise AuthError(
                f"token lifetime {format_duration(lifetime)} exceeds max_token_ttl "
                f"{format_duration(self._max_ttl)}"
            )
        return exp, iat

    async def prefetch_keys(self) -> dict[str, str | None]:
        """Fetch every OIDC issuer's keys now (e.g. at start-up, to log problems early).

        Returns issuer -> None when fine, or the error text. Never raises for fetch failures;
        tokens from an issuer whose keys can't be fetched are refused at verify time anyway.
        """
        results: dict[str, str | None] = {}
        for issuer in self._oidc.values():
            try:
                await issuer.refresh()
                results[issuer.issuer] = None
            except OidcKeyFetchError as exc:
                results[issuer.issuer] = str(exc)
        return results

    async def aclose(self) -> None:
        for issuer in self._oidc.values():
            await issuer.aclose()
