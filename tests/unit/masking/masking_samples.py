"""Sample sensitive values for the masking tests: the demo shop's customers, plus helpers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources

from pgwarden.masking import Masker, MaskingConfig, load_masking

KEY = b"unit-test-masking-key-0123456789"

_ROW = re.compile(r"\((\d+), '([^']*)', '([^']*)', '([^']*)', '([^']*)', '([^']*)', '([^']*)'\)")


def shop_customers() -> list[dict[str, str]]:
    """The demo shop's customers: name, email, ssn, card (as stored), phone."""
    text = resources.files("pgwarden.demo").joinpath("shop.sql").read_text()
    out = []
    for m in _ROW.finditer(text):
        out.append(
            {"id": m[1], "name": m[2], "email": m[3], "ssn": m[4], "card": m[5], "phone": m[6]}
        )
    assert len(out) >= 40
    return out


CUSTOMERS = shop_customers()


def digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def masker(
    config: MaskingConfig | Mapping[str, object] | str = "default", key: bytes = KEY
) -> Masker:
    cfg = config if isinstance(config, MaskingConfig) else load_masking(config)
    return Masker(cfg, key)


def leaks(output: bytes | str, customers: list[dict[str, str]] | None = None) -> list[str]:
    """Raw sample values found in ``output`` (cards also without separators, e-mails in any
    case, SSNs with and without dashes)."""
    text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
    lower = text.lower()
    found = []
    for c in customers if customers is not None else CUSTOMERS:
        if c["card"] in text or digits(c["card"]) in text:
            found.append(c["card"])
        if c["ssn"] in text or digits(c["ssn"]) in text:
            found.append(c["ssn"])
        if c["email"].lower() in lower:
            found.append(c["email"])
    return found
