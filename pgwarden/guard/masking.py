"""Masking in the data path: every server message a client could read a value from passes
through here before it is recorded or sent.

One ``SessionMasking`` per session holds what masking needs across messages: the RowMasker of
the result being streamed (cached by its RowDescription, since the same statement returns
the same columns again and again), and the CopyMasker of a ``COPY ... TO STDOUT`` in progress
(it holds back an unfinished row until the next CopyData completes it).

Column lineage comes from the catalog (table OID and attribute number to schema.table.column).
A COPY stream carries no column description, so when column rules are configured, or the
COPY is binary (whose values the detectors cannot read without their types), the columns of
the COPY's source query are described on the side connection at check time. If that is not
possible the COPY's data is refused when it starts (fail closed).

Every failure surfaces as ``MaskingFailure``: the relay then withholds the message and ends
the session — a value that could not be masked never reaches the client.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Final

from pgwarden.guard.catalog import LOOKUP_FAILURES, Catalog
from pgwarden.masking import NO_COUNTS, CopyMasker, Masker, MaskingFailure, RowMasker
from pgwarden.protocol.messages import (
    CommandComplete,
    CopyData,
    CopyDone,
    CopyResponse,
    DataRow,
    ErrorResponse,
    Message,
    NoticeResponse,
    NotificationResponse,
    ParameterStatus,
    RowDescription,
)
from pgwarden.sql import Classification, CopyOptions

log: Final = logging.getLogger("pgwarden.masking")

_ROW_MASKERS: Final = 256  # distinct result shapes remembered per session
# Replies that carry no value: passed as they are, before the checks for those that do.
_NO_VALUES: Final = frozenset({CommandComplete, RowDescription})


@dataclass(frozen=True, slots=True)
class CopyPlan:
    """A COPY ... TO STDOUT of the statement, with its columns where they could be known."""

    options: CopyOptions
    columns: tuple[tuple[str, str] | str | None, ...] | None = None
    types: tuple[int, ...] | None = None


@dataclass(slots=True, init=False)
class MaskingScope:
    """What masking knows about the statement a server message answers. Its own ``__init__``
    (one per statement): compiled, native code, where the generated one is interpreted."""

    reads: frozenset[str]
    copies: list[CopyPlan]
    copy_index: int
    refusal: str | None  # why the statement's results could not be masked at all

    def __init__(
        self,
        reads: frozenset[str] = frozenset(),
        copies: list[CopyPlan] | None = None,
        copy_index: int = 0,
        refusal: str | None = None,
    ) -> None:
        self.reads = reads
        self.copies = [] if copies is None else copies
        self.copy_index = copy_index
        self.refusal = refusal


_COPIES: Final = frozenset({"copy_to", "copy_from"})


def plain_scope(c: Classification) -> MaskingScope | None:
    """The scope of a statement that copies nothing, at once: only a COPY's needs a catalog
    look-up (``SessionMasking.scope``), and most statements should not pay a coroutine for it.
    None for a statement with a COPY in it."""
    return MaskingScope(c.tables_read) if c.kinds.isdisjoint(_COPIES) else None


class SessionMasking:
    def __init__(
        self,
        masker: Masker,
        catalog: Catalog | None,
        target: str,
        search_path: str | None = None,
    ) -> None:
        self.masker = masker
        self.catalog = catalog
        self.target = target
        self.search_path = search_path  # the session's start-up one: names resolve with it
        self._needs_lineage = any(not r.by_name for r in masker.rules)
        self._rows: OrderedDict[tuple[bytes, frozenset[str]], RowMasker] = OrderedDict()
        self._last: tuple[RowDescription | None, frozenset[str], RowMasker] | None = None
        self._copy: CopyMasker | None = None

    @property
    def enabled(self) -> bool:
        return self.masker.enabled

    # -- before rows flow -------------------------------------------------------------------

    async def prepare_columns(self, desc: RowDescription) -> None:
        """Load the tables behind ``desc`` so table-qualified rules can match by lineage."""
        if not self._needs_lineage or self.catalog is None:
            return
        if any(c.table_oid for c in desc.columns) and not await self.catalog.prepare(
            self.target, desc
        ):
            raise MaskingFailure("the catalog could not be read to match column rules")

    async def scope(self, c: Classification, *, names_unsure: bool = False) -> MaskingScope:
        """Called when a statement is allowed: what its results need. ``names_unsure``: the
        session changed its search_path or role, or has temporary objects, so a COPY's source
        described on the side connection could be another table than the session's."""
        copies = []
        refusal = None
        for st in c.statements:
            if st.copy is None:
                continue
            plan = await self._copy_plan(st.copy, names_unsure)
            copies.append(plan)
            if plan.types is None and refusal is None:
                if st.copy.format == "binary":
                    refusal = (
                        "a binary COPY whose columns the gateway cannot describe (for example "
                        "of a temporary table, or once the session changed its search_path) "
                        "cannot be masked; use COPY in text or CSV format"
                    )
                elif self.masker.rules:
                    refusal = (
                        "a COPY whose columns the gateway cannot describe (for example of a "
                        "temporary table, or once the session changed its search_path) cannot "
                        "be checked against the column masking rules"
                    )
        return MaskingScope(c.tables_read, copies, refusal=refusal)

    async def _copy_plan(self, options: CopyOptions, names_unsure: bool) -> CopyPlan:
        if not self.enabled or not (self.masker.rules or options.format == "binary"):
            return CopyPlan(options, types=())  # nothing to describe: known enough
        if self.catalog is None or options.source is None or names_unsure:
            return CopyPlan(options)
        try:
            desc = await self.catalog.describe(self.target, options.source, self.search_path)
        except LOOKUP_FAILURES as exc:
            # Only visible to the session (a temp table), or the side connection is down:
            # the plan stays unknown and the COPY is refused when its data starts.
            log.info("cannot describe a COPY's columns in %s: %s", self.target, exc)
            return CopyPlan(options)
        if desc is None:
            return CopyPlan(options)
        columns = tuple(
            self._lineage(col.table_oid, col.attnum) or col.name for col in desc.columns
        )
        return CopyPlan(options, columns, tuple(col.type_oid for col in desc.columns))

    def _lineage(self, table_oid: int, attnum: int) -> tuple[str, str] | None:
        if self.catalog is None:
            return None
        found = self.catalog.resolve(self.target, table_oid, attnum)
        if found is None:
            return None
        schema, table, column = found
        return (f"{schema}.{table}", column)

    # -- each message -----------------------------------------------------------------------

    def filter(
        self, msg: Message, columns: RowDescription | None, scope: MaskingScope | None
    ) -> tuple[Message | None, Counter[str]]:
        """The message to send in place of ``msg`` (``msg`` itself when unchanged; None while
        a COPY row is incomplete) and what was masked in it."""
        if type(msg) in _NO_VALUES:
            return msg, NO_COUNTS
        if isinstance(msg, DataRow):
            return self._row_masker(columns, scope).mask_datarow(msg)
        if isinstance(msg, CopyData):
            if self._copy is None:
                raise MaskingFailure("COPY data arrived outside a COPY")
            return self._copy.feed(msg)
        if isinstance(msg, CopyResponse):
            if msg.direction == b"H":
                self._copy = self._copy_masker(msg, scope)
            elif msg.direction == b"W":
                raise MaskingFailure("COPY BOTH cannot be masked")
            return msg, NO_COUNTS
        if isinstance(msg, CopyDone):
            copy, self._copy = self._copy, None
            if copy is not None:
                copy.end()
            return msg, NO_COUNTS
        if isinstance(msg, ErrorResponse):
            self._copy = None  # a failed COPY: its unfinished row is dropped
            return self.masker.mask_fields(msg)
        if isinstance(msg, NoticeResponse):
            return self.masker.mask_fields(msg)
        if isinstance(msg, NotificationResponse):
            return self.masker.mask_notification(msg)
        if isinstance(msg, ParameterStatus):
            return self.masker.mask_parameter_status(msg)
        return msg, NO_COUNTS

    def filter_run(
        self,
        kind: bytes,
        msgs: list[Message],
        columns: RowDescription | None,
        scope: MaskingScope | None,
    ) -> tuple[list[Message], Counter[str]]:
        """A run of DataRow (b"D") or CopyData (b"d") messages masked together (one detector
        pass over them all): the messages to send and what was masked in them."""
        if kind == b"D":
            rows = [m for m in msgs if type(m) is DataRow]
            if len(rows) != len(msgs):
                raise MaskingFailure("a run of rows holds another message")
            out, counts = self._row_masker(columns, scope).mask_datarows(rows)
            return list(out), counts
        copies = [m for m in msgs if type(m) is CopyData]
        if len(copies) != len(msgs):
            raise MaskingFailure("a run of COPY data holds another message")
        if self._copy is None:
            raise MaskingFailure("COPY data arrived outside a COPY")
        sent, counts = self._copy.feed_many(copies)
        return list(sent), counts

    def run_untouched(
        self,
        kind: bytes,
        joined: bytes,
        columns: RowDescription | None,
        scope: MaskingScope | None,
    ) -> bool:
        """Whole DataRow (b"D") or CopyData (b"d") messages, joined, that cannot hold anything
        to mask: one cheap scan of them all. Their headers are scanned too, which can only
        add false alarms (then they go message by message), never hide a value."""
        if kind == b"D":
            return self._row_masker(columns, scope).can_pass(joined)
        copy = self._copy
        return copy is not None and copy.can_pass(joined)

    def _row_masker(self, desc: RowDescription | None, scope: MaskingScope | None) -> RowMasker:
        reads = scope.reads if scope is not None else frozenset()
        last = self._last
        if last is not None and last[0] is desc and last[1] is reads:
            return last[2]
        if desc is None:
            rm = self.masker.for_columns(None)
        else:
            key = (desc.raw, reads)
            cached = self._rows.get(key)
            if cached is None:
                cached = self.masker.for_columns(desc, self._lineage, reads=reads)
                self._rows[key] = cached
                if len(self._rows) > _ROW_MASKERS:
                    self._rows.popitem(last=False)
            else:
                self._rows.move_to_end(key)
            rm = cached
        self._last = (desc, reads, rm)
        return rm

    def _copy_masker(self, msg: CopyResponse, scope: MaskingScope | None) -> CopyMasker:
        plan: CopyPlan | None = None
        if scope is not None and scope.copy_index < len(scope.copies):
            plan = scope.copies[scope.copy_index]
            scope.copy_index += 1
        options = plan.options if plan is not None else CopyOptions()
        binary = msg.overall_format == 1
        columns = plan.columns if plan is not None else None
        types = plan.types if plan is not None else None
        if types == ():
            types = None  # not described (not needed: text format and no column rules)
        if columns is not None and len(columns) != len(msg.column_formats):
            columns = types = None  # the description does not match what the server sends
        if self.enabled and binary and types is None:
            raise MaskingFailure("the columns of a binary COPY could not be described")
        csv = options.format == "csv" if plan is not None else None
        return self.masker.for_copy(
            msg.overall_format,
            msg.column_formats,
            columns=columns,
            column_types=types,
            csv=csv,
            delimiter=options.delimiter.encode() if options.delimiter else None,
            quote=options.quote.encode() if options.quote else b'"',
            escape=options.escape.encode() if options.escape else None,
        )
