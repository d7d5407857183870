"""The local token issuer: an Ed25519 key in the data directory signs `pgwarden token issue`."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import math
import os
import secrets
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

__all__ = ["LocalIssuer"]

_log = logging.getLogger(__name__)

KEY_DIR = "keys"
KEY_FILE = "local-issuer.pem"

# Claims issue() sets itself; extra_claims may not override them.
RESERVED_CLAIMS = frozenset({"iss", "aud", "sub", "groups", "iat", "nbf", "exp", "jti"})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _raw_public(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_thumbprint(key: ed25519.Ed25519PublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256), shortened to 16 base64url characters (96 bits)."""
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64url(_raw_public(key))},
        separators=(",", ":"),
        sort_keys=True,
    )
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())[:16]


class LocalIssuer:
    """Issues and (through TokenVerifier) accepts tokens signed with the gateway's own key."""

    ISSUER = "pgwarden-local"
    AUDIENCE = "pgwarden"
    ALGORITHM = "EdDSA"

    def __init__(
        self,
        private_key: ed25519.Ed25519PrivateKey,
        *,
        key_path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(private_key, ed25519.Ed25519PrivateKey):
            raise TypeError("the local issuer needs an Ed25519 private key")
        self._private_key = private_key
        self._public_key = private_key.public_key()
        self._kid = key_thumbprint(self._public_key)
        self._clock = clock
        self.key_path = key_path

    @classmethod
    def generate(cls, *, clock: Callable[[], float] = time.time) -> LocalIssuer:
        """A throwaway issuer with a fresh in-memory key (tests, demos)."""
        return cls(ed25519.Ed25519PrivateKey.generate(), clock=clock)

    @classmethod
    def load_or_create(
        cls, data_dir: Path, *, clock: Callable[[], float] = time.time
    ) -> LocalIssuer:
        """Load ``data_dir/keys/local-issuer.pem``, creating it (0600, dir 0700) if missing."""
        data_dir = Path(data_dir)
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_dir = data_dir / KEY_DIR
        key_dir.mkdir(mode=0o700, exist_ok=True)
        _tighten(key_dir, 0o700)
        path = key_dir / KEY_FILE
        if not path.exists():
            _create_key_file(path)
        _tighten(path, 0o600)
        data = path.read_bytes()
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a usable unencrypted PEM private key ({exc})") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError(f"{path}: the local issuer key must be Ed25519")
        return cls(key, key_path=path, clock=clock)

    @property
    def kid(self) -> str:
        return self._kid

    @property
    def public_key(self) -> ed25519.Ed25519PublicKey:
        return self._public_key

    def public_jwk(self) -> dict[str, Any]:
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64url(_raw_public(self._public_key)),
            "kid": self._kid,
            "alg": self.ALGORITHM,
            "use": "sig",
        }

    def issue(
        self,
        subject: str,
        groups: Sequence[str] = (),
        ttl_seconds: float = 900,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed EdDSA JWT for ``subject``, valid from now for ``ttl_seconds``."""
        if not isinstance(subject, str) or not subject:
            raise ValueError("subject must be a non-empty string")
        if isinstance(groups, str):
            raise TypeError("groups must be a sequence of strings, not a string")
        group_list = list(groups)
        if not all(isinstance(g, str) and g for g in group_list):
            raise ValueError("groups must be non-empty strings")
        if not math.isfinite(ttl_seconds) or ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be a positive number")
        extra = dict(extra_claims or {})
        clash = RESERVED_CLAIMS & extra.keys()
        if clash:
            raise ValueError(f"extra_claims may not set {', '.join(sorted(clash))}")

        now = int(self._clock())
        claims: dict[str, Any] = {
            **extra,
            "iss": self.ISSUER,
            "aud": self.AUDIENCE,
            "sub": subject,
            "groups": group_list,
            "iat": now,
            "nbf": now,
            "exp": now + max(1, math.ceil(ttl_seconds)),
            "jti": secrets.token_urlsafe(16),
        }
        return jwt.encode(
            claims,
            self._private_key,
            algorithm=self.ALGORITHM,
            headers={"kid": self._kid, "typ": "JWT"},
        )


def _create_key_file(path: Path) -> None:
    """Write a new key atomically: a concurrent creator wins or loses cleanly, never half-writes."""
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails if another process created the key first: keep theirs
            _log.info("created local issuer key %s", path)
        except FileExistsError:
            pass
        except OSError:  # no hard links on this filesystem
            if not path.exists():
                os.rename(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _tighten(path: Path, mode: int) -> None:
    """Remove group/other access from a key file or directory left too open."""
    current = stat.S_IMODE(path.stat().st_mode)
    if current & 0o077:
        _log.warning("%s had permissions %o; tightening to %o", path, current, mode)
        try:
            os.chmod(path, mode)
        except OSError as exc:
            raise PermissionError(
                f"{path} is accessible by other users (mode {current:o}) and cannot be fixed: {exc}"
            ) from None
