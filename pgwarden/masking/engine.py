"""Message-level masking: DataRow, ErrorResponse/NoticeResponse, NotificationResponse.

``Masker`` holds the compiled configuration; ``Masker.for_columns`` binds it to one result's
columns (a ``RowMasker``), ``Masker.for_copy`` to one COPY OUT stream (a ``CopyMasker``).
Every method returns the very same message object when nothing changed, so the relay forwards
its raw bytes as they came; a new message is built only when a value is masked. Every method
raises ``MaskingFailure`` (never anything else) when it cannot mask safely.
"""

from __future__ import annotations

import re
import struct
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import accumulate, count
from operator import add
from typing import Any, Final, TypeVar

from pgwarden.masking import typekinds as T
from pgwarden.masking._common import (
    NO_COUNTS,
    SAME,
    ColumnPlan,
    _Same,
    failure,
    guard,
    rule_counter_key,
)
from pgwarden.masking.config import ColumnRule, MaskingConfig, StrategyName
from pgwarden.masking.copy import CopyMasker
from pgwarden.masking.detectors import SSN_COLUMN_NAME, Scanner, Span, is_card, merge, ssn_valid
from pgwarden.masking.errors import MaskingFailure
from pgwarden.masking.strategies import Replacer
from pgwarden.protocol.messages import (
    CopyData,
    DataRow,
    ErrorResponse,
    Message,
    NoticeResponse,
    NotificationResponse,
    ParameterStatus,
    RowDescription,
    int32_at,
    uint16_at,
)

Resolve = Callable[[int, int], "tuple[str, str] | None"]
_F = TypeVar("_F", ErrorResponse, NoticeResponse)

_I32: Final = struct.Struct("!i")
_U16: Final = struct.Struct("!H")
_NUMERIC_HEAD: Final = struct.Struct("!hhHH")
# the length field of a nine-byte value; searched with find(), not `in` (see detectors.py)
_LEN9: Final = _I32.pack(9)
_JSON_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NUMBER_CHARS: Final = frozenset(b"0123456789+-.eE")
_ARRAY_DELIMS: Final = frozenset(b',{}" \t\n\\')
_HEX_DIGITS: Final = re.compile(rb"(?:[0-9A-Fa-f]{2})*")
_KEY_DETAIL: Final = re.compile(r"Key \((.*?)\)=\((.*)\)", re.DOTALL)
_FAILING_ROW: Final = re.compile(r"(Failing row contains \()(.*)(\))", re.DOTALL)
_QUOTED: Final = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
# Statement texts found clean by mask_sql, kept per Masker: an application sends the same few
# texts again and again (prepared statements, parameterised queries). Short ones only, so the
# set stays small (at most _CLEAN_SQL_KEPT x _CLEAN_SQL_MAX characters, ~8 MB).
_CLEAN_SQL_KEPT: Final = 2048
_CLEAN_SQL_MAX: Final = 4096


def _formats(formats: Sequence[int] | None, n: int) -> list[int] | None:
    """Per-column format codes from a Bind's result-format list (the 0/1/N rule)."""
    if formats is None:
        return None
    if len(formats) == 0:
        return [0] * n
    if len(formats) == 1:
        return [formats[0]] * n
    if len(formats) != n:
        raise MaskingFailure("result format count does not match the column count")
    return list(formats)


def _numeric_text(val: bytes) -> bytes | None:
    """The text form of a binary numeric (None for NaN and infinities)."""
    ndigits, weight, sign, dscale = _NUMERIC_HEAD.unpack_from(val)
    if sign not in (0x0000, 0x4000) or ndigits < 0 or len(val) != 8 + 2 * ndigits:
        return None
    groups = struct.unpack_from(f"!{ndigits}H", val, 8)
    digits = "".join(f"{g:04d}" for g in groups)
    point = (weight + 1) * 4
    if point <= 0:
        whole, frac = "0", "0" * -point + digits
    elif point >= len(digits):
        whole, frac = digits + "0" * (point - len(digits)), ""
    else:
        whole, frac = digits[:point], digits[point:]
    whole = whole.lstrip("0") or "0"
    text = ("-" if sign == 0x4000 else "") + whole
    if dscale > 0:
        text += "." + (frac + "0" * dscale)[:dscale]
    return text.encode("ascii")


