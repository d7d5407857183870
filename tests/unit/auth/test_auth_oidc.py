"""OIDC issuers against an in-process fake IdP (httpx.MockTransport): keys, algorithms, outages."""

from __future__ import annotations

import asyncio
import json
import socket
import warnings
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from pgwarden.auth import AuthError, Identity, LocalIssuer, OidcIssuerConfig, TokenVerifier

ISSUER = "https://idp.example.com"
OTHER = "https://other-idp.example.com"

_RSA_KEYS: list[rsa.RSAPrivateKey] = []


def rsa_key() -> rsa.RSAPrivateKey:
    # Generating RSA keys is slow; tests share a small pool (each test still picks distinct ones).
    if len(_RSA_KEYS) < 4:
        _RSA_KEYS.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return _RSA_KEYS[-1]
    _RSA_KEYS.append(_RSA_KEYS.pop(0))
    return _RSA_KEYS[-1]


def public_jwk(private: Any, kid: str | None, alg: str | None = None) -> dict[str, Any]:
    public = private.public_key()
    algorithms = jwt.algorithms
    if isinstance(public, rsa.RSAPublicKey):
        jwk = algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)
    if kid is not None:
        jwk["kid"] = kid
    if alg is not None:
        jwk["alg"] = alg
    return jwk


class FakeIdP:
    """Discovery + JWKS for one issuer, with switches to break it."""

    def __init__(self, issuer: str = ISSUER) -> None:
        self.issuer = issuer
        self.jwks: list[dict[str, Any]] = []
        self.keys: dict[str, Any] = {}
        self.discovery_status = 200
        self.discovery: dict[str, Any] | None = None  # override
        self.jwks_body: bytes | None = None  # override
        self.raise_exc: Exception | None = None
        self.requests: list[str] = []

    @property
    def jwks_uri(self) -> str:
        return self.issuer.rstrip("/") + "/keys"

    def add_key(self, private: Any = None, kid: str | None = "k1", alg: str | None = None) -> Any:
        private = private if private is not None else rsa_key()
        self.jwks.append(public_jwk(private, kid, alg))
        self.keys[str(kid)] = private
        return private

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.url.path)
        if self.raise_exc is not None:
            raise self.raise_exc
        if request.url.path == "/.well-known/openid-configuration":
            if self.discovery_status != 200:
                return httpx.Response(self.discovery_status, text="nope")
            doc = self.discovery or {"issuer": self.issuer, "jwks_uri": self.jwks_uri}
            return httpx.Response(200, json=doc)
        if request.url.path == "/keys":
            if self.jwks_body is not None:
                return httpx.Response(200, content=self.jwks_body)
            return httpx.Response(200, json={"keys": self.jwks})
        return httpx.Response(404)

    @property
    def fetches(self) -> int:
        return self.requests.count("/keys")


class Router:
    def __init__(self, *idps: FakeIdP) -> None:
        self.idps = {httpx.URL(i.issuer).host: i for i in idps}

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.005)  # let concurrent verifications really overlap
        idp = self.idps.get(request.url.host)
        if idp is None:
            raise httpx.ConnectError("no route to host", request=request)
        return idp.handle(request)


def default_alg(private: Any) -> str:
    if isinstance(private, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}[
            private.curve.name
        ]
    return "EdDSA"


def make_token(
    clock: Any,
    private: Any,
    *,
    kid: str | None = "k1",
    alg: str | None = None,
    iss: str = ISSUER,
    **claims: Any,
) -> str:
    now = int(clock())
    payload: dict[str, Any] = {
        "iss": iss,
        "aud": "pgwarden",
        "sub": "alice",
        "iat": now,
        "exp": now + 3600,
        "groups": ["dev"],
    }
    for name, value in claims.items():
        if value is None:
            payload.pop(name, None)
        else:
            payload[name] = value
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(payload, private, algorithm=alg or default_alg(private), headers=headers)


