"""The local issuer: its key file and the tokens it writes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import stat
import threading
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from pgwarden.auth import LocalIssuer, TokenVerifier


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_created_private_and_reused(tmp_path: Path, caplog) -> None:
    data_dir = tmp_path / "data"
    with caplog.at_level(logging.INFO, logger="pgwarden.auth.local_issuer"):
        first = LocalIssuer.load_or_create(data_dir)
    # Created private from the start, not loosened and fixed afterwards.
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "created local issuer key" in caplog.records[0].getMessage()
    key_file = data_dir / "keys" / "local-issuer.pem"
    assert key_file.is_file()
    assert mode(key_file) == 0o600
    assert mode(data_dir / "keys") == 0o700
    assert first.key_path == key_file
    assert b"PRIVATE KEY" in key_file.read_bytes()
    # No temporary files left behind.
    assert sorted(p.name for p in (data_dir / "keys").iterdir()) == ["local-issuer.pem"]

    second = LocalIssuer.load_or_create(data_dir)
    assert second.kid == first.kid
    assert second.public_jwk() == first.public_jwk()


def test_key_created_private_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        LocalIssuer.load_or_create(tmp_path)
    finally:
        os.umask(old)
    assert mode(tmp_path / "keys") == 0o700
    assert mode(tmp_path / "keys" / "local-issuer.pem") == 0o600


def test_loose_permissions_are_tightened(tmp_path: Path, caplog) -> None:
    issuer = LocalIssuer.load_or_create(tmp_path)
    key_file = tmp_path / "keys" / "local-issuer.pem"
    os.chmod(key_file, 0o644)
    os.chmod(tmp_path / "keys", 0o755)
    with caplog.at_level(logging.WARNING, logger="pgwarden.auth.local_issuer"):
        again = LocalIssuer.load_or_create(tmp_path)
    assert again.kid == issuer.kid
    assert any("tightening" in r.getMessage() for r in caplog.records)
    assert mode(key_file) == 0o600
    assert mode(tmp_path / "keys") == 0o700


def test_concurrent_creation_yields_one_key(tmp_path: Path) -> None:
    kids: list[str] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        kids.append(LocalIssuer.load_or_create(tmp_path).kid)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(kids) == 8
    assert len(set(kids)) == 1


def test_corrupt_or_wrong_key_file_is_refused(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    key_dir.mkdir(mode=0o700)
    key_file = key_dir / "local-issuer.pem"
    key_file.write_bytes(b"not a key")
    os.chmod(key_file, 0o600)
    with pytest.raises(ValueError, match="PEM"):
        LocalIssuer.load_or_create(tmp_path)

    ec_key = ec.generate_private_key(ec.SECP256R1())
    key_file.write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError, match="Ed25519"):
        LocalIssuer.load_or_create(tmp_path)


def test_kid_is_short_sha256_thumbprint() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    issuer = LocalIssuer(key)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    expected = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest())
    assert issuer.kid == expected.rstrip(b"=").decode()[:16]
    jwk = issuer.public_jwk()
    assert jwk == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": x,
        "kid": issuer.kid,
        "alg": "EdDSA",
        "use": "sig",
    }
    assert "d" not in jwk
    # Different keys, different kids.
    assert LocalIssuer.generate().kid != issuer.kid


def test_issued_token_shape(local: LocalIssuer, clock) -> None:
    token = local.issue("agent-7", ["dba", "dev"], ttl_seconds=600, extra_claims={"email": "a@x"})
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA"
    assert header["kid"] == local.kid
    claims = jwt.decode(
        token,
        local.public_key,
        algorithms=["EdDSA"],
        audience="pgwarden",
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    now = int(clock())
    assert claims["iss"] == "pgwarden-local"
    assert claims["aud"] == "pgwarden"
    assert claims["sub"] == "agent-7"
    assert claims["groups"] == ["dba", "dev"]
    assert claims["iat"] == now and claims["nbf"] == now and claims["exp"] == now + 600
    assert claims["email"] == "a@x"
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    assert local.issue("agent-7") != local.issue("agent-7")  # fresh jti each time


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subject": ""},
        {"subject": "a", "ttl_seconds": 0},
        {"subject": "a", "ttl_seconds": -5},
        {"subject": "a", "ttl_seconds": float("inf")},
        {"subject": "a", "groups": [""]},
        {"subject": "a", "extra_claims": {"sub": "root"}},
        {"subject": "a", "extra_claims": {"exp": 9999999999}},
        {"subject": "a", "extra_claims": {"iss": "https://idp"}},
        {"subject": "a", "extra_claims": {"groups": ["dba"]}},
    ],
)
def test_issue_refuses_bad_arguments(local: LocalIssuer, kwargs) -> None:
    with pytest.raises(ValueError):
        local.issue(**kwargs)


def test_groups_as_plain_string_is_refused(local: LocalIssuer) -> None:
    with pytest.raises(TypeError):
        local.issue("a", "dba")  # would otherwise become ["d", "b", "a"]


def test_key_file_round_trip_verifies(tmp_path: Path) -> None:
    """A token from the CLI's issuer verifies with a verifier loading the same data dir."""
    token = LocalIssuer.load_or_create(tmp_path).issue("alice", ["dev"])
    verifier = TokenVerifier(local_issuer=LocalIssuer.load_or_create(tmp_path), oidc=[])
    identity = asyncio.run(verifier.verify(token, user="alice"))
    assert identity.subject == "alice"
    # A different data dir means a different key: the token is refused.
    other = TokenVerifier(local_issuer=LocalIssuer.load_or_create(tmp_path / "other"), oidc=[])
    with pytest.raises(Exception, match="unknown key"):
        asyncio.run(other.verify(token, user="alice"))
