"""What the recording commands share: opening the session index, the recording storage and
the keys from a ``Config`` exactly as the gateway does, and a few parsing/formatting helpers.

Conventions (the gateway uses the same, so both see the same sessions):

- session index: ``pgwarden.store.open_store(cfg.store, cfg.data_dir)``: ``store: null`` ->
  SQLite at ``data_dir/pgwarden.db``; ``sqlite:///path`` -> that file.
- recordings: ``pgwarden.recording.storage.open_storage(cfg.recordings, cfg.data_dir)``:
  ``recordings: null`` -> ``data_dir/recordings/<session>.jsonl``; ``s3://bucket/prefix``
  -> S3 (spool in ``data_dir/recordings-spool``); a path or ``file:///path`` -> that directory.
- trusted public signing keys: ``load_trusted_keys(cfg.data_dir)``: ``data_dir/keys/
  recording-signing.pub.pem`` plus retired ``recording-signing-*.pub.pem``; more with
  ``--public-key FILE`` on the command line.
- decryption key: ``RecordingCipher.from_env()`` (``PGWARDEN_RECORDING_KEY``, older keys in
  ``PGWARDEN_RECORDING_OLD_KEYS``); only needed to read encrypted payloads, never to verify.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pgwarden.cli._common import EXIT_CONFIG, fail
from pgwarden.config import Config, redact_url

# The reading helpers live in pgwarden.recording.access (the HTTP API uses them too); they are
# re-exported here so the commands keep importing them from one place.
from pgwarden.recording.access import (
    ReadLine,
    RecordingAccess,
    is_encrypted,
    iso,
    read_lines,
    valid_session_id,
)
from pgwarden.recording.access import parse_time as _parse_time
from pgwarden.recording.crypto import RecordingCipher
from pgwarden.recording.signing import load_public_key, load_trusted_keys
from pgwarden.recording.storage import (
    StorageError,
    open_storage,
)
from pgwarden.store import DEFAULT_DB_NAME, StoreError, open_store
from pgwarden.store.base import SessionRecord

__all__ = [
    "PublicKeyOption",
    "ReadLine",
    "Recordings",
    "is_encrypted",
    "iso",
    "load_recording",
    "open_recordings",
    "parse_time",
    "read_lines",
    "valid_session_id",
]

PublicKeyOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--public-key",
        help="Also trust this Ed25519 public key (PEM) for checkpoint signatures; repeatable.",
        metavar="FILE",
        show_default=False,
        dir_okay=False,
    ),
]


@dataclass(slots=True)
class Recordings(RecordingAccess):
    """The session index, the recording storage and the keys of one config; a storage that
    cannot answer ends the command (exit 1) instead of raising."""

    config: Config | None = None

    def read(self, session_id: str) -> bytes | None:
        try:
            return RecordingAccess.read(self, session_id)
        except StorageError as exc:
            fail(f"session {session_id}: {exc}")


@contextlib.contextmanager
def open_recordings(
    cfg: Config,
    *,
    keys: bool = False,
    extra_keys: Sequence[Path] = (),
    cipher: bool = False,
) -> Iterator[Recordings]:
    """Open the store and the storage of ``cfg`` (and, when asked, the trusted public keys
    and the decryption key from the environment); close them on exit. A bad setting or key
    exits 2, an unreadable index or storage 1."""
    data_dir = Path(cfg.data_dir)
    the_cipher: RecordingCipher | None = None
    if cipher:
        try:
            the_cipher = RecordingCipher.from_env()
        except ValueError as exc:
            fail(str(exc), EXIT_CONFIG)
    trusted: list[Ed25519PublicKey] = []
    if keys:
        try:
            trusted = load_trusted_keys(data_dir)
        except (OSError, ValueError) as exc:
            fail(f"cannot load the recording signing keys in {data_dir / 'keys'}: {exc}")
        for path in extra_keys:
            try:
                trusted.append(load_public_key(path.read_bytes()))
            except (OSError, ValueError) as exc:
                fail(f"--public-key {path}: {exc}", EXIT_CONFIG)
    try:
        store = open_store(cfg.store, data_dir)
    except StoreError as exc:
        fail(f"cannot open the session index: {exc}", EXIT_CONFIG)
    except Exception as exc:  # sqlite3.Error, OSError, ...
        where = redact_url(cfg.store) if cfg.store else data_dir / DEFAULT_DB_NAME
        fail(f"cannot open the session index {where}: {exc}")
    try:
        storage = open_storage(cfg.recordings, data_dir)
    except Exception as exc:
        store.close()
        fail(f"cannot open the recordings at {cfg.recordings or data_dir / 'recordings'}: {exc}")
    try:
        yield Recordings(store, storage, trusted, the_cipher, config=cfg)
    finally:
        with contextlib.suppress(Exception):
            storage.shutdown()
        with contextlib.suppress(Exception):
            store.close()


def load_recording(rec: Recordings, session_id: str) -> tuple[SessionRecord | None, bytes]:
    """The index entry and the stored bytes of a session; exits 1 with a clear message
    when the session is unknown or its recording is gone."""
    row = rec.session(session_id)
    data = rec.read(session_id)
    if data is None:
        if row is None:
            fail(f"no session {session_id!r} (not in the session index nor in the recordings)")
        fail(f"session {session_id}: the recording is missing from {rec.storage.describe()}")
    return row, data


# --------------------------------------------------------------------------------------------
# times


def parse_time(value: str, option: str, *, now: float | None = None) -> float:
    """A point in time for ``--since``/``--until`` (see ``pgwarden.recording.access.
    parse_time``); exits 2 naming the option when ``value`` is not one."""
    try:
        return _parse_time(value, now=now)
    except ValueError as exc:
        fail(f"{option}: {exc}", EXIT_CONFIG)
