"""Strategies: redact, partial and hash, on spans, whole values and numbers."""

from __future__ import annotations

import pytest

from pgwarden.masking import Replacer, Scanner

KEY = b"strategy-test-key-0123456789"


def r(strategy: str = "redact", key: bytes = KEY) -> Replacer:
    return Replacer(key, strategy)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "detector,span,redact,partial",
    [
        ("card", b"4111 1111 1111 1111", b"**** **** **** ****", b"**** **** **** 1111"),
        ("card", b"4111-1111-1111-1111", b"****-****-****-****", b"****-****-****-1111"),
        ("card", b"4111111111111111", b"****************", b"************1111"),
        ("ssn", b"332-20-6469", b"***-**-****", b"***-**-6469"),
        ("email", b"Ada.Lovelace@Example.com", b"***.********@*******.***",
         b"************@Example.com"),
        ("phone", b"+1-202-555-0100", b"+*-***-***-****", b"+*-***-***-0100"),
    ],
)  # fmt: skip
def test_redact_and_partial_keep_the_shape(
    detector: str, span: bytes, redact: bytes, partial: bytes
) -> None:
    assert r("redact").text(detector, span) == redact
    assert r("partial").text(detector, span) == partial
    assert len(redact) == len(partial) == len(span)


def test_hash_is_deterministic_keyed_and_shape_keeping() -> None:
    a = r("hash").text("card", b"4111 1111 1111 1111")
    assert a == r("hash").text("card", b"4111 1111 1111 1111")
    assert a != r("hash", b"another-key-0123456789").text("card", b"4111 1111 1111 1111")
    assert a != r("hash").text("card", b"5555 5555 5555 4444")
    assert len(a) == 19 and a[4:5] == b" " and a.replace(b" ", b"").isalpha()
    # the same card, written differently, hashes to the same letters
    assert r("hash").text("card", b"4111111111111111") == a.replace(b" ", b"")
    # e-mails hash case-insensitively and stop being e-mails
    e = r("hash").text("email", b"Ada@Example.com")
    assert e == r("hash").text("email", b"ada@example.COM")
    assert b"@" not in e and len(e) == len(b"Ada@Example.com")
    assert not any(c in b"0123456789" for c in a + e)


def test_masked_output_is_not_detected_again() -> None:
    scanner = Scanner(["card", "ssn", "email"])
    for strategy in ("redact", "partial", "hash"):
        for det, span in [
            ("card", b"4111 1111 1111 1111"),
            ("ssn", b"332-20-6469"),
            ("email", b"ada.lovelace@example.com"),
        ]:
            out = r(strategy).text(det, span)
            assert scanner.find(out) == [], (strategy, out)


def test_non_ascii_spans() -> None:
    out = r("redact").text("custom", "Jösé 42".encode())
    assert out.decode() == "**** **"
    out = r("partial").text("custom", "Ünïcode-1234".encode())
    assert out.decode() == "*******-1234"


def test_backslash_escapes_survive() -> None:
    # a PEM block inside a JSON string: \n escapes must stay escapes
    span = b"-----BEGIN PRIVATE KEY-----\\nMIIE\\u0041x\\n-----END PRIVATE KEY-----"
    for strategy in ("redact", "partial", "hash"):
        out = r(strategy).text("secrets", span)
        assert out.count(b"\\n") == 2 and b"\\u0041" in out
        assert b"MIIE" not in out


def test_numbers() -> None:
    assert r("redact").number("card", b"4111111111111111") is None
    assert r("partial").number("card", b"4111111111111111") is None
    h = r("hash").number("card", b"4111111111111111")
    assert h is not None and h.isdigit() and len(h) == 16 and h[:1] == b"1"
    assert h == r("hash").number("card", b"4111111111111111")


def test_whole_values() -> None:
    assert r("redact").whole_text("redact", b"Ada Lovelace") == b"*** ********"
    assert r().whole_text("partial", b"332-20-6469") == b"***-**-6469"
    h = r().whole_text("hash", "Zoë Ann".encode())
    assert len(h.decode()) == 7 and h.decode()[3] == " " and h.decode().replace(" ", "").isalpha()
    assert r().whole_text("redact", b"\xff\xfeab") == b"****"  # undecodable bytes are masked
    assert r().whole_json("redact", b'{"a": 1}') == b'"***"'
    hj = r().whole_json("hash", b'{"a": 1}')
    assert hj.startswith(b'"') and hj.endswith(b'"') and len(hj) == 18
    assert r().whole_number("redact", b"123.45") is None
    hn = r().whole_number("hash", b"-123.45e+10")
    assert hn is not None and hn[:1] == b"-" and hn.endswith(b"e+10") and hn[1:2] == b"1"
    assert len(hn) == len(b"-123.45e+10")
    assert r().whole_int("redact", 5) is None
    for width_max in (32767, 2**31 - 1, 2**63 - 1):
        v = r().whole_int("hash", width_max)
        assert v is not None and len(str(v)) == len(str(width_max)) and v <= width_max
    assert (r().whole_int("hash", -42) or 0) < 0


def test_empty_key_refused() -> None:
    with pytest.raises(ValueError):
        Replacer(b"")
