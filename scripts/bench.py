"""`make bench`: the data path measured against a direct connection and pgbouncer, in one run.

Starts a throwaway PostgreSQL, initialises pgbench (scale 1 by default) in database `bench`
and at scale 10 in `bench_tp` (plus `bench_customers`: 300k rows, each with a card number, an
SSN and an e-mail), starts the gateway (`pgwarden serve`, default policy, default masking,
recording on) as its own process and pgbouncer (scripts/bench_pgbouncer.py: session pooling,
md5 authentication) as another, then runs, each leg alternating direct, pgbouncer and gateway
in every round:

- memory: the gateway's (and pgbouncer's) VmRSS before and after opening 200 authenticated idle
  connections (scripts/bench_memory.py), per connection; first, while the processes are fresh
  (a Python process reuses memory it freed earlier, which would hide the cost);
- pgbench select-only (simple and extended protocol) and TPC-B (pgbench's default script,
  simple protocol), 8 clients: tps; failed transactions and aborted clients are counted and
  reported (a statement the gateway refuses or holds shows there, it does not stop the run);
- throughput with masking on (scripts/bench_throughput.py): COPY of all of pgbench_accounts
  (1M rows at scale 10) read by psql, a 300k-row SELECT fetched by psycopg (text format), and
  the same two on the sensitive table; MB/s and rows/s. Every sensitive run is checked:
  raw e-mails, SSNs and card numbers must arrive direct and through pgbouncer, and must not
  through the gateway. The gateway's VmRSS is sampled every 50 ms during every run (peak).

It prints medians per leg, then one table (direct, pgbouncer, gateway, gateway/direct,
gateway/pgbouncer), the memory lines and the performance issue's targets, marked met or not
met, and the classifier's cost per statement. Exits 1 if a throughput check failed.
`--quick` shortens everything (3 s pgbench legs, one round each) for a smoke run.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import bench_memory as mem
import bench_throughput as tp
from bench_pgbouncer import PgBouncer, find_pgbouncer

from pgwarden._native import describe as describe_native
from pgwarden.auth.local_issuer import LocalIssuer
from pgwarden.devcluster import DevCluster, find_bindir

ROOT = Path(__file__).resolve().parent.parent
TP_DB = "bench_tp"
ENDPOINTS = ("direct", "pgbouncer", "gateway")

#: pgbench legs: table name and the options that select the script and protocol
PGBENCH_LEGS = (
    ("pgbench -S simple", ("-S", "-M", "simple")),
    ("pgbench -S extended", ("-S", "-M", "extended")),
    ("pgbench TPC-B simple", ("-M", "simple")),
)

# The performance issue's targets.
SELECT_VS_PGBOUNCER = 0.5  # select-only tps >= 0.5 x pgbouncer
COPY_VS_DIRECT = 0.25  # 1M-row COPY >= 0.25 x direct
COPY_PEAK_MIB = 400  # gateway RSS while streaming the COPY < 400 MB
IDLE_CONN_KIB = 100  # per idle connection < 100 KB
COPY_LEG = "COPY accounts (psql)"


@dataclass
class PgbenchRun:
    tps: float
    processed: int = 0
    failed: int = 0
    aborted_clients: int = 0
    errors: list[str] = field(default_factory=list)
    cpu_seconds: float | None = None  # the proxy's CPU time (user + system) during the run

    @property
    def cpu_us_per_txn(self) -> float | None:
        if self.cpu_seconds is None or not self.processed:
            return None
        return self.cpu_seconds / self.processed * 1e6

    @property
    def trouble(self) -> bool:
        return bool(self.failed or self.aborted_clients or self.errors)


def _int(pattern: str, text: str) -> int:
    m = re.search(pattern, text, re.MULTILINE)
    return int(m.group(1)) if m else 0


def pgbench(bindir: Path, args: list[str], env: dict[str, str], timeout: float) -> PgbenchRun:
    """One pgbench run; errors (refused statements, aborted clients, a hang) are returned, not
    raised."""
    exe = str(client(bindir, "pgbench"))
    try:
        out = subprocess.run(
            [exe, *args], env=env, capture_output=True, text=True, check=False, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return PgbenchRun(0.0, errors=[f"no result after {timeout:.0f}s (a statement held?)"])
    text = out.stdout + out.stderr
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out.stdout)
    errors = list(
        dict.fromkeys(
            line.strip()
            for line in out.stderr.splitlines()
            if "error" in line.lower() or "fatal" in line.lower()
        )
    )
    if out.returncode != 0 and not errors:
        errors.append(f"pgbench exited {out.returncode}: {text.strip()[-300:]}")
    return PgbenchRun(
        float(m.group(1)) if m else 0.0,
        processed=_int(r"number of transactions actually processed: (\d+)", out.stdout),
        failed=_int(r"number of failed transactions: (\d+)", out.stdout),
        aborted_clients=len(re.findall(r"client \d+ (?:script \d+ )?aborted", out.stderr)),
        errors=errors,
    )


def client(bindir: Path, name: str) -> Path:
    return bindir / name if (bindir / name).exists() else Path(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ratio(row: tp.Row, a: str, b: str) -> float:
    x, y = row.values.get(a), row.values.get(b)
    return x / y if x is not None and y else math.nan


def print_table(rows: list[tp.Row]) -> None:
    """Medians: leg, unit, direct, pgbouncer, gateway, gateway/direct, gateway/pgbouncer."""
    width = max(len(r.leg) for r in rows)
    print(
        f"\n{'leg':{width}s}  {'unit':6s}  {'direct':>11s}  {'pgbouncer':>11s}  "
        f"{'gateway':>11s}  {'gw/direct':>9s}  {'gw/pgbouncer':>12s}"
    )
    for row in rows:
        digits = 1 if row.unit == "MB/s" else 0
        cells = [
            f"{row.values[n]:11.{digits}f}" if n in row.values else f"{'-':>11s}" for n in ENDPOINTS
        ]
        gd, gp = ratio(row, "gateway", "direct"), ratio(row, "gateway", "pgbouncer")
        print(
            f"{row.leg:{width}s}  {row.unit:6s}  {'  '.join(cells)}  "
            + (f"{gd:9.2f}" if not math.isnan(gd) else f"{'-':>9s}")
            + "  "
            + (f"{gp:12.2f}" if not math.isnan(gp) else f"{'-':>12s}")
        )


def start_gateway(
    tmp: Path,
    pg: DevCluster,
    dbs: list[str],
    name: str = "gw",
    *,
    wrapper: list[str] | None = None,
    start_timeout: float = 20,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    """`pgwarden serve` on a free port (``wrapper``: a command to run it under, e.g.
    valgrind; ``env``: its environment), once it accepts connections."""
    data_dir = tmp / name
    gw_port, api_port = free_port(), free_port()
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(
        f"listen: 127.0.0.1:{gw_port}\napi: {{listen: 127.0.0.1:{api_port}}}\n"
        f"data_dir: {data_dir}\n"
        "targets:\n"
        + "".join(
            f"  {db}:\n"
            f"    host: {pg.host}\n    port: {pg.port}\n    dbname: {db}\n"
            "    user: bench\n    password: bench-pw\n    sslmode: disable\n"
            for db in dbs
        )
    )
    server = subprocess.Popen(
        [*(wrapper or []), str(ROOT / ".venv/bin/pgwarden"), "serve", "-c", str(cfg)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + start_timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", gw_port)) == 0:
                break
        if server.poll() is not None:  # e.g. no .venv here: do not wait out start_timeout
            raise SystemExit(f"the gateway exited with status {server.returncode} at start")
        time.sleep(0.1)
    return server, gw_port


def pg_backends(pg: DevCluster) -> Callable[[], int]:
    """How many server sessions of the bench role are open (the gateway holds one per client
    session; pgbouncer only its pool)."""

    def count() -> int:
        out = pg.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'bench'")
        return int(out.strip() or 0)

    return count


class Peaks:
    """The throughput monitor: samples the gateway's and pgbouncer's RSS during their runs and
    keeps the peak per (leg, endpoint)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak_kb: dict[tuple[str, str], int] = {}

    @contextlib.contextmanager
    def _watch(self, key: tuple[str, str], pid: int) -> Iterator[None]:
        with mem.RssSampler(pid) as sampler:
            yield
        self.peak_kb[key] = max(self.peak_kb.get(key, 0), sampler.peak_kb)

    def __call__(self, leg: tp.Leg, ep: tp.Endpoint) -> AbstractContextManager[object]:
        pid = self.pids.get(ep.name)
        if pid is None:
            return contextlib.nullcontext()
        return self._watch((leg.name, ep.name), pid)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=8, help="length of each pgbench leg")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per leg")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--tp-scale", type=int, default=10, help="pgbench scale of the COPY leg")
    ap.add_argument(
        "--tp-rows", type=int, default=300_000, help="rows of the SELECT and sensitive legs"
    )
    ap.add_argument("--tp-rounds", type=int, default=3, help="alternating rounds per leg")
    ap.add_argument("--idle-conns", type=int, default=200, help="connections of the idle leg")
    ap.add_argument("--skip-pgbench", action="store_true", help="no pgbench legs")
    ap.add_argument("--skip-throughput", action="store_true", help="no COPY/SELECT legs")
    ap.add_argument("--skip-idle", action="store_true", help="no idle-connection memory leg")
    ap.add_argument("--skip-pgbouncer", action="store_true", help="no pgbouncer legs")
    ap.add_argument(
        "--skip-workers", action="store_true", help="no two-gateway-process select-only leg"
    )
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: 3 s pgbench legs, one round each"
    )
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.tp_rounds = 3, 1, 1

    print(f"gateway's hot modules: {describe_native()}", flush=True)
    bindir = find_bindir()
    bouncer_exe = None if args.skip_pgbouncer else find_pgbouncer()
    if bouncer_exe is None and not args.skip_pgbouncer:
        print("pgbouncer not found (`make pgbouncer` installs it): no pgbouncer legs", flush=True)
    table: list[tp.Row] = []
    failed = False
    run_started = time.monotonic()
    with (
        DevCluster(max_connections=args.idle_conns + 100) as pg,
        tempfile.TemporaryDirectory() as tmp,
        contextlib.ExitStack() as stack,
    ):
        pg.create_role("bench", "bench-pw", superuser=True)
        env = dict(os.environ, PGPASSWORD="bench-pw", PGSSLMODE="disable")
        dbs = {"bench": args.scale}
        if not args.skip_throughput:
            dbs[TP_DB] = args.tp_scale
        for db, scale in dbs.items():
            pg.create_database(db, owner="bench")
            subprocess.run(
                [str(client(bindir, "pgbench")), "-i", "-q", "-s", str(scale), "-h", pg.host,
                 "-p", str(pg.port), "-U", "bench", db],
                env=env, check=True, capture_output=True,
            )  # fmt: skip
        bouncer = None
        if bouncer_exe is not None:
            bouncer = stack.enter_context(
                PgBouncer(
                    bouncer_exe,
                    pg_host=pg.host,
                    pg_port=pg.port,
                    databases=list(dbs),
                    users={"bench": "bench-pw"},
                )
            )
        server, gw_port = start_gateway(Path(tmp), pg, list(dbs))
        pids = {"gateway": server.pid} | ({"pgbouncer": bouncer.pid} if bouncer else {})
        rss_log: list[tuple[str, dict[str, int]]] = [
            ("after start-up", {n: mem.rss_kb(p) for n, p in pids.items()})
        ]
        idle: dict[str, mem.IdleResult] = {}
        peaks = Peaks(pids)
        pgbench_runs: dict[str, dict[str, list[PgbenchRun]]] = {}
        try:
            token = LocalIssuer.load_or_create(Path(tmp) / "gw").issue("bench", (), 3600)
            endpoints = {
                "direct": tp.Endpoint("direct", pg.host, pg.port, "bench", "bench-pw", "bench"),
                "gateway": tp.Endpoint(
                    "gateway", "127.0.0.1", gw_port, "bench", token, "bench", masked=True
                ),
            }
            if bouncer is not None:
                endpoints["pgbouncer"] = tp.Endpoint(
                    "pgbouncer", bouncer.host, bouncer.port, "bench", "bench-pw", "bench"
                )
            order = [endpoints[n] for n in ENDPOINTS if n in endpoints]
            if not args.skip_idle:
                print(f"memory: {args.idle_conns} idle connections", flush=True)
                for ep in order:
                    if ep.name in pids:
                        res = mem.idle_connections(
                            pids[ep.name], ep.connect, args.idle_conns, probe=pg_backends(pg)
                        )
                        idle[ep.name] = res
                        print(idle_summary(ep.name, res), flush=True)
                rss_log.append(("after idle legs", {n: mem.rss_kb(p) for n, p in pids.items()}))
            if not args.skip_pgbench:
                print(
                    f"pgbench, {args.clients} clients, {args.seconds}s x {args.rounds} rounds "
                    f"({' / '.join(ep.name for ep in order)} alternating)",
                    flush=True,
                )
                for leg, opts in PGBENCH_LEGS:
                    runs = pgbench_legs(args, bindir, env, order, list(opts), pids)
                    pgbench_runs[leg] = runs
                    table.append(
                        tp.Row(
                            leg,
                            "tps",
                            {n: statistics.median(r.tps for r in rs) for n, rs in runs.items()},
                        )
                    )
                    print(pgbench_summary(leg, runs), flush=True)
                rss_log.append(("after pgbench", {n: mem.rss_kb(p) for n, p in pids.items()}))
                if not args.skip_workers:
                    two_processes(args, bindir, env, Path(tmp), pg, list(dbs), token, gw_port)
            if not args.skip_throughput:
                tp_eps = [
                    tp.Endpoint(ep.name, ep.host, ep.port, ep.user, ep.password, TP_DB, ep.masked)
                    for ep in order
                ]
                failed = throughput(args, tp_eps, bindir, env, table, peaks)
                rss_log.append(("after throughput", {n: mem.rss_kb(p) for n, p in pids.items()}))
            hwm = {n: mem.hwm_kb(p) for n, p in pids.items()}
        finally:
            server.terminate()
            server.wait(10)
    if table:
        print_table(table)
        trouble = pgbench_trouble(pgbench_runs)
        if trouble:
            print("\n" + trouble)
    print_memory(rss_log, hwm, idle, peaks)
    print_targets(table, idle, peaks)
    if failed:
        print("\nTHROUGHPUT CHECKS FAILED (see CHECK FAILED above)", file=sys.stderr)
    print(f"\n(bench legs took {time.monotonic() - run_started:.0f}s)")
    print("\nwhere a statement's time goes (scripts/bench_stages.py, in-process):")
    subprocess.run([sys.executable, str(ROOT / "scripts/bench_stages.py")], check=True)
    print("\nclassifier cost per statement:")
    subprocess.run([sys.executable, "-m", "pgwarden.sql.bench"], check=True)
    return 1 if failed else 0


