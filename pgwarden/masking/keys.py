"""Where the hash strategy's key comes from.

In order: ``masking.hash_key`` in the configuration (use ``${NAME}`` to keep it out of the
file), the ``PGWARDEN_MASKING_KEY`` environment variable, or a random key generated once
into ``data_dir/masking.key`` (mode 0600). Several gateways that must mask alike (so their
hashes join) need the same key: set it in the configuration or the environment.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from pgwarden.masking.config import MaskingConfig
from pgwarden.masking.errors import MaskingError

ENV_KEY = "PGWARDEN_MASKING_KEY"
KEY_FILE = "masking.key"


def masking_key(
    config: MaskingConfig,
    data_dir: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None = None,
) -> bytes:
    """The key for ``Masker`` (bytes), from the config, the environment or data_dir."""
    if config.hash_key:
        return config.hash_key.encode("utf-8")
    environ = os.environ if env is None else env
    value = environ.get(ENV_KEY)
    if value:
        if len(value) < 16:
            raise MaskingError(ENV_KEY, "must be at least 16 characters")
        return value.encode("utf-8")
    if data_dir is None:
        raise MaskingError("masking.hash_key", f"no key: set it, or {ENV_KEY}, or a data_dir")
    path = Path(data_dir) / KEY_FILE
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)  # another process made it first
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
        f.flush()
        os.fsync(f.fileno())
    return key


def _read(path: Path) -> bytes:
    key = path.read_bytes().strip()
    if len(key) < 16:
        raise MaskingError("masking.hash_key", f"{path} holds no usable key")
    return key
