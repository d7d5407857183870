"""Benchmark: the cost of classifying a statement, cold and from the cache.

    .venv/bin/python -m pgwarden.sql.bench [--seconds 1.0]

Prints microseconds per statement for a few typical statements: classify (a cache miss:
parse and walk) and classify_cached (a hit).
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

from pgwarden.sql.classifier import cache_clear, classify, classify_cached

STATEMENTS = {
    "select": "SELECT id, amount FROM orders WHERE customer_id = $1 ORDER BY created_at DESC",
    "join": (
        "SELECT c.name, sum(o.amount) AS total FROM customers c JOIN orders o "
        "ON o.customer_id = c.id WHERE o.status IN ('paid', 'shipped') GROUP BY c.name "
        "ORDER BY total DESC LIMIT 10"
    ),
    "update": "UPDATE orders SET status = 'shipped' WHERE id = $1 AND status = 'paid'",
    "cte_delete": "WITH d AS (DELETE FROM orders WHERE id = 1 RETURNING *) SELECT * FROM d",
    "do_block": (
        "DO $$ DECLARE r record; BEGIN FOR r IN SELECT id FROM orders LOOP "
        "UPDATE orders SET amount = amount * 1.1 WHERE id = r.id; END LOOP; END $$"
    ),
}


def _rate(fn: Callable[[], object], seconds: float) -> float:
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            fn()
        n += 50
        now = time.perf_counter()
        if now >= deadline:
            return (now - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()
    print(f"{'statement':<12} {'classify µs':>12} {'cached µs':>10}")
    for name, sql in STATEMENTS.items():
        cold = _rate(functools.partial(classify, sql), args.seconds)
        cache_clear()
        classify_cached(sql)
        warm = _rate(functools.partial(classify_cached, sql), args.seconds)
        print(f"{name:<12} {cold:>12.1f} {warm:>10.2f}")


if __name__ == "__main__":
    main()