def pgbench_legs(
    args: argparse.Namespace,
    bindir: Path,
    env: dict[str, str],
    order: list[tp.Endpoint],
    opts: list[str],
    pids: dict[str, int],
) -> dict[str, list[PgbenchRun]]:
    runs: dict[str, list[PgbenchRun]] = {ep.name: [] for ep in order}
    for _ in range(args.rounds):
        for ep in order:
            conn = ["-h", ep.host, "-p", str(ep.port), "-U", ep.user, ep.dbname]
            pid = pids.get(ep.name)
            before = mem.cpu_seconds(pid) if pid else None
            run = pgbench(
                bindir,
                [
                    *("-n", *opts, "-c", str(args.clients), "-j", "2"),
                    *("-T", str(args.seconds), *conn),
                ],
                dict(env, PGPASSWORD=ep.password),
                timeout=args.seconds + 60,
            )
            if pid and before is not None:
                run.cpu_seconds = mem.cpu_seconds(pid) - before
            runs[ep.name].append(run)
    return runs


def two_processes(
    args: argparse.Namespace,
    bindir: Path,
    env: dict[str, str],
    tmp: Path,
    pg: DevCluster,
    dbs: list[str],
    token: str,
    gw_port: int,
) -> None:
    """What several worker processes would give: a second gateway (its own data directory,
    the same token issuer) and pgbench -S with half the clients on each, alternating with
    the one gateway taking all of them."""
    shutil.copytree(tmp / "gw" / "keys", tmp / "gw2" / "keys")
    second, port2 = start_gateway(tmp, pg, dbs, name="gw2")
    exe = str(client(bindir, "pgbench"))

    def split(ports: list[int]) -> float:
        clients = str(args.clients // len(ports))
        procs = []
        for port in ports:
            cmd = [exe, "-n", "-S", "-M", "simple", "-c", clients, "-j", "1"]
            cmd += ["-T", str(args.seconds), "-h", "127.0.0.1", "-p", str(port), "-U", "bench"]
            procs.append(
                subprocess.Popen(
                    [*cmd, "bench"],
                    env=dict(env, PGPASSWORD=token),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            )
        total = 0.0
        for proc in procs:
            out, _ = proc.communicate(timeout=args.seconds + 60)
            m = re.search(r"tps = ([0-9.]+) \(without", out)
            total += float(m.group(1)) if m else 0.0
        return total

    try:
        one, two = [], []
        for _ in range(args.rounds):
            one.append(split([gw_port]))
            two.append(split([gw_port, port2]))
    finally:
        second.terminate()
        second.wait(10)
    a, b = statistics.median(one), statistics.median(two)
    print(
        f"  pgbench -S simple on two gateway processes (half the clients each): {b:.0f} tps, "
        f"one process {a:.0f} tps: x{b / a if a else 0:.2f}",
        flush=True,
    )


def pgbench_summary(leg: str, runs: dict[str, list[PgbenchRun]]) -> str:
    tps = {n: statistics.median(r.tps for r in rs) for n, rs in runs.items()}
    parts = [f"{n} {t:8.0f} tps" for n, t in tps.items()]
    line = f"  {leg:22s} " + "   ".join(parts)
    if tps.get("direct"):
        line += f"   gw/direct {tps['gateway'] / tps['direct']:.2f}"
    if tps.get("pgbouncer"):
        line += f"   gw/pgbouncer {tps['gateway'] / tps['pgbouncer']:.2f}"
    cpu = {
        n: statistics.median(c)
        for n, rs in runs.items()
        if (c := [u for r in rs if (u := r.cpu_us_per_txn) is not None])
    }
    if cpu:
        line += "\n    CPU per transaction: " + ", ".join(f"{n} {u:.0f} µs" for n, u in cpu.items())
    for name, rs in runs.items():
        if any(r.trouble for r in rs):
            line += "\n    " + _trouble_line(leg, name, rs)
    return line


def _trouble_line(leg: str, name: str, rs: list[PgbenchRun]) -> str:
    errors = list(dict.fromkeys(e for r in rs for e in r.errors))
    return (
        f"{leg}, {name}: {sum(r.failed for r in rs)} failed transactions, "
        f"{sum(r.aborted_clients for r in rs)} aborted clients, "
        f"{sum(r.processed for r in rs)} processed over {len(rs)} runs"
        + "".join(f"\n      {e[:200]}" for e in errors[:3])
    )


def pgbench_trouble(pgbench_runs: dict[str, dict[str, list[PgbenchRun]]]) -> str:
    """Failed transactions and aborted clients, per leg and endpoint ("" when none)."""
    lines = []
    for leg, runs in pgbench_runs.items():
        for name, rs in runs.items():
            if any(r.trouble for r in rs):
                lines.append("PGBENCH ERRORS: " + _trouble_line(leg, name, rs))
    if pgbench_runs and not lines:
        lines.append("pgbench: no failed transactions and no aborted clients on any leg")
    return "\n".join(lines)


def idle_summary(name: str, res: mem.IdleResult) -> str:
    line = (
        f"  {name:9s} RSS {res.before_kb / 1024:7.1f} MiB -> {res.after_kb / 1024:7.1f} MiB "
        f"with {res.opened} open ({res.per_conn_kb:6.1f} KiB each; connected in "
        f"{res.connect_seconds:.1f}s), {res.closed_kb / 1024:7.1f} MiB after closing them"
    )
    if res.server_sessions is not None:
        line += f"; {res.server_sessions} server sessions of the role while open"
    if res.error:
        line += f"\n    only {res.opened}/{res.wanted} opened: {res.error[:200]}"
    return line


def print_memory(
    rss_log: list[tuple[str, dict[str, int]]],
    hwm: dict[str, int],
    idle: dict[str, mem.IdleResult],
    peaks: Peaks,
) -> None:
    print("\nmemory (VmRSS of the process, MiB = 1024 KiB)")
    names = [n for n in ("pgbouncer", "gateway") if n in hwm]
    print(f"  {'':44s}" + "".join(f"{n:>12s}" for n in names))
    for label, values in rss_log:
        print(f"  {'RSS ' + label:44s}" + "".join(f"{values[n] / 1024:12.1f}" for n in names))
    legs = list(dict.fromkeys(leg for leg, _ in peaks.peak_kb))
    for leg in legs:
        cells = [peaks.peak_kb.get((leg, n)) for n in names]
        print(
            f"  {'peak RSS during ' + leg:44s}"
            + "".join(f"{c / 1024:12.1f}" if c is not None else f"{'-':>12s}" for c in cells)
        )
    print(
        f"  {'VmHWM (peak over the whole run)':44s}"
        + "".join(f"{hwm[n] / 1024:12.1f}" for n in names)
    )
    if idle:
        print(
            f"  {'KiB per idle connection':44s}"
            + "".join(f"{idle[n].per_conn_kb:12.1f}" if n in idle else f"{'-':>12s}" for n in names)
        )


def _mark(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def print_targets(table: list[tp.Row], idle: dict[str, mem.IdleResult], peaks: Peaks) -> None:
    print("\ntargets (performance issue)")
    for row in table:
        if row.leg.startswith("pgbench -S"):
            r = ratio(row, "gateway", "pgbouncer")
            if not math.isnan(r):
                print(
                    f"  {row.leg}: gateway {r:.2f} x pgbouncer "
                    f"(target >= {SELECT_VS_PGBOUNCER}): {_mark(r >= SELECT_VS_PGBOUNCER)}"
                )
        if row.leg == COPY_LEG and row.unit == "MB/s":
            r = ratio(row, "gateway", "direct")
            print(
                f"  1M-row COPY: gateway {r:.2f} x direct "
                f"(target >= {COPY_VS_DIRECT}): {_mark(r >= COPY_VS_DIRECT)}"
            )
    peak = peaks.peak_kb.get((COPY_LEG, "gateway"))
    if peak is not None:
        mib = peak / 1024
        print(
            f"  gateway RSS while streaming the 1M-row COPY: peak {mib:.1f} MiB "
            f"(target < {COPY_PEAK_MIB} MB): {_mark(mib < COPY_PEAK_MIB)}"
        )
    if "gateway" in idle:
        kib = idle["gateway"].per_conn_kb
        print(
            f"  gateway RSS per idle connection: {kib:.1f} KiB "
            f"(target < {IDLE_CONN_KIB} KB): {_mark(kib < IDLE_CONN_KIB)}"
        )


def throughput(
    args: argparse.Namespace,
    endpoints: list[tp.Endpoint],
    bindir: Path,
    env: dict[str, str],
    table: list[tp.Row],
    peaks: Peaks,
) -> bool:
    """The COPY/SELECT legs with masking on; appends to `table`, returns whether a check
    failed."""
    started = time.monotonic()
    tp.create_sensitive_table(endpoints[0], args.tp_rows)
    print(
        f"throughput, masking default, {args.tp_rounds} alternating rounds per leg "
        f"(pgbench scale {args.tp_scale}; {tp.SENSITIVE_TABLE}: {args.tp_rows} rows with a card "
        f"number, an SSN and an e-mail each, generated in {time.monotonic() - started:.1f}s)",
        flush=True,
    )
    legs = tp.build_legs(client(bindir, "psql"), env, args.tp_scale * 100_000, args.tp_rows)
    tp.run_legs(legs, endpoints, args.tp_rounds, monitor=peaks)
    table.extend(tp.table_rows(legs))
    return any(leg.problems for leg in legs)


if __name__ == "__main__":
    sys.exit(main())
