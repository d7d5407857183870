"""Helpers for property tests: spell the same SQL differently without changing its meaning."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

CORPUS_PATH = Path(__file__).resolve().parents[2] / "data" / "corpus" / "statements.yaml"

_SEGMENT = re.compile(
    r"""
    (?P<squote>[Ee]?'(?:[^']|'')*')              # string literal ('' escapes)
    | (?P<dquote>"(?:[^"]|"")*")                 # quoted identifier
    | (?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z0-9_]*)?\$.*?\$(?P=tag)?\$)  # dollar quoting
    | (?P<line>--[^\n]*\n?)                      # line comment, with its newline
    | (?P<block>/\*.*?\*/)                       # block comment (not nested)
    """,
    re.VERBOSE | re.DOTALL,
)


def load_corpus() -> list[dict[str, Any]]:
    with CORPUS_PATH.open(encoding="utf-8") as f:
        data = yaml.safe_load(f)
    assert isinstance(data, list)
    return data


def segments(sql: str) -> list[tuple[bool, str]]:
    """(mutable, text) pieces: literals, quoted identifiers and comments are not mutable."""
    out: list[tuple[bool, str]] = []
    pos = 0
    for m in _SEGMENT.finditer(sql):
        if m.start() > pos:
            out.append((True, sql[pos : m.start()]))
        out.append((False, m.group(0)))
        pos = m.end()
    if pos < len(sql):
        out.append((True, sql[pos:]))
    return out


def mutable(sql: str) -> bool:
    """True if the segmenter surely understands the text (no backslash escapes)."""
    return "\\" not in sql and "".join(text for _, text in segments(sql)) == sql


_SEPARATORS = [" ", "  ", "\n", "\t", " /* c */ ", " /**/ ", "\n-- note\n", " \r\n "]


@st.composite
def respell(draw: st.DrawFn, sql: str) -> str:
    """Change letter case and whitespace (adding comments) outside literals and quotes."""
    out = []
    for is_mutable, text in segments(sql):
        if not is_mutable:
            out.append(text)
            continue
        mode = draw(st.sampled_from(["upper", "lower", "swapcase", "keep"]))
        cased = text if mode == "keep" else getattr(text, mode)()
        parts = re.split(r"(\s+)", cased)
        rebuilt = []
        for part in parts:
            if part and part.isspace():
                rebuilt.append(draw(st.sampled_from(_SEPARATORS)))
            else:
                rebuilt.append(part)
        out.append("".join(rebuilt))
    prefix = draw(st.sampled_from(["", " ", "\n", "/* lead */ ", "-- lead\n"]))
    suffix = draw(st.sampled_from(["", ";", " ;", ";\n", " -- trail", "; -- trail"]))
    return prefix + "".join(out) + suffix


def wrappers(sql: str) -> list[str]:
    """Ways to run a single UPDATE/DELETE (without RETURNING) inside something else."""
    body = sql.strip().rstrip(";")
    if "--" in body:
        body += "\n"  # end a trailing line comment before the wrapper goes on
    out = [
        f"WITH x AS ({body} RETURNING 1) SELECT count(*) FROM x",
        f"EXPLAIN ANALYZE {body}",
        f"EXPLAIN (ANALYZE, COSTS off) {body}",
        f"PREPARE pw AS {body}",
        f"SELECT 1; {body}",
        f"BEGIN; {body}; COMMIT",
        f"COPY ({body} RETURNING 1) TO STDOUT",
        f"CREATE RULE rw AS ON INSERT TO products DO ALSO {body}",
        f"CREATE FUNCTION fw() RETURNS void LANGUAGE sql AS $fw$ {body} $fw$",
        f"CREATE FUNCTION fw() RETURNS void LANGUAGE sql BEGIN ATOMIC {body}; END",
        f"CREATE FUNCTION fw() RETURNS void LANGUAGE plpgsql AS $fw$ BEGIN {body}; END $fw$",
        f"DO $dw$ BEGIN {body}; END $dw$",
        f"CREATE TEMP TABLE tw AS WITH x AS ({body} RETURNING 1) SELECT * FROM x",
        f"EXPLAIN ANALYZE WITH x AS ({body} RETURNING 1) SELECT 1",
    ]
    if "'" not in body:
        out.append(f"DO $dw$ BEGIN EXECUTE '{body}'; END $dw$")
    return out
