"""Low-level JWT handling shared by the local and OIDC issuers.

Everything here is strict on purpose: the token arrives as a database password from anyone who
can reach the gateway's port, so each step refuses what it does not fully understand.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from .identity import AuthError

MAX_TOKEN_BYTES = 16 * 1024

NOT_A_TOKEN = "password is not a token (expected a JWT)"  # noqa: S105 - a message

# Every asymmetric algorithm we accept, and nothing else. HS* and "none" are never accepted:
# the algorithm is chosen by the key, the token's "alg" only has to agree with it.
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS_BY_CURVE = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
ASYMMETRIC_ALGORITHMS = RSA_ALGORITHMS | set(EC_ALGORITHMS_BY_CURVE.values()) | {"EdDSA"}

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class ParsedToken:
    """A structurally valid JWS compact token whose signature has NOT been checked yet."""

    raw: str
    header: Mapping[str, Any]
    claims: Mapping[str, Any]  # unverified until a signature check succeeds

    @property
    def alg(self) -> str:
        alg = self.header["alg"]
        assert isinstance(alg, str)
        return alg

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None


def quote(value: object, limit: int = 80) -> str:
    """Quote an untrusted value for an error message, shortened and without control chars."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return "'" + text.replace("'", "\\'") + "'"


class _DuplicateKeyError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def _json_object(data: bytes) -> dict[str, Any] | None:
    """Strict JSON object: no duplicate members, no NaN/Infinity. None if not an object."""
    try:
        value = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _b64decode(segment: str) -> bytes | None:
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None
    # Canonical encoding only (no stray bits in the last character), as PyJWT requires.
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") != segment:
        return None
    return data


def parse_token(token: object) -> ParsedToken:
    """Split and decode a compact JWS; refuse anything that is not one.

    Raises AuthError with a message that never contains the token.
    """
    if not isinstance(token, str):
        raise AuthError(NOT_A_TOKEN)
    if len(token) > MAX_TOKEN_BYTES:
        raise AuthError(f"token is too large ({len(token)} bytes; the limit is {MAX_TOKEN_BYTES})")
    token = token.strip()
    if not token.isascii():
        raise AuthError(NOT_A_TOKEN)
    parts = token.split(".")
    header_bytes = _b64decode(parts[0]) if len(parts) in (3, 5) else None
    header = _json_object(header_bytes) if header_bytes is not None else None
    if header is None or not isinstance(header.get("alg"), str):
        raise AuthError(NOT_A_TOKEN)
    if len(parts) == 5 or "enc" in header:
        raise AuthError("encrypted tokens (JWE) are not supported; expected a signed JWT")

    alg = header["alg"]
    if alg.lower() == "none":
        raise AuthError("token is not signed (alg 'none' is refused)")
    if alg.upper().startswith("HS"):
        raise AuthError(f"token algorithm {quote(alg)} is refused (only asymmetric signatures)")
    if alg not in ASYMMETRIC_ALGORITHMS:
        raise AuthError(f"token algorithm {quote(alg)} is not supported")
    if "crit" in header:
        raise AuthError("token has critical header extensions (crit), which are not supported")
    if "b64" in header and header["b64"] is not True:
        raise AuthError("token has an unencoded payload (b64), which is not supported")
    if "kid" in header and not isinstance(header["kid"], str):
        raise AuthError("token key id (kid) is not a string")

    payload_bytes = _b64decode(parts[1])
    claims = _json_object(payload_bytes) if payload_bytes is not None else None
    if claims is None:
        raise AuthError("token is malformed: its payload is not a JSON object")
    if not parts[2] or _b64decode(parts[2]) is None:
        raise AuthError("token is malformed: its signature is missing or not base64url")
    return ParsedToken(raw=token, header=header, claims=claims)


