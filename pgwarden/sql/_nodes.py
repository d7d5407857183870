"""Reading libpg_query's JSON parse tree (``pglast.parser.parse_sql_json``).

The JSON tree is about ten times cheaper to get than pglast's Python AST objects, so the
classifier walks it directly. Its shape: a node is ``{"TypeName": {field: value, ...}}``; a
field typed as a specific struct (``RangeVar *relation``) holds the struct's fields without
the ``{"RangeVar": ...}`` wrapper; lists are JSON arrays, and a list inside a list is
``{"List": {"items": [...]}}``; enums are their names (``"AEXPR_OP"``); fields holding false,
0, NULL or an empty list are left out. Offsets (``location``, ``stmt_location``) count bytes.

The field types come from pglast's AST classes, so the two stay in step.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from pglast import ast

__all__ = [
    "NODE_TYPES",
    "Node",
    "as_node",
    "equal",
    "field_hint",
    "items",
    "iter_nodes",
    "string_list",
    "sval",
]

#: A node: (type name, fields).
Node = tuple[str, dict[str, Any]]


def _build() -> tuple[frozenset[str], dict[tuple[str, str], str]]:
    types: set[str] = set()
    hints: dict[tuple[str, str], str] = {}
    for name, cls in inspect.getmembers(ast, inspect.isclass):
        slots = cls.__dict__.get("__slots__")
        if not issubclass(cls, ast.Node) or not isinstance(slots, dict):
            continue
        types.add(name)
        for field, info in slots.items():
            c_type = getattr(info, "c_type", info)
            if isinstance(c_type, str) and c_type.endswith("*"):
                target = c_type[:-1]
                if target not in ("Node", "List", "Expr") and hasattr(ast, target):
                    hints[(name, field)] = target
    types.update({"List", "IntList", "OidList", "XidList"})  # not pglast classes
    return frozenset(types), hints


NODE_TYPES, _HINTS = _build()
_ROUTE_KEYS = frozenset({"list_start", "list_end", "rexpr_list_start", "rexpr_list_end"})


def as_node(value: Any, hint: str | None = None) -> Node | None:
    """The node in a JSON value: a wrapped ``{"Type": {...}}``, or a bare struct of type hint."""
    if not isinstance(value, dict):
        return None
    if len(value) == 1:
        key = next(iter(value))
        inner = value[key]
        if key in NODE_TYPES and isinstance(inner, dict):
            return key, inner
    if hint is not None:
        return hint, value
    return None


def field_hint(tag: str, field: str) -> str | None:
    """The struct type of a field that holds a bare struct (``RangeVar *relation``)."""
    return _HINTS.get((tag, field))


def items(value: Any) -> list[Any]:
    """The elements of a list field (also unwrapping ``{"List": {"items": [...]}}``)."""
    if isinstance(value, list):
        return value
    node = as_node(value)
    if node is not None and node[0] == "List":
        return list(node[1].get("items", []))
    return []


def sval(value: Any) -> str:
    """The text of a String node (wrapped or not); '' for anything else."""
    node = as_node(value, "String")
    if node is not None and node[0] == "String":
        return str(node[1].get("sval", ""))
    return ""


def string_list(value: Any) -> list[str]:
    """``[{"String": {"sval": "a"}}, ...]`` -> ``["a", ...]``."""
    return [sval(v) for v in items(value)]


def _kept(d: dict[str, Any]) -> list[str]:
    return [k for k in d if not k.endswith("location") and k not in _ROUTE_KEYS]


def equal(a: Any, b: Any) -> bool:
    """Structural equality of two subtrees, ignoring source positions."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        keys = _kept(a)
        if sorted(keys) != sorted(_kept(b)):
            return False
        return all(equal(a[k], b[k]) for k in keys)
    if isinstance(a, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def iter_nodes(value: Any) -> Iterator[Node]:
    """Every wrapped node in a JSON subtree (iteratively: trees can be deep)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            node = as_node(v)
            if node is not None:
                yield node
                stack.extend(x for x in node[1].values() if isinstance(x, dict | list))
            else:
                stack.extend(x for x in v.values() if isinstance(x, dict | list))
        elif isinstance(v, list):
            stack.extend(v)
