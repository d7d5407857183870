"""Ed25519 signatures over the hash chain (checkpoints).

Keys: ``data_dir/keys/recording-signing.pem`` (PKCS#8, mode 0600, made on first use) and
``data_dir/keys/recording-signing.pub.pem`` (SubjectPublicKeyInfo). Verification needs only
public keys; retired public keys can be kept beside it as ``recording-signing-*.pub.pem`` and
are trusted too (``load_trusted_keys``). The database host never holds either.

A checkpoint is itself an event of the chain (type ``checkpoint``) whose payload is::

    {"signed_seq": n, "signed_hash": h, "alg": "ed25519", "key_id": kid, "signature": sig}

where ``n``/``h`` are the seq and hash of the event just before it, ``kid`` is the first 32 hex
digits of SHA-256 of the raw 32-byte public key, and ``sig`` is the base64 Ed25519 signature of
``checkpoint_message(session, n, h)``::

    canonical_json({"hash": h, "purpose": "pgwarden-recording-checkpoint", "seq": n,
                    "session": session, "v": 1})

Since ``h`` commits to every earlier byte of the recording, a valid checkpoint signs the whole
prefix up to ``n``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from pgwarden.recording.canonical import canonical_json

__all__ = [
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "RecordingSigner",
    "checkpoint_message",
    "key_id",
    "load_public_key",
    "load_trusted_keys",
    "verify_checkpoint_signature",
]

PRIVATE_KEY_FILE = "recording-signing.pem"
PUBLIC_KEY_FILE = "recording-signing.pub.pem"
ALG = "ed25519"
PURPOSE = "pgwarden-recording-checkpoint"


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def checkpoint_message(session: str, seq: int, hash_: str) -> bytes:
    return canonical_json(
        {"hash": hash_, "purpose": PURPOSE, "seq": seq, "session": session, "v": 1}
    )


def _public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def load_trusted_keys(data_dir: Path) -> list[Ed25519PublicKey]:
    """The public keys under ``data_dir/keys`` that verify recordings (current first)."""
    keys_dir = Path(data_dir) / "keys"
    keys: list[Ed25519PublicKey] = []
    current = keys_dir / PUBLIC_KEY_FILE
    if current.exists():
        keys.append(load_public_key(current.read_bytes()))
    elif (keys_dir / PRIVATE_KEY_FILE).exists():
        keys.append(RecordingSigner.load_or_create(data_dir).public_key)
    for path in sorted(keys_dir.glob("recording-signing-*.pub.pem")):
        keys.append(load_public_key(path.read_bytes()))
    return keys


def verify_checkpoint_signature(
    keys: dict[str, Ed25519PublicKey], payload: dict[str, Any], session: str
) -> str | None:
    """None when the checkpoint payload's signature is valid under one of ``keys`` (by key
    id), else what is wrong."""
    if payload.get("alg") != ALG:
        return f"unsupported signature algorithm {payload.get('alg')!r}"
    kid = payload.get("key_id")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        return f"checkpoint signed by an untrusted key (key_id {kid!r})"
    seq, hash_, sig = (
        payload.get("signed_seq"),
        payload.get("signed_hash"),
        payload.get("signature"),
    )
    if not isinstance(seq, int) or not isinstance(hash_, str) or not isinstance(sig, str):
        return "checkpoint lacks signed_seq, signed_hash or signature"
    try:
        key.verify(base64.b64decode(sig, validate=True), checkpoint_message(session, seq, hash_))
    except (InvalidSignature, binascii.Error, ValueError):
        return "bad checkpoint signature"
    return None


class RecordingSigner:
    """Holds the private signing key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def generate(cls) -> RecordingSigner:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, data_dir: Path) -> RecordingSigner:
        """The key at ``data_dir/keys/recording-signing.pem``, created (0600, with its public
        key beside it) on first use; safe when several processes race to create it."""
        keys_dir = Path(data_dir) / "keys"
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = keys_dir / PRIVATE_KEY_FILE
        if not path.exists():
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            tmp = keys_dir / f".{PRIVATE_KEY_FILE}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, pem)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # fails if another process won the race
            except FileExistsError:
                pass
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        signer = cls(loaded)
        pub = keys_dir / PUBLIC_KEY_FILE
        pem_pub = _public_pem(signer.public_key)
        if not pub.exists() or pub.read_bytes() != pem_pub:
            tmp_pub = keys_dir / f".{PUBLIC_KEY_FILE}.{os.getpid()}.tmp"
            tmp_pub.write_bytes(pem_pub)
            tmp_pub.chmod(0o644)
            os.replace(tmp_pub, pub)
        return signer

    def public_pem(self) -> bytes:
        return _public_pem(self.public_key)

    def sign_checkpoint(self, session: str, seq: int, hash_: str) -> dict[str, Any]:
        """The payload of a checkpoint covering event ``seq`` with hash ``hash_``."""
        sig = self._key.sign(checkpoint_message(session, seq, hash_))
        return {
            "signed_seq": seq,
            "signed_hash": hash_,
            "alg": ALG,
            "key_id": self.key_id,
            "signature": base64.b64encode(sig).decode("ascii"),
        }


def trusted_key_map(
    keys: Ed25519PublicKey | Iterable[Ed25519PublicKey],
) -> dict[str, Ed25519PublicKey]:
    """Key id -> key, for ``verify_checkpoint_signature``."""
    if isinstance(keys, Ed25519PublicKey):
        keys = [keys]
    return {key_id(k): k for k in keys}
