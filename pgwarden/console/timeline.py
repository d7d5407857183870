"""A recording as the session page's timeline: one step per thing a person reads in turn.

A ``statement`` step gathers what the recording says happened to that statement, wherever
it sits in the file: its approval events, results, errors and notices (they name it by
``statement_seq``). Session start and end, context changes, and errors or notices that belong
to no statement are steps of their own. Checkpoints are not steps (they are what the verify
badge is about). A line that cannot be read (damaged, or encrypted without the key) is a step
that says so, in its place, so a reader sees the gap. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from pgwarden.recording.access import ReadLine
from pgwarden.recording.display import binary_summary, visible
from pgwarden.recording.events import EVENT_TYPES

__all__ = [
    "CONTEXT_ORDER",
    "MAX_STEPS",
    "PREVIEW_ROWS",
    "Step",
    "build_timeline",
    "cell",
]

CONTEXT_ORDER = ("prompt", "intent", "traceparent", "tracestate")
PREVIEW_ROWS = 20  # result rows shown per result (the recording keeps up to its own cap)
MAX_STEPS = 2000  # a page, not an export: beyond this, `pgwarden sessions export`


def cell(value: Any) -> Markup:
    """A recorded value (see ``recording.events.encode_value``) as escaped HTML."""
    if value is None:
        return Markup('<span class="null">NULL</span>')
    if isinstance(value, str):
        return escape(visible(value))
    if isinstance(value, Mapping) and value.get("encoding") == "base64":
        if isinstance(value.get("text"), str):
            return escape(visible(value["text"]))
        kind, size = binary_summary(value)
        return Markup('<span class="binary">&lt;{} value, {} bytes&gt;</span>').format(kind, size)
    return escape(visible(json.dumps(value, ensure_ascii=False)))


@dataclass(slots=True)
class Result:
    columns: list[str]
    rows: list[list[Any]]
    row_count: int | None
    command_tag: str | None
    masked: dict[str, Any]
    more_rows: int  # recorded rows not shown in the preview
    truncated: bool  # the recording itself kept fewer rows than the client got


@dataclass(slots=True)
class Step:
    # session_start, context, statement, error, notice, session_end, unreadable or other
    kind: str
    seq: int | None
    ts: str
    data: Mapping[str, Any] = field(default_factory=dict)
    context: list[tuple[str, Any, str | None]] = field(default_factory=list)  # key, value, source
    approvals: list[Mapping[str, Any]] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    errors: list[Mapping[str, Any]] = field(default_factory=list)
    notices: list[Mapping[str, Any]] = field(default_factory=list)
    problem: str | None = None  # for an unreadable line

    @property
    def decision(self) -> Mapping[str, Any]:
        value = self.data.get("decision")
        return value if isinstance(value, Mapping) else {}

    @property
    def outcome(self) -> str:
        """One word for the step's fate: allowed, blocked, held, approved, denied, expired,
        withdrawn (or the error/notice/etc. kind for other steps)."""
        if self.kind != "statement":
            return self.kind
        final = next(
            (a.get("state") for a in reversed(self.approvals) if a.get("state") != "requested"),
            None,
        )
        if isinstance(final, str):
            return final
        if self.approvals:
            return "held"
        decision = self.decision
        action = decision.get("action")
        if action == "deny":
            return "blocked" if decision.get("mode") != "audit" else "allowed (audit)"
        if action == "review":
            return "held" if decision.get("mode") != "audit" else "allowed (audit)"
        return "allowed"


def _context_items(
    context: Mapping[str, Any], sources: Mapping[str, Any]
) -> list[tuple[str, Any, str | None]]:
    keys = [k for k in CONTEXT_ORDER if k in context]
    keys += sorted(k for k in context if k not in CONTEXT_ORDER)
    out: list[tuple[str, Any, str | None]] = []
    for key in keys:
        source = sources.get(key)
        out.append((key, context[key], str(source) if source is not None else None))
    return out


def _result(data: Mapping[str, Any]) -> Result:
    columns: list[str] = []
    for col in data.get("columns") or []:
        name = col.get("name", "?") if isinstance(col, Mapping) else col
        columns.append(str(name))
    rows_raw = data.get("rows") or []
    rows = [list(r) if isinstance(r, list) else [r] for r in rows_raw[:PREVIEW_ROWS]]
    row_count = data.get("row_count")
    tag = data.get("command_tag")
    masked = data.get("masked")
    return Result(
        columns=columns,
        rows=rows,
        row_count=row_count if isinstance(row_count, int) else None,
        command_tag=tag if isinstance(tag, str) else None,
        masked=dict(masked) if isinstance(masked, Mapping) else {},
        more_rows=max(len(rows_raw) - PREVIEW_ROWS, 0),
        truncated=bool(data.get("truncated")),
    )


def build_timeline(lines: Sequence[ReadLine], *, limit: int = MAX_STEPS) -> tuple[list[Step], bool]:
    """The steps of a recording, in order, and whether ``limit`` cut them short."""
    steps: list[Step] = []
    statements: dict[int, Step] = {}
    cut = False
    for line in lines:
        event = line.event
        if event is None:
            if len(steps) >= limit:
                cut = True
                break
            steps.append(
                Step("unreadable", None, "", problem=line.problem or "unreadable", data={})
            )
            continue
        kind = event.type
        data = event.data
        if kind == "checkpoint":
            continue
        owner_seq = data.get("statement_seq")
        owner = statements.get(owner_seq) if isinstance(owner_seq, int) else None
        if owner is not None and kind in ("approval", "result", "error", "notice"):
            if kind == "approval":
                owner.approvals.append(data)
            elif kind == "result":
                owner.results.append(_result(data))
            elif kind == "error":
                owner.errors.append(data)
            else:
                owner.notices.append(data)
            continue
        if len(steps) >= limit:
            cut = True
            break
        step = Step(kind if kind in _STEP_KINDS else "other", event.seq, event.ts, data=data)
        if kind == "statement":
            context = data.get("context")
            sources = data.get("context_sources")
            step.context = _context_items(
                context if isinstance(context, Mapping) else {},
                sources if isinstance(sources, Mapping) else {},
            )
            statements[event.seq] = step
        elif kind == "context":
            changes = data.get("changes")
            step.context = [
                (str(k), v, None)
                for k, v in (changes.items() if isinstance(changes, Mapping) else ())
            ]
        elif kind == "result":  # a result naming no known statement: show it on its own
            step.results.append(_result(data))
        elif kind == "approval":
            step.approvals.append(data)
        steps.append(step)
    return steps, cut


# Every event type but the checkpoints (skipped above) is a step of its own kind.
_STEP_KINDS = EVENT_TYPES - {"checkpoint"}
