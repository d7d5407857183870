#!/usr/bin/env python3
"""Run asyncpg's own test suite directly against PostgreSQL and through the gateway, and compare.

Acceptance criterion: every test of a widely used client library's own suite that passes when
run directly against PostgreSQL must also pass when run through pgwarden (allow-all policy).

What it does:

1. Downloads the sdist of the installed asyncpg version with pip (`pip download --no-binary`)
   and extracts its `tests/` into `.cache/client-suite/asyncpg-<version>/` (never committed).
2. Runs the suite DIRECTLY against a throwaway PostgreSQL (`pgwarden.devcluster.DevCluster`,
   server TLS on): asyncpg's test base sees PGHOST and uses that running server
   (`asyncpg.cluster.RunningCluster`), connecting with PGHOST/PGPORT/PGUSER/PGPASSWORD/
   PGDATABASE as the superuser `postgres`.
3. Runs the same suite THROUGH the gateway: a second, identical throwaway PostgreSQL with
   `pgwarden serve` in front of it (targets holding the superuser's credentials, no policy:
   allow-all). PGUSER is the token's subject (`postgres`, the superuser's name, so tests that
   compare current_user still hold), PGPASSWORD a token from the local issuer, PGDATABASE the
   target. Each leg has its own server so that what one leaves behind cannot sway the other.
4. Compares per-test outcomes (JUnit XML). A test that passed directly but not through the
   gateway is a regression unless `tests/client_suite/asyncpg_exclusions.txt` lists it with a
   reason. Regressions are re-run once through a fresh gateway on their own; one that then
   passes is reported as flaky, and still counts unless `--allow-flaky` is given.

Logs, JUnit files, the gateway's config and log and a summary.json go to the work directory
(default `.cache/client-suite/runs/<time>`, the newest five kept).

Exit status: 0 when there is no unexcluded regression, 1 when there is, 2 on set-up errors.

    .venv/bin/python scripts/client_suite.py                 # every module that uses a server
    .venv/bin/python scripts/client_suite.py --all           # every module of the suite
    .venv/bin/python scripts/client_suite.py -m test_copy -m test_cursor
    .venv/bin/python scripts/client_suite.py -k "TestCopy and from_table"
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import importlib.metadata
import importlib.util
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pgwarden.devcluster import DevCluster  # noqa: E402

CACHE_DIR = ROOT / ".cache" / "client-suite"
EXCLUSIONS_FILE = ROOT / "tests" / "client_suite" / "asyncpg_exclusions.txt"
SUBJECT = "postgres"  # the token's subject == the superuser's name
TARGET = "postgres"
# Databases the suite creates and connects to by name (test_cache_invalidation,
# test_introspection). Through the gateway the database name picks a target, so each gets a
# target of the same name: the suite reaches the same databases on both legs.
EXTRA_DATABASES = ("testdb", "asyncpg_intro_test")

# Modules of the suite that never talk to a server, left out by default (`--all` runs them):
#   test__sourcecode     runs flake8/mypy over asyncpg's source tree, which is not extracted;
#   test__environment    checks PGVERSION/ASYNCPG_VERSION of asyncpg's own CI (skipped anyway);
#   test_subinterpreters imports asyncpg.protocol in subinterpreters (Python 3.14+ only).
# Every other module is run: the whole suite takes about a minute per leg here.
NO_SERVER_MODULES = frozenset({"test__sourcecode", "test__environment", "test_subinterpreters"})

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
EXIT_OK, EXIT_REGRESSION, EXIT_SETUP = 0, 1, 2


class SetupError(Exception):
    """The comparison could not be made (download, server, gateway or pytest trouble)."""


# ---------------------------------------------------------------------------------------------
# Obtaining the suite


def asyncpg_version() -> str:
    return importlib.metadata.version("asyncpg")


def _pip_commands() -> list[list[str]]:
    """Ways to run pip download here, best first (uv-made venvs have no pip of their own)."""
    cmds: list[list[str]] = []
    if importlib.util.find_spec("pip") is not None:
        cmds.append([sys.executable, "-m", "pip"])
    for python in ("python3", "python"):
        exe = shutil.which(python)
        if exe and Path(exe).resolve() != Path(sys.executable).resolve():
            cmds.append([exe, "-m", "pip"])
    for uvx in ("uvx",):
        exe = shutil.which(uvx)
        if exe:
            cmds.append([exe, "pip"])
    return cmds


def fetch_suite(version: str, cache: Path = CACHE_DIR) -> Path:
    """Return the directory holding asyncpg's `tests/` package for `version` (download once)."""
    suite_root = cache / f"asyncpg-{version}"
    marker = suite_root / ".complete"
    if marker.exists():
        return suite_root
    sdist_dir = cache / "sdist"
    sdist_dir.mkdir(parents=True, exist_ok=True)
    sdist = sdist_dir / f"asyncpg-{version}.tar.gz"
    if not sdist.exists():
        errors: list[str] = []
        for pip in _pip_commands():
            cmd = [
                *pip,
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"asyncpg=={version}",
                "-d",
                str(sdist_dir),
            ]
            print(f"client-suite: {' '.join(cmd)}", flush=True)
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if result.returncode == 0 and sdist.exists():
                break
            errors.append(f"{' '.join(pip)}: {(result.stderr or result.stdout).strip()[-800:]}")
        else:
            raise SetupError("could not download the asyncpg sdist:\n" + "\n".join(errors))
    tmp = Path(tempfile.mkdtemp(prefix="extract-", dir=cache))
    try:
        prefix = f"asyncpg-{version}/tests/"
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            if not members:
                raise SetupError(f"{sdist} has no {prefix}")
            tar.extractall(tmp, members=members, filter="data")
        if suite_root.exists():
            shutil.rmtree(suite_root)
        (tmp / f"asyncpg-{version}").rename(suite_root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    (suite_root / "pytest.ini").write_text(
        "[pytest]\n"
        "# written by scripts/client_suite.py: keep the project's pytest settings out\n"
        "addopts =\n"
        "testpaths = tests\n",
        encoding="utf-8",
    )
    marker.write_text(version + "\n", encoding="utf-8")
    return suite_root


# ---------------------------------------------------------------------------------------------
# Running the suite


@dataclasses.dataclass
class LegResult:
    name: str
    outcomes: dict[str, str]  # test id -> passed/failed/skipped
    messages: dict[str, str]  # test id -> first line of the failure
    seconds: float
    returncode: int
    junit: Path
    log: Path

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes.values() if o == outcome)