def algorithms_for_key(key: PublicKey, jwk_alg: str | None = None) -> frozenset[str]:
    """The signature algorithms a key may be used with, decided by the key, not the token."""
    allowed: frozenset[str]
    if isinstance(key, rsa.RSAPublicKey):
        allowed = RSA_ALGORITHMS
    elif isinstance(key, ec.EllipticCurvePublicKey):
        alg = EC_ALGORITHMS_BY_CURVE.get(key.curve.name)
        allowed = frozenset({alg}) if alg else frozenset()
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        allowed = frozenset({"EdDSA"})
    else:  # pragma: no cover - the type says this cannot happen
        allowed = frozenset()
    if jwk_alg is not None:
        # A JWK that names its algorithm may only be used with that one.
        allowed = allowed & {jwk_alg}
    return allowed


def verify_signature(token: ParsedToken, key: PublicKey, allowed: frozenset[str]) -> None:
    """Check the token's signature with ``key``. The token's alg must be one the key allows."""
    alg = token.alg
    if alg not in allowed:
        expected = ", ".join(sorted(allowed)) or "none usable"
        raise AuthError(
            f"token algorithm {quote(alg)} does not match its signing key (expected {expected})"
        )
    signature = _b64decode(token.raw.rsplit(".", 1)[1]) or b""
    size = _signature_size(key)
    if size is not None and len(signature) != size:
        # Cut short or padded: malformed whatever its bits (a truncated signature that
        # still happens to be canonical base64 is no different from one that is not).
        raise AuthError(
            f"token is malformed: its signature has {len(signature)} bytes, "
            f"{quote(alg)} with this key gives {size}"
        )
    try:
        jwt.PyJWS(options={"enforce_minimum_key_length": True}).decode_complete(
            token.raw, key=key, algorithms=[alg]
        )
    except jwt.InvalidSignatureError:
        raise AuthError("token signature invalid") from None
    except jwt.InvalidKeyError:
        raise AuthError("token signing key is not acceptable (too weak or wrong type)") from None
    except jwt.PyJWTError as exc:
        raise AuthError(f"token is malformed ({type(exc).__name__})") from None


def _signature_size(key: PublicKey) -> int | None:
    """The length in bytes of every signature this key makes (JWS encodes ECDSA as r || s)."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return 64
    if isinstance(key, ed448.Ed448PublicKey):
        return 114
    if isinstance(key, ec.EllipticCurvePublicKey):
        return 2 * math.ceil(key.curve.key_size / 8)
    if isinstance(key, rsa.RSAPublicKey):
        return math.ceil(key.key_size / 8)
    return None  # pragma: no cover - the type says this cannot happen


def numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """A NumericDate claim as float; None if absent; AuthError if present but not a number."""
    if name not in claims or claims[name] is None:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AuthError(f"token claim {name!r} is not a number (expected unix seconds)")
    return float(value)


def check_audience(claims: Mapping[str, Any], expected: str) -> None:
    aud = claims.get("aud")
    if aud is None:
        raise AuthError(f"token has no audience (aud); expected {quote(expected)}")
    values: list[Any] = aud if isinstance(aud, list) else [aud]
    if not all(isinstance(v, str) for v in values):
        raise AuthError("token audience (aud) is not a string or a list of strings")
    if expected not in values:
        shown = quote(aud[0] if isinstance(aud, list) and len(aud) == 1 else aud)
        raise AuthError(f"token audience {shown} does not include {quote(expected)}")


def parse_groups(claims: Mapping[str, Any], claim: str) -> tuple[str, ...]:
    """Groups from ``claim``: a list of strings, or a space/comma-separated string.

    ``claim`` may be a dotted path (``realm_access.roles``) when no top-level claim has that name.
    Missing or null means no groups; anything else is refused rather than silently ignored.
    """
    value: Any
    if claim in claims:
        value = claims[claim]
    else:
        value = claims
        for part in claim.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return ()
            value = value[part]
    if value is None:
        return ()
    items: list[str]
    if isinstance(value, str):
        items = [item for item in re.split(r"[\s,]+", value) if item]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = [item.strip() for item in value if item.strip()]
    else:
        raise AuthError(f"token groups claim {quote(claim)} is not a list of strings or a string")
    return tuple(dict.fromkeys(items))