def make_verifier(
    clock: Any,
    *idps: FakeIdP,
    configs: list[OidcIssuerConfig] | None = None,
    local: LocalIssuer | None = None,
) -> TokenVerifier:
    if configs is None:
        configs = [OidcIssuerConfig(issuer=i.issuer, audience="pgwarden") for i in idps]
    return TokenVerifier(
        local_issuer=local,
        oidc=configs,
        clock=clock,
        http_transport=httpx.MockTransport(Router(*idps)),
    )


def verify(verifier: TokenVerifier, token: str, user: str = "alice") -> Identity:
    return asyncio.run(verifier.verify(token, user=user))


def refused(verifier: TokenVerifier, token: str, user: str = "alice") -> AuthError:
    with pytest.raises(AuthError) as info:
        verify(verifier, token, user)
    assert token not in info.value.message
    signature = token.split(".")[2]
    if signature:
        assert signature[:20] not in info.value.message
    return info.value


@pytest.fixture
def idp() -> FakeIdP:
    return FakeIdP()


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "issuer",
    [
        "https://idp.example.com",
        "https://idp.example.com/realms/x",
        "http://127.0.0.1:8080",
        "http://localhost:9400",
        "http://[::1]:9400",
        "http://127.0.0.2",
    ],
)
def test_issuer_urls_accepted(issuer) -> None:
    assert OidcIssuerConfig(issuer=issuer).discovery_url.endswith(
        "/.well-known/openid-configuration"
    )


@pytest.mark.parametrize(
    "issuer",
    [
        "http://idp.example.com",
        "idp.example.com",
        "ftp://idp.example.com",
        "",
        "https://idp.example.com?x=1",
        "https://idp.example.com#f",
        "http://10.0.0.1",
        "http://localhost.evil.com",
        "pgwarden-local",
    ],
)
def test_issuer_urls_refused(issuer) -> None:
    with pytest.raises(ValueError):
        OidcIssuerConfig(issuer=issuer)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        OidcIssuerConfig(issuer=ISSUER, audience="")
    with pytest.raises(ValueError):
        OidcIssuerConfig(issuer=ISSUER, groups_claim="")
    with pytest.raises(ValueError, match="twice"):
        TokenVerifier(
            local_issuer=None,
            oidc=[OidcIssuerConfig(issuer=ISSUER), OidcIssuerConfig(issuer=ISSUER + "/")],
        )
    cfg = OidcIssuerConfig(issuer=ISSUER + "/")
    assert cfg.discovery_url == ISSUER + "/.well-known/openid-configuration"


# --- verification -------------------------------------------------------------------------------


def test_round_trip(idp, clock) -> None:
    key = idp.add_key()
    verifier = make_verifier(clock, idp)
    identity = verify(verifier, make_token(clock, key, groups=["dba", "dev"], jti="abc"))
    assert identity.subject == "alice"
    assert identity.issuer == ISSUER
    assert identity.groups == ("dba", "dev")
    assert identity.token_id == "abc"
    assert identity.expires_at == int(clock()) + 3600
    assert idp.requests == ["/.well-known/openid-configuration", "/keys"]
    # Cached: the second token needs no fetch.
    verify(verifier, make_token(clock, key))
    assert idp.fetches == 1


@pytest.mark.parametrize(
    ("make_key", "alg"),
    [
        (rsa_key, "RS256"),
        (rsa_key, "RS384"),
        (rsa_key, "RS512"),
        (rsa_key, "PS256"),
        (rsa_key, "PS512"),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "ES256"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "ES384"),
        (ed25519.Ed25519PrivateKey.generate, "EdDSA"),
    ],
)
def test_key_types(idp, clock, make_key, alg) -> None:
    key = idp.add_key(make_key())
    assert verify(make_verifier(clock, idp), make_token(clock, key, alg=alg)).subject == "alice"


def test_custom_groups_claim_and_audience_none(idp, clock) -> None:
    key = idp.add_key()
    configs = [OidcIssuerConfig(issuer=ISSUER, audience=None, groups_claim="roles")]
    verifier = make_verifier(clock, idp, configs=configs)
    token = make_token(clock, key, roles="admin, dba", groups=["ignored"], aud="some-other-app")
    assert verify(verifier, token).groups == ("admin", "dba")
    assert verify(verifier, make_token(clock, key, aud=None)).groups == ()


