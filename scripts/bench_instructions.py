"""`make bench-instructions`: CPU instructions the gateway executes per pgbench transaction.

The VM this project is measured on moves by 20-30 % between runs, so a change worth 5 % cannot
be seen in tps. Instructions are deterministic: this script starts a throwaway PostgreSQL
(pgbench scale 1) and runs the gateway (default policy, masking and recording) under
valgrind's cachegrind, counting every instruction it executes. For each protocol it starts
the gateway twice; both times one pgbench client runs a warm-up, then `--short` and `--long`
select-only transactions, and the gateway is stopped. The `tpcb` leg does the same with
pgbench's TPC-B-like transactions (7 statements, three of them UPDATEs by key that need a row
estimate), a quarter as many of them. Start-up, warm-up and shutdown are the
same in both runs, so

    instructions per transaction = (I(long) - I(short)) / (long - short)

The figure covers everything the gateway process does for a transaction: the relay, the
hooks, the recording, the masking checks, asyncio and the interpreter. Compare two commits
by running this in a checkout of each (`git worktree add`). Under valgrind the gateway runs
~50x slower: a run takes a few minutes.

Two things are held still so that the figure repeats to ~0.5 %: string hashing
(PYTHONHASHSEED=0) and the cyclic garbage collector, which is switched off in the gateway (a
sitecustomize module on its PYTHONPATH). A full collection walks every object the gateway
holds and lands in one of the two runs or the other, moving the figure by up to 6 %; in real
time the collector costs ~1 % of the gateway's CPU under pgbench (measured with gc.callbacks).
What still differs between the two runs is the checkpoints signed every 5 s (~1 %).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import client, pgbench, start_gateway

from pgwarden.auth.local_issuer import LocalIssuer
from pgwarden.devcluster import DevCluster, find_bindir

_IREFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def _pgbench_args(leg: str) -> list[str]:
    return ["-M", "simple"] if leg == "tpcb" else ["-S", "-M", leg]


def instructions(tmp: Path, pg: DevCluster, token: str, leg: str, warm: int, count: int) -> int:
    """Instructions of one gateway process that served ``warm + count`` transactions."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind not found (`make bench-instructions` installs it)")
    log = tmp / f"valgrind-{leg}-{count}.log"
    wrapper = [
        valgrind, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
        f"--log-file={log}",
    ]  # fmt: skip
    site = tmp / "no-gc"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text("import gc\n\ngc.disable()\n")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    server, port = start_gateway(
        tmp,
        pg,
        ["bench"],
        name=f"gw-{leg}-{count}",
        wrapper=wrapper,
        start_timeout=600,
        env=dict(os.environ, PYTHONPATH=path, PYTHONHASHSEED="0"),
    )
    try:
        env = dict(os.environ, PGPASSWORD=token, PGSSLMODE="disable")
        bindir = find_bindir()
        for n in (warm, count):
            run = pgbench(
                bindir,
                ["-n", "-c", "1", "-t", str(n), *_pgbench_args(leg),
                 "-h", "127.0.0.1", "-p", str(port), "-U", "bench", "bench"],
                env,
                timeout=1800,
            )  # fmt: skip
            if run.errors or run.processed != n:
                raise SystemExit(f"pgbench through the gateway failed: {run.errors}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=600)
    m = _IREFS.search(log.read_text())
    if m is None:
        raise SystemExit(f"no instruction count in {log}")
    return int(m.group(1).replace(",", ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--warm", type=int, default=300, help="transactions before counting")
    ap.add_argument("--short", type=int, default=200)
    ap.add_argument("--long", type=int, default=1200)
    ap.add_argument(
        "--protocol",
        action="append",
        choices=("simple", "extended", "tpcb"),
        help="legs to run (default: all three); tpcb runs a quarter of the transactions",
    )
    args = ap.parse_args()
    if args.long <= args.short:
        ap.error("--long must be more than --short")
    legs = args.protocol or ["simple", "extended", "tpcb"]
    bindir = find_bindir()
    results: dict[str, float] = {}
    with DevCluster() as pg, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pg.create_role("bench", "bench-pw", superuser=True)
        pg.create_database("bench", owner="bench")
        subprocess.run(
            [str(client(bindir, "pgbench")), "-i", "-q", "-s", "1", "-h", pg.host,
             "-p", str(pg.port), "-U", "bench", "bench"],
            env=dict(os.environ, PGPASSWORD="bench-pw", PGSSLMODE="disable"),
            check=True, capture_output=True,
        )  # fmt: skip
        for leg in legs:
            started = time.monotonic()
            scale = 4 if leg == "tpcb" else 1
            short, long = args.short // scale, args.long // scale
            counts = []
            for n in (short, long):
                # every gateway gets its own data_dir: issue the token from that one's issuer
                data_dir = tmp / f"gw-{leg}-{n}"
                token = LocalIssuer.load_or_create(data_dir).issue("bench", (), 3600)
                counts.append(instructions(tmp, pg, token, leg, args.warm // scale, n))
            per = (counts[1] - counts[0]) / (long - short)
            results[leg] = per
            name = "TPC-B simple" if leg == "tpcb" else f"-S {leg}"
            print(
                f"pgbench {name:<12} {per:>10,.0f} instructions per transaction "
                f"(gateway process; {time.monotonic() - started:.0f}s)",
                flush=True,
            )
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