def test_id(classname: str, name: str) -> str:
    """JUnit classname `tests.test_copy.TestCopyFrom` + name -> pytest node id."""
    parts = classname.split(".")
    # unittest classes are top-level in their modules: the last part is the class.
    for i in range(len(parts), 0, -1):
        if parts[i - 1].startswith("test_") or parts[i - 1] == "tests":
            module, cls = parts[:i], parts[i:]
            break
    else:
        module, cls = parts[:-1], parts[-1:]
    return "/".join(module) + ".py::" + "::".join([*cls, name])


def parse_junit(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    outcomes: dict[str, str] = {}
    messages: dict[str, str] = {}
    if not path.exists():
        return outcomes, messages
    tree = ET.parse(path)  # noqa: S314 - our own pytest run wrote it
    for case in tree.iter("testcase"):
        tid = test_id(case.get("classname", ""), case.get("name", ""))
        outcome = PASSED
        message = ""
        for child in case:
            if child.tag in ("failure", "error"):
                # A teardown error after a pass is a failure too; the first problem wins.
                if outcome != FAILED:
                    outcome = FAILED
                    message = (child.get("message") or child.text or "").strip()
            elif child.tag == "skipped" and outcome == PASSED:
                outcome = SKIPPED
                message = (child.get("message") or "").strip()
        # A test can be reported more than once (subtests): a failure anywhere wins.
        previous = outcomes.get(tid)
        if previous == FAILED or (previous == PASSED and outcome == SKIPPED):
            continue
        outcomes[tid] = outcome
        messages[tid] = message.splitlines()[0][:300] if message else ""
    return outcomes, messages


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PYTEST"))}
    env.pop("PYTHONPATH", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


_PREFLIGHT = """
import asyncio, json, asyncpg
async def main():
    con = await asyncpg.connect()  # everything from PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE
    try:
        user = await con.fetchval("SELECT current_user")
        try:
            session = await con.fetchval("SHOW pgwarden.session_id")
        except asyncpg.PostgresError:
            session = None
        print(json.dumps({"user": user, "session": session}))
    finally:
        await con.close()
asyncio.run(main())
"""


def preflight(name: str, pg_env: dict[str, str], *, through_gateway: bool) -> None:
    """Check that the environment the leg will use reaches the right server as the superuser
    (through the gateway: a pgwarden session; directly: not one)."""
    env = base_env()
    env.update(pg_env)
    result = subprocess.run(
        [sys.executable, "-c", _PREFLIGHT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise SetupError(f"[{name}] cannot connect:\n{result.stderr.strip()[-2000:]}")
    info = json.loads(result.stdout)
    if info["user"] != pg_env["PGUSER"] or (info["session"] is not None) != through_gateway:
        raise SetupError(f"[{name}] connected to the wrong place: {info}")


def run_leg(
    name: str,
    suite_root: Path,
    selection: Sequence[str],
    pg_env: dict[str, str],
    out_dir: Path,
    *,
    timeout: int,
    leg_timeout: int,
    keyword: str | None = None,
) -> LegResult:
    junit = out_dir / f"{name}.xml"
    log = out_dir / f"{name}.log"
    env = base_env()
    env.update(pg_env)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(suite_root / "pytest.ini"),
        "--rootdir",
        str(suite_root),
        "-p",
        "no:cacheprovider",
        "-p",
        "timeout",
        f"--timeout={timeout}",
        "--timeout-method=signal",
        f"--junitxml={junit}",
        "-o",
        "junit_family=xunit1",
        "-rfE",
        "-q",
        "--tb=short",
        *(["-k", keyword] if keyword else []),
        *selection,
    ]
    print(f"client-suite: [{name}] running {len(selection)} selection item(s)", flush=True)
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n\n")
        fh.flush()
        try:
            proc = subprocess.run(
                cmd,
                cwd=suite_root,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                timeout=leg_timeout,
                check=False,
            )
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = -1
            fh.write(f"\nclient-suite: leg timed out after {leg_timeout}s\n")
    seconds = time.monotonic() - started
    outcomes, messages = parse_junit(junit)
    print(
        f"client-suite: [{name}] {seconds:.0f}s, exit {rc}: "
        f"{sum(o == PASSED for o in outcomes.values())} passed, "
        f"{sum(o == FAILED for o in outcomes.values())} failed, "
        f"{sum(o == SKIPPED for o in outcomes.values())} skipped (log {log})",
        flush=True,
    )
    # pytest exits 0 (all passed) or 1 (some failed) after a complete run; anything else
    # (collection errors, usage errors, a hang) means the leg's results cannot be compared.
    if rc not in (0, 1):
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SetupError(f"[{name}] pytest did not complete (exit {rc}):\n{tail}")
    return LegResult(name, outcomes, messages, seconds, rc, junit, log)


# ---------------------------------------------------------------------------------------------
# The gateway


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_cluster() -> DevCluster:
    """The server both legs talk to: TLS on (asyncpg's default sslmode is prefer, so the
    direct leg uses TLS as the gateway leg does), JIT off as in asyncpg's own test clusters
    (timing tests), room for the pool tests' connections."""
    return DevCluster(ssl=True, settings={"jit": "off"}, max_connections=300)


def direct_env(pg: DevCluster) -> dict[str, str]:
    return {
        "PGHOST": pg.host,
        "PGPORT": str(pg.port),
        "PGUSER": pg.superuser,
        "PGPASSWORD": pg.superuser_password,
        "PGDATABASE": "postgres",
    }


def pgwarden_cli() -> list[str]:
    exe = Path(sys.executable).with_name("pgwarden")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from pgwarden.cli.main import main; main()"]


@contextlib.contextmanager
def running_gateway(
    pg: DevCluster, work: Path, name: str, cli: Sequence[str]
) -> Iterator[dict[str, str]]:
    """Start `pgwarden serve` in front of `pg`; yield the PG* variables that reach it."""
    port, api_port = free_port(), free_port()
    cfg = work / f"{name}.pgwarden.yaml"
    cfg.write_text(
        json.dumps(
            {
                "listen": f"127.0.0.1:{port}",
                "api": {"listen": f"127.0.0.1:{api_port}"},
                "data_dir": str(work / f"{name}.pgwarden-data"),
                "identity": {"local_issuer": True, "max_token_ttl": "12h"},
                # The criterion is about an allow-all policy, and results must come back
                # unchanged: say so rather than rely on the defaults (the built-in secure
                # policy and masking detectors).
                "policy": {"mode": "enforce", "default": "allow", "rules": []},
                "masking": {"detectors": [], "columns": []},
                "targets": {
                    target: {
                        "host": pg.host,
                        "port": pg.port,
                        "dbname": dbname,
                        "user": pg.superuser,
                        "password": "${PGWARDEN_CLIENT_SUITE_PASSWORD}",
                        "sslmode": "disable",
                    }
                    for target, dbname in ((TARGET, "postgres"), *((d, d) for d in EXTRA_DATABASES))
                },
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    env = base_env()
    env["PGWARDEN_CLIENT_SUITE_PASSWORD"] = pg.superuser_password
    log = work / f"{name}.pgwarden.log"
    with log.open("w", encoding="utf-8") as fh:
        proc = subprocess.Popen(
            [*cli, "serve", "-c", str(cfg), "--log-level", "info"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SetupError(
                    f"the gateway exited with {proc.returncode}:\n"
                    + log.read_text(encoding="utf-8", errors="replace")[-3000:]
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise SetupError("the gateway did not start listening in 60s")
            time.sleep(0.1)
        token = subprocess.run(
            [*cli, "token", "issue", "-c", str(cfg), "--subject", SUBJECT, "--ttl", "12h"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        yield {
            "PGHOST": "127.0.0.1",
            "PGPORT": str(port),
            "PGUSER": SUBJECT,
            "PGPASSWORD": token,
            "PGDATABASE": TARGET,
        }
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# ---------------------------------------------------------------------------------------------
# Exclusions and comparison


def load_exclusions(path: Path = EXCLUSIONS_FILE) -> dict[str, str]:
    """`<test id or fnmatch pattern> | <reason>` per line; `#` starts a comment line."""
    exclusions: dict[str, str] = {}
    if not path.exists():
        return exclusions
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pattern, sep, reason = line.partition("|")
        if not sep or not reason.strip() or not pattern.strip():
            raise SetupError(f"{path}:{lineno}: expected `<test id> | <reason>`")
        exclusions[pattern.strip()] = reason.strip()
    return exclusions


def excluded_by(tid: str, exclusions: dict[str, str]) -> str | None:
    for pattern in exclusions:
        if tid == pattern or fnmatch.fnmatchcase(tid, pattern):
            return pattern
    return None


def print_table(direct: LegResult, gateway: LegResult) -> None:
    rows = [("", "direct", "gateway")]
    for outcome in (PASSED, FAILED, SKIPPED):
        rows.append((outcome, str(direct.count(outcome)), str(gateway.count(outcome))))
    rows.append(("total", str(len(direct.outcomes)), str(len(gateway.outcomes))))
    rows.append(("time", f"{direct.seconds:.0f}s", f"{gateway.seconds:.0f}s"))
    print()
    for name, d, g in rows:
        print(f"  {name:<8} {d:>8} {g:>8}")
    print()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-m",
        "--module",
        action="append",
        default=[],
        help="a test module to run (test_copy); repeatable; default: all that use a server",
    )
    parser.add_argument(
        "--all", action="store_true", help="also run the modules that use no server"
    )
    parser.add_argument("-k", dest="keyword", help="pytest -k expression, for both legs")
    parser.add_argument("--timeout", type=int, default=120, help="per-test timeout (s)")
    parser.add_argument("--leg-timeout", type=int, default=3600, help="per-leg timeout (s)")
    parser.add_argument(
        "--no-rerun", action="store_true", help="do not re-run regressions to tell flaky ones apart"
    )
    parser.add_argument(
        "--allow-flaky",
        action="store_true",
        help="regressions that pass when re-run do not fail the run",
    )
    parser.add_argument(
        "--pgwarden",
        metavar="CMD",
        help="the pgwarden command line to run (default: the one next to this Python)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="where logs and JUnit files go (default: a new dir in .cache/client-suite/runs)",
    )
    args = parser.parse_args(argv)

    version = asyncpg_version()
    suite_root = fetch_suite(version)
    all_modules = sorted(p.stem for p in (suite_root / "tests").glob("test_*.py"))
    if args.module:
        selection = [f"tests/{m.removesuffix('.py')}.py" for m in args.module]
        missing = [s for s in selection if not (suite_root / s).exists()]
        if missing:
            raise SetupError(f"no such module(s) in the suite: {missing}")
    else:
        selection = [f"tests/{m}.py" for m in all_modules if args.all or m not in NO_SERVER_MODULES]
    exclusions = load_exclusions()
    cli = shlex.split(args.pgwarden) if args.pgwarden else pgwarden_cli()

    if args.work_dir is None:
        prune_runs()
    work = args.work_dir or CACHE_DIR / "runs" / time.strftime("%Y%m%d-%H%M%S")
    work.mkdir(parents=True, exist_ok=True)
    work = work.resolve()
    print(f"client-suite: asyncpg {version}, suite {suite_root}, output {work}", flush=True)

    common = dict(timeout=args.timeout, leg_timeout=args.leg_timeout)
    # Each leg gets a fresh server, so that what one leg leaves behind (tests that fail can
    # leave tables) cannot change the other's results.
    with new_cluster() as pg:
        preflight("direct", direct_env(pg), through_gateway=False)
        direct = run_leg(
            "direct", suite_root, selection, direct_env(pg), work, keyword=args.keyword, **common
        )
    with new_cluster() as pg, running_gateway(pg, work, "gateway", cli) as gw_env:
        preflight("gateway", gw_env, through_gateway=True)
        gateway = run_leg(
            "gateway", suite_root, selection, gw_env, work, keyword=args.keyword, **common
        )

    regressed = sorted(
        tid
        for tid, outcome in direct.outcomes.items()
        if outcome == PASSED and gateway.outcomes.get(tid) != PASSED
    )
    unexcluded = [t for t in regressed if excluded_by(t, exclusions) is None]
    flaky: list[str] = []
    if unexcluded and not args.no_rerun:
        with new_cluster() as pg, running_gateway(pg, work, "gateway-rerun", cli) as gw_env:
            rerun = run_leg("gateway-rerun", suite_root, unexcluded, gw_env, work, **common)
        flaky = [t for t in unexcluded if rerun.outcomes.get(t) == PASSED]

    print_table(direct, gateway)

    excluded_hits: dict[str, list[str]] = {}
    for tid in regressed:
        pattern = excluded_by(tid, exclusions)
        if pattern is not None:
            excluded_hits.setdefault(pattern, []).append(tid)
    if excluded_hits:
        print(f"Excluded ({sum(map(len, excluded_hits.values()))} tests that pass directly):")
        for pattern, tids in excluded_hits.items():
            print(f"  {pattern}  ({len(tids)})  -- {exclusions[pattern]}")
        print()
    unused = [p for p in exclusions if p not in excluded_hits]
    if unused:
        print("Exclusions that matched no regression this run (stale, or not selected):")
        for pattern in unused:
            print(f"  {pattern}")
        print()
    gateway_only = sorted(
        t for t, o in gateway.outcomes.items() if o == PASSED and direct.outcomes.get(t) != PASSED
    )
    if gateway_only:
        print(f"Passed only through the gateway ({len(gateway_only)}):")
        for tid in gateway_only:
            print(f"  {tid}  (direct: {direct.outcomes.get(tid, 'not run')})")
        print()

    hard = [t for t in unexcluded if t not in flaky]
    if flaky:
        print(f"FLAKY: failed through the gateway, passed when re-run alone ({len(flaky)}):")
        for tid in flaky:
            print(f"  {tid}: {gateway.messages.get(tid, '')}")
        print()
    if hard:
        print(f"REGRESSIONS: passed directly, not through the gateway ({len(hard)}):")
        for tid in hard:
            print(
                f"  {tid}: {gateway.outcomes.get(tid, 'not run')}: {gateway.messages.get(tid, '')}"
            )
        print()

    summary = {
        "asyncpg": version,
        "selection": list(selection),
        "direct": {
            "seconds": round(direct.seconds, 1),
            **{o: direct.count(o) for o in (PASSED, FAILED, SKIPPED)},
        },
        "gateway": {
            "seconds": round(gateway.seconds, 1),
            **{o: gateway.count(o) for o in (PASSED, FAILED, SKIPPED)},
        },
        "regressions": hard,
        "flaky": flaky,
        "excluded": {p: t for p, t in excluded_hits.items()},
        "gateway_only": gateway_only,
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    failing = hard + ([] if args.allow_flaky else flaky)
    if direct.count(PASSED) == 0:
        print("client-suite: nothing passed directly; the set-up is broken")
        return EXIT_SETUP
    if failing:
        print(
            f"client-suite: FAIL: {len(failing)} test(s) pass directly but not through "
            f"the gateway (logs, JUnit files and the gateway's log in {work})"
        )
        return EXIT_REGRESSION
    print(
        f"client-suite: OK: every test that passed directly passed through the gateway "
        f"({direct.count(PASSED)} passed directly; {len(regressed) - len(unexcluded)} "
        f"excluded)"
    )
    return EXIT_OK


def prune_runs(keep: int = 5) -> None:
    """Keep only the newest `keep` run directories under .cache/client-suite/runs."""
    runs = CACHE_DIR / "runs"
    if runs.is_dir():
        for old in sorted(p for p in runs.iterdir() if p.is_dir())[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SetupError as exc:
        print(f"client-suite: ERROR: {exc}", file=sys.stderr)
        sys.exit(EXIT_SETUP)