def test_dotted_groups_claim(idp, clock) -> None:
    key = idp.add_key()
    configs = [OidcIssuerConfig(issuer=ISSUER, groups_claim="realm_access.roles")]
    verifier = make_verifier(clock, idp, configs=configs)
    token = make_token(clock, key, realm_access={"roles": ["dba"]})
    assert verify(verifier, token).groups == ("dba",)


def test_wrong_audience(idp, clock) -> None:
    key = idp.add_key()
    verifier = make_verifier(clock, idp)
    err = refused(verifier, make_token(clock, key, aud="another-client"))
    assert err.message == "token audience 'another-client' does not include 'pgwarden'"
    assert "no audience" in refused(verifier, make_token(clock, key, aud=None)).message


def test_expired_and_subject(idp, clock) -> None:
    key = idp.add_key()
    verifier = make_verifier(clock, idp)
    token = make_token(clock, key)
    assert refused(verifier, token, user="bob").sqlstate == "28000"
    clock.advance(3600 + 31)
    assert refused(verifier, token).message.startswith("token expired at ")


def test_lifetime_limit_applies_to_oidc(idp, clock) -> None:
    key = idp.add_key()
    verifier = make_verifier(clock, idp)
    token = make_token(clock, key, exp=int(clock()) + 13 * 3600)
    assert refused(verifier, token).message == "token lifetime 13h exceeds max_token_ttl 12h"


def test_tampered_signature(idp, clock) -> None:
    key = idp.add_key()
    token = make_token(clock, key)
    forged = make_token(clock, rsa_key(), sub="alice")  # same kid, attacker's key
    verifier = make_verifier(clock, idp)
    verify(verifier, token)
    assert refused(verifier, forged).message == "token signature invalid"
    assert idp.fetches == 1  # a known kid with a bad signature triggers no refetch


# --- algorithm confusion ------------------------------------------------------------------------


def test_hmac_keyed_with_rsa_public_key(idp, clock, forge) -> None:
    key = idp.add_key()
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(clock())
    claims = {"iss": ISSUER, "aud": "pgwarden", "sub": "alice", "iat": now, "exp": now + 60}
    verifier = make_verifier(clock, idp)
    for secret in (pem, json.dumps(idp.jwks[0]).encode()):
        err = refused(verifier, forge({"alg": "HS256", "kid": "k1"}, claims, secret))
        assert "refused" in err.message
    err = refused(verifier, forge({"alg": "none", "kid": "k1"}, claims, None))
    assert "alg 'none'" in err.message


def test_symmetric_jwks_keys_are_never_used(idp, clock, forge) -> None:
    idp.jwks.append({"kty": "oct", "k": "c2VjcmV0", "kid": "k1", "alg": "HS256"})
    verifier = make_verifier(clock, idp)
    now = int(clock())
    claims = {"iss": ISSUER, "aud": "pgwarden", "sub": "alice", "iat": now, "exp": now + 60}
    assert (
        "refused"
        in refused(verifier, forge({"alg": "HS256", "kid": "k1"}, claims, b"secret")).message
    )
    # With only an oct key, the issuer has no usable keys at all: fail closed.
    key = rsa_key()
    err = refused(verifier, make_token(clock, key))
    assert err.sqlstate == "28000"
    assert "no usable signature keys" in err.message


def test_algorithm_must_match_key(idp, clock) -> None:
    rsa_priv = idp.add_key(kid="rsa")
    ec_priv = idp.add_key(ec.generate_private_key(ec.SECP256R1()), kid="ec")
    idp.add_key(rsa_key(), kid="rs256-only", alg="RS256")
    verifier = make_verifier(clock, idp)
    # An EC-signed token pointing at the RSA key's kid.
    err = refused(verifier, make_token(clock, ec_priv, kid="rsa"))
    assert "does not match its signing key" in err.message
    # A P-384 signature claiming the P-256 key.
    p384 = ec.generate_private_key(ec.SECP384R1())
    err = refused(verifier, make_token(clock, p384, kid="ec"))
    assert "does not match its signing key (expected ES256)" in err.message
    # A JWK pinned to RS256 cannot be used with PS256, even by its own private key.
    pinned = idp.keys["rs256-only"]
    verify(verifier, make_token(clock, pinned, kid="rs256-only"))
    err = refused(verifier, make_token(clock, pinned, kid="rs256-only", alg="PS256"))
    assert "expected RS256" in err.message
    verify(verifier, make_token(clock, rsa_priv, kid="rsa", alg="PS384"))


