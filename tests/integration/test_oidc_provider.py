"""TokenVerifier against a real OIDC provider (oidc-provider-mock over HTTP on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pgwarden.auth import AuthError, Identity, LocalIssuer, OidcIssuerConfig, TokenVerifier

if TYPE_CHECKING:
    from collections.abc import Callable

    from oidc_fixture import OidcProvider

# Registers the oidc_provider, isolated_oidc_provider and oidc_provider_factory fixtures.
pytest_plugins = ["oidc_fixture"]


class Clock:
    """Real time, plus an offset the test can move forward (to get past rate limits)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def make_verifier(
    *configs: OidcIssuerConfig, clock: Clock | None = None, local: LocalIssuer | None = None
) -> TokenVerifier:
    return TokenVerifier(local_issuer=local, oidc=list(configs), clock=clock or Clock())


def verify(verifier: TokenVerifier, token: str, user: str) -> Identity:
    return asyncio.run(verifier.verify(token, user=user))


def refused(verifier: TokenVerifier, token: str, user: str) -> AuthError:
    with pytest.raises(AuthError) as info:
        verify(verifier, token, user)
    assert token not in info.value.message
    return info.value


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_provider_token_verifies(oidc_provider: OidcProvider) -> None:
    token = oidc_provider.id_token("alice", groups=["dba", "dev"])
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"  # what the provider really signs with
    verifier = make_verifier(oidc_provider.issuer_config())
    identity = verify(verifier, token, "alice")
    assert identity.subject == "alice"
    assert identity.groups == ("dba", "dev")
    assert identity.issuer == oidc_provider.issuer
    assert identity.issuer.startswith("http://127.0.0.1:")
    assert identity.claims["aud"] == ["pgwarden"]
    assert identity.expires_at > time.time()
    assert identity.issued_at is not None and identity.issued_at <= time.time() + 1
    asyncio.run(verifier.aclose())


def test_provider_token_checks(oidc_provider: OidcProvider) -> None:
    verifier = make_verifier(oidc_provider.issuer_config())
    token = oidc_provider.id_token("carol")
    assert verify(verifier, token, "carol").groups == ()
    err = refused(verifier, token, "alice")
    assert err.message == "token subject 'carol' does not match user 'alice'"
    assert err.sqlstate == "28000"

    # Issued to another client: the audience is not pgwarden's.
    other_app = oidc_provider.id_token("carol", client_id="some-other-app")
    err = refused(verifier, other_app, "carol")
    assert err.message == "token audience 'some-other-app' does not include 'pgwarden'"

    # The provider's access token is opaque: it is not something pgwarden can verify.
    access = oidc_provider.login("carol").access_token
    assert refused(verifier, access, "carol").message == "password is not a token (expected a JWT)"

    # Expiry, judged by the verifier's clock (the provider's tokens live one hour).
    late = Clock()
    late.advance(3600 + 31)
    expired = make_verifier(oidc_provider.issuer_config(), clock=late)
    assert refused(expired, token, "carol").message.startswith("token expired at ")

    # A stricter lifetime limit than the provider's one-hour tokens.
    strict = TokenVerifier(
        local_issuer=None, oidc=[oidc_provider.issuer_config()], max_token_ttl=1800
    )
    err = refused(strict, token, "carol")
    assert err.message == "token lifetime 1h exceeds max_token_ttl 30m"


def test_token_from_unconfigured_provider_refused(
    oidc_provider: OidcProvider, oidc_provider_factory: Callable[..., OidcProvider]
) -> None:
    stranger = oidc_provider_factory()
    token = stranger.id_token("alice", groups=["dba"])
    verifier = make_verifier(oidc_provider.issuer_config())
    err = refused(verifier, token, "alice")
    assert err.message == f"token issuer '{stranger.issuer}' is not trusted"
    assert err.sqlstate == "28P01"
    # Nothing was fetched from the stranger on the token's say-so.
    assert stranger.requests_to("/.well-known/openid-configuration") == 0
    assert stranger.requests_to("/jwks") == 0

    # The stranger's key, with the trusted issuer's name on it, fails too.
    forged = jwt.encode(
        {**jwt.decode(token, options={"verify_signature": False}), "iss": oidc_provider.issuer},
        _private_key_of_nobody(),
        algorithm="RS256",
    )
    assert refused(verifier, forged, "alice").message == "token signature invalid"


def _private_key_of_nobody() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_local_and_oidc_side_by_side(oidc_provider: OidcProvider) -> None:
    local = LocalIssuer.generate()
    verifier = make_verifier(oidc_provider.issuer_config(), local=local)
    assert verify(verifier, local.issue("bot-1", ["agents"]), "bot-1").issuer == "pgwarden-local"
    assert verify(verifier, oidc_provider.id_token("dave"), "dave").issuer == oidc_provider.issuer
    # The local key signing a token in the provider's name.
    claims = jwt.decode(oidc_provider.id_token("dave"), options={"verify_signature": False})
    forged = jwt.encode(claims, local._private_key, algorithm="EdDSA", headers={"kid": local.kid})
    err = refused(verifier, forged, "dave")
    assert "unknown key" in err.message
    # The provider's RSA token relabelled as a local one cannot be re-signed: its signature
    # is RS256 and the local key only allows EdDSA.
    h, _, s = oidc_provider.id_token("dave").split(".")
    claims["iss"] = "pgwarden-local"
    claims["aud"] = "pgwarden"
    relabelled = f"{h}.{b64(json.dumps(claims).encode())}.{s}"
    assert "does not match its signing key" in refused(verifier, relabelled, "dave").message


