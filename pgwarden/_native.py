"""The data path's hot modules, compiled with mypyc when the build is current.

Every statement runs through the relay, the guard's hooks, the classifier's caches, the
masking scanner and the recorder: a few hundred Python calls, most of the gateway's CPU.
``make setup`` compiles these modules (``scripts/build_native.py``) from the same typed
source, and records each one's SHA-256 in ``_native.json``. The compiled modules sit next to
their sources, where Python prefers them, so a source edited after the build would run as the
old compiled code: ``guard`` (run on ``import pgwarden``) checks the recorded hashes and, when
any differs, the build was made by another Python, or ``PGWARDEN_PURE=1`` is set, imports all
of them from source (one group: compiled modules call each other directly, so a mix would
still run the old code). It says so quietly (``describe``: in the gateway's start-up log line
and in ``make bench``), not as a warning on every command's stderr: the sources behave the
same, only slower. Profilers that read Python frames (py-spy) need ``PGWARDEN_PURE=1``.

Left as plain Python: modules off the per-statement path. The protocol reader keeps its buffer
as ``bytes``, which mypyc indexes and slices natively; over a ``bytearray`` it ran slower
compiled than interpreted (generic calls and boxed integers for every message). mypyc 1.x turns
a dataclass ``ClassVar`` with a default into a field, so the compiled message and event classes
give their constant ``code`` and ``type`` as properties. A Python class cannot subclass a
compiled one (its first instance raises TypeError): subclasses live in their base's module, and
``Hold`` is a protocol (tests/unit/test_native.py checks the rule). Compiled code also checks
declared types at run time, so a sentinel must have the declared type (``classify``'s shape
cache catches KeyError). Module constants the compiled functions read are ``Final``: otherwise
each use is a dictionary look-up (tests/unit/test_native.py checks it).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

__all__ = [
    "GROUP",
    "GROUP_LIBRARY",
    "MODULES",
    "active",
    "describe",
    "guard",
    "manifest_for",
    "module_file",
    "state",
]

MODULES: tuple[str, ...] = (
    "pgwarden.proxy.relay",
    "pgwarden.proxy.channel",
    "pgwarden.guard.hooks",
    "pgwarden.guard.recorder",
    "pgwarden.recording.canonical",
    "pgwarden.recording.writer",
    "pgwarden.recording.events",
    "pgwarden.protocol.messages",
    "pgwarden.protocol.reader",
    "pgwarden.proxy.hooks",
    "pgwarden.sql.model",
    "pgwarden.sql.classifier",
    "pgwarden.masking.detectors",
    "pgwarden.masking.engine",
    "pgwarden.guard.masking",
    "pgwarden.recording.storage.local",
    "pgwarden.sql.prepared",
    "pgwarden.recording.context",
    "pgwarden.tally",
)

MANIFEST = "_native.json"
GROUP = "pgwarden_native"
_SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
GROUP_LIBRARY = f"{GROUP}__mypyc{_SUFFIX}"  # their shared code, beside the package


def module_file(package_dir: Path, module: str, suffix: str = ".py") -> Path:
    """``pgwarden.proxy.relay`` -> ``<package_dir>/proxy/relay<suffix>``."""
    return (package_dir / Path(*module.split(".")[1:])).with_suffix(suffix)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_for(package_dir: Path, modules: Sequence[str] = MODULES) -> dict[str, object]:
    """What ``_native.json`` records for a build of ``modules`` from their current sources."""
    return {
        "python": sys.implementation.cache_tag,
        "modules": {m: _digest(module_file(package_dir, m)) for m in modules},
    }


def state(package_dir: Path, modules: Sequence[str] = MODULES) -> str:
    """``absent`` (nothing compiled), ``current`` (every module compiled from its source as it
    is now, by this Python) or ``stale`` (anything else: run from source)."""
    built = [module_file(package_dir, m, _SUFFIX).exists() for m in modules]
    if not any(built):
        return "absent"
    if not all(built) or not (package_dir.parent / GROUP_LIBRARY).exists():
        return "stale"
    try:
        recorded = json.loads((package_dir / MANIFEST).read_text("utf-8"))
        return "current" if recorded == manifest_for(package_dir, modules) else "stale"
    except (OSError, ValueError):
        return "stale"


class _FromSource(importlib.abc.MetaPathFinder):
    """Finds the listed modules' ``.py`` files, ahead of their compiled builds."""

    def __init__(self, package_dir: Path, modules: Sequence[str]) -> None:
        self.sources = {m: module_file(package_dir, m) for m in modules}

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        source = self.sources.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


_FOUND: list[str] = ["absent"]
_PURE: list[bool] = [False]


def active() -> bool:
    """True when this process runs the compiled modules."""
    return _FOUND[0] == "current" and not _PURE[0]


def describe() -> str:
    """Which build of the hot modules this process runs, in words."""
    if active():
        return f"compiled with mypyc ({len(MODULES)} modules)"
    if _PURE[0]:
        return "plain Python (PGWARDEN_PURE is set)"
    if _FOUND[0] == "stale":
        return "plain Python (the compiled build is older than the sources: make setup)"
    return "plain Python (not compiled: make setup)"


def guard(package_dir: Path) -> None:
    _FOUND[0] = found = state(package_dir)
    _PURE[0] = os.environ.get("PGWARDEN_PURE", "") not in ("", "0")
    if found != "absent" and not active():
        if not any(isinstance(f, _FromSource) for f in sys.meta_path):
            sys.meta_path.insert(0, _FromSource(package_dir, MODULES))