def test_weak_rsa_key_refused(idp, clock) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    idp.add_key(weak)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        token = make_token(clock, weak)
    assert "too weak" in refused(make_verifier(clock, idp), token).message


# --- cross-issuer confusion ---------------------------------------------------------------------


def test_local_token_claiming_oidc_issuer(idp, clock) -> None:
    idp.add_key()
    local = LocalIssuer.generate(clock=clock)
    verifier = make_verifier(clock, idp, local=local)
    # The local key signs a token that says it comes from the IdP.
    token = jwt.encode(
        {
            "iss": ISSUER,
            "aud": "pgwarden",
            "sub": "alice",
            "iat": int(clock()),
            "exp": int(clock()) + 60,
        },
        local._private_key,
        algorithm="EdDSA",
        headers={"kid": local.kid},
    )
    err = refused(verifier, token)
    assert "unknown key" in err.message
    # Same, with the IdP's kid.
    token = jwt.encode(
        {
            "iss": ISSUER,
            "aud": "pgwarden",
            "sub": "alice",
            "iat": int(clock()),
            "exp": int(clock()) + 60,
        },
        local._private_key,
        algorithm="EdDSA",
        headers={"kid": "k1"},
    )
    assert "does not match its signing key" in refused(verifier, token).message
    # And a genuine local token still works.
    verify(verifier, local.issue("alice"))


def test_oidc_token_claiming_local_issuer(idp, clock) -> None:
    key = idp.add_key()
    local = LocalIssuer.generate(clock=clock)
    verifier = make_verifier(clock, idp, local=local)
    token = make_token(clock, key, iss="pgwarden-local", kid=local.kid)
    assert "does not match its signing key" in refused(verifier, token).message
    ed = ed25519.Ed25519PrivateKey.generate()
    idp.add_key(ed, kid="ed")
    token = make_token(clock, ed, iss="pgwarden-local", kid=None)
    assert refused(verifier, token).message == "token signature invalid"


def test_token_from_one_idp_claiming_another(clock) -> None:
    a, b = FakeIdP(ISSUER), FakeIdP(OTHER)
    key_a = a.add_key(kid="a1")
    b.add_key(kid="b1")
    verifier = make_verifier(clock, a, b)
    assert verify(verifier, make_token(clock, key_a, kid="a1")).issuer == ISSUER
    err = refused(verifier, make_token(clock, key_a, kid="a1", iss=OTHER))
    assert err.message == f"token signed by an unknown key (kid 'a1') of issuer '{OTHER}'"
    assert refused(verifier, make_token(clock, key_a, kid="b1", iss=OTHER)).message == (
        "token signature invalid"
    )
    assert refused(verifier, make_token(clock, key_a, kid=None, iss=OTHER)).message == (
        "token signature invalid"
    )


def test_unconfigured_issuer(idp, clock) -> None:
    key = idp.add_key()
    verifier = make_verifier(clock, idp)
    token = make_token(clock, key, iss="https://evil.example.com")
    err = refused(verifier, token)
    assert err.message == "token issuer 'https://evil.example.com' is not trusted"
    assert err.sqlstate == "28P01"
    # Similar-looking issuers are different issuers.
    for iss in (ISSUER + ".evil.com", ISSUER.upper(), ISSUER + "/x", "http://idp.example.com"):
        assert "is not trusted" in refused(verifier, make_token(clock, key, iss=iss)).message
    assert idp.requests == []  # nothing was fetched for any of them


def test_trailing_slash_is_the_same_issuer(clock) -> None:
    idp = FakeIdP(ISSUER + "/")
    key = idp.add_key()
    verifier = make_verifier(clock, idp)
    assert verify(verifier, make_token(clock, key, iss=ISSUER)).issuer == ISSUER + "/"
    assert verify(verifier, make_token(clock, key, iss=ISSUER + "/")).subject == "alice"


