"""COPY ... TO STDOUT: masking the CopyData stream between CopyOutResponse and CopyDone.

One ``CopyMasker`` per COPY (``Masker.for_copy``): binary COPY needs state (the file header
comes once, in the first message), and a row may in principle span CopyData messages (the
server sends one row per message, but nothing in the protocol promises it). ``feed`` returns
the message to forward (the same object when nothing changed and the message held whole
rows), or None while the bytes of an unfinished row are held back; ``end`` (at CopyDone)
returns what is still held, or raises if a row was left unfinished. Anything that cannot be
parsed raises ``MaskingFailure``: the relay ends the statement rather than pass it through.

Text and CSV: content detectors run over whole lines (same-shape replacements keep the
delimiters, quoting and backslash escapes valid). Column rules need the fields, so they need
``columns`` (the COPY's column list, which only the SQL tells: the relay passes it) and
whether the format is CSV; with column rules configured and either unknown, the COPY is
refused. Binary: tuples are parsed (field count, then length-prefixed fields); fields are
masked like binary DataRow values of their type (``column_types``) or, types unknown, in place
keeping their length (text inside records and arrays); rule-matched fields of a type without
a valid binary replacement become NULL.
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Final

from pgwarden.masking._common import NO_COUNTS, ColumnPlan, _Same, guard, rule_counter_key
from pgwarden.masking.errors import MaskingFailure
from pgwarden.protocol.messages import CopyData

if TYPE_CHECKING:
    from pgwarden.masking.config import ColumnRule
    from pgwarden.masking.engine import Masker

SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00"
_I16: Final = struct.Struct("!h")
_I32: Final = struct.Struct("!i")
#: bytes of an unfinished row held back before the COPY is refused
MAX_HELD: Final = 64 * 1024 * 1024


class CopyMasker:
    def __init__(
        self,
        masker: Masker,
        overall_format: int,
        column_formats: Sequence[int] = (),
        columns: Sequence[tuple[str, str] | str | None] | None = None,
        column_types: Sequence[int] | None = None,
        csv: bool | None = None,
        delimiter: bytes | None = None,
        quote: bytes = b'"',
        escape: bytes | None = None,
    ) -> None:
        if overall_format not in (0, 1):
            raise MaskingFailure(f"unknown COPY format {overall_format}")
        self._masker = masker
        self._scanner = masker.scanner
        self.binary = overall_format == 1
        self.csv = bool(csv)
        self._held = b""
        self._header_done = False
        self._finished = False
        self._active = masker.enabled
        self._delim = delimiter if delimiter is not None else (b"," if self.csv else b"\t")
        self._quote = quote
        self._escape = escape if escape is not None else quote
        if len(self._delim) != 1 or len(self._quote) != 1 or len(self._escape) != 1:
            raise MaskingFailure("COPY delimiter, quote and escape must be single bytes")

        ncols = (
            len(columns)
            if columns is not None
            else (
                len(column_types)
                if column_types is not None
                else (len(column_formats) if column_formats else None)
            )
        )
        self._ncols = ncols
        rules: list[ColumnRule | None] = []
        if masker.rules:
            if columns is None or any(c is None for c in columns):
                raise MaskingFailure(
                    "column rules are configured but the COPY's columns are unknown"
                )
            for c in columns:
                if isinstance(c, str):
                    rules.append(masker.match_rule(c, None))
                elif c is not None:
                    rules.append(masker.match_rule(c[1], c))
            if any(rules) and not self.binary and csv is None:
                raise MaskingFailure("column rules need to know whether the COPY is CSV")
        self._rules = rules
        self._any_rule = any(r is not None for r in rules)
        self._plans: list[ColumnPlan] = []
        if self.binary and ncols is not None:
            for i in range(ncols):
                col = columns[i] if columns is not None else None
                name = col if isinstance(col, str) else (col[1] if col else f"?column{i}?")
                lineage = col if isinstance(col, tuple) else None
                oid = column_types[i] if column_types is not None else 0
                plan = masker.plan_column(i, name, oid, True, lineage)
                self._plans.append(plan)
        self._always = any(p.always for p in self._plans)
        self._text_fields = re.compile(rb"\\.|" + re.escape(self._delim), re.DOTALL)
        chars = {self._quote, self._escape, b"\n"}
        self._csv_special = re.compile(b"[" + b"".join(re.escape(c) for c in chars) + b"]")
        self._csv_fields = re.compile(
            b"[" + b"".join(re.escape(c) for c in {self._quote, self._escape, self._delim}) + b"]"
        )

    # -- public --------------------------------------------------------------------------------

    def feed(self, msg: CopyData) -> tuple[CopyData | None, Counter[str]]:
        """The message to forward for ``msg`` (``msg`` itself when unchanged), or None when
        its bytes are held until a row completes."""
        return guard(self._feed, msg)

    def feed_many(self, msgs: Sequence[CopyData]) -> tuple[list[CopyData], Counter[str]]:
        """``feed`` of each message in turn, as one scan where that is the same thing (whole
        text or CSV lines, nothing held, no column rule, no custom pattern): the messages to
        forward (held ones left out) and what was masked in them."""
        return guard(self._feed_many, msgs)

    def _feed_many(self, msgs: Sequence[CopyData]) -> tuple[list[CopyData], Counter[str]]:
        if not self._active:
            return list(msgs), NO_COUNTS
        datas = [m.data for m in msgs]
        if (
            self.binary
            or self._held
            or self._any_rule
            or self._scanner.per_value
            or not all(d.endswith(b"\n") for d in datas)
        ):
            out: list[CopyData] = []
            total: Counter[str] = Counter()
            for m in msgs:
                fwd, counts = self._feed(m)
                total.update(counts)
                if fwd is not None:
                    out.append(fwd)
            return out, total
        masked, counts = self._masker._mask_lines(datas, True)
        return [
            m if new is old else CopyData.build(new)
            for m, old, new in zip(msgs, datas, masked, strict=True)
        ], counts

    def can_pass(self, data: bytes) -> bool:
        """True when ``data`` (whole text or CSV rows, as several CopyData payloads) holds
        nothing to mask, so its messages may be forwarded without ``feed``: no row is held,
        no column rule applies, and the detectors' pre-check finds nothing."""
        return (
            not self.binary
            and not self._held
            and not self._any_rule
            and (not self._active or not self._scanner.may_match(data))
        )

    def end(self) -> tuple[CopyData | None, Counter[str]]:
        """At CopyDone: raises MaskingFailure if an unfinished row is held; otherwise
        returns None (nothing held)."""
        if self._held:
            self._held = b""
            raise MaskingFailure("the COPY data ended in the middle of a row")
        if self.binary and self._header_done and not self._finished:
            # PostgreSQL always sends the trailer; its absence means a truncated stream
            raise MaskingFailure("binary COPY data ended without its trailer")
        return None, NO_COUNTS

    # -- internals -----------------------------------------------------------------------------

    def _feed(self, msg: CopyData) -> tuple[CopyData | None, Counter[str]]:
        data = msg.data
        if not self._active:
            return msg, NO_COUNTS
        held = self._held
        if (
            not held
            and not self.binary
            and not self._any_rule
            and data.endswith(b"\n")
            and not self._scanner.may_match(data)
        ):
            return msg, NO_COUNTS  # whole lines, nothing to mask: the common case
        buf = held + data if held else data
        if self.binary:
            out, counts, changed = self._binary(buf)
        else:
            out, counts, changed = self._text(buf)
        if len(self._held) > MAX_HELD:
            raise MaskingFailure("a COPY row is too large to inspect")
        if not out:
            return None, counts
        if not changed and not held and len(out) == len(data):
            return msg, counts
        return CopyData.build(out), counts

    def _text(self, buf: bytes) -> tuple[bytes, Counter[str], bool]:
        if self.csv and self._any_rule:
            cut = self._csv_complete(buf)  # fields are needed: whole CSV records
        else:
            cut = buf.rfind(b"\n") + 1  # detectors never match across a line end
        block, self._held = buf[:cut], buf[cut:]
        if not block:
            return b"", NO_COUNTS, False
        counts: Counter[str] = NO_COUNTS
        changed = False
        if self._any_rule:
            block, counts, changed = self._text_rules(block)
        if self._scanner.per_value:
            masked, c = self._content_by_field(block)
        else:
            masked, c = self._masker._mask_bytes(block, True)
        if masked is not block:
            changed = True
            counts = counts + c if counts else c
        return masked, counts, changed

    def _content_by_field(self, block: bytes) -> tuple[bytes, Counter[str]]:
        """Content masking field by field (custom patterns may be anchored to a value); a
        quoted CSV field is scanned inside its quotes."""
        masker = self._masker
        counts: Counter[str] = Counter()
        q = self._quote

        def edit(_i: int, value: bytes) -> bytes | None:
            quoted = self.csv and len(value) >= 2 and value[:1] == q and value[-1:] == q
            inner = value[1:-1] if quoted else value
            masked, found = masker._mask_bytes(inner, True)
            if masked is inner:
                return None
            counts.update(found)
            return q + masked + q if quoted else masked

        out, _ = self._edit_fields(block, edit, check_count=False)
        return out, counts

    def _csv_complete(self, buf: bytes) -> int:
        """Length of the complete CSV records at the start of ``buf``."""
        last = 0
        for last in self._csv_record_ends(buf):  # noqa: B007 - the last end is the answer
            pass
        return last

    def _csv_record_ends(self, buf: bytes) -> Iterator[int]:
        """Offsets just past each complete CSV record (newlines inside quotes don't end one)."""
        quote, escape = self._quote[0], self._escape[0]
        in_quotes = False
        pos = 0
        search = self._csv_special.search
        while True:
            m = search(buf, pos)
            if m is None:
                return
            j = m.start()
            c = buf[j]
            if in_quotes:
                if c == escape and escape != quote:
                    pos = j + 2
                    continue
                if c == quote:
                    in_quotes = False
            elif c == quote:
                in_quotes = True
            elif c == 10:
                yield j + 1
            pos = j + 1

    def _text_rules(self, block: bytes) -> tuple[bytes, Counter[str], bool]:
        counts: Counter[str] = Counter()

        def edit(i: int, value: bytes) -> bytes | None:
            rule = self._rules[i] if i < len(self._rules) else None
            if rule is None:
                return None
            masked = self._mask_field(value)
            if masked is not None:
                counts[rule_counter_key(rule)] += 1
            return masked

        out, changed = self._edit_fields(block, edit, check_count=True)
        return out, counts, changed

    def _edit_fields(
        self, block: bytes, edit: Callable[[int, bytes], bytes | None], *, check_count: bool
    ) -> tuple[bytes, bool]:
        """``block`` (whole records) with each field that ``edit(index, value)`` returns a
        replacement for replaced; ``block`` itself and False when nothing was."""
        out = []
        changed = False
        for line in self._records(block):
            body, nl = (line[:-1], line[-1:]) if line.endswith(b"\n") else (line, b"")
            if body.endswith(b"\r"):
                body, nl = body[:-1], b"\r" + nl
            fields = self._csv_split(body) if self.csv else self._text_split(body)
            if (
                check_count
                and self._ncols is not None
                and len(fields) != self._ncols
                and body != b"\\."
            ):
                raise MaskingFailure(f"COPY row has {len(fields)} fields for {self._ncols} columns")
            parts = []
            pos = 0
            for i, (s, e) in enumerate(fields):
                new = edit(i, body[s:e])
                if new is not None:
                    parts += [body[pos:s], new]
                    pos = e
            if parts:
                parts.append(body[pos:])
                out.append(b"".join(parts) + nl)
                changed = True
            else:
                out.append(line)
        return (b"".join(out) if changed else block), changed

    def _records(self, block: bytes) -> list[bytes]:
        if not self.csv:
            return [line + b"\n" for line in block.split(b"\n")[:-1]]
        out = []
        pos = 0
        for end in self._csv_record_ends(block):
            out.append(block[pos:end])
            pos = end
        if pos < len(block):
            out.append(block[pos:])  # an unterminated last record
        return out

    def _text_split(self, body: bytes) -> list[tuple[int, int]]:
        fields = []
        start = 0
        for m in self._text_fields.finditer(body):
            if body[m.start()] == 92:  # an escape, not a delimiter
                continue
            fields.append((start, m.start()))
            start = m.end()
        fields.append((start, len(body)))
        return fields

    def _csv_split(self, body: bytes) -> list[tuple[int, int]]:
        quote, escape, delim = self._quote[0], self._escape[0], self._delim[0]
        fields = []
        start = 0
        in_quotes = False
        pos = 0
        search = self._csv_fields.search
        while True:
            m = search(body, pos)
            if m is None:
                break
            j = m.start()
            c = body[j]
            if in_quotes:
                if c == escape and escape != quote:
                    pos = j + 2
                    continue
                if c == quote:
                    in_quotes = False
            elif c == quote:
                in_quotes = True
            elif c == delim:
                fields.append((start, j))
                start = j + 1
            pos = j + 1
        fields.append((start, len(body)))
        return fields

    def _mask_field(self, value: bytes) -> bytes | None:
        """A rule-matched COPY field (None: leave it, it is NULL)."""
        replacer = self._masker.replacer
        strategy = self._masker.config.strategy_for("columns")
        if self.csv:
            if not value:
                return None  # unquoted empty: NULL
            q = self._quote
            if value.startswith(q) and value.endswith(q) and len(value) >= 2:
                inner = replacer.whole_text(strategy, value[1:-1], escapes=self._escape != q)
                return q + inner + q
            return replacer.whole_text(strategy, value)
        if value == b"\\N":
            return None
        return replacer.whole_text(strategy, value, escapes=True)

    def _binary(self, buf: bytes) -> tuple[bytes, Counter[str], bool]:
        pos = 0
        n = len(buf)
        out: list[bytes] = []
        if not self._header_done:
            if n < 19:
                if not SIGNATURE.startswith(buf[:11]):
                    raise MaskingFailure("binary COPY data without the PGCOPY signature")
                self._held = buf
                return b"", NO_COUNTS, False
            if buf[:11] != SIGNATURE:
                raise MaskingFailure("binary COPY data without the PGCOPY signature")
            (flags,) = _I32.unpack_from(buf, 11)
            (ext,) = _I32.unpack_from(buf, 15)
            if flags & 0xFFFF or flags & 0x10000 or ext < 0:
                raise MaskingFailure("binary COPY header with unsupported flags")
            if n < 19 + ext:
                self._held = buf
                return b"", NO_COUNTS, False
            pos = 19 + ext
            out.append(buf[:pos])
            self._header_done = True
        counts: Counter[str] | None = None
        changed = False
        masker = self._masker
        plans = self._plans
        while pos < n:
            if self._finished:
                raise MaskingFailure("binary COPY data after the trailer")
            if pos + 2 > n:
                break
            (nf,) = _I16.unpack_from(buf, pos)
            if nf == -1:
                out.append(buf[pos : pos + 2])
                pos += 2
                self._finished = True
                continue
            if nf < 0 or (self._ncols is not None and nf != self._ncols):
                raise MaskingFailure(f"binary COPY tuple with {nf} fields")
            p = pos + 2
            fields: list[tuple[int, int] | None] = []
            complete = True
            for _ in range(nf):
                if p + 4 > n:
                    complete = False
                    break
                (ln,) = _I32.unpack_from(buf, p)
                p += 4
                if ln == -1:
                    fields.append(None)
                    continue
                if ln < -1:
                    raise MaskingFailure("binary COPY field with a negative length")
                if p + ln > n:
                    complete = False
                    break
                fields.append((p, p + ln))
                p += ln
            if not complete:
                break
            tuple_bytes = buf[pos:p]
            hit = self._scanner.may_match(tuple_bytes)
            edits: dict[int, bytes | None] = {}
            if hit or self._always:
                for i, span in enumerate(fields):
                    if span is None:
                        continue
                    plan = (
                        plans[i]
                        if i < len(plans)
                        else masker.plan_column(i, f"?column{i}?", 0, True)
                    )
                    if not (hit or plan.always):
                        continue
                    if counts is None:
                        counts = Counter()
                    res = masker.mask_value(plan, buf[span[0] : span[1]], counts)
                    if not isinstance(res, _Same):
                        edits[i] = res
            if edits:
                changed = True
                parts = [_I16.pack(nf)]
                for i, span in enumerate(fields):
                    value = (
                        edits[i]
                        if i in edits
                        else (None if span is None else buf[span[0] : span[1]])
                    )
                    if value is None:
                        parts.append(_I32.pack(-1))
                    else:
                        parts.append(_I32.pack(len(value)))
                        parts.append(value)
                out.append(b"".join(parts))
            else:
                out.append(tuple_bytes)
            pos = p
        self._held = buf[pos:]
        return b"".join(out), counts or NO_COUNTS, changed
