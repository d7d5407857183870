"""format_ts caches the formatted second: it must still equal a full strftime, across
second boundaries and in any order."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from pgwarden.recording.events import format_ts, parse_ts


def test_format_ts_equals_strftime_in_any_order() -> None:
    rng = random.Random(7)
    times = [0.0, 0.999999, 1.0, 1700000000.5, 1700000000.999999, 1700000001.000001]
    times += [rng.uniform(0, 4e9) for _ in range(2000)]
    times += [1700000000 + i / 7 for i in range(50)]
    # microseconds that round up into the next second, or to an even neighbour
    times += [1700000000.9999995, 1700000000.9999996, 1700000000.0000005, 1700000000.0000015]
    for t in times:
        want = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert format_ts(t) == want
        assert abs(parse_ts(format_ts(t)) - t) < 1e-5
