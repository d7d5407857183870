"""The masking config key, and where the hash key comes from."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgwarden.masking import (
    DEFAULT_DETECTORS,
    MaskingConfig,
    MaskingError,
    load_masking,
    masking_key,
)


def test_default() -> None:
    for value in ("default", "DEFAULT ", None):
        cfg = load_masking(value)
        assert cfg.detectors == DEFAULT_DETECTORS == ("card", "ssn", "email")
        assert cfg.strategy == "redact"
        assert cfg.columns == ()
        assert cfg.enabled


@pytest.mark.parametrize("value", ["off", "none", False, {"detectors": [], "columns": []}])
def test_off(value: Any) -> None:
    cfg = load_masking(value)
    assert not cfg.enabled
    assert cfg.detectors == () and cfg.columns == ()


def test_full_mapping() -> None:
    cfg = load_masking(
        yaml.safe_load(
            """
            detectors: [card, E-Mail, ssn, phone, iban, secrets, ip]
            columns: [customers.ssn, "*.card_number", public.users.notes, tax_id]
            strategy: Hash
            strategies: {email: partial, columns: redact, employee: partial}
            custom:
              - {name: employee, pattern: 'EMP-[0-9]{6}'}
              - {name: ticket, pattern: 'T[0-9]+', strategy: hash}
            hash_key: 0123456789abcdef0123
            """
        )
    )
    assert cfg.detectors == ("card", "email", "ssn", "phone", "iban", "secrets", "ip")
    assert [r.pattern for r in cfg.columns] == [
        "customers.ssn", "*.card_number", "public.users.notes", "tax_id",
    ]  # fmt: skip
    assert cfg.columns[0].matches_lineage("customers", "SSN")
    assert cfg.columns[0].matches_lineage("public.customers", "ssn")
    assert not cfg.columns[0].matches_lineage("orders", "ssn")
    assert cfg.columns[1].by_name and cfg.columns[1].matches_name("Card_Number")
    assert cfg.columns[2].matches_lineage("public.users", "notes")
    assert cfg.columns[2].matches_lineage("users", "notes")  # schema unknown: mask
    assert not cfg.columns[2].matches_lineage("private.users", "notes")
    assert cfg.columns[3].by_name  # a bare column name is *.column
    assert cfg.strategy == "hash"
    assert cfg.strategy_for("email") == "partial"
    assert cfg.strategy_for("columns") == "redact"
    assert cfg.strategy_for("card") == "hash"
    assert cfg.strategy_for("employee") == "partial"
    assert cfg.strategy_for("ticket") == "hash"
    assert [c.name for c in cfg.custom] == ["employee", "ticket"]
    assert "0123456789abcdef" not in repr(cfg)


def test_detectors_default_when_omitted_and_aliases() -> None:
    assert load_masking({"columns": ["customers.ssn"]}).detectors == DEFAULT_DETECTORS
    assert load_masking({"detectors": ["credit_card"]}).detectors == ("card",)
    assert load_masking({"detectors": "all"}).detectors[:3] == ("card", "ssn", "email")
    assert load_masking({"detectors": ["default", "phone"]}).detectors == (
        "card", "ssn", "email", "phone",
    )  # fmt: skip


@pytest.mark.parametrize(
    "value,key,fragment",
    [
        ("sometimes", "masking", "expected 'default'"),
        (42, "masking", "expected 'default'"),
        ({"detector": ["card"]}, "masking.detector", "did you mean 'detectors'"),
        ({"detectors": ["card", "creditcards"]}, "masking.detectors[1]", "unknown detector"),
        ({"detectors": [1]}, "masking.detectors[0]", "expected a detector name"),
        ({"detectors": {"card": 1}}, "masking.detectors", "expected a list"),
        ({"columns": ["a.b.c.d"]}, "masking.columns[0]", "schema.table.column"),
        ({"columns": ["customers."]}, "masking.columns[0]", "schema.table.column"),
        ({"columns": [""]}, "masking.columns[0]", "column pattern"),
        ({"strategy": "mask"}, "masking.strategy", "redact, partial, hash"),
        ({"strategies": {"card": "nope"}}, "masking.strategies.card", "expected one of"),
        ({"strategies": {"cardz": "hash"}}, "masking.strategies.cardz", "unknown detector"),
        ({"strategies": ["hash"]}, "masking.strategies", "mapping"),
        ({"custom": [{"name": "x1", "pattern": "("}]}, "masking.custom[0].pattern", "invalid"),
        ({"custom": [{"name": "x1", "pattern": "a*"}]}, "masking.custom[0].pattern", "empty"),
        ({"custom": [{"name": "card", "pattern": "x"}]}, "masking.custom[0].name", "already"),
        ({"custom": [{"name": "9x", "pattern": "x"}]}, "masking.custom[0].name", "letters"),
        ({"custom": [{"name": "a", "pattern": "x", "flags": 1}]}, "masking.custom[0].flags",
         "unknown key"),
        ({"custom": ["x"]}, "masking.custom[0]", "mapping"),
        ({"hash_key": "short"}, "masking.hash_key", "16 characters"),
    ],
)  # fmt: skip
def test_errors_name_the_key(value: Any, key: str, fragment: str) -> None:
    with pytest.raises(MaskingError) as info:
        load_masking(value)
    assert info.value.key == key
    assert fragment in str(info.value)
    assert str(info.value).startswith(key + ": ")


def test_key_from_config_env_and_data_dir(tmp_path: Path) -> None:
    cfg = load_masking({"hash_key": "k" * 20})
    assert masking_key(cfg, tmp_path, env={"PGWARDEN_MASKING_KEY": "e" * 20}) == b"k" * 20
    plain = MaskingConfig()
    assert masking_key(plain, tmp_path, env={"PGWARDEN_MASKING_KEY": "e" * 20}) == b"e" * 20
    with pytest.raises(MaskingError):
        masking_key(plain, tmp_path, env={"PGWARDEN_MASKING_KEY": "short"})
    first = masking_key(plain, tmp_path / "data", env={})
    assert len(first) == 64
    assert masking_key(plain, tmp_path / "data", env={}) == first  # kept, not regenerated
    path = tmp_path / "data" / "masking.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(MaskingError):
        masking_key(plain, None, env={})
    path.write_text("tiny\n")
    with pytest.raises(MaskingError):
        masking_key(plain, tmp_path / "data", env={})