def test_hmac_keyed_with_provider_public_key(oidc_provider: OidcProvider) -> None:
    """Algorithm confusion: HS256 with the provider's published RSA key as the secret."""
    jwk = oidc_provider.jwks()["keys"][0]
    public_key = jwt.algorithms.RSAAlgorithm.from_jwk(jwk)
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = jwt.decode(oidc_provider.id_token("eve"), options={"verify_signature": False})
    verifier = make_verifier(oidc_provider.issuer_config())
    for secret in (public_pem, json.dumps(jwk).encode()):
        header = b64(json.dumps({"alg": "HS256", "kid": jwk["kid"]}).encode())
        signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
        sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        err = refused(verifier, f"{signing_input}.{b64(sig)}", "eve")
        assert "HS256" in err.message and "refused" in err.message


def test_unknown_kid_triggers_one_refresh(oidc_provider: OidcProvider) -> None:
    clock = Clock()
    verifier = make_verifier(oidc_provider.issuer_config(), clock=clock)
    verify(verifier, oidc_provider.id_token("frank"), "frank")
    jwks_before = oidc_provider.requests_to("/jwks")

    claims = jwt.decode(oidc_provider.id_token("frank"), options={"verify_signature": False})
    stranger = jwt.encode(
        claims, _private_key_of_nobody(), algorithm="RS256", headers={"kid": "not-in-jwks"}
    )
    clock.advance(31)
    err = refused(verifier, stranger, "frank")
    assert err.message == (
        f"token signed by an unknown key (kid 'not-in-jwks') of issuer '{oidc_provider.issuer}'"
    )
    assert oidc_provider.requests_to("/jwks") == jwks_before + 1
    # Rate-limited: more unknown kids within 30 s don't reach the provider.
    for _ in range(3):
        refused(verifier, stranger, "frank")
    assert oidc_provider.requests_to("/jwks") == jwks_before + 1
    # Real tokens keep working from the cache meanwhile.
    verify(verifier, oidc_provider.id_token("frank"), "frank")
    assert oidc_provider.requests_to("/jwks") == jwks_before + 1


def test_key_rotation(isolated_oidc_provider: OidcProvider) -> None:
    provider = isolated_oidc_provider
    clock = Clock()
    verifier = make_verifier(provider.issuer_config(), clock=clock)
    old_token = provider.id_token("grace", groups=["dba"])
    assert verify(verifier, old_token, "grace").groups == ("dba",)
    old_kid = provider.jwks()["keys"][0]["kid"]
    assert provider.requests_to("/jwks") == 2  # the verifier's fetch + ours just now

    provider.rotate_keys()
    assert provider.jwks()["keys"][0]["kid"] != old_kid
    new_token = provider.id_token("grace")
    assert "groups" in jwt.decode(new_token, options={"verify_signature": False})  # user kept

    # Within 30 s of the last fetch, the new key can't be picked up yet: refused, no fetch.
    fetches = provider.requests_to("/jwks")
    assert refused(verifier, new_token, "grace").message == "token signature invalid"
    assert provider.requests_to("/jwks") == fetches
    # Later: one refresh, and the new key is used.
    clock.advance(31)
    assert verify(verifier, new_token, "grace").groups == ("dba",)
    assert provider.requests_to("/jwks") == fetches + 1
    # The old key is gone.
    clock.advance(31)
    assert refused(verifier, old_token, "grace").message == "token signature invalid"


def test_provider_down_fails_closed(isolated_oidc_provider: OidcProvider) -> None:
    provider = isolated_oidc_provider
    token = provider.id_token("heidi")
    clock = Clock()
    verifier = make_verifier(provider.issuer_config(), clock=clock)
    provider.down = True
    err = refused(verifier, token, "heidi")
    assert err.sqlstate == "28000"
    assert err.message == (
        f"the signing keys of token issuer '{provider.issuer}' could not be fetched: "
        f"HTTP 503 from {provider.issuer}/.well-known/openid-configuration"
    )
    provider.down = False
    clock.advance(6)  # past the failure backoff
    assert verify(verifier, token, "heidi").subject == "heidi"


def test_provider_gone_fails_closed(oidc_provider_factory: Callable[..., OidcProvider]) -> None:
    provider = oidc_provider_factory()
    token = provider.id_token("ivan")
    config = provider.issuer_config()
    provider.stop()
    err = refused(make_verifier(config), token, "ivan")
    assert err.sqlstate == "28000"
    assert "could not be fetched" in err.message
    assert "ConnectError" in err.message


def test_fixture_login_details(oidc_provider: OidcProvider) -> None:
    tokens = oidc_provider.login("judy", groups=["approvers"], claims={"name": "Judy"})
    claims: dict[str, Any] = jwt.decode(tokens.id_token, options={"verify_signature": False})
    assert claims["sub"] == "judy"
    assert claims["groups"] == ["approvers"]
    assert claims["name"] == "Judy"
    assert claims["iss"] == oidc_provider.issuer
    assert tokens.refresh_token
    assert "." not in tokens.access_token or tokens.access_token.count(".") != 2
