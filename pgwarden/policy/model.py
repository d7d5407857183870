"""Policy values: rules, the identity they are checked against, row estimates and decisions.

All frozen; ``pgwarden.policy.loader`` builds them from the YAML form, ``pgwarden.policy.engine``
evaluates them. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ACTIONS",
    "SEVERITY",
    "Action",
    "Decision",
    "Mode",
    "Policy",
    "PolicyError",
    "PolicyIdentity",
    "RowEstimate",
    "Rule",
    "When",
]

Action = Literal["allow", "review", "deny"]
Mode = Literal["enforce", "audit"]

ACTIONS: tuple[Action, ...] = ("allow", "review", "deny")
#: deny > review > allow
SEVERITY: dict[str, int] = {"allow": 0, "review": 1, "deny": 2}


class PolicyError(ValueError):
    """A policy document is invalid. ``key`` is the dotted path of the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True, slots=True)
class PolicyIdentity:
    """Who runs the statement: the token's subject and groups."""

    subject: str
    groups: tuple[str, ...] = ()

    @staticmethod
    def of(identity: Any) -> PolicyIdentity:
        """From anything with ``subject`` and ``groups`` (e.g. ``pgwarden.auth.Identity``)."""
        return PolicyIdentity(str(identity.subject), tuple(str(g) for g in identity.groups))


@dataclass(frozen=True, slots=True)
class RowEstimate:
    """The planner's estimate for a write, from ``EXPLAIN`` (never ``EXPLAIN ANALYZE``).

    ``rows``: rows the statement's UPDATE/DELETE/MERGE would touch (the ModifyTable node's
    input rows). ``table_rows``: rows in the written table (``pg_class.reltuples``), or None
    when unknown (then ``estimated_fraction_over`` cannot match). ``cascaded``: rows of other
    tables a DELETE would delete or change through foreign keys (ON DELETE CASCADE, SET NULL,
    SET DEFAULT); ``estimated_rows_over`` counts them, the fraction of the table does not.
    ``counted``: ``rows`` is no estimate but a count of the rows the write's WHERE selects
    (a WHERE the planner could only guess at; see ``pgwarden.guard.estimator``).
    """

    rows: float
    table_rows: float | None = None
    cascaded: float = 0.0
    counted: bool = False

    @property
    def total(self) -> float:
        return self.rows + self.cascaded

    @property
    def fraction(self) -> float | None:
        if self.table_rows is None or self.table_rows <= 0:
            return None
        return min(1.0, self.rows / self.table_rows)


@dataclass(frozen=True, slots=True)
class When:
    """The conditions of a rule. Every key given must hold; an empty When matches everything.

    Identity keys (``subjects``, ``groups``, ``targets``) hold if any pattern matches.
    Statement keys depend on the rule's action, so that a rule can never allow more than it
    names: on ``deny`` and ``review`` rules, ``kinds``/``objects``/``where`` hold if *some*
    operation of the statement (the statement itself or anything nested in it) has all of
    them, and ``tables``/``tables_written``/``functions`` hold if *some* name matches; on
    ``allow`` rules they hold only if *every* operation/name matches (and there is at least
    one). ``flags`` holds if the statement has every flag listed.
    """

    subjects: tuple[str, ...] | None = None
    groups: tuple[str, ...] | None = None
    targets: tuple[str, ...] | None = None
    kinds: frozenset[str] | None = None
    objects: frozenset[str] | None = None
    where: frozenset[str] | None = None
    tables: tuple[str, ...] | None = None
    tables_written: tuple[str, ...] | None = None
    functions: tuple[str, ...] | None = None
    opaque: bool | None = None
    dangerous_functions: bool | None = None
    flags: frozenset[str] | None = None
    estimated_rows_over: float | None = None
    estimated_fraction_over: float | None = None

    @property
    def needs_estimate(self) -> bool:
        return self.estimated_rows_over is not None or self.estimated_fraction_over is not None


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    action: Action
    when: When = field(default_factory=When)
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """``mode``, ``default`` action and ordered ``rules`` (the first matching rule decides)."""

    mode: Mode = "enforce"
    default: Action = "review"
    rules: tuple[Rule, ...] = ()
    name: str = "custom"

    def needs_estimate(self, classification: Any, identity: PolicyIdentity, target: str) -> bool:
        """True if a row estimate could change the decision: ask PostgreSQL ``EXPLAIN`` first.

        See ``pgwarden.policy.engine.needs_estimate``.
        """
        from pgwarden.policy.engine import needs_estimate  # noqa: PLC0415 - avoid a cycle

        return needs_estimate(self, classification, identity, target)


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on a query string.

    ``action`` is what the policy says; ``effective_action`` is what the gateway does: the
    same in enforce mode, ``allow`` in audit mode, except when ``fail_closed`` is set (SQL
    that cannot be classified is never forwarded, whatever the mode). ``rule`` is the deciding
    rule's name, ``"default"`` when no rule matched, ``"unparseable"`` for SQL that cannot be
    classified. ``statement_index`` points at the statement that decided (the most severe
    one) of a multi-statement query.
    """

    action: Action
    rule: str | None
    reason: str
    mode: Mode = "enforce"
    statement_index: int | None = None
    estimate_missing: bool = False  # a rule needing a row estimate was skipped for lack of one
    fail_closed: bool = False
    effective_action: Action = field(init=False)

    def __post_init__(self) -> None:
        effective = self.action if self.mode == "enforce" or self.fail_closed else "allow"
        object.__setattr__(self, "effective_action", effective)

    @property
    def client_message(self) -> str:
        """What a refused client is told after ``pgwarden: ``."""
        return f"{self.reason} (rule {self.rule})" if self.rule else self.reason

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "effective_action": self.effective_action,
            "mode": self.mode,
            "rule": self.rule,
            "reason": self.reason,
            "statement_index": self.statement_index,
            "estimate_missing": self.estimate_missing,
        }
