"""Optional encryption at rest: AES-256-GCM, one line at a time.

Key: ``PGWARDEN_RECORDING_KEY``, 32 random bytes in base64 (``RecordingCipher.generate_key()``
makes one). Older keys for reading only: ``PGWARDEN_RECORDING_OLD_KEYS``, comma-separated.

What is encrypted: the payload of every event but checkpoints (which hold nothing secret). The
stored line keeps its envelope in the clear and replaces the payload fields with::

    "enc": {"alg": "A256GCM", "kid": <key id>, "iv": <base64, 12 random bytes>,
            "ct": <base64 ciphertext || 16-byte tag>}

where the plaintext is ``canonical_json(payload)`` and the associated data is
``canonical_json({"prev", "seq", "session", "ts", "type", "v"})`` of the same event, so a
ciphertext cannot be moved to another position or session.

The hash chain covers the stored bytes, i.e. the ciphertext (``canonical.py``): integrity is
checked with the public signing key alone, by anyone, without the data key; GCM authenticates
the plaintext again on decryption. ``kid`` is the first 16 hex digits of SHA-256 of the key.
Random 96-bit IVs: keep well under 2**32 lines per key (rotate the key long before).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pgwarden.recording.errors import DecryptionError

__all__ = ["KEY_ENV", "OLD_KEYS_ENV", "RecordingCipher"]

KEY_ENV = "PGWARDEN_RECORDING_KEY"
OLD_KEYS_ENV = "PGWARDEN_RECORDING_OLD_KEYS"
ALG = "A256GCM"


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def _decode_key(text: str, name: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{name} is not valid base64") from exc
    if len(key) != 32:
        raise ValueError(f"{name} must be 32 bytes in base64 (got {len(key)} bytes)")
    return key


class RecordingCipher:
    """Encrypts payloads with the current key; decrypts with any known key (by ``kid``)."""

    def __init__(self, key: bytes, old_keys: Sequence[bytes] = ()) -> None:
        if len(key) != 32:
            raise ValueError("the recording key must be 32 bytes")
        self._key = AESGCM(key)
        self.key_id = _key_id(key)
        self._keys: dict[str, AESGCM] = {self.key_id: self._key}
        for old in old_keys:
            if len(old) != 32:
                raise ValueError("old recording keys must be 32 bytes")
            self._keys.setdefault(_key_id(old), AESGCM(old))

    @staticmethod
    def generate_key() -> str:
        """A new random key, base64 (for ``PGWARDEN_RECORDING_KEY``)."""
        return base64.b64encode(os.urandom(32)).decode("ascii")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RecordingCipher | None:
        """The cipher configured in the environment, or None when no key is set.
        Raises ValueError (naming the variable) for a malformed key."""
        env = os.environ if environ is None else environ
        text = env.get(KEY_ENV, "")
        if not text.strip():
            return None
        key = _decode_key(text, KEY_ENV)
        old = [_decode_key(t, OLD_KEYS_ENV) for t in env.get(OLD_KEYS_ENV, "").split(",") if t]
        return cls(key, old)

    def encrypt(self, plaintext: bytes, aad: bytes) -> dict[str, Any]:
        iv = os.urandom(12)
        ct = self._key.encrypt(iv, plaintext, aad)
        return {
            "alg": ALG,
            "kid": self.key_id,
            "iv": base64.b64encode(iv).decode("ascii"),
            "ct": base64.b64encode(ct).decode("ascii"),
        }

    def decrypt(self, enc: Mapping[str, Any], aad: bytes) -> bytes:
        if enc.get("alg") != ALG:
            raise DecryptionError(f"unsupported encryption {enc.get('alg')!r}")
        key = self._keys.get(str(enc.get("kid")))
        if key is None:
            raise DecryptionError(f"no key for kid {enc.get('kid')!r} (set {OLD_KEYS_ENV}?)")
        try:
            iv = base64.b64decode(str(enc["iv"]), validate=True)
            ct = base64.b64decode(str(enc["ct"]), validate=True)
            return key.decrypt(iv, ct, aad)
        except (KeyError, binascii.Error, ValueError, InvalidTag) as exc:
            raise DecryptionError("the ciphertext does not decrypt (altered or wrong key)") from exc
