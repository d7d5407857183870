"""Errors, notices, notifications and parameter status: every field is masked."""

from __future__ import annotations

from collections import Counter

import pytest
from masking_samples import CUSTOMERS, leaks, masker

from pgwarden.masking import NO_COUNTS, MaskingFailure
from pgwarden.protocol.messages import (
    CopyData,
    DataRow,
    ErrorResponse,
    NoticeResponse,
    NotificationResponse,
    ParameterStatus,
    ReadyForQuery,
)


def test_cast_error_quotes_the_value() -> None:
    c = CUSTOMERS[0]
    msg = ErrorResponse.build("22P02", f'invalid input syntax for type integer: "{c["ssn"]}"')
    out, counts = masker().mask_fields(msg)
    assert isinstance(out, ErrorResponse)
    assert out.message == 'invalid input syntax for type integer: "***-**-****"'
    assert out.sqlstate == "22P02" and out.severity == "ERROR"
    assert counts == Counter({"ssn": 1})
    assert out.raw != msg.raw


def test_unique_violation_detail_and_every_field() -> None:
    c = CUSTOMERS[1]
    msg = ErrorResponse.build(
        "23505",
        'duplicate key value violates unique constraint "customers_email_key"',
        detail=f"Key (email)=({c['email']}) already exists.",
        hint=f"card {c['card']} was used",
        where=f'SQL function "f" statement 1 ssn {c["ssn"]}',
    )
    out, counts = masker().mask_fields(msg)
    assert leaks(out.raw) == []
    assert out.fields["D"].startswith("Key (email)=(") and "@" in out.fields["D"]
    assert counts == Counter({"email": 1, "card": 1, "ssn": 1})


def test_notice_unchanged_is_the_same_object() -> None:
    msg = NoticeResponse.build('relation "orders" already exists, skipping')
    out, counts = masker().mask_fields(msg)
    assert out is msg and counts is NO_COUNTS


def test_notice_raise_with_values() -> None:
    msg = NoticeResponse.build(f"row: {CUSTOMERS[2]['email'].upper()} / {CUSTOMERS[2]['card']}")
    out, counts = masker().mask_fields(msg)
    assert isinstance(out, NoticeResponse)
    assert leaks(out.raw) == [] and counts == Counter({"email": 1, "card": 1})


def test_rule_columns_in_errors() -> None:
    m = masker({"columns": ["customers.name"], "detectors": ["email"]})
    unique = ErrorResponse.from_fields(
        {"S": "ERROR", "C": "23505", "M": "duplicate key",
         "D": "Key (name)=(Ada Lovelace) already exists.",
         "s": "public", "t": "customers", "n": "customers_name_key"}
    )  # fmt: skip
    out, counts = m.mask_fields(unique)
    assert out.fields["D"] == "Key (name)=(*** ********) already exists."
    assert counts == Counter({"column:customers.name": 1})
    # the same key on another table is left alone
    other = ErrorResponse.from_fields({**unique.fields, "t": "products"})
    assert m.mask_fields(other)[0] is other
    failing = ErrorResponse.from_fields(
        {"S": "ERROR", "C": "23502", "M": "null value in column \"email\"",
         "D": "Failing row contains (1, Ada Lovelace, null).", "t": "customers"}
    )  # fmt: skip
    out, _ = m.mask_fields(failing)
    assert out.fields["D"] == "Failing row contains (*, *** ********, ****)."
    cast = ErrorResponse.build("22P02", 'invalid input syntax for type integer: "Ada Lovelace"')
    out, _ = m.mask_fields(cast)
    assert out.message == 'invalid input syntax for type integer: "*** ********"'


def test_notification_payload_and_channel() -> None:
    msg = NotificationResponse.build(4242, "customer_changed", '{"email": "ada@example.com"}')
    out, counts = masker().mask_notification(msg)
    assert out.pid == 4242 and out.channel == "customer_changed"
    assert out.payload == '{"email": "***@*******.***"}'
    assert counts == Counter({"email": 1})
    plain = NotificationResponse.build(1, "c", "refresh")
    assert masker().mask_notification(plain)[0] is plain


def test_parameter_status() -> None:
    msg = ParameterStatus.build("application_name", "ada@example.com")
    out, _ = masker().mask_parameter_status(msg)
    assert out.name == "application_name" and out.value == "***@*******.***"
    plain = ParameterStatus.build("TimeZone", "UTC")
    assert masker().mask_parameter_status(plain)[0] is plain


def test_text_and_bytes_helpers() -> None:
    m = masker()
    text = "ünïcode ada@example.com 4111 1111 1111 1111"
    out, _counts = m.mask_text(text)
    assert out == "ünïcode ***@*******.*** **** **** **** ****"
    assert m.mask_text("nothing")[0] == "nothing"
    buf = b"plain"
    assert m.mask_bytes(buf)[0] is buf


def test_mask_sql_keeps_clean_texts_and_masks_the_rest_every_time() -> None:
    m = masker()
    clean = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
    assert m.mask_sql(clean) == (clean, NO_COUNTS)
    assert clean in m._clean_sql
    assert m.mask_sql(clean) == (clean, NO_COUNTS)
    card = "SELECT 1 WHERE note = '4111 1111 1111 1111'"
    first, counts = m.mask_sql(card)
    assert first == "SELECT 1 WHERE note = '**** **** **** ****'" and counts == Counter(card=1)
    assert card not in m._clean_sql
    counts["card"] += 5  # the caller's to change: the next call counts afresh
    assert m.mask_sql(card) == (first, Counter(card=1))
    # an unscannable text fails closed every time; it is never kept as clean
    for _ in range(2):
        with pytest.raises(MaskingFailure):
            m.mask_sql("card \ud800 ada@example.com")


def test_mask_sql_keeps_a_bounded_set() -> None:
    m = masker()
    for i in range(5000):
        assert m.mask_sql(f"SELECT {i}")[0] == f"SELECT {i}"
    assert 0 < len(m._clean_sql) <= 2048
    long = "SELECT 1" + " " * 5000
    assert m.mask_sql(long)[0] == long and long not in m._clean_sql


def test_mask_message_dispatch() -> None:
    m = masker()
    row = DataRow.build([b"ada@example.com"])
    out, counts = m.mask_message(row)
    assert isinstance(out, DataRow) and out.values() == (b"***@*******.***",)
    assert counts == Counter({"email": 1})
    note = NoticeResponse.build("ada@example.com")
    assert isinstance(m.mask_message(note)[0], NoticeResponse)
    assert m.mask_message(note)[0].raw != note.raw
    status = ParameterStatus.build("application_name", "ada@example.com")
    assert m.mask_message(status)[0].raw != status.raw
    ready = ReadyForQuery.build()
    assert m.mask_message(ready) == (ready, NO_COUNTS)
    with pytest.raises(MaskingFailure):
        m.mask_message(CopyData.build(b"ada@example.com\n"))


def test_wrong_message_type_fails_closed() -> None:
    with pytest.raises(MaskingFailure):
        masker().mask_fields(DataRow.build([b"x"]))  # type: ignore[type-var]


def test_text_that_cannot_be_scanned_fails_closed() -> None:
    # A lone surrogate cannot be encoded for the scanner: the failure must come out as
    # MaskingFailure (the relay then withholds the value and ends the session), not as the
    # encoder's error, which callers would not recognise as a masking failure.
    with pytest.raises(MaskingFailure, match="UnicodeEncodeError"):
        masker().mask_text("card \ud800 ada@example.com")
