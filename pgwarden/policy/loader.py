"""Build a Policy from its YAML/JSON form, with errors that name the offending key.

::

    mode: enforce            # or audit: decide and record, block nothing
    default: review          # allow | review | deny, for statements no rule matches
    rules:                   # ordered: the first rule that matches a statement decides it
      - name: no-unfiltered-writes
        when: {kinds: [update, delete], where: [absent, tautology]}
        action: deny
        message: add a WHERE clause that selects the rows to change

``when`` keys: ``subjects``, ``groups``, ``targets`` (glob patterns), ``kinds`` (statement
kinds, see ``pgwarden.sql.model``), ``objects`` (object types of CREATE/ALTER/DROP...),
``tables``, ``tables_written`` (globs such as ``public.orders`` or ``*.orders``; a pattern
without a dot matches the table name in any schema), ``functions`` (globs), ``where``
(``absent``, ``tautology``, ``present`` or a list), ``opaque`` and ``dangerous_functions``
(booleans), ``flags`` (see ``pgwarden.sql.model``), ``estimated_rows_over`` (a number) and
``estimated_fraction_over`` (0 to 1). A single string is accepted wherever a list is.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

import yaml

from pgwarden.policy.model import ACTIONS, Action, Mode, Policy, PolicyError, Rule, When
from pgwarden.sql.model import FLAGS, KINDS, OBJECT_TYPES

__all__ = ["default_policy", "default_policy_text", "load_policy", "parse_policy"]

_POLICY_KEYS = ("mode", "default", "rules")
_RULE_KEYS = ("name", "when", "action", "message")
_WHEN_KEYS = (
    "subjects",
    "groups",
    "targets",
    "kinds",
    "objects",
    "where",
    "tables",
    "tables_written",
    "functions",
    "opaque",
    "dangerous_functions",
    "flags",
    "estimated_rows_over",
    "estimated_fraction_over",
)
_WHERE_VALUES = ("absent", "tautology", "present")
_RESERVED_RULE_NAMES = ("default", "unparseable")


def _suggest(value: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, sorted(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_keys(data: Mapping[Any, Any], allowed: tuple[str, ...], path: str) -> None:
    for key in data:
        if not isinstance(key, str):
            raise PolicyError(f"{path}.{key}", "keys must be strings")
        if key not in allowed:
            raise PolicyError(
                f"{path}.{key}",
                f"unknown key (expected one of: {', '.join(allowed)}){_suggest(key, allowed)}",
            )


def _choice(value: Any, choices: tuple[str, ...], key: str) -> str:
    if not isinstance(value, str) or value.strip().lower() not in choices:
        hint = _suggest(str(value), choices)
        raise PolicyError(key, f"expected one of {', '.join(choices)}, got {value!r}{hint}")
    return value.strip().lower()


def _strings(value: Any, key: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise PolicyError(key, f"expected a string or a non-empty list of strings, got {value!r}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            raise PolicyError(f"{key}[{i}]", f"expected a non-empty string, got {item!r}")
        out.append(item.strip())
    return tuple(out)


def _vocabulary(value: Any, vocabulary: frozenset[str], what: str, key: str) -> frozenset[str]:
    items = _strings(value, key)
    out = set()
    for i, item in enumerate(items):
        v = item.lower()
        if v not in vocabulary:
            raise PolicyError(f"{key}[{i}]", f"unknown {what} {item!r}{_suggest(v, vocabulary)}")
        out.add(v)
    return frozenset(out)


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(key, f"expected true or false, got {value!r}")
    return value


def _number(value: Any, key: str, *, upper: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(key, f"expected a number, got {value!r}")
    if value < 0 or (upper is not None and value > upper):
        bound = f"between 0 and {upper:g}" if upper is not None else "at least 0"
        raise PolicyError(key, f"must be {bound}, got {value!r}")
    return float(value)


def _parse_when(data: Any, path: str) -> When:
    if data is None:
        return When()
    if not isinstance(data, Mapping):
        raise PolicyError(path, f"expected a mapping, got {type(data).__name__}")
    _check_keys(data, _WHEN_KEYS, path)
    kw: dict[str, Any] = {}
    for key, value in data.items():
        k = f"{path}.{key}"
        if key in ("subjects", "groups", "targets", "tables", "tables_written", "functions"):
            kw[key] = _strings(value, k)
        elif key == "kinds":
            kw[key] = _vocabulary(value, KINDS, "statement kind", k)
        elif key == "objects":
            kw[key] = _vocabulary(value, OBJECT_TYPES, "object type", k)
        elif key == "flags":
            kw[key] = _vocabulary(value, FLAGS, "flag", k)
        elif key == "where":
            kw[key] = _vocabulary(value, frozenset(_WHERE_VALUES), "where value", k)
        elif key in ("opaque", "dangerous_functions"):
            kw[key] = _bool(value, k)
        elif key == "estimated_rows_over":
            kw[key] = _number(value, k)
        elif key == "estimated_fraction_over":
            kw[key] = _number(value, k, upper=1.0)
    return When(**kw)


def _parse_rule(data: Any, path: str, seen: set[str]) -> Rule:
    if not isinstance(data, Mapping):
        raise PolicyError(path, f"expected a mapping, got {type(data).__name__}")
    _check_keys(data, _RULE_KEYS, path)
    if "name" not in data:
        raise PolicyError(f"{path}.name", "missing (every rule needs a name)")
    name = data["name"]
    if not isinstance(name, str) or not name.strip():
        raise PolicyError(f"{path}.name", f"expected a non-empty string, got {name!r}")
    name = name.strip()
    if name in _RESERVED_RULE_NAMES:
        raise PolicyError(f"{path}.name", f"{name!r} is reserved")
    if name in seen:
        raise PolicyError(f"{path}.name", f"duplicate rule name {name!r}")
    seen.add(name)
    if "action" not in data:
        raise PolicyError(f"{path}.action", "missing (allow, review or deny)")
    action: Action = _choice(data["action"], ACTIONS, f"{path}.action")  # type: ignore[assignment]
    message = data.get("message")
    if message is not None and not isinstance(message, str):
        raise PolicyError(f"{path}.message", f"expected a string, got {message!r}")
    return Rule(
        name=name,
        action=action,
        when=_parse_when(data.get("when"), f"{path}.when"),
        message=message.strip() if isinstance(message, str) and message.strip() else None,
    )


def parse_policy(data: Any, path: str = "policy", *, name: str = "custom") -> Policy:
    """A Policy from its mapping form; PolicyError names the first bad key."""
    if not isinstance(data, Mapping):
        raise PolicyError(path, f"expected a mapping, got {type(data).__name__}")
    _check_keys(data, _POLICY_KEYS, path)
    mode: Mode = _choice(data.get("mode", "enforce"), ("enforce", "audit"), f"{path}.mode")  # type: ignore[assignment]
    default: Action = _choice(data.get("default", "review"), ACTIONS, f"{path}.default")  # type: ignore[assignment]
    raw_rules = data.get("rules", [])
    if raw_rules is None:
        raw_rules = []
    if not isinstance(raw_rules, list | tuple):
        raise PolicyError(f"{path}.rules", f"expected a list, got {type(raw_rules).__name__}")
    seen: set[str] = set()
    rules = tuple(_parse_rule(r, f"{path}.rules[{i}]", seen) for i, r in enumerate(raw_rules))
    return Policy(mode=mode, default=default, rules=rules, name=name)


def default_policy_text() -> str:
    """The YAML of the built-in policy (``pgwarden/policy/default.yaml``), to copy and edit."""
    return resources.files("pgwarden.policy").joinpath("default.yaml").read_text("utf-8")


@functools.cache
def default_policy() -> Policy:
    """The built-in policy: safe for agents (see default.yaml for what it does and why)."""
    return parse_policy(yaml.safe_load(default_policy_text()), "policy(default)", name="default")


def load_policy(value: Any, path: str = "policy") -> Policy:
    """The ``policy`` config value: ``default`` (or null) for the built-in one, or a mapping."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "default"):
        return default_policy()
    if isinstance(value, Mapping):
        return parse_policy(value, path)
    raise PolicyError(path, f"expected 'default' or a mapping, got {value!r}")
