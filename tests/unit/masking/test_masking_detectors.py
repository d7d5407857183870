"""Content detectors: what they find, and what they must leave alone."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from masking_samples import CUSTOMERS, digits

from pgwarden.masking import DEFAULT_CONFIG, Masker, Scanner, is_card, luhn_ok, ssn_valid
from pgwarden.masking.detectors import _ssn_words, merge

DEFAULT = Scanner(["card", "ssn", "email"])
ALL = Scanner(["card", "ssn", "email", "phone", "iban", "secrets", "ip"])


def found(text: str | bytes, scanner: Scanner = DEFAULT, **kw: bool) -> list[tuple[str, str]]:
    buf = text.encode() if isinstance(text, str) else text
    spans = merge(scanner.find(buf, **kw))
    if spans and not kw:
        assert scanner.may_match(buf), "the pre-check must never hide a detection"
    return [(name, buf[s:e].decode()) for s, e, name in spans]


# -- Luhn and card numbers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    ["4111111111111111", "5555555555554444", "378282246310005", "6011111111111117",
     "3530111333300000", "2223003122003222", "4222222222222", "6759649826438453"],
)  # fmt: skip
def test_luhn_valid_cards(number: str) -> None:
    assert luhn_ok(number.encode())
    assert is_card(number.encode())


@pytest.mark.parametrize("number", ["4111111111111112", "5555555555554440", "378282246310006"])
def test_luhn_invalid(number: str) -> None:
    assert not luhn_ok(number.encode())
    assert found(number) == []


def test_every_sample_card_is_found_as_stored_and_without_separators() -> None:
    for c in CUSTOMERS:
        assert found(c["card"]) == [("card", c["card"])], c["card"]
        assert found(digits(c["card"])) == [("card", digits(c["card"]))]


@pytest.mark.parametrize(
    "text,card",
    [
        ("card: 4111 1111 1111 1111 exp 12/29", "4111 1111 1111 1111"),
        ("4111-1111-1111-1111", "4111-1111-1111-1111"),
        ("Amex 3782-822463-10005.", "3782-822463-10005"),
        ('{"card":"4111111111111111"}', "4111111111111111"),
        ('{"card": 4111111111111111, "n": 1}', "4111111111111111"),
        ("<card>5555 5555 5555 4444</card>", "5555 5555 5555 4444"),
        ("Card4111111111111111", "4111111111111111"),
        ("paid with 4111111111111111.", "4111111111111111"),
        ("(1,Ada,4111111111111111,x)", "4111111111111111"),
        ("{4111111111111111,5}", "4111111111111111"),
        ("4111111111111111.00", "4111111111111111"),
        ("ref 12 4111 1111 1111 1111", "4111 1111 1111 1111"),
    ],
)
def test_cards_in_context(text: str, card: str) -> None:
    assert found(text) == [("card", card)]


def test_repeated_and_concatenated_cards() -> None:
    text = "4111111111111111 4111111111111111,4111111111111111"
    assert [v for _, v in found(text)] == ["4111111111111111"] * 3
    # string_agg(card, ''): one long digit run holding several cards
    glued = "".join(digits(c["card"]) for c in CUSTOMERS[:5])
    spans = DEFAULT.find(glued.encode())
    covered: set[int] = set()
    for s, e, _ in spans:
        covered.update(range(s, e))
    pos = 0
    for c in CUSTOMERS[:5]:
        d = digits(c["card"])
        assert set(range(pos, pos + len(d))) <= covered, d
        pos += len(d)


@pytest.mark.parametrize("sep", ["", ",", ", ", " ", "-", ";", "\n", " | "])
def test_string_agg_of_every_sample_card(sep: str) -> None:
    for cards in ([c["card"] for c in CUSTOMERS], [digits(c["card"]) for c in CUSTOMERS]):
        text = sep.join(cards).encode()
        masked = bytearray(text)
        for s, e, _ in DEFAULT.find(text):
            masked[s:e] = b"*" * (e - s)
        out = bytes(masked).decode()
        flat = out.replace(" ", "").replace("-", "")
        for card in cards:
            assert card not in out and digits(card) not in flat, (sep, card)


@pytest.mark.parametrize(
    "text",
    [
        "2023-01-01 00:00:00+00",
        "2023-01-01 2023-01-02",
        "amount 1234567.89",
        "+1-202-555-0100",
        "202 555 0100 202 555 0101",
        "id 1700000000004",  # epoch milliseconds, Luhn-valid, but starts with 1
        "1234567890123456785",  # Luhn-valid, starts with 1
        "7111111111111114",  # Luhn-valid, but no card network starts with 7
        "4111 1111 1111 1112",  # Luhn-invalid
        "41 11 11 11 11 11 11 11",  # not a card layout
        "550e8400-e29b-41d4-a716-446655440000",
        "a716446655440000a716446655440000deadbeefdeadbeef",  # long hex
        "order 123456789012",  # 12 digits
        "1 2 3 4 5 6 7 8 9 10 11 12 13 14",
    ],
)
def test_non_cards(text: str) -> None:
    assert [n for n, _ in found(text)] == [], text


def test_luhn_valid_non_network_numbers_are_luhn_valid() -> None:
    # keeps test_non_cards honest: these are excluded by their first digit alone
    for number in ("1700000000004", "1234567890123456785", "7111111111111114"):
        assert luhn_ok(number.encode())


def test_uuid_made_of_digits_is_not_a_card_unless_a_group_is() -> None:
    assert found("12345678-1234-1234-1234-123456789012") == []


# -- SSNs ------------------------------------------------------------------------------------


def test_every_sample_ssn_is_found_with_dashes() -> None:
    for c in CUSTOMERS:
        assert found(c["ssn"]) == [("ssn", c["ssn"])]


@pytest.mark.parametrize(
    "area,group,serial,ok",
    [("332", "20", "6469", True), ("000", "12", "3456", False), ("666", "12", "3456", False),
     ("900", "12", "3456", False), ("999", "12", "3456", False), ("899", "12", "3456", True),
     ("123", "00", "3456", False), ("123", "45", "0000", False), ("001", "01", "0001", True)],
)  # fmt: skip
def test_ssn_validity(area: str, group: str, serial: str, ok: bool) -> None:
    assert ssn_valid(area.encode(), group.encode(), serial.encode()) is ok
    assert bool(found(f"x {area}-{group}-{serial} y")) is ok


@pytest.mark.parametrize(
    "text,ssn",
    [
        ("ssn 332206469", "332206469"),
        ('{"ssn": "332206469"}', "332206469"),
        ('{"customer_ssn":332206469}', "332206469"),
        ("<ssn>332206469</ssn>", "332206469"),
        ("Key (ssn)=(332206469) already exists.", "332206469"),
        ("Social Security Number: 332 20 6469", "332 20 6469"),
        ("SSN#332-20-6469", "332-20-6469"),
        ("tax_id=332206469", "332206469"),
    ],
)
def test_ssn_in_context(text: str, ssn: str) -> None:
    assert found(text) == [("ssn", ssn)]


def test_concatenated_ssns() -> None:
    # string_agg(ssn, ''): each SSN is found although digits touch it on either side
    assert found("a 332-20-6469050-10-8780 b") == [("ssn", "332-20-6469"), ("ssn", "050-10-8780")]


@pytest.mark.parametrize(
    "text",
    [
        "332206469",  # nine bare digits: no context
        "zip 123456789",
        "id 332206469 total",
        "12-332-20-6469",  # part of a longer dashed number
        "332-20-6469-12",
        "2023-01-01",
        "000-12-3456",
        "ssn 000123456",  # invalid area even in context
        "ssn 1332206469",  # ten digits
    ],
)
def test_non_ssns(text: str) -> None:
    assert [n for n, _ in found(text)] == [], text


def test_bare_ssn_in_ssn_columns() -> None:
    assert found("332206469", ssn_bare=True) == [("ssn", "332206469")]
    assert found("332 20 6469", ssn_bare=True) == [("ssn", "332 20 6469")]
    assert found("900206469", ssn_bare=True) == []
    assert found("1332206469", ssn_bare=True) == []


# -- e-mail ----------------------------------------------------------------------------------


def test_every_sample_email_in_any_case() -> None:
    for c in CUSTOMERS:
        for variant in (c["email"], c["email"].upper(), c["email"].title()):
            assert found(variant) == [("email", variant)]


@pytest.mark.parametrize(
    "text,email",
    [
        ("mailto:ada@example.com", "ada@example.com"),
        ("<ada+tag@mail.example.co.uk>", "ada+tag@mail.example.co.uk"),
        ('{"email":"first.last@example.org"}', "first.last@example.org"),
        ("(1,Ada,ada@example.com,332)", "ada@example.com"),
        ("ada@example.com2023", "ada@example.com"),
        ("x_y-z%q@sub-domain.example.travel", "x_y-z%q@sub-domain.example.travel"),
    ],
)
def test_emails_in_context(text: str, email: str) -> None:
    assert found(text) == [("email", email)]


def test_concatenated_emails_are_all_covered() -> None:
    glued = "".join(c["email"] for c in CUSTOMERS[:6]).encode()
    spans = merge(DEFAULT.find(glued))
    masked = bytearray(glued)
    for s, e, _ in spans:
        masked[s:e] = b"*" * (e - s)
    for c in CUSTOMERS[:6]:
        assert c["email"].encode() not in bytes(masked)


@pytest.mark.parametrize(
    "text", ["user@localhost", "@handle", "a@b", "x @ y.com", "1.2@3.4", "f@o", "a@-x.com"]
)
def test_non_emails(text: str) -> None:
    assert [n for n, _ in found(text)] == []


def test_email_local_part_is_bounded() -> None:
    text = ("a" * 10_000 + "@example.com").encode()
    ((s, e, name),) = merge(DEFAULT.find(text))
    assert name == "email" and e == len(text) and e - s == 64 + len("@example.com")


# -- optional detectors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,name,value",
    [
        ("call +1-202-555-0100 now", "phone", "+1-202-555-0100"),
        ("call (202) 555-0100", "phone", "(202) 555-0100"),
        ("tel +442071838750", "phone", "+442071838750"),
        ("tel +44 20 7183 8750.", "phone", "+44 20 7183 8750"),
        ("IBAN DE89 3704 0044 0532 0130 00 ok", "iban", "DE89 3704 0044 0532 0130 00"),
        ("GB82WEST12345698765432", "iban", "GB82WEST12345698765432"),
        ("key AKIAIOSFODNN7EXAMPLE", "secrets", "AKIAIOSFODNN7EXAMPLE"),
        ("Authorization: Bearer abcdef0123456789xyz", "secrets", "abcdef0123456789xyz"),
        ("postgresql://app:s3cr3t-pw@db/shop", "secrets", "s3cr3t-pw"),
        ("ghp_" + "a" * 36, "secrets", "ghp_" + "a" * 36),
        ("from 192.168.10.1:5432", "ip", "192.168.10.1"),
        ("addr 2001:db8:85a3:0:0:8a2e:370:7334", "ip", "2001:db8:85a3:0:0:8a2e:370:7334"),
        ("addr fe80::1ff:fe23:4567:890a", "ip", "fe80::1ff:fe23:4567:890a"),
    ],
)
def test_optional_detectors(text: str, name: str, value: str) -> None:
    assert (name, value) in found(text, ALL)
    assert [n for n, _ in found(text)] == []  # none of them is on by default


def test_jwt_and_pem() -> None:
    jwt = (
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    )
    assert found(f"token={jwt};", ALL) == [("secrets", jwt)]
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAAAA\n-----END RSA PRIVATE KEY-----"
    assert found(f"x {pem} y", ALL) == [("secrets", pem)]
    cut = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B"
    assert found(cut, ALL) == [("secrets", cut)]


@pytest.mark.parametrize(
    "text",
    [
        "version 1.2.3",
        "DE89 3704 0044 0532 0130 01",
        "12:34:56",
        "2023-01-01",
        "bearer x",
        "total 1234 5678 9012",
        "+1",
    ],
)
def test_optional_detectors_negatives(text: str) -> None:
    assert found(text, ALL) == []


def test_custom_detector() -> None:
    scanner = Scanner([], [("employee", r"EMP-[0-9]{6}")])
    assert scanner.always
    assert found("by EMP-123456 and EMP-12", scanner) == [("employee", "EMP-123456")]


def test_precheck_skips_ordinary_text() -> None:
    ordinary = [b"Ada Lovelace", b"2023-01-01 00:00:00+00", b"12345.67", b"+1-202-555-0100"]
    for text in ordinary:
        assert not DEFAULT.may_match(text)
    assert DEFAULT.may_match(b"x@y")
    assert DEFAULT.may_match(b"4111 1111 1111 1111")
    assert DEFAULT.may_match(b"332-20-6469")
    assert DEFAULT.may_match(b"SSN")


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # ssn || card: the card's digits are glued to the SSN's last group
        ("332-20-6469371449194875746", "***-**-*******************"),
        ("4111111111111111332-20-6469", "*******************-**-****"),
    ],
)
def test_card_glued_to_a_dashed_group_is_found(text: str, masked: str) -> None:
    m = Masker(DEFAULT_CONFIG, b"k" * 32)
    assert m.mask_text(text)[0] == masked


@pytest.mark.parametrize("text", ["1541815603606036480", "id 6469371449194875746 x"])
def test_lone_long_number_is_not_searched_for_cards(text: str) -> None:
    # snowflake-style ids: most 19-digit numbers hold some Luhn-valid window
    m = Masker(DEFAULT_CONFIG, b"k" * 32)
    assert m.mask_text(text)[0] == text


@given(st.binary(max_size=40) | st.text("ssnocialtx -", max_size=40).map(str.encode))
def test_ssn_words_is_the_regular_expression_it_replaced(folded: bytes) -> None:
    assert _ssn_words(folded) == (re.search(rb"ssn|social|tax", folded) is not None)
