"""The ``masking`` configuration key: ``default``, ``off``, or a mapping.

::

    masking:
      detectors: [card, ssn, email]     # built-in content detectors (default: these three)
      columns: [customers.ssn, "*.card_number"]   # column rules: mask the whole value
      strategy: redact                  # redact | partial | hash (default: redact)
      strategies: {email: hash, columns: partial}  # per detector (or "columns") overrides
      custom:                           # extra content detectors
        - name: employee_id
          pattern: 'EMP-[0-9]{6}'
          strategy: hash                # optional
      hash_key: ${MASKING_KEY}          # key for the hash strategy (else PGWARDEN_MASKING_KEY,
                                        # else a key generated in data_dir)

``masking: default`` (or null) is ``{detectors: [card, ssn, email], strategy: redact}``;
``masking: off`` and ``{detectors: [], columns: []}`` turn masking off. Errors are
``MaskingError`` naming the key (``masking.columns[2]: ...``).

Column patterns are ``column``, ``table.column`` or ``schema.table.column``, each part a glob
(``*`` and ``?``), matched without regard to case. A pattern whose table part is ``*`` is about
the column *name*: it matches any output column of that name (aliases included) as well as any
column whose lineage has that name. A table-qualified pattern is about *lineage*: it matches
the column RowDescription points at (table OID and attribute number, resolved to names by the
caller), so aliases and expressions over it cannot rename their way past it; only when the
lineage cannot be resolved does it fall back to the output column's name.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

from pgwarden.masking.errors import MaskingError

StrategyName = Literal["redact", "partial", "hash"]
STRATEGIES: Final[tuple[StrategyName, ...]] = ("redact", "partial", "hash")

BUILTIN_DETECTORS: Final = ("card", "ssn", "email", "phone", "iban", "secrets", "ip")
DEFAULT_DETECTORS: Final = ("card", "ssn", "email")
_ALIASES: Final = {
    "credit_card": "card",
    "creditcard": "card",
    "cards": "card",
    "pan": "card",
    "e-mail": "email",
    "emails": "email",
    "mail": "email",
    "ssns": "ssn",
    "us_ssn": "ssn",
    "phones": "phone",
    "secret": "secrets",
    "ips": "ip",
    "ip_address": "ip",
}
_KEYS: Final = ("detectors", "columns", "strategy", "strategies", "custom", "hash_key")
_CUSTOM_KEYS: Final = ("name", "pattern", "strategy")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}\Z")
_OFF: Final = frozenset({"off", "none", "disabled", "false"})


@dataclass(frozen=True, slots=True)
class ColumnRule:
    """One ``masking.columns`` pattern, split into globs (lower case)."""

    pattern: str
    schema: str | None
    table: str
    column: str

    @property
    def by_name(self) -> bool:
        """True for ``*.column`` patterns: they match column names wherever they appear."""
        return self.table == "*" and self.schema in (None, "*")

    def matches_lineage(self, table: str, column: str) -> bool:
        """Does the column ``column`` of ``table`` (``table`` or ``schema.table``) match?"""
        # A pattern with a schema matches a table named without one (fail towards masking).
        return fnmatch.fnmatchcase(column.lower(), self.column) and self.matches_table(table)

    def matches_table(self, table: str) -> bool:
        """Could a column of ``table`` (``table`` or ``schema.table``) match?"""
        schema, _, name = table.lower().rpartition(".")
        if not fnmatch.fnmatchcase(name, self.table):
            return False
        return self.schema is None or not schema or fnmatch.fnmatchcase(schema, self.schema)

    def matches_name(self, column: str) -> bool:
        """Does an output column called ``column`` match, ignoring the table part?"""
        return fnmatch.fnmatchcase(column.lower(), self.column)


@dataclass(frozen=True, slots=True)
class CustomDetector:
    name: str
    pattern: str
    strategy: StrategyName | None = None


@dataclass(frozen=True, slots=True)
class MaskingConfig:
    """What to mask and how. ``MaskingConfig()`` is the default configuration."""

    detectors: tuple[str, ...] = DEFAULT_DETECTORS
    columns: tuple[ColumnRule, ...] = ()
    strategy: StrategyName = "redact"
    strategies: Mapping[str, StrategyName] = field(default_factory=dict)
    custom: tuple[CustomDetector, ...] = ()
    hash_key: str | None = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        """False when nothing can ever be masked (the relay may skip masking entirely)."""
        return bool(self.detectors or self.columns or self.custom)

    def strategy_for(self, detector: str) -> StrategyName:
        """The strategy for a detector name (``columns`` for column rules)."""
        return self.strategies.get(detector, self.strategy)


DEFAULT_CONFIG: Final = MaskingConfig()
OFF_CONFIG: Final = MaskingConfig(detectors=())


def _suggest(value: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(value, sorted(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _list(value: Any, key: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list | tuple):
        raise MaskingError(key, f"expected a list, got {type(value).__name__}")
    return list(value)


def _strategy(value: Any, key: str) -> StrategyName:
    if not isinstance(value, str) or value.strip().lower() not in STRATEGIES:
        hint = _suggest(str(value).lower(), STRATEGIES)
        raise MaskingError(key, f"expected one of redact, partial, hash, got {value!r}{hint}")
    return cast(StrategyName, value.strip().lower())


def parse_column_pattern(text: Any, key: str) -> ColumnRule:
    if not isinstance(text, str) or not text.strip():
        raise MaskingError(key, f"expected a column pattern such as customers.ssn, got {text!r}")
    raw = text.strip()
    parts = [p.strip().strip('"').lower() for p in raw.split(".")]
    if len(parts) > 3 or any(not p for p in parts):
        raise MaskingError(
            key, f"expected column, table.column or schema.table.column, got {text!r}"
        )
    if len(parts) == 1:
        return ColumnRule(raw, None, "*", parts[0])
    if len(parts) == 2:
        return ColumnRule(raw, None, parts[0], parts[1])
    return ColumnRule(raw, parts[0], parts[1], parts[2])


def _custom(item: Any, key: str, taken: set[str]) -> CustomDetector:
    if not isinstance(item, Mapping):
        raise MaskingError(key, f"expected a mapping with name and pattern, got {item!r}")
    for k in item:
        if k not in _CUSTOM_KEYS:
            raise MaskingError(
                f"{key}.{k}",
                f"unknown key (expected one of: {', '.join(_CUSTOM_KEYS)})"
                f"{_suggest(str(k), _CUSTOM_KEYS)}",
            )
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise MaskingError(
            f"{key}.name", f"expected a name of letters, digits, _ and -, got {name!r}"
        )
    if name.lower() in BUILTIN_DETECTORS or name.lower() in taken or name.lower() == "columns":
        raise MaskingError(f"{key}.name", f"{name!r} is already a detector name")
    pattern = item.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise MaskingError(f"{key}.pattern", f"expected a regular expression, got {pattern!r}")
    try:
        compiled = re.compile(pattern.encode("utf-8"))
    except (re.error, UnicodeEncodeError) as exc:
        raise MaskingError(f"{key}.pattern", f"invalid regular expression: {exc}") from None
    if compiled.match(b"") is not None:
        raise MaskingError(f"{key}.pattern", "must not match the empty string")
    strategy = item.get("strategy")
    taken.add(name.lower())
    return CustomDetector(
        name.lower(),
        pattern,
        None if strategy is None else _strategy(strategy, f"{key}.strategy"),
    )


def parse_masking(data: Mapping[Any, Any], path: str = "masking") -> MaskingConfig:
    """Build a MaskingConfig from its mapping form."""
    for k in data:
        if not isinstance(k, str) or k not in _KEYS:
            raise MaskingError(
                f"{path}.{k}",
                f"unknown key (expected one of: {', '.join(_KEYS)}){_suggest(str(k), _KEYS)}",
            )
    detectors: list[str] = []
    if "detectors" in data:
        for i, item in enumerate(_list(data["detectors"], f"{path}.detectors")):
            key = f"{path}.detectors[{i}]"
            if not isinstance(item, str) or not item.strip():
                raise MaskingError(key, f"expected a detector name, got {item!r}")
            name = item.strip().lower()
            name = _ALIASES.get(name, name)
            if name == "default":
                names: tuple[str, ...] = DEFAULT_DETECTORS
            elif name == "all":
                names = BUILTIN_DETECTORS
            elif name in BUILTIN_DETECTORS:
                names = (name,)
            else:
                raise MaskingError(
                    key,
                    f"unknown detector {item!r} (built in: {', '.join(BUILTIN_DETECTORS)}; "
                    f"add your own under custom){_suggest(name, BUILTIN_DETECTORS)}",
                )
            detectors.extend(n for n in names if n not in detectors)
    else:
        detectors = list(DEFAULT_DETECTORS)

    columns: list[ColumnRule] = []
    seen: set[str] = set()
    for i, item in enumerate(_list(data.get("columns"), f"{path}.columns")):
        rule = parse_column_pattern(item, f"{path}.columns[{i}]")
        if rule.pattern.lower() not in seen:
            seen.add(rule.pattern.lower())
            columns.append(rule)

    strategy = _strategy(data["strategy"], f"{path}.strategy") if "strategy" in data else "redact"

    custom: list[CustomDetector] = []
    taken: set[str] = set()
    for i, item in enumerate(_list(data.get("custom"), f"{path}.custom")):
        custom.append(_custom(item, f"{path}.custom[{i}]", taken))

    strategies: dict[str, StrategyName] = {}
    raw_strategies = data.get("strategies")
    if raw_strategies is not None:
        if not isinstance(raw_strategies, Mapping):
            raise MaskingError(f"{path}.strategies", "expected a mapping of detector to strategy")
        known = (*BUILTIN_DETECTORS, "columns", *(c.name for c in custom))
        for k, v in raw_strategies.items():
            name = _ALIASES.get(str(k).lower(), str(k).lower())
            if name not in known:
                raise MaskingError(
                    f"{path}.strategies.{k}",
                    f"unknown detector (expected one of: {', '.join(known)})"
                    f"{_suggest(name, known)}",
                )
            strategies[name] = _strategy(v, f"{path}.strategies.{k}")
    for c in custom:
        if c.strategy is not None:
            strategies.setdefault(c.name, c.strategy)

    hash_key = data.get("hash_key")
    if hash_key is not None:
        if not isinstance(hash_key, str) or len(hash_key) < 16:
            raise MaskingError(f"{path}.hash_key", "must be a string of at least 16 characters")

    return MaskingConfig(
        detectors=tuple(detectors),
        columns=tuple(columns),
        strategy=strategy,
        strategies=strategies,
        custom=tuple(custom),
        hash_key=hash_key,
    )


def load_masking(value: Any, path: str = "masking") -> MaskingConfig:
    """The ``masking`` config value: ``default`` (or null), ``off``, or a mapping."""
    if value is None:
        return DEFAULT_CONFIG
    if value is False:
        return OFF_CONFIG
    if isinstance(value, str):
        word = value.strip().lower()
        if word == "default":
            return DEFAULT_CONFIG
        if word in _OFF:
            return OFF_CONFIG
        raise MaskingError(path, f"expected 'default', 'off' or a mapping, got {value!r}")
    if isinstance(value, Mapping):
        return parse_masking(value, path)
    raise MaskingError(path, f"expected 'default', 'off' or a mapping, got {value!r}")
