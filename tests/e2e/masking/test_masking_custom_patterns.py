"""Custom patterns (``masking.custom``) through the gateway: a pattern anchored to the value
(``^...$``) masks every value it matches, in any column of a row, in rows streamed in runs,
and in each field of a COPY, in text and binary result formats."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.e2e.masking.masking_support import SUBJECT, TARGET, MaskEnv, masking_gateway
from tests.support.gateway import RunningGateway

ROWS = "SELECT 'EMP-' || lpad(i::text, 6, '0') AS a, 'x EMP-123456' AS b, " \
       "'EMP-' || lpad((i + 1)::text, 6, '0') AS c FROM generate_series(1, 3000) AS i"  # fmt: skip


@pytest.fixture(scope="module")
def custom_gw(
    mask_env: MaskEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    with masking_gateway(
        mask_env,
        tmp_path_factory.mktemp("masking-custom"),
        {"custom": [{"name": "employee", "pattern": "^EMP-[0-9]{6}$"}]},
    ) as gw:
        yield gw


@pytest.mark.parametrize("binary", [False, True])
def test_anchored_pattern_masks_each_value(custom_gw: RunningGateway, binary: bool) -> None:
    with psycopg.connect(custom_gw.dsn(SUBJECT, TARGET), autocommit=True) as conn:
        rows = conn.cursor(binary=binary).execute(ROWS).fetchall()
    assert len(rows) == 3000
    assert all(r == ("***-******", "x EMP-123456", "***-******") for r in rows)


@pytest.mark.parametrize("fmt", ["text", "csv"])
def test_anchored_pattern_masks_each_copy_field(custom_gw: RunningGateway, fmt: str) -> None:
    with (
        psycopg.connect(custom_gw.dsn(SUBJECT, TARGET)) as conn,
        conn.cursor().copy(f"COPY ({ROWS}) TO STDOUT WITH (FORMAT {fmt})") as cp,
    ):
        data = b"".join(bytes(b) for b in cp)
    sep = "," if fmt == "csv" else "\t"
    lines = data.decode().splitlines()
    assert len(lines) == 3000
    assert set(lines) == {sep.join(["***-******", "x EMP-123456", "***-******"])}
