"""`make bench`: the data path measured against a direct connection, in one run.

Starts a throwaway PostgreSQL, initialises pgbench (scale 1 by default), starts the gateway
(`pgwarden serve`, default policy, recording on) as its own process, then runs pgbench
select-only (simple and extended protocol) alternating direct and gateway legs, and prints
medians and the gateway/direct ratio. Also prints the classifier's cost per statement.

pgbouncer and the COPY / masking / memory legs are part of the performance issue; this script
is where they go.
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

from pgwarden.auth.local_issuer import LocalIssuer
from pgwarden.devcluster import DevCluster, find_bindir

ROOT = Path(__file__).resolve().parent.parent


def pgbench(bindir: Path, args: list[str], env: dict[str, str]) -> float:
    exe = str(bindir / "pgbench") if (bindir / "pgbench").exists() else "pgbench"
    out = subprocess.run([exe, *args], env=env, capture_output=True, text=True, check=True)
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out.stdout)
    if not m:
        raise RuntimeError(out.stdout + out.stderr)
    return float(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=10, help="length of each pgbench leg")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per leg")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--scale", type=int, default=1)
    args = ap.parse_args()

    bindir = find_bindir()
    with DevCluster() as pg, tempfile.TemporaryDirectory() as tmp:
        pg.create_role("bench", "bench-pw", superuser=True)
        pg.create_database("bench", owner="bench")
        env = dict(os.environ, PGPASSWORD="bench-pw")
        subprocess.run(
            [str(bindir / "pgbench"), "-i", "-q", "-s", str(args.scale), "-h", pg.host,
             "-p", str(pg.port), "-U", "bench", "bench"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        data_dir = Path(tmp) / "gw"
        cfg = Path(tmp) / "pgwarden.yaml"
        cfg.write_text(
            f"listen: 127.0.0.1:0\napi: {{listen: 127.0.0.1:0}}\ndata_dir: {data_dir}\n"
            "targets:\n  bench:\n"
            f"    host: {pg.host}\n    port: {pg.port}\n    dbname: bench\n"
            "    user: bench\n    password: bench-pw\n    sslmode: disable\n"
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
            print(f"pgbench select-only, {args.clients} clients, {args.seconds}s x {args.rounds}")
            for mode in ("simple", "extended"):
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
                    f"ratio {gateway / direct:.2f}"
                )
        finally:
            server.terminate()
            server.wait(10)
    print("classifier cost per statement:")
    subprocess.run([sys.executable, "-m", "pgwarden.sql.bench"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
