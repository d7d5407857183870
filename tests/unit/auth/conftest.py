"""Shared helpers for the token-identity tests: a controllable clock and a JWT forger."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from pgwarden.auth import LocalIssuer, TokenVerifier

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z; any fixed instant works


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_jwt(
    header: dict[str, Any],
    claims: dict[str, Any] | str | bytes,
    key: Any = None,
) -> str:
    """Build a compact JWS with exactly this header and payload, signed however the header says.

    HS* uses ``key`` as raw HMAC secret bytes (PyJWT refuses PEM keys as secrets, an attacker
    does not); "none"-ish algorithms get an empty signature.
    """
    if isinstance(claims, dict):
        payload = json.dumps(claims).encode()
    elif isinstance(claims, str):
        payload = claims.encode()
    else:
        payload = claims
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(payload)}".encode()
    alg = str(header.get("alg"))
    if alg.upper().startswith("HS"):
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
        signature = hmac.new(key, signing_input, digest[alg.upper()]).digest()
    elif key is None:
        signature = b""
    else:
        algorithm = jwt.algorithms.get_default_algorithms()[alg]
        signature = algorithm.sign(signing_input, key)
    return f"{signing_input.decode()}.{b64url(signature)}"


@pytest.fixture
def forge() -> Callable[..., str]:
    """``forge(header, claims, key)``: any JWS an attacker could send."""
    return forge_jwt


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def local_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def local(local_key: ed25519.Ed25519PrivateKey, clock: FakeClock) -> LocalIssuer:
    return LocalIssuer(local_key, clock=clock)


@pytest.fixture
def verifier(local: LocalIssuer, clock: FakeClock) -> TokenVerifier:
    return TokenVerifier(local_issuer=local, oidc=[], clock=clock)


@pytest.fixture
def local_claims(clock: FakeClock) -> Callable[..., dict[str, Any]]:
    """Claims as the local issuer would write them, with overrides (None removes a claim)."""

    def make(**overrides: Any) -> dict[str, Any]:
        now = int(clock())
        claims: dict[str, Any] = {
            "iss": LocalIssuer.ISSUER,
            "aud": LocalIssuer.AUDIENCE,
            "sub": "alice",
            "groups": ["dev"],
            "iat": now,
            "nbf": now,
            "exp": now + 900,
            "jti": "j1",
        }
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    return make