# --- key refresh --------------------------------------------------------------------------------


def test_unknown_kid_refreshes_once_then_rate_limited(idp, clock) -> None:
    key = idp.add_key()
    verifier = make_verifier(clock, idp)
    verify(verifier, make_token(clock, key))
    assert idp.fetches == 1

    stranger = rsa_key()
    token = make_token(clock, stranger, kid="new")
    clock.advance(31)
    err = refused(verifier, token)
    assert err.message == f"token signed by an unknown key (kid 'new') of issuer '{ISSUER}'"
    assert err.sqlstate == "28P01"
    assert idp.fetches == 2  # one refresh for the unknown kid
    # Within 30 s: refused without asking the IdP again.
    for _ in range(5):
        clock.advance(5)
        refused(verifier, token)
    assert idp.fetches == 2
    # The IdP starts publishing the key: picked up after the interval.
    idp.add_key(stranger, kid="new")
    refused(verifier, token)
    assert idp.fetches == 2
    clock.advance(10)
    assert verify(verifier, token).subject == "alice"
    assert idp.fetches == 3


def test_key_rotation(idp, clock) -> None:
    old = idp.add_key(kid="old")
    verifier = make_verifier(clock, idp)
    verify(verifier, make_token(clock, old, kid="old"))
    clock.advance(60)
    idp.jwks.clear()
    new = idp.add_key(kid="new")
    assert verify(verifier, make_token(clock, new, kid="new")).subject == "alice"
    assert idp.fetches == 2
    # The old key is gone from the IdP and from our cache.
    assert "unknown key" in refused(verifier, make_token(clock, old, kid="old")).message


def test_key_rotation_without_kid(idp, clock) -> None:
    old = idp.add_key(kid=None)
    verifier = make_verifier(clock, idp)
    verify(verifier, make_token(clock, old, kid=None))
    clock.advance(60)
    idp.jwks.clear()
    new = idp.add_key(kid=None)
    assert verify(verifier, make_token(clock, new, kid=None)).subject == "alice"
    assert idp.fetches == 2
    clock.advance(60)
    assert refused(verifier, make_token(clock, old, kid=None)).message == "token signature invalid"


def test_concurrent_unknown_kids_share_one_refresh(idp, clock) -> None:
    key = idp.add_key()
    verifier = make_verifier(clock, idp)

    async def scenario() -> list[Any]:
        await verifier.verify(make_token(clock, key), user="alice")
        clock.advance(60)
        tokens = [make_token(clock, key, kid=f"x{i}") for i in range(20)]
        return await asyncio.gather(
            *(verifier.verify(t, user="alice") for t in tokens), return_exceptions=True
        )

    results = asyncio.run(scenario())
    assert all(isinstance(r, AuthError) and "unknown key" in r.message for r in results)
    assert idp.fetches == 2


def test_concurrent_tokens_with_a_new_key_all_pass(idp, clock) -> None:
    """Those waiting while another coroutine refreshes use the refreshed keys."""
    key = idp.add_key()
    verifier = make_verifier(clock, idp)

    async def scenario() -> list[Any]:
        await verifier.verify(make_token(clock, key), user="alice")
        clock.advance(60)
        new = idp.add_key(rsa_key(), kid="new")
        tokens = [make_token(clock, new, kid="new") for _ in range(10)]
        return await asyncio.gather(
            *(verifier.verify(t, user="alice") for t in tokens), return_exceptions=True
        )

    results = asyncio.run(scenario())
    assert all(isinstance(r, Identity) for r in results), results
    assert idp.fetches == 2


def test_keys_refreshed_when_old(idp, clock) -> None:
    key = idp.add_key()
    verifier = make_verifier(clock, idp)
    verify(verifier, make_token(clock, key))
    clock.advance(3601)
    verify(verifier, make_token(clock, key))
    assert idp.fetches == 2


# --- failures: fail closed ----------------------------------------------------------------------


