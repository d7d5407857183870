"""Masking: detectors and strategies applied to values and whole protocol messages. Pure: no
sockets, no asyncio, no I/O (except ``masking_key``, which may create ``data_dir/masking.key``).

Usage by the relay::

    config = load_masking(cfg.masking)                 # MaskingError names a bad key
    masker = Masker(config, masking_key(config, cfg.data_dir))
    rows = masker.for_columns(row_description, resolve)   # per result
    msg, counts = rows.mask_datarow(data_row)          # msg is the same object if unchanged
    copy = masker.for_copy(resp.overall_format, resp.column_formats, columns=..., csv=...)
    msg, counts = copy.feed(copy_data)                 # None: bytes held until a row completes
    msg, counts = copy.end()                           # at CopyDone: raises if a row was cut
    msg, counts = masker.mask_fields(error_or_notice)
    msg, counts = masker.mask_notification(notification)

Every method raises ``MaskingFailure`` and nothing else when it cannot mask safely: the relay
must then withhold the message (end the statement), never forward it. ``counts`` is a
``Counter`` of detector names (``card``, ``ssn``, ``email``, custom names) and column rules
(``column:<pattern>``) to how many values they masked — for the recording; it never holds a
value. The empty count returned for unchanged messages is shared and read-only.

Decisions
---------
Default (``masking: default``): detectors ``card``, ``ssn``, ``email``; strategy ``redact``;
no column rules. Redact is the default because it is the only strategy that leaves nothing of
the value (partial keeps four digits, hash is a stable pseudonym); it keeps the shape, so
``4111 1111 1111 1111`` becomes ``**** **** **** ****`` and ``ada@example.com`` becomes
``***@*******.***``. See ``strategies`` for the three strategies and ``detectors`` for what
each detector matches.

Card numbers must start with 2-6 (the networks people carry cards from): without that, one in
ten 13-19 digit numbers (epoch milliseconds, snowflake ids, bigint keys) would pass Luhn and be
masked. Bare nine-digit SSNs are masked only where the context says SSN: after an SSN-like
key, in a column whose name says SSN, or as the entire value of a computed text column (how
``replace(ssn, '-', '')`` arrives), because nine digits alone are as often a ZIP+4, an id or
an amount.

Values stay valid for their type and format. Text-like values (text, varchar, bpchar, name,
xml, and every type not built in: composites, enums, arrays of text, citext, ...) get
same-shape replacements. json/jsonb: inside strings the same, a number outside strings is
replaced by a number (hash) or ``null``. Numbers (int, numeric, float; text format): hash
gives digits of the same count starting with ``1``, redact/partial give NULL. Binary format:
text-like values are their bytes (masked the same way); jsonb is a version byte and the text;
int8 (and int4/oid in SSN columns) are decoded and checked, replaced by a hashed integer of the
same width or NULL; numeric is decoded and checked, and becomes NULL; binary composites and
arrays are masked in place keeping every length (or NULL). Types with no valid masked form
(date, uuid, inet, ranges, money, ...) become NULL when a detector fires in them; bytea in hex
is decoded, masked and re-encoded. Column rules mask the whole value: text-like values by
shape, json as ``"***"`` (or a hashed string), numbers as above, other types NULL.

Lineage: a table-qualified rule (``customers.ssn``) matches the column RowDescription points at
(table OID and attribute number, resolved by the caller), whatever the output column is called.
A ``*.column`` rule matches by name: lineage, alias or output name. When the lineage cannot be
resolved, a table-qualified rule falls back to the output column's name.

Computed columns (table OID 0: expressions, aggregates, casts, JSON and XML built from a
column) have no lineage on the wire. Content detectors apply to them like to any column, which
catches a card number, SSN or e-mail wherever it is carried whole (text, JSON, XML, arrays,
whole rows, ``string_agg``), in any case and with separators removed; a text value of exactly
nine digits that is a valid SSN is one (``replace(ssn, '-', '')``); rule patterns match their
output name (``... AS ssn``). They are not masked whole by default, because most expressions
over a masked column are counts, sums and comparisons whose results are not the value. When
the relay passes the tables a statement reads (``for_columns(..., reads=...)``) and one of
them has a table-qualified rule, computed text-like columns (text, json, records, arrays) of
that statement are masked whole under that rule (``upper(name)``, ``row_to_json(c)``); its
computed numbers, dates and booleans are still sent as they are.

Known limits (values transformed so that no detector sees them): reversed, base64- or
hex-encoded text (bytea is decoded), URL-encoded e-mails, a card number glued to one to six
other digits, a bare nine-digit SSN with no SSN context, and numbers kept only in float,
money or binary array form. Detectors work on ASCII-compatible encodings.
"""

from pgwarden.masking._common import NO_COUNTS, ColumnPlan
from pgwarden.masking.config import (
    BUILTIN_DETECTORS,
    DEFAULT_CONFIG,
    DEFAULT_DETECTORS,
    OFF_CONFIG,
    ColumnRule,
    CustomDetector,
    MaskingConfig,
    StrategyName,
    load_masking,
    parse_masking,
)
from pgwarden.masking.copy import CopyMasker
from pgwarden.masking.detectors import Scanner, is_card, luhn_ok, ssn_valid
from pgwarden.masking.engine import Masker, RowMasker
from pgwarden.masking.errors import MaskingError, MaskingFailure
from pgwarden.masking.keys import ENV_KEY, masking_key
from pgwarden.masking.strategies import Replacer

__all__ = [
    "BUILTIN_DETECTORS",
    "DEFAULT_CONFIG",
    "DEFAULT_DETECTORS",
    "ENV_KEY",
    "NO_COUNTS",
    "OFF_CONFIG",
    "ColumnPlan",
    "ColumnRule",
    "CopyMasker",
    "CustomDetector",
    "Masker",
    "MaskingConfig",
    "MaskingError",
    "MaskingFailure",
    "Replacer",
    "RowMasker",
    "Scanner",
    "StrategyName",
    "is_card",
    "load_masking",
    "luhn_ok",
    "masking_key",
    "parse_masking",
    "ssn_valid",
]
