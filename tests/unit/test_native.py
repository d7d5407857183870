"""The compiled data-path modules run only while they match their sources (pgwarden._native)."""

from __future__ import annotations

import ast
import importlib
import json
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pgwarden
from pgwarden import _native
from pgwarden._native import _SUFFIX, GROUP_LIBRARY, MANIFEST, manifest_for, module_file, state

PACKAGE = Path(pgwarden.__file__).parent
ROOT = PACKAGE.parent
MODULES = ("pkg.a", "pkg.sub.b")


def _package(tmp_path: Path) -> Path:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("X = 1\n")
    (pkg / "sub" / "b.py").write_text("Y = 2\n")
    return pkg


def _compile(pkg: Path) -> None:
    for rel in ("a", "sub/b"):
        (pkg / rel).with_suffix(_SUFFIX).write_bytes(b"\x7fELF")
    (pkg.parent / GROUP_LIBRARY).write_bytes(b"\x7fELF")
    (pkg / MANIFEST).write_text(json.dumps(manifest_for(pkg, MODULES)))


def test_no_build_is_absent(tmp_path: Path) -> None:
    assert state(_package(tmp_path), MODULES) == "absent"


def test_a_build_of_the_current_sources_is_current(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    _compile(pkg)
    assert state(pkg, MODULES) == "current"


def test_a_source_edited_after_the_build_makes_it_stale(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    _compile(pkg)
    (pkg / "sub" / "b.py").write_text("Y = 3\n")
    assert state(pkg, MODULES) == "stale"


def test_a_partial_build_or_a_missing_manifest_is_stale(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    _compile(pkg)
    (pkg / MANIFEST).unlink()
    assert state(pkg, MODULES) == "stale"
    _compile(pkg)
    (pkg / "a").with_suffix(_SUFFIX).unlink()
    assert state(pkg, MODULES) == "stale"
    _compile(pkg)
    (pkg.parent / GROUP_LIBRARY).unlink()  # their shared code
    assert state(pkg, MODULES) == "stale"


def test_a_build_by_another_python_is_stale(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    _compile(pkg)
    recorded = json.loads((pkg / MANIFEST).read_text())
    (pkg / MANIFEST).write_text(json.dumps(dict(recorded, python="cpython-399")))
    assert state(pkg, MODULES) == "stale"


def _loaded(root: Path, env: dict[str, str]) -> dict[str, object]:
    code = (
        "import json, warnings; warnings.simplefilter('always')\n"
        "import pgwarden, pgwarden.proxy.relay as r, pgwarden.sql.classifier as c\n"
        "from pgwarden import _native\n"
        "print(json.dumps({'active': _native.active(), 'files': [r.__file__, c.__file__],\n"
        "                  'described': _native.describe()}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    result["stderr"] = out.stderr
    return result


built = pytest.mark.skipif(
    state(PACKAGE) != "current", reason="the compiled modules are not built (make setup)"
)


@built
def test_this_checkout_runs_its_compiled_build() -> None:
    loaded = _loaded(ROOT, {"PGWARDEN_PURE": ""})
    assert loaded["active"] is True
    assert all(str(f).endswith(_SUFFIX) for f in loaded["files"])  # type: ignore[attr-defined]
    assert str(loaded["described"]).startswith("compiled with mypyc")


@built
def test_pgwarden_pure_runs_the_sources() -> None:
    loaded = _loaded(ROOT, {"PGWARDEN_PURE": "1"})
    assert loaded["active"] is False
    assert all(str(f).endswith(".py") for f in loaded["files"])  # type: ignore[attr-defined]
    assert loaded["described"] == "plain Python (PGWARDEN_PURE is set)"
    assert loaded["stderr"] == ""


@built
def test_an_edited_source_runs_as_edited_not_as_the_old_build(tmp_path: Path) -> None:
    shutil.copytree(PACKAGE, tmp_path / "pgwarden", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / GROUP_LIBRARY, tmp_path / GROUP_LIBRARY)
    relay = tmp_path / "pgwarden" / "proxy" / "relay.py"
    relay.write_text(relay.read_text() + "\nEDITED = True\n")
    loaded = _loaded(tmp_path, {"PGWARDEN_PURE": ""})
    assert loaded["active"] is False
    # every listed module from source, the unedited ones too: compiled modules call each
    # other directly, so one compiled caller would still run the old relay
    assert all(str(f).endswith(".py") for f in loaded["files"])  # type: ignore[attr-defined]
    assert "older than the sources" in str(loaded["described"])
    # said in the gateway's start-up log and by make bench, not on every command's stderr
    assert loaded["stderr"] == ""


def test_the_listed_modules_exist() -> None:
    for module in _native.MODULES:
        assert module_file(PACKAGE, module).is_file(), module


def _classes_of(module_name: str) -> list[type]:
    module = importlib.import_module(module_name)
    return [c for c in vars(module).values() if isinstance(c, type) and c.__module__ == module_name]


def test_no_interpreted_class_subclasses_a_compiled_one() -> None:
    # mypyc refuses to build an instance of a Python class whose base is compiled (TypeError:
    # interpreted classes cannot inherit from compiled), at the first instance, so a Message
    # subclass outside protocol.messages broke every result with rows while imports went fine.
    # The rule holds for the list, whatever build is present.
    compiled = set(_native.MODULES)
    offenders = []
    for info in pkgutil.walk_packages(pgwarden.__path__, "pgwarden."):
        if info.name in compiled:
            continue
        for cls in _classes_of(info.name):
            bases = [b for b in cls.__mro__[1:] if b.__module__ in compiled]
            if bases:
                offenders.append(f"{cls.__module__}.{cls.__qualname__} <- {bases[0].__qualname__}")
    assert offenders == []


def _module_constants(tree: ast.Module) -> set[str]:
    """Names a module binds at its top level by plain assignment, without ``Final``."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names |= {n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if "Final" not in ast.unparse(node.annotation):
                names.add(node.target.id)
    return names


def _read_at_run_time(tree: ast.Module) -> set[str]:
    """Names read inside the module's functions, annotations left out."""
    annotations: set[int] = set()
    for node in ast.walk(tree):
        for ann in (
            getattr(node, "annotation", None),
            getattr(node, "returns", None),
        ):
            if isinstance(ann, ast.AST):
                annotations |= {id(n) for n in ast.walk(ann)}
    read: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for n in ast.walk(node):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
                    if id(n) not in annotations:
                        read.add(n.id)
    return read


def test_compiled_modules_read_only_final_module_constants() -> None:
    # Compiled, a module-level name that is not Final is a dictionary look-up at every use
    # (~25 ns); a Final one is a C static or inlined. The data path reads its constants and
    # caches for every message and statement.
    found = {}
    for module in _native.MODULES:
        tree = ast.parse(module_file(PACKAGE, module).read_text("utf-8"))
        slow = _module_constants(tree) & _read_at_run_time(tree)
        if slow:
            found[module] = sorted(slow)
    assert found == {}