class Masker:
    """The masking configuration, compiled, with the key for the hash strategy."""

    def __init__(self, config: MaskingConfig, key: bytes) -> None:
        self.config = config
        self.scanner = Scanner(config.detectors, [(c.name, c.pattern) for c in config.custom])
        self.replacer = Replacer(key, config.strategy, config.strategies)
        self.rules = config.columns
        self.enabled = config.enabled
        self._column_strategy: StrategyName = config.strategy_for("columns")
        self._clean_sql: set[str] = set()

    # -- binding ---------------------------------------------------------------------------

    def for_columns(
        self,
        desc: RowDescription | None,
        resolve: Resolve | None = None,
        *,
        formats: Sequence[int] | None = None,
        reads: Iterable[str] | None = None,
    ) -> RowMasker:
        """A RowMasker for the rows of a result described by ``desc``.

        ``resolve(table_oid, attnum)`` names a column's lineage as ``(table, column)`` (the
        table optionally ``schema.table``); ``None`` (or no resolver, or table OID 0) falls
        back to the output column name. It should see through views to base tables where it
        can. ``formats`` overrides the columns' format codes (a Bind's result formats, for a
        statement described before it was bound). ``desc=None`` (columns unknown) masks
        content type-agnostically and refuses rows when column rules are configured.

        ``reads``: the tables the statement reads (``Classification.tables_read``). When one
        of them has a table-qualified column rule, computed text-like columns (table OID 0:
        text, json, records, arrays) are masked whole under that rule, since an expression
        such as ``upper(name)``, ``row_to_json(c)`` or ``string_agg(name, ',')`` may carry
        the protected value; computed numbers, dates and booleans (counts, sums) are not.
        """
        return guard(self._for_columns, desc, resolve, formats, reads)

    def _for_columns(
        self,
        desc: RowDescription | None,
        resolve: Resolve | None,
        formats: Sequence[int] | None,
        reads: Iterable[str] | None = None,
    ) -> RowMasker:
        if desc is None:
            return RowMasker(self, None)
        tainted = None
        if reads is not None:
            tables = list(reads)
            tainted = next(
                (
                    r
                    for r in self.rules
                    if not r.by_name and any(r.matches_table(t) for t in tables)
                ),
                None,
            )
        fmts = _formats(formats, len(desc.columns))
        plans = []
        for i, col in enumerate(desc.columns):
            binary = (fmts[i] if fmts is not None else col.format) == 1
            lineage = None
            if col.table_oid != 0 and resolve is not None:
                try:
                    lineage = resolve(col.table_oid, col.attnum)
                except Exception as exc:
                    raise MaskingFailure(f"cannot resolve column {col.name!r}: {exc}") from exc
            plans.append(
                self.plan_column(
                    i,
                    col.name,
                    col.type_oid,
                    binary,
                    lineage,
                    computed=col.table_oid == 0 or col.attnum == 0,  # attnum 0: whole row
                    tainted=tainted,
                )
            )
        return RowMasker(self, tuple(plans))

    def match_rule(self, name: str, lineage: tuple[str, str] | None) -> ColumnRule | None:
        """The first column rule matching a column (see the config module for semantics)."""
        for rule in self.rules:
            if lineage is not None:
                if rule.matches_lineage(*lineage):
                    return rule
                if rule.by_name and (rule.matches_name(name) or rule.matches_name(lineage[1])):
                    return rule
            elif rule.matches_name(name):
                return rule
        return None

    def plan_column(
        self,
        index: int,
        name: str,
        type_oid: int,
        binary: bool,
        lineage: tuple[str, str] | None = None,
        *,
        computed: bool = False,
        tainted: ColumnRule | None = None,
    ) -> ColumnPlan:
        kind = T.kind_of(type_oid)
        rule = self.match_rule(name, lineage)
        if rule is None and computed and tainted is not None:
            if kind in (T.TEXT, T.GENERIC, T.JSON):
                rule = tainted
        ssn = self.scanner.ssn
        hint = ssn and any(
            SSN_COLUMN_NAME.search(n) for n in (name, lineage[1] if lineage else "") if n
        )
        whole9 = ssn and computed and (kind == T.TEXT or (kind == T.GENERIC and not binary))
        always = rule is not None or hint
        if (
            binary
            and kind == T.INT
            and ((self.scanner.card and type_oid == 20) or (hint and type_oid in (20, 23, 26)))
        ):
            always = True
        if binary and kind == T.NUMERIC and (self.scanner.card or hint):
            always = True
        if not binary and kind == T.BYTEA and self.scanner.active:
            always = True  # hex text hides its content from the row's pre-check
        if binary:
            joinable = kind in (T.TEXT, T.GENERIC, T.BYTEA) or (
                kind == T.JSON and type_oid not in T.VERSIONED_JSON
            )
        else:
            joinable = kind != T.BYTEA
        joinable = joinable and not (rule is not None or hint)
        hint_joinable = hint and rule is None and not binary and kind in (T.TEXT, T.GENERIC)
        return ColumnPlan(
            index, name, type_oid, kind, binary, rule, hint, whole9, always, joinable, hint_joinable
        )

    def for_copy(
        self,
        overall_format: int,
        column_formats: Sequence[int] = (),
        *,
        columns: Sequence[tuple[str, str] | str | None] | None = None,
        column_types: Sequence[int] | None = None,
        csv: bool | None = None,
        delimiter: bytes | None = None,
        quote: bytes = b'"',
        escape: bytes | None = None,
    ) -> CopyMasker:
        """A CopyMasker for one COPY ... TO STDOUT (see ``pgwarden.masking.copy``)."""
        return guard(
            CopyMasker,
            self,
            overall_format,
            column_formats,
            columns,
            column_types,
            csv,
            delimiter,
            quote,
            escape,
        )

    # -- values ------------------------------------------------------------------------------

    def count(self, counts: Counter[str] | None, spans: Iterable[Span]) -> Counter[str]:
        """Add merged spans to ``counts`` (one per masked stretch, by its first detector)."""
        if counts is None:
            counts = Counter()
        for _, _, name in spans:
            counts[name] += 1
        return counts

    def replace_text(self, buf: bytes, spans: list[Span], *, escapes: bool = True) -> bytes:
        """``buf`` with each (merged) span replaced by its same-shape text replacement."""
        parts = []
        pos = 0
        for s, e, name in spans:
            parts.append(buf[pos:s])
            parts.append(self.replacer.text(name, buf[s:e], escapes=escapes))
            pos = e
        parts.append(buf[pos:])
        return b"".join(parts)

    def _replace_json(self, buf: bytes, spans: list[Span]) -> bytes:
        strings = [m.span() for m in _JSON_STRING.finditer(buf)]
        parts = []
        pos = 0
        k = 0
        for s, e, name in spans:
            while k < len(strings) and strings[k][1] <= s:
                k += 1
            inside = k < len(strings) and strings[k][0] < s and e < strings[k][1]
            if inside:
                parts.append(buf[pos:s])
                parts.append(self.replacer.text(name, buf[s:e]))
                pos = e
                continue
            if k < len(strings) and strings[k][0] < e:
                raise MaskingFailure("a detection straddles a JSON string")
            # a number outside any string: replace the whole number token
            ts, te = s, e
            while ts > pos and buf[ts - 1] in _NUMBER_CHARS:
                ts -= 1
            while te < len(buf) and buf[te] in _NUMBER_CHARS:
                te += 1
            number = self.replacer.number(name, buf[ts:te])
            parts.append(buf[pos:ts])
            parts.append(b"null" if number is None else number)
            pos = te
        parts.append(buf[pos:])
        return b"".join(parts)

    def _replace_numarr(self, buf: bytes, spans: list[Span]) -> bytes:
        parts = []
        pos = 0
        for s, e, name in spans:
            number = self.replacer.number(name, buf[s:e])
            if number is not None:
                parts.append(buf[pos:s])
                parts.append(number)
                pos = e
                continue
            ts, te = s, e
            while ts > pos and buf[ts - 1] not in _ARRAY_DELIMS:
                ts -= 1
            while te < len(buf) and buf[te] not in _ARRAY_DELIMS:
                te += 1
            parts.append(buf[pos:ts])
            parts.append(b"NULL")
            pos = te
        parts.append(buf[pos:])
        return b"".join(parts)

    def _spans(self, val: bytes, plan: ColumnPlan) -> list[Span]:
        spans = (
            self.scanner.find(val, ssn_bare=plan.ssn_hint)
            if (plan.ssn_hint or self.scanner.may_match(val))
            else []
        )
        if (
            plan.whole9
            and len(val) == 9
            and val.isdigit()
            and val.isascii()
            and ssn_valid(val[:3], val[3:5], val[5:])
        ):
            spans.append((0, 9, "ssn"))
        if plan.ssn_hint and plan.kind in (T.INT, T.NUMERIC) and val.isdigit() and len(val) < 9:
            padded = val.rjust(9, b"0")
            if ssn_valid(padded[:3], padded[3:5], padded[5:]):
                spans.append((0, len(val), "ssn"))
        return spans

    def mask_value(
        self, plan: ColumnPlan, val: bytes, counts: Counter[str]
    ) -> bytes | _Same | None:
        """One non-NULL value of a column: its replacement, None for NULL, or SAME."""
        if plan.rule is not None:
            counts[rule_counter_key(plan.rule)] += 1
            return self._whole(plan, val)
        if plan.binary:
            return self._binary_value(plan, val, counts)
        if plan.kind == T.BYTEA and val.startswith(b"\\x"):
            return self._bytea_hex(val, counts)
        spans = self._spans(val, plan)
        if not spans:
            return SAME
        return self.apply_spans(plan, val, spans, counts)

    def apply_spans(
        self, plan: ColumnPlan, val: bytes, spans: list[Span], counts: Counter[str]
    ) -> bytes | _Same | None:
        """Replace detected spans in a value of a content-masked column, keeping the value
        valid for its type and format."""
        spans = merge(spans)
        self.count(counts, spans)
        kind = plan.kind
        if plan.binary:
            if kind == T.JSON:
                return self._replace_json(val, spans)
            masked = self.replace_text(val, spans, escapes=False)
            if kind != T.TEXT and len(masked) != len(val):
                return None  # inside a binary layout the length must not change
            return masked
        if kind in (T.TEXT, T.GENERIC, T.BYTEA):
            return self.replace_text(val, spans, escapes=kind != T.TEXT)
        if kind == T.JSON:
            return self._replace_json(val, spans)
        if kind in (T.INT, T.NUMERIC, T.FLOAT):
            parts = []
            pos = 0
            for s, e, name in spans:
                number = self.replacer.number(name, val[s:e])
                if number is None:
                    return None
                parts += [val[pos:s], number]
                pos = e
            parts.append(val[pos:])
            return b"".join(parts)
        if kind == T.NUMARR:
            return self._replace_numarr(val, spans)
        return None  # OPAQUE: no masking character keeps the value valid

    def _bytea_hex(self, val: bytes, counts: Counter[str]) -> bytes | _Same:
        hexpart = val[2:]
        if _HEX_DIGITS.fullmatch(hexpart) is None:
            return SAME
        raw = bytes.fromhex(hexpart.decode("ascii"))
        if not self.scanner.may_match(raw):
            return SAME
        spans = self.scanner.find(raw)
        if not spans:
            return SAME
        spans = merge(spans)
        self.count(counts, spans)
        masked = self.replace_text(raw, spans, escapes=False)
        return b"\\x" + masked.hex().encode("ascii")

    def _binary_value(
        self, plan: ColumnPlan, val: bytes, counts: Counter[str]
    ) -> bytes | _Same | None:
        kind = plan.kind
        if kind == T.INT:
            width, unsigned = T.INT_BINARY[plan.type_oid]
            if len(val) != width:
                raise MaskingFailure(f"bad binary integer in column {plan.name!r}")
            number = int.from_bytes(val, "big", signed=not unsigned)
            digits = str(abs(number)).encode("ascii")
            hit = None
            if self.scanner.card and 13 <= len(digits) <= 19 and is_card(digits):
                hit = "card"
            elif plan.ssn_hint and len(digits) <= 9:
                padded = digits.rjust(9, b"0")
                if ssn_valid(padded[:3], padded[3:5], padded[5:]):
                    hit = "ssn"
            if hit is None:
                return SAME
            counts[hit] += 1
            replaced = self.replacer.whole_int(self.replacer.strategy(hit), number)
            if replaced is None:
                return None
            return replaced.to_bytes(width, "big", signed=not unsigned)
        if kind == T.NUMERIC:
            if len(val) < 8:
                raise MaskingFailure(f"bad binary numeric in column {plan.name!r}")
            ndigits = _NUMERIC_HEAD.unpack_from(val)[0]
            if ndigits * 4 < 9:
                return SAME
            text = _numeric_text(val)
            if text is None:
                return SAME
            spans = self._spans(text.lstrip(b"-"), plan)
            if not spans:
                return SAME
            self.count(counts, merge(spans))
            return None  # no binary numeric replacement is attempted: NULL
        if kind in (T.OPAQUE, T.FLOAT, T.NUMARR):
            return SAME  # binary forms that hold no text
        if kind == T.JSON and plan.type_oid in T.VERSIONED_JSON:
            if val[:1] != b"\x01":
                return None  # unknown jsonb version: withhold the value
            body = val[1:]
            spans = self.scanner.find(body) if self.scanner.may_match(body) else []
            if not spans:
                return SAME
            masked = self.apply_spans(plan, body, spans, counts)
            return None if masked is None or isinstance(masked, _Same) else b"\x01" + masked
        # TEXT (the string's bytes), BYTEA (raw bytes), GENERIC (records, arrays, ...), json:
        # scan the bytes and replace in place.
        if kind == T.TEXT:
            spans = self._spans(val, plan)
        else:
            spans = self.scanner.find(val) if self.scanner.may_match(val) else []
        if not spans:
            return SAME
        return self.apply_spans(plan, val, spans, counts)

    def _whole(self, plan: ColumnPlan, val: bytes) -> bytes | None:
        strategy = self._column_strategy
        kind = plan.kind
        if plan.binary:
            if kind == T.TEXT:
                return self.replacer.whole_text(strategy, val, plain=True)
            if kind == T.JSON:
                masked = self.replacer.whole_json(strategy, val)
                return b"\x01" + masked if plan.type_oid in T.VERSIONED_JSON else masked
            if kind == T.INT:
                width, unsigned = T.INT_BINARY[plan.type_oid]
                number = int.from_bytes(val, "big", signed=not unsigned)
                replaced = self.replacer.whole_int(strategy, number)
                return (
                    None
                    if replaced is None
                    else replaced.to_bytes(width, "big", signed=not unsigned)
                )
            return None
        if kind in (T.TEXT, T.GENERIC):
            return self.replacer.whole_text(strategy, val, plain=kind == T.TEXT)
        if kind == T.JSON:
            return self.replacer.whole_json(strategy, val)
        if kind in (T.INT, T.NUMERIC, T.FLOAT):
            return self.replacer.whole_number(strategy, val)
        return None

    # -- any message -----------------------------------------------------------------------------

    def mask_message(
        self, msg: Message, rows: RowMasker | None = None
    ) -> tuple[Message, Counter[str]]:
        """Dispatch one server message: DataRow (through ``rows``, or type-agnostically when
        None), ErrorResponse, NoticeResponse, NotificationResponse and ParameterStatus are
        masked; anything else is returned as it is. CopyData needs a CopyMasker (it has
        state across messages) and is refused here."""
        if isinstance(msg, DataRow):
            return (rows if rows is not None else self.for_columns(None)).mask_datarow(msg)
        if isinstance(msg, ErrorResponse):
            return self.mask_fields(msg)
        if isinstance(msg, NoticeResponse):
            return self.mask_fields(msg)
        if isinstance(msg, NotificationResponse):
            return self.mask_notification(msg)
        if isinstance(msg, ParameterStatus):
            return self.mask_parameter_status(msg)
        if isinstance(msg, CopyData):
            raise MaskingFailure("CopyData must go through Masker.for_copy(...).feed")
        return msg, NO_COUNTS

    # -- whole buffers -------------------------------------------------------------------------

    def mask_bytes(self, buf: bytes, *, escapes: bool = False) -> tuple[bytes, Counter[str]]:
        """Content-mask any text buffer (same-shape replacements); ``buf`` itself if clean."""
        # guard() inlined: it is interpreted, and this runs for every statement's text
        try:
            return self._mask_bytes(buf, escapes)
        except MaskingFailure:
            raise
        except Exception as exc:
            raise failure(exc) from exc

    def _mask_bytes(self, buf: bytes, escapes: bool) -> tuple[bytes, Counter[str]]:
        if not self.scanner.active or not self.scanner.may_match(buf):
            return buf, NO_COUNTS
        spans = self.scanner.find(buf)
        if not spans:
            return buf, NO_COUNTS
        spans = merge(spans)
        return self.replace_text(buf, spans, escapes=escapes), self.count(None, spans)

    def _mask_lines(self, pieces: list[bytes], escapes: bool) -> tuple[list[bytes], Counter[str]]:
        """``_mask_bytes`` of each piece, with one detector pass over them all. Each piece
        ends with a newline, which no built-in detector matches across; a detection that
        straddles pieces anyway sends them through one by one. Not for custom patterns:
        they may be anchored to a value (see ``Scanner.per_value``)."""
        joined = b"".join(pieces)
        if not self.scanner.active or not self.scanner.may_match(joined):
            return pieces, NO_COUNTS
        spans = self.scanner.find(joined)
        if not spans:
            return pieces, NO_COUNTS
        merged = merge(spans)
        done = self._lines_in_place(joined, pieces, merged, escapes)
        if done is not None:
            return done, self.count(None, merged)
        return self._lines_apart(pieces, spans, escapes)

    def _lines_in_place(
        self, joined: bytes, pieces: list[bytes], merged: list[Span], escapes: bool
    ) -> list[bytes] | None:
        """The pieces with ``merged`` (spans of ``joined``) replaced in one pass over the
        joined buffer (see ``_replace_joined``): what ``_lines_apart`` gives, without a merge,
        a replacement pass and a count per piece. None: ``_lines_apart`` takes them."""
        done = self._replace_joined(joined, pieces, merged, 0, escapes)
        if done is None:
            return None
        masked, starts, changed = done
        out = list(pieces)
        for k in changed:
            out[k] = masked[starts[k] : starts[k] + len(pieces[k])]
        return out

    def _replace_joined(
        self,
        joined: bytes,
        pieces: Sequence[bytes],
        merged: list[Span],
        sep: int,
        escapes: bool | Callable[[int], bool | None],
    ) -> tuple[bytes, list[int], list[int]] | None:
        """``joined`` (``pieces`` joined with ``sep``-byte separators) with ``merged`` spans
        replaced in one pass, where each piece starts in it, and the pieces changed: each
        changed piece can be cut back out, since every replacement keeps its span's length.
        ``escapes``: backslash escapes are kept, for every piece or per piece (None: not a
        text value, which is masked on its own). None when a span is in such a value, runs
        over its piece's end or has a mask of another length: the pieces' bounds would move
        or the spans need their values' own handling."""
        starts = _piece_starts(pieces, sep)
        text = self.replacer.text
        parts: list[bytes] = []
        changed: list[int] = []
        pos = k = 0
        for s, e, name in merged:  # sorted by start: the piece index only moves forward
            k = bisect_right(starts, s, k) - 1
            if e > starts[k] + len(pieces[k]):
                return None
            esc = escapes if isinstance(escapes, bool) else escapes(k)
            if esc is None:
                return None
            new = text(name, joined[s:e], escapes=esc)
            if len(new) != e - s:
                return None
            parts += (joined[pos:s], new)
            pos = e
            if not changed or changed[-1] != k:
                changed.append(k)
        parts.append(joined[pos:])
        return b"".join(parts), starts, changed

    def _lines_apart(
        self, pieces: list[bytes], spans: list[Span], escapes: bool
    ) -> tuple[list[bytes], Counter[str]]:
        """``_mask_lines`` piece by piece, from the spans found in the pieces joined."""
        per, redo = _spans_by_piece(spans, pieces, 0)
        out = list(pieces)
        counts: Counter[str] = Counter()
        for k, found in per.items():
            if k not in redo:
                merged = merge(found)
                out[k] = self.replace_text(pieces[k], merged, escapes=escapes)
                self.count(counts, merged)
        for k in redo:
            out[k], c = self._mask_bytes(pieces[k], escapes)
            counts.update(c)
        return out, counts

    def mask_text(self, text: str) -> tuple[str, Counter[str]]:
        """Content-mask a string (as the client would see it); ``text`` itself if clean."""
        try:  # guard() inlined, as in mask_bytes
            return self._mask_text(text)
        except MaskingFailure:
            raise
        except Exception as exc:
            raise failure(exc) from exc

    def mask_sql(self, text: str) -> tuple[str, Counter[str]]:
        """``mask_text`` for a statement's text. The detectors' pre-check over a statement
        costs more than the rest of recording it; a text found clean is remembered (only
        clean ones: the counts of a masked one are the caller's to change)."""
        if text in self._clean_sql:
            return text, NO_COUNTS
        masked, found = self.mask_text(text)
        if masked is text and len(text) <= _CLEAN_SQL_MAX:
            if len(self._clean_sql) >= _CLEAN_SQL_KEPT:
                self._clean_sql.clear()
            self._clean_sql.add(text)
        return masked, found

    def _mask_text(self, text: str) -> tuple[str, Counter[str]]:
        buf = text.encode("utf-8", "surrogateescape")
        masked, counts = self._mask_bytes(buf, False)
        if masked is buf:
            return text, NO_COUNTS
        return masked.decode("utf-8", "surrogateescape"), counts

    def mask_json(self, value: Any, counts: Counter[str]) -> Any:
        """``value`` (JSON-like: strings, numbers, lists, mappings) with every string
        content-masked; what was masked is added to ``counts``. Unchanged parts are shared."""
        if isinstance(value, str):
            out, found = self.mask_text(value)
            if found:
                counts.update(found)
            return out
        if isinstance(value, Mapping):
            return {k: self.mask_json(v, counts) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask_json(v, counts) for v in value]
        return value

    # -- messages ------------------------------------------------------------------------------

    def mask_fields(self, msg: _F) -> tuple[_F, Counter[str]]:
        """Mask every field of an ErrorResponse or NoticeResponse (message, detail, hint,
        where, ...). With column rules, also the key values of an integrity error on a
        rule-matched column, the failing row of a table with rules, and the quoted value of a
        data exception (class 22)."""
        return guard(self._mask_fields, msg)

    def _mask_fields(self, msg: _F) -> tuple[_F, Counter[str]]:
        if not isinstance(msg, ErrorResponse | NoticeResponse):
            raise MaskingFailure(f"mask_fields got {type(msg).__name__}")
        if not self.enabled:
            return msg, NO_COUNTS
        fields = dict(msg.fields)
        counts: Counter[str] = Counter()
        changed = False
        if self.rules:
            changed = self._rule_fields(fields, counts)
        for code, value in fields.items():
            masked, c = self._mask_text(value)
            if masked is not value:
                fields[code] = masked
                counts.update(c)
                changed = True
        if not changed:
            return msg, NO_COUNTS
        return type(msg).from_fields(fields), counts

    def _rule_fields(self, fields: dict[str, str], counts: Counter[str]) -> bool:
        changed = False
        strategy = self._column_strategy
        table = fields.get("t")
        if table and fields.get("s"):
            table = f"{fields['s']}.{table}"
        sqlstate = fields.get("C", "")

        def redact(text: str) -> str:
            return self.replacer.whole_text(
                strategy, text.encode("utf-8", "surrogateescape")
            ).decode("utf-8", "surrogateescape")

        detail = fields.get("D")
        if detail:
            m = _KEY_DETAIL.search(detail)
            if m is not None:
                names = [n.strip().strip('"') for n in m[1].split(",")]
                hits = [
                    r for n in names if (r := self.match_rule(n, (table, n) if table else None))
                ]
                if hits:
                    fields["D"] = detail[: m.start(2)] + redact(m[2]) + detail[m.end(2) :]
                    counts[rule_counter_key(hits[0])] += 1
                    changed = True
            m = _FAILING_ROW.search(fields["D"])
            if m is not None and self._table_has_rules(table):
                d = fields["D"]
                fields["D"] = d[: m.start(2)] + redact(m[2]) + d[m.end(2) :]
                counts["column:failing-row"] += 1
                changed = True
        if sqlstate.startswith("22"):
            for code in ("M", "D"):
                text = fields.get(code)
                if text and '"' in text:
                    new = _QUOTED.sub(lambda q: '"' + redact(q[1]) + '"', text)
                    if new != text:
                        fields[code] = new
                        counts["column:data-exception"] += 1
                        changed = True
        return changed

    def _table_has_rules(self, table: str | None) -> bool:
        if table is None:
            return True  # unknown table: assume it may hold rule-matched columns
        return any(rule.by_name or rule.matches_table(table) for rule in self.rules)

    def mask_notification(
        self, msg: NotificationResponse
    ) -> tuple[NotificationResponse, Counter[str]]:
        """Mask a NOTIFY payload (and channel name)."""
        return guard(self._mask_notification, msg)

    def _mask_notification(
        self, msg: NotificationResponse
    ) -> tuple[NotificationResponse, Counter[str]]:
        payload, c1 = self._mask_text(msg.payload)
        channel, c2 = self._mask_text(msg.channel)
        if payload is msg.payload and channel is msg.channel:
            return msg, NO_COUNTS
        return NotificationResponse.build(msg.pid, channel, payload), c1 + c2

    def mask_parameter_status(self, msg: ParameterStatus) -> tuple[ParameterStatus, Counter[str]]:
        """Mask a ParameterStatus value (``set_config('application_name', email, ...)`` is a
        way out for a value)."""
        return guard(self._mask_parameter_status, msg)

    def _mask_parameter_status(self, msg: ParameterStatus) -> tuple[ParameterStatus, Counter[str]]:
        value, counts = self._mask_text(msg.value)
        if value is msg.value:
            return msg, NO_COUNTS
        return ParameterStatus.build(msg.name, value), counts


