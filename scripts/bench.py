"""`make bench`: the data path measured against a direct connection, in one run.

Starts a throwaway PostgreSQL, initialises pgbench (scale 1 by default) in database `bench`
and at scale 10 in `bench_tp` (plus `bench_customers`: 300k rows, each with a card number, an
SSN and an e-mail), starts the gateway (`pgwarden serve`, default policy, default masking,
recording on) as its own process, then runs, alternating direct and gateway legs:

- pgbench select-only (simple and extended protocol): tps;
- throughput with masking on (scripts/bench_throughput.py): COPY of all of pgbench_accounts
  (1M rows at scale 10) read by psql, a 300k-row SELECT fetched by psycopg (text format), and
  the same two on the sensitive table; MB/s and rows/s. Every sensitive run is checked:
  raw e-mails, SSNs and card numbers must arrive direct and must not through the gateway.

It prints medians and the gateway/direct ratio per leg, a table of all of them at the end, and
the classifier's cost per statement. Exits 1 if a throughput check failed. `--quick` shortens
everything (3 s pgbench legs, one round each) for a smoke run.

pgbouncer and the memory legs are part of the performance issue; this script is where they go.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_throughput as tp

from pgwarden.auth.local_issuer import LocalIssuer
from pgwarden.devcluster import DevCluster, find_bindir

ROOT = Path(__file__).resolve().parent.parent
TP_DB = "bench_tp"


def pgbench(bindir: Path, args: list[str], env: dict[str, str]) -> float:
    exe = str(bindir / "pgbench") if (bindir / "pgbench").exists() else "pgbench"
    out = subprocess.run([exe, *args], env=env, capture_output=True, text=True, check=True)
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out.stdout)
    if not m:
        raise RuntimeError(out.stdout + out.stderr)
    return float(m.group(1))


def client(bindir: Path, name: str) -> Path:
    return bindir / name if (bindir / name).exists() else Path(name)


def print_table(rows: list[tuple[str, str, float, float]]) -> None:
    """Medians: leg, unit, direct, gateway, gateway/direct."""
    width = max(len(leg) for leg, _, _, _ in rows)
    print(f"\n{'leg':{width}s}  {'unit':6s}  {'direct':>11s}  {'gateway':>11s}  {'ratio':>5s}")
    for leg, unit, direct, gateway in rows:
        digits = 1 if unit == "MB/s" else 0
        print(
            f"{leg:{width}s}  {unit:6s}  {direct:11.{digits}f}  {gateway:11.{digits}f}  "
            f"{gateway / direct:5.2f}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=10, help="length of each pgbench leg")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per leg")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--tp-scale", type=int, default=10, help="pgbench scale of the COPY leg")
    ap.add_argument(
        "--tp-rows", type=int, default=300_000, help="rows of the SELECT and sensitive legs"
    )
    ap.add_argument("--tp-rounds", type=int, default=3, help="alternating rounds per leg")
    ap.add_argument("--skip-pgbench", action="store_true", help="no pgbench select-only legs")
    ap.add_argument("--skip-throughput", action="store_true", help="no COPY/SELECT legs")
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: 3 s pgbench legs, one round each"
    )
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.tp_rounds = 3, 1, 1

    bindir = find_bindir()
    table: list[tuple[str, str, float, float]] = []
    failed = False
    with DevCluster() as pg, tempfile.TemporaryDirectory() as tmp:
        pg.create_role("bench", "bench-pw", superuser=True)
        env = dict(os.environ, PGPASSWORD="bench-pw")
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
        data_dir = Path(tmp) / "gw"
        cfg = Path(tmp) / "pgwarden.yaml"
        cfg.write_text(
            f"listen: 127.0.0.1:0\napi: {{listen: 127.0.0.1:0}}\ndata_dir: {data_dir}\n"
            "targets:\n"
            + "".join(
                f"  {db}:\n"
                f"    host: {pg.host}\n    port: {pg.port}\n    dbname: {db}\n"
                "    user: bench\n    password: bench-pw\n    sslmode: disable\n"
                for db in dbs
            )
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            gw_port = s.getsockname()[1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            api_port = s.getsockname()[1]
        cfg.write_text(
            cfg.read_text()
            .replace("listen: 127.0.0.1:0\n", f"listen: 127.0.0.1:{gw_port}\n", 1)
            .replace("{listen: 127.0.0.1:0}", f"{{listen: 127.0.0.1:{api_port}}}")
        )
        server = subprocess.Popen(
            [str(ROOT / ".venv/bin/pgwarden"), "serve", "-c", str(cfg)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", gw_port)) == 0:
                        break
                time.sleep(0.1)
            token = LocalIssuer.load_or_create(data_dir).issue("bench", (), 3600)
            legs = {
                "direct": (["-h", pg.host, "-p", str(pg.port), "-U", "bench", "bench"], env),
                "gateway": (
                    ["-h", "127.0.0.1", "-p", str(gw_port), "-U", "bench", "bench"],
                    dict(os.environ, PGPASSWORD=token, PGSSLMODE="disable"),
                ),
            }
            for mode in () if args.skip_pgbench else ("simple", "extended"):
                if mode == "simple":
                    print(
                        f"pgbench select-only, {args.clients} clients, "
                        f"{args.seconds}s x {args.rounds}",
                        flush=True,
                    )
                results: dict[str, list[float]] = {k: [] for k in legs}
                for _ in range(args.rounds):
                    for name, (conn, leg_env) in legs.items():
                        results[name].append(
                            pgbench(
                                bindir,
                                [
                                    *("-n", "-S", "-M", mode, "-c", str(args.clients)),
                                    *("-j", "2", "-T", str(args.seconds), *conn),
                                ],
                                leg_env,
                            )
                        )
                direct = statistics.median(results["direct"])
                gateway = statistics.median(results["gateway"])
                print(
                    f"  {mode:9s} direct {direct:9.0f} tps   gateway {gateway:9.0f} tps   "
                    f"ratio {gateway / direct:.2f}",
                    flush=True,
                )
                table.append((f"pgbench -S {mode}", "tps", direct, gateway))
            if not args.skip_throughput:
                failed = throughput(args, pg.host, pg.port, gw_port, token, bindir, env, table)
        finally:
            server.terminate()
            server.wait(10)
    if table:
        print_table(table)
    if failed:
        print("\nTHROUGHPUT CHECKS FAILED (see CHECK FAILED above)", file=sys.stderr)
    print("\nclassifier cost per statement:")
    subprocess.run([sys.executable, "-m", "pgwarden.sql.bench"], check=True)
    return 1 if failed else 0


def throughput(
    args: argparse.Namespace,
    pg_host: str,
    pg_port: int,
    gw_port: int,
    token: str,
    bindir: Path,
    env: dict[str, str],
    table: list[tuple[str, str, float, float]],
) -> bool:
    """The COPY/SELECT legs with masking on; appends to `table`, returns whether a check
    failed."""
    endpoints = (
        tp.Endpoint("direct", pg_host, pg_port, "bench", "bench-pw", TP_DB),
        tp.Endpoint("gateway", "127.0.0.1", gw_port, "bench", token, TP_DB),
    )
    started = time.monotonic()
    tp.create_sensitive_table(endpoints[0], args.tp_rows)
    print(
        f"throughput, masking default, {args.tp_rounds} alternating rounds per leg "
        f"(pgbench scale {args.tp_scale}; {tp.SENSITIVE_TABLE}: {args.tp_rows} rows with a card "
        f"number, an SSN and an e-mail each, generated in {time.monotonic() - started:.1f}s)",
        flush=True,
    )
    legs = tp.build_legs(client(bindir, "psql"), env, args.tp_scale * 100_000, args.tp_rows)
    tp.run_legs(legs, endpoints, args.tp_rounds)
    table.extend(tp.table_rows(legs))
    return any(leg.problems for leg in legs)


if __name__ == "__main__":
    sys.exit(main())
