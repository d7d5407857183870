"""Compile the data path's hot modules with mypyc, next to their sources (``make setup``).

    .venv/bin/python scripts/build_native.py           # build (about a minute on 2 cores)
    .venv/bin/python scripts/build_native.py --clean   # remove the build: plain Python again

Which modules, and how a build that no longer matches its sources is kept from running:
``pgwarden/_native.py``. The old build is removed first, so a build that fails leaves plain
Python, which behaves the same and is slower. Exits 1 when the build fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from mypyc.build import mypycify
from setuptools import setup

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pgwarden"

sys.path.insert(0, str(ROOT))
os.environ["PGWARDEN_PURE"] = "1"  # this script must not load the build it replaces

from pgwarden._native import (  # noqa: E402
    _SUFFIX,
    GROUP,
    GROUP_LIBRARY,
    MANIFEST,
    MODULES,
    manifest_for,
    module_file,
)


def _built_files() -> list[Path]:
    # Every compiled module, also of modules no longer listed: Python would still import one
    # (and it would look for its group's code in a library that no longer has it).
    modules = PACKAGE.rglob(f"*{_SUFFIX}")
    return [*modules, PACKAGE / MANIFEST, ROOT / GROUP_LIBRARY]


def clean() -> None:
    for path in _built_files():
        path.unlink(missing_ok=True)


def build() -> None:
    sources = [str(module_file(PACKAGE, m).relative_to(ROOT)) for m in MODULES]
    with tempfile.TemporaryDirectory(prefix="pgwarden-native-") as tmp:
        os.chdir(ROOT)
        setup(
            name=GROUP,
            ext_modules=mypycify(sources, opt_level="3", group_name=GROUP, target_dir=tmp),
            script_args=[
                "--quiet",
                "build_ext",
                "--inplace",
                "--build-temp",
                tmp,
                "--build-lib",
                tmp,
            ],
        )
    (PACKAGE / MANIFEST).write_text(json.dumps(manifest_for(PACKAGE), indent=1) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", action="store_true", help="remove the build and stop")
    args = parser.parse_args()
    clean()
    if args.clean:
        return 0
    try:
        build()
    except (Exception, SystemExit) as exc:  # setuptools reports a failed compile as SystemExit
        clean()
        print(f"build_native: the build failed ({exc}); plain Python it is", file=sys.stderr)
        return 1
    print(f"build_native: compiled {len(MODULES)} modules with mypyc", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