class RowMasker:
    """A Masker bound to one result's columns."""

    __slots__ = (
        "_always",
        "_masker",
        "_n",
        "_plans",
        "_scanner",
        "_whole9",
        "active",
        "plans",
    )

    def __init__(self, masker: Masker, plans: tuple[ColumnPlan, ...] | None) -> None:
        self._masker = masker
        self._plans = plans
        self.plans = plans
        self._scanner = masker.scanner
        self._n = None if plans is None else len(plans)
        self._always = plans is not None and any(p.always for p in plans)
        #: some column takes a value of exactly nine digits as an SSN (see ColumnPlan.whole9)
        self._whole9 = plans is not None and any(p.whole9 for p in plans)
        #: False when no row of this result can ever change
        self.active = masker.enabled and (
            self._scanner.active or self._always or (plans is None and bool(masker.rules))
        )

    @property
    def rule_columns(self) -> dict[int, str]:
        """Column index -> the rule pattern that masks it whole."""
        if self._plans is None:
            return {}
        return {p.index: p.rule.pattern for p in self._plans if p.rule is not None}

    def mask_datarow(self, msg: DataRow) -> tuple[DataRow, Counter[str]]:
        """The row to send (``msg`` itself when unchanged) and what was masked in it."""
        return guard(self._mask_datarow, msg)

    def can_pass(self, joined: bytes) -> bool:
        """True when the whole DataRow messages in ``joined`` cannot change: one scan of
        them all instead of a look at each row."""
        if not self.active:
            return True
        if self._always or (self._plans is None and self._masker.rules):
            return False
        return not self._scanner.may_match(joined) and not (
            self._whole9 and joined.find(_LEN9) >= 0
        )

    def mask_datarows(self, msgs: Sequence[DataRow]) -> tuple[list[DataRow], Counter[str]]:
        """Several rows at once: one pre-check over all of them when no column needs a look
        at every row, so a batch of ordinary rows costs one scan."""
        return guard(self._mask_datarows, msgs)

    def _mask_datarows(self, msgs: Sequence[DataRow]) -> tuple[list[DataRow], Counter[str]]:
        if not self.active:
            return list(msgs), NO_COUNTS
        if not self._always and not (self._plans is None and self._masker.rules):
            joined = b"".join([m.raw for m in msgs])
            if not self._scanner.may_match(joined) and not (
                self._whole9 and joined.find(_LEN9) >= 0
            ):
                return list(msgs), NO_COUNTS
        return self._mask_rows(msgs)

    def _mask_datarow(self, msg: DataRow) -> tuple[DataRow, Counter[str]]:
        if not self.active:
            return msg, NO_COUNTS
        (out,), counts = self._mask_rows((msg,))
        return (msg, NO_COUNTS) if out is msg else (out, counts)

    def _mask_rows(self, msgs: Sequence[DataRow]) -> tuple[list[DataRow], Counter[str]]:
        # The content-masked values of every row are scanned in one pass (see _mask_joined):
        # per-call costs of the detectors are paid once per run of rows, not once per row.
        counts: Counter[str] = Counter()
        scan, hinted = _Joined(), _Joined()
        rows = [self._scan_row(m, counts, scan, hinted) for m in msgs]
        self._mask_joined(scan, counts)
        self._mask_joined(hinted, counts, ssn_bare=True)
        out = [m if row is None else _rebuilt(m, row) for m, row in zip(msgs, rows, strict=True)]
        return out, counts if counts else NO_COUNTS

    def _scan_row(
        self,
        msg: DataRow,
        counts: Counter[str],
        scan: _Joined,
        hinted: _Joined,
    ) -> _RowEdits | None:
        """Check one row's framing and mask the values that are masked one by one; the values
        to scan for content go to ``scan``, those of text columns named like an SSN column
        (bare nine digits are SSNs there) to ``hinted``. None: nothing in the row can
        change."""
        raw = msg.raw
        plans = self._plans
        if plans is None and self._masker.rules:
            raise MaskingFailure("column rules are configured but the result's columns are unknown")
        hit = self._scanner.may_match(raw)
        if not hit and not self._always and not (self._whole9 and raw.find(_LEN9) >= 0):
            return None
        if len(raw) < 7 or raw[:1] != b"D":
            raise MaskingFailure("not a DataRow")
        n = uint16_at(raw, 5)
        if self._n is not None and n != self._n:
            raise MaskingFailure(f"DataRow has {n} values for {self._n} columns")
        masker = self._masker
        pos = 7
        end_all = len(raw)
        edits: dict[int, bytes | None] = {}
        offsets: list[int] = []
        for i in range(n):
            ln = int32_at(raw, pos)  # past the end: IndexError, a masking failure (fail closed)
            pos += 4
            offsets.append(pos)
            if ln < 0:
                offsets.append(-1)
                continue
            end = pos + ln
            offsets.append(end)
            if end > end_all:
                raise MaskingFailure("DataRow value overruns the message")
            plan = plans[i] if plans is not None else _generic_plan(i)
            if plan.whole9 and ln == 9:
                value = raw[pos:end]
                if value.isdigit() and ssn_valid(value[:3], value[3:5], value[5:]):
                    res = masker.mask_value(plan, value, counts)
                    if not isinstance(res, _Same):
                        edits[i] = res
                    pos = end
                    continue
            if plan.joinable:
                if hit:
                    scan.owners.append((edits, i))
                    scan.pieces.append(raw[pos:end])
            elif plan.hint_joinable:
                hinted.owners.append((edits, i))
                hinted.pieces.append(raw[pos:end])
            elif hit or plan.always:
                res = masker.mask_value(plan, raw[pos:end], counts)
                if not isinstance(res, _Same):
                    edits[i] = res
            pos = end
        if pos != end_all:
            raise MaskingFailure("DataRow length does not match its values")
        return n, offsets, edits

    def _mask_joined(self, group: _Joined, counts: Counter[str], *, ssn_bare: bool = False) -> None:
        """Content-scan several values (of one row or of many) in one pass: joined with NUL
        bytes, which no built-in detector matches across (a NUL cannot occur in a text value);
        a detection that straddles values anyway (a private-key block runs to the end of the
        buffer) sends them through one by one. Custom patterns see each value alone."""
        pieces = group.pieces
        if not pieces:
            return
        owners = group.owners
        masker = self._masker
        plans = self._plans
        if self._scanner.per_value:
            for (edits, i), piece in zip(owners, pieces, strict=True):
                plan = plans[i] if plans is not None else _generic_plan(i)
                res = masker.mask_value(plan, piece, counts)
                if not isinstance(res, _Same):
                    edits[i] = res
            return
        joined = b"\x00".join(pieces)
        spans = self._scanner.find(joined, ssn_bare=ssn_bare)
        if not spans:
            return
        if not self._text_in_place(group, joined, spans, counts):
            self._joined_apart(group, spans, counts)

    def _text_in_place(
        self, group: _Joined, joined: bytes, spans: list[Span], counts: Counter[str]
    ) -> bool:
        """The values' detections replaced in one pass over ``joined`` (the values joined
        with NUL bytes; see ``Masker._replace_joined``), each changed value cut back out of
        it: what ``_joined_apart`` gives, without a merge, a replacement pass and a count per
        value. Only for text values (a string, bytea or unknown type; in binary format too,
        where no escapes are kept); False, with nothing changed, when ``_joined_apart`` must
        take them."""
        pieces, owners = group.pieces, group.owners
        plans = self._plans

        def escapes(k: int) -> bool | None:  # as apply_spans replaces text
            i = owners[k][1]
            plan = plans[i] if plans is not None else _generic_plan(i)
            if plan.kind not in _TEXT_KINDS:
                return None
            return not plan.binary and plan.kind != T.TEXT

        merged = merge(spans)
        done = self._masker._replace_joined(joined, pieces, merged, 1, escapes)
        if done is None:
            return False
        masked, starts, changed = done
        for k in changed:
            edits, i = owners[k]
            edits[i] = masked[starts[k] : starts[k] + len(pieces[k])]
        self._masker.count(counts, merged)
        return True

    def _joined_apart(self, group: _Joined, spans: list[Span], counts: Counter[str]) -> None:
        """``_mask_joined`` value by value, from the spans found in the values joined."""
        pieces, owners = group.pieces, group.owners
        masker = self._masker
        plans = self._plans
        per, redo = _spans_by_piece(spans, pieces, 1)
        for k in sorted(set(per) | redo):
            edits, i = owners[k]
            plan = plans[i] if plans is not None else _generic_plan(i)
            if k in redo:
                res = masker.mask_value(plan, pieces[k], counts)
            else:
                res = masker.apply_spans(plan, pieces[k], per[k], counts)
            if not isinstance(res, _Same):
                edits[i] = res