def test_discovery_failure_fails_closed(idp, clock) -> None:
    key = idp.add_key()
    idp.discovery_status = 503
    verifier = make_verifier(clock, idp)
    token = make_token(clock, key)
    err = refused(verifier, token)
    assert err.sqlstate == "28000"
    assert err.message == (
        f"the signing keys of token issuer '{ISSUER}' could not be fetched: "
        f"HTTP 503 from {ISSUER}/.well-known/openid-configuration"
    )
    # Backoff: an immediate retry does not hit the IdP again.
    refused(verifier, token)
    assert idp.requests.count("/.well-known/openid-configuration") == 1
    # The IdP recovers; after the backoff the next token works.
    idp.discovery_status = 200
    clock.advance(6)
    assert verify(verifier, make_token(clock, key)).subject == "alice"


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (
            {"discovery": {"issuer": "https://evil.example.com", "jwks_uri": ISSUER + "/keys"}},
            "names issuer 'https://evil.example.com'",
        ),
        ({"discovery": {"issuer": ISSUER}}, "has no jwks_uri"),
        (
            {"discovery": {"issuer": ISSUER, "jwks_uri": "http://idp.example.com/keys"}},
            "must use https",
        ),
        ({"jwks_body": b"<html>"}, "did not return valid JSON"),
        ({"jwks_body": b'{"keys": "x"}'}, "no 'keys' list"),
        ({"jwks_body": b'{"keys": []}'}, "no usable signature keys"),
        ({"jwks_body": b'{"keys": [{"kty": "RSA", "n": "x"}]}'}, "no usable signature keys"),
        ({"jwks_body": b"[" * 100000 + b"]" * 100000}, "did not return valid JSON"),
        ({"jwks_body": b" " * (1024 * 1024 + 1)}, "larger than"),
        ({"discovery_status": 302}, "HTTP 302"),
        ({"raise_exc": httpx.ReadTimeout("slow")}, "timed out fetching"),
        ({"raise_exc": httpx.ConnectError("refused")}, "ConnectError fetching"),
    ],
)
def test_bad_issuer_documents_fail_closed(idp, clock, breakage, expected) -> None:
    key = idp.add_key()
    for name, value in breakage.items():
        setattr(idp, name, value)
    err = refused(make_verifier(clock, idp), make_token(clock, key))
    assert err.sqlstate == "28000"
    assert "could not be fetched" in err.message
    assert expected in err.message


def test_unreachable_issuer_fails_closed(clock) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    issuer = f"http://127.0.0.1:{port}"
    verifier = TokenVerifier(local_issuer=None, oidc=[OidcIssuerConfig(issuer=issuer)], clock=clock)
    token = make_token(clock, rsa_key(), iss=issuer)
    err = refused(verifier, token)
    assert err.sqlstate == "28000"
    assert "could not be fetched" in err.message
    asyncio.run(verifier.aclose())


def test_stale_keys_used_during_outage_then_fail_closed(idp, clock) -> None:
    key = idp.add_key()
    verifier = make_verifier(clock, idp)
    verify(verifier, make_token(clock, key))
    idp.discovery_status = 500
    clock.advance(2 * 3600)  # keys are old; refresh fails; the cached keys still serve
    verify(verifier, make_token(clock, key))
    clock.advance(23 * 3600)  # a day without the IdP: no more
    err = refused(verifier, make_token(clock, key))
    assert err.sqlstate == "28000"


def test_unknown_kid_during_outage(idp, clock) -> None:
    key = idp.add_key()
    verifier = make_verifier(clock, idp)
    verify(verifier, make_token(clock, key))
    idp.discovery_status = 500
    clock.advance(60)
    err = refused(verifier, make_token(clock, key, kid="rotated"))
    assert err.sqlstate == "28000"
    assert "could not be fetched" in err.message


def test_prefetch_keys_reports_per_issuer(clock) -> None:
    good, bad = FakeIdP(ISSUER), FakeIdP(OTHER)
    good.add_key()
    bad.discovery_status = 500
    verifier = make_verifier(clock, good, bad)
    result = asyncio.run(verifier.prefetch_keys())
    assert result[ISSUER] is None
    assert result[OTHER] is not None and "HTTP 500" in result[OTHER]
    assert good.fetches == 1