#: the value kinds whose detections are replaced as text in place (see apply_spans)
_TEXT_KINDS: Final = frozenset({T.TEXT, T.GENERIC, T.BYTEA})


def _piece_starts(pieces: Sequence[bytes], sep: int) -> list[int]:
    """Where each piece starts in ``pieces`` joined with ``sep``-byte separators (the lengths
    and separators before it), then where one more would start."""
    return list(map(add, accumulate(map(len, pieces), initial=0), count(0, sep)))


def _spans_by_piece(
    spans: list[Span], pieces: list[bytes], sep: int
) -> tuple[dict[int, list[Span]], set[int]]:
    """Spans found in ``pieces`` joined with a ``sep``-byte separator, each as an offset in
    its piece (piece index -> spans), and the pieces a span straddles (to redo one by one)."""
    starts = _piece_starts(pieces, sep)
    per: dict[int, list[Span]] = {}
    redo: set[int] = set()
    for s, e, name in spans:
        k = bisect_right(starts, s) - 1
        base = starts[k]
        if e > base + len(pieces[k]):
            redo.update(range(k, bisect_right(starts, e - 1)))
            continue
        per.setdefault(k, []).append((s - base, e - base, name))
    return per, redo


class _Joined:
    """Values to scan together: ``pieces[k]``'s replacement goes to ``owners[k]`` (a row's
    edits, column index)."""

    __slots__ = ("owners", "pieces")

    def __init__(self) -> None:
        self.owners: list[tuple[dict[int, bytes | None], int]] = []
        self.pieces: list[bytes] = []


# (column count, value start/end offsets (-1: NULL), column -> replacement)
_RowEdits = tuple[int, list[int], dict[int, bytes | None]]


def _rebuilt(msg: DataRow, row: _RowEdits) -> DataRow:
    """``msg`` with the edited values replaced (``msg`` itself when nothing was edited)."""
    n, offsets, edits = row
    if not edits:
        return msg
    raw = msg.raw
    patches: list[tuple[int, bytes]] = []
    for i, new in edits.items():
        start, end = offsets[2 * i], offsets[2 * i + 1]
        if new is None or len(new) != end - start:  # a NULL's end is -1: never equal
            break
        patches.append((start, new))
    else:
        # every replacement has its value's length (redaction, the usual strategies): the
        # row's bytes are patched in a copy, not re-encoded value by value
        buf = bytearray(raw)
        for start, new in patches:
            buf[start : start + len(new)] = new
        return DataRow(bytes(buf))
    values: list[bytes | None] = []
    for i in range(n):
        if i in edits:
            values.append(edits[i])
        else:
            s, e = offsets[2 * i], offsets[2 * i + 1]
            values.append(None if e < 0 else raw[s:e])
    return DataRow.build(values)


_GENERIC_PLANS: Final[dict[int, ColumnPlan]] = {}


def _generic_plan(i: int) -> ColumnPlan:
    """The plan for a column of unknown type and format: content masking in place, same
    length (safe in text and binary alike)."""
    plan = _GENERIC_PLANS.get(i)
    if plan is None:
        plan = ColumnPlan(i, f"?column{i}?", 0, T.GENERIC, True, joinable=True)
        if len(_GENERIC_PLANS) < 1600:
            _GENERIC_PLANS[i] = plan
    return plan
