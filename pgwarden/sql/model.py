"""What the classifier says about SQL text: plain, frozen values with no pglast types in them.

Vocabulary
==========

Statement kinds (``StatementInfo.kind``, ``Operation.kind``), all lowercase:

==========================  ====================================================================
queries and writes          ``select`` (also ``VALUES``, ``TABLE t``), ``select_into``, ``insert``,
                            ``update``, ``delete``, ``merge``, ``truncate``
COPY                        ``copy_to``, ``copy_from`` (the statement); ``copy_program`` and
                            ``copy_file`` (nested: ``TO/FROM PROGRAM`` and server-side files)
schema                      ``create`` (any ``CREATE`` not listed separately; see object types),
                            ``create_table_as``, ``create_function`` (functions and procedures),
                            ``create_trigger`` (also event triggers), ``create_rule``,
                            ``create_extension``, ``alter`` (any ``ALTER`` not listed separately),
                            ``drop`` (any ``DROP`` but ``DROP ROLE``; also ``DROP OWNED``),
                            ``comment``, ``security_label``, ``refresh_matview``
privileges and roles        ``grant``, ``revoke``, ``alter_default_privileges``, ``create_role``,
                            ``alter_role``, ``drop_role``, ``reassign_owned``, ``set_role``
                            (``SET ROLE``, ``RESET ROLE``, ``set_config('role', ...)``),
                            ``set_session_authorization``
server                      ``alter_system``, ``load``, ``checkpoint``, ``vacuum``, ``analyze``,
                            ``cluster``, ``reindex``, ``lock``
code                        ``do``, ``call``
session                     ``set``, ``reset``, ``show``, ``discard``, ``set_constraints``,
                            ``listen``, ``unlisten``, ``notify``
transactions                ``begin``, ``commit``, ``rollback``, ``savepoint``, ``release``,
                            ``rollback_to``, ``prepare_transaction``, ``commit_prepared``,
                            ``rollback_prepared``
prepared statements         ``prepare``, ``execute``, ``deallocate``
EXPLAIN                     ``explain``, ``explain_analyze``
cursors                     ``declare_cursor``, ``fetch`` (also ``MOVE``), ``close``
anything else               ``other``
==========================  ====================================================================

Object types (``Operation.object_type``) for ``create``/``alter``/``drop``/``grant``...:
PostgreSQL's ``OBJECT_*`` names in lowercase (``table``, ``index``, ``view``, ``schema``,
``database``, ``function``, ``procedure``, ``type``, ``domain``, ``sequence``, ``extension``,
``role``, ...) with ``materialized_view`` for ``OBJECT_MATVIEW``, plus ``temp_table``,
``temp_view`` and ``temp_sequence`` for temporary objects, ``column`` for
``ALTER TABLE ... DROP COLUMN`` and ``owned`` for ``DROP OWNED``.

WHERE (``Operation.where`` for ``update`` and ``delete``): ``absent`` (no WHERE), ``tautology``
(the WHERE does not restrict rows: it folds to true, such as ``1=1``, ``x OR true``, ``id = id``,
or it does not depend on the row at all, such as ``$1`` or ``EXISTS (SELECT 1 FROM t)``) or
``present``. MERGE actions and ``INSERT ... ON CONFLICT DO UPDATE`` get a WHERE too.

Flags (``StatementInfo.flags``): ``cascade`` (DROP/TRUNCATE ... CASCADE), ``if_exists``,
``untrusted_language`` (a function in C, internal or an untrusted PL), ``unparsed_body`` (a
function body that could not be parsed), ``dynamic_sql`` (procedural code runs SQL built at run
time), ``row_locks`` (SELECT ... FOR UPDATE/SHARE), ``dynamic_set_config`` (set_config with a
setting name that is not a literal), ``volatile_function`` (calls a user's VOLATILE function,
which may write, directly, through a view or row security policy it reads, an operator or
cast it uses, or a trigger, rule, column default or CHECK of a table it writes: set by the
gateway from the target's catalog, not by ``classify``).

``via`` (``Operation.via``) says how an operation is nested: ``None`` (the statement itself),
``cte``, ``explain`` (not executed), ``explain_analyze``, ``prepare``, ``execute``, ``copy``,
``create_table_as``, ``view``, ``cursor``, ``rule``, ``function_body``, ``plpgsql``,
``dynamic_sql``, ``merge``, ``on_conflict``, ``alter``, ``schema``, ``set_config``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

__all__ = [
    "FLAGS",
    "KINDS",
    "OBJECT_TYPES",
    "WHERE_SEVERITY",
    "Classification",
    "KeyLookup",
    "Operation",
    "StatementInfo",
    "Where",
]

Where = Literal["present", "absent", "tautology"]

KINDS: frozenset[str] = frozenset(
    {
        # queries and writes
        "select", "select_into", "insert", "update", "delete", "merge", "truncate",
        # COPY
        "copy_to", "copy_from", "copy_program", "copy_file",
        # schema
        "create", "create_table_as", "create_function", "create_trigger", "create_rule",
        "create_extension", "alter", "drop", "comment", "security_label", "refresh_matview",
        # privileges and roles
        "grant", "revoke", "alter_default_privileges", "create_role", "alter_role", "drop_role",
        "reassign_owned", "set_role", "set_session_authorization",
        # server
        "alter_system", "load", "checkpoint", "vacuum", "analyze", "cluster", "reindex", "lock",
        # code
        "do", "call",
        # session
        "set", "reset", "show", "discard", "set_constraints", "listen", "unlisten", "notify",
        # transactions
        "begin", "commit", "rollback", "savepoint", "release", "rollback_to",
        "prepare_transaction", "commit_prepared", "rollback_prepared",
        # prepared statements, EXPLAIN, cursors
        "prepare", "execute", "deallocate", "explain", "explain_analyze",
        "declare_cursor", "fetch", "close",
        "other",
    }
)  # fmt: skip

OBJECT_TYPES: frozenset[str] = frozenset(
    {
        "access_method", "aggregate", "amop", "amproc", "attribute", "cast", "column",
        "collation", "conversion", "database", "default", "defacl", "domain", "domconstraint",
        "event_trigger", "extension", "fdw", "foreign_server", "foreign_table", "function",
        "index", "language", "largeobject", "materialized_view", "opclass", "operator",
        "opfamily", "parameter_acl", "policy", "procedure", "publication",
        "publication_namespace", "publication_rel", "role", "routine", "rule", "schema",
        "sequence", "subscription", "statistic_ext", "tabconstraint", "table", "tablespace",
        "transform", "trigger", "tsconfiguration", "tsdictionary", "tsparser", "tstemplate",
        "type", "user_mapping", "view",
        # not PostgreSQL OBJECT_* names
        "temp_table", "temp_view", "temp_sequence", "owned",
    }
)  # fmt: skip

FLAGS: frozenset[str] = frozenset(
    {
        "cascade",
        "if_exists",
        "untrusted_language",
        "unparsed_body",
        "dynamic_sql",
        "row_locks",
        "dynamic_set_config",
        "volatile_function",
    }
)

#: Higher is worse; used to summarise several WHEREs into one.
WHERE_SEVERITY: dict[str, int] = {"present": 0, "tautology": 1, "absent": 2}

_WHERE_KINDS: Final = frozenset({"update", "delete"})
_CHANGES_USER: Final = frozenset({"set_role", "set_session_authorization"})


@dataclass(frozen=True, slots=True)
class Operation:
    """One thing a statement does: the statement itself, or something nested inside it."""

    kind: str
    object_type: str | None = None
    targets: tuple[str, ...] = ()  # tables (DML) or objects (DDL) acted upon, normalized
    where: Where | None = None  # for update and delete (also MERGE and ON CONFLICT actions)
    via: str | None = None  # how it is nested; None for the statement itself
    executes: bool = True  # False when running the statement does not perform it (EXPLAIN)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.object_type is not None:
            out["object_type"] = self.object_type
        if self.targets:
            out["targets"] = list(self.targets)
        if self.where is not None:
            out["where"] = self.where
        if self.via is not None:
            out["via"] = self.via
        if not self.executes:
            out["executes"] = False
        return out


@dataclass(frozen=True, slots=True)
class KeyLookup:
    """An UPDATE/DELETE of one table whose WHERE is an AND with ``column = value`` among its
    terms: when that column alone is a unique key, at most one row matches, whatever the
    value (the estimator then needs no EXPLAIN, see ``pgwarden.guard.estimator``).

    ``relation``: the table as written, quoted for ``to_regclass`` (``"public"."orders"``);
    ``columns``: (column, parameter number) for each such term, 0 when the value is a literal;
    ``deletes``: a DELETE (whose foreign keys may delete or change rows elsewhere).
    """

    relation: str
    columns: tuple[tuple[str, int], ...]
    deletes: bool = False


@dataclass(frozen=True, slots=True)
class CopyOptions:
    """What masking must know about a ``COPY ... TO STDOUT`` to read its data stream.

    ``source`` is the SQL whose result the COPY sends (``SELECT cols FROM table`` or the
    inner query), so its columns can be described; None when it cannot be derived.
    Single-byte options are kept as given; ``None`` means PostgreSQL's default.
    """

    format: Literal["text", "csv", "binary"] = "text"
    delimiter: str | None = None
    quote: str | None = None
    escape: str | None = None
    source: str | None = None


def _slot_copier(cls: type[Any]) -> Any:
    """A function copying an instance of the frozen slotted ``cls`` field by field. Generated
    (one straight-line assignment per field, through the fields' own descriptors): ~3x cheaper
    than a loop of setattr, and the shape cache copies two objects per statement. Compiled by
    mypyc (pgwarden._native), ``cls`` has no ``__slots__`` and refuses ``object.__new__``;
    its fields and its own ``__new__`` work either way."""
    names = [f.name for f in dataclasses.fields(cls)]
    scope: dict[str, Any] = {"new": cls.__new__, "cls": cls}
    scope.update({f"set_{name}": getattr(cls, name).__set__ for name in names})
    lines = [f"    set_{name}(n, o.{name})" for name in names]
    exec("def copy(o):\n    n = new(cls)\n" + "\n".join(lines) + "\n    return n", scope)  # noqa: S102
    return scope["copy"]


def _worst_where(wheres: frozenset[str]) -> Where | None:
    worst: Where | None = None
    for w in ("present", "tautology", "absent"):
        if w in wheres:
            worst = w  # type: ignore[assignment]
    return worst


#: This module runs compiled (pgwarden._native): a compiled function has no code object.
_COMPILED: Final = not hasattr(_worst_where, "__code__")


@dataclass(frozen=True, slots=True)
class StatementInfo:
    """One statement of a query string, with everything nested inside it.

    ``operations[0]`` is the statement itself; the rest are nested operations in source order.
    ``kinds`` is ``{kind} | nested_kinds``; nested operations that do not run when the
    statement runs (the statement under a plain ``EXPLAIN``) are listed in ``operations`` with
    ``executes=False`` but are left out of ``nested_kinds``, ``where`` and ``tables_written``.
    """

    kind: str
    text: str
    operations: tuple[Operation, ...]
    tables_read: frozenset[str] = frozenset()
    tables_written: frozenset[str] = frozenset()
    functions: frozenset[str] = frozenset()
    dangerous_functions: frozenset[str] = frozenset()
    opaque: bool = False  # runs code the gateway cannot see into (DO, CALL, PL bodies, triggers)
    flags: frozenset[str] = frozenset()
    setting: str | None = None  # SET/RESET/SHOW: the setting, lowercase ("all": RESET ALL)
    setting_value: str | None = None  # SET: the value, when it is made of constants
    setting_local: bool = False  # SET LOCAL
    prepared_name: str | None = None  # PREPARE/EXECUTE/DEALLOCATE: the statement's name
    executes_prepared: tuple[str, ...] = ()  # prepared statements this one runs (EXECUTE p)
    body: Classification | None = None  # PREPARE: the classification of the prepared body
    # SQL to put after EXPLAIN for a row estimate (the statement itself, or the statement
    # under EXPLAIN ANALYZE / COPY (query) / DECLARE CURSOR); None if there is none.
    estimate_sql: str | None = None
    copy: CopyOptions | None = None  # COPY ... TO STDOUT: how its data stream is laid out
    key_lookup: KeyLookup | None = None  # a write that may touch one row only (not recorded)
    # SET/RESET search_path, RESET ALL or set_config('search_path', ...), here or nested, or a
    # call of the target's function that may change it: the session's table names may no
    # longer be the estimator's (not recorded)
    sets_search_path: bool = False
    nested_kinds: frozenset[str] = field(init=False)
    kinds: frozenset[str] = field(init=False)
    wheres: frozenset[str] = field(init=False)
    where: Where | None = field(init=False)
    executed_operations: tuple[Operation, ...] = field(init=False)  # those that run
    # After it, the session's names may resolve otherwise than on the gateway's side
    # connections: it changes the search_path or the role, or creates temporary objects.
    changes_names: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "executed_operations", tuple(op for op in self.operations if op.executes)
        )
        nested = frozenset(op.kind for op in self.operations[1:] if op.executes)
        wheres = frozenset(
            op.where
            for op in self.operations
            if op.executes and op.where is not None and op.kind in _WHERE_KINDS
        )
        object.__setattr__(self, "nested_kinds", nested)
        object.__setattr__(self, "kinds", nested | {self.kind})
        object.__setattr__(self, "wheres", wheres)
        object.__setattr__(self, "where", _worst_where(wheres))
        object.__setattr__(
            self,
            "changes_names",
            self.sets_search_path
            or not self.kinds.isdisjoint(_CHANGES_USER)
            or self.kind == "select_into"
            or any((op.object_type or "").startswith("temp") for op in self.operations),
        )

    @property
    def tables(self) -> frozenset[str]:
        return self.tables_read | self.tables_written

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "text": self.text,
            "nested_kinds": sorted(self.nested_kinds),
            "tables_read": sorted(self.tables_read),
            "tables_written": sorted(self.tables_written),
            "functions": sorted(self.functions),
            "dangerous_functions": sorted(self.dangerous_functions),
            "where": self.where,
            "opaque": self.opaque,
            "flags": sorted(self.flags),
            "operations": [op.to_dict() for op in self.operations],
        }
        if self.setting is not None:
            out["setting"] = self.setting
        if self.prepared_name is not None:
            out["prepared_name"] = self.prepared_name
        if self.executes_prepared:
            out["executes_prepared"] = list(self.executes_prepared)
        if self.estimate_sql is not None:
            out["estimate_sql"] = self.estimate_sql
        return out


@dataclass(frozen=True, slots=True)
class Classification:
    """Everything the gateway knows about one query string (one or more statements).

    ``error`` is set when the text cannot be classified (the gateway must then refuse it);
    ``statements`` is empty in that case. The aggregate fields are unions over statements.
    """

    sql: str
    statements: tuple[StatementInfo, ...] = ()
    error: str | None = None
    # The first classification of this statement's shape (same parse tree, other constants)
    # when it was derived from it: what is decided once per shape is cached under it.
    shape: Classification | None = field(default=None, compare=False, repr=False)
    kinds: frozenset[str] = field(init=False)
    tables_read: frozenset[str] = field(init=False)
    tables_written: frozenset[str] = field(init=False)
    functions: frozenset[str] = field(init=False)
    dangerous_functions: frozenset[str] = field(init=False)
    flags: frozenset[str] = field(init=False)
    wheres: frozenset[str] = field(init=False)
    where: Where | None = field(init=False)
    opaque: bool = field(init=False)

    def __post_init__(self) -> None:
        sts = self.statements
        wheres: frozenset[str] = frozenset().union(*(s.wheres for s in sts))
        object.__setattr__(self, "kinds", frozenset().union(*(s.kinds for s in sts)))
        object.__setattr__(self, "tables_read", frozenset().union(*(s.tables_read for s in sts)))
        object.__setattr__(
            self, "tables_written", frozenset().union(*(s.tables_written for s in sts))
        )
        object.__setattr__(self, "functions", frozenset().union(*(s.functions for s in sts)))
        object.__setattr__(
            self,
            "dangerous_functions",
            frozenset().union(*(s.dangerous_functions for s in sts)),
        )
        object.__setattr__(self, "flags", frozenset().union(*(s.flags for s in sts)))
        object.__setattr__(self, "wheres", wheres)
        object.__setattr__(self, "where", _worst_where(wheres))
        object.__setattr__(self, "opaque", any(s.opaque for s in sts))

    @property
    def ok(self) -> bool:
        return self.error is None

    def calling_writers(self, names: frozenset[str]) -> Classification:
        """This classification with the statements that call one of ``names`` (functions that
        may write, known from the target's catalog) marked opaque, flag ``volatile_function``.
        """
        return self._running_writers(lambda st: bool(st.functions & names))

    def reading_writers(self, names: frozenset[str]) -> Classification:
        """This classification with the statements that read one of ``names`` (relations whose
        reading runs a function that may write: a view's query or a row security policy calls
        one, known from the target's catalog) marked opaque, flag ``volatile_function``."""
        return self._running_writers(lambda st: bool(st.tables_read & names))

    def writing_through(self, names: frozenset[str]) -> Classification:
        """This classification with the statements that write one of ``names`` (relations
        with a trigger, rule, default or CHECK that may change or remove other rows, known
        from the target's catalog) marked opaque, flag ``volatile_function``."""
        return self._running_writers(lambda st: bool(st.tables_written & names))

    def using_writers(self) -> Classification:
        """This classification with every statement marked opaque, flag ``volatile_function``:
        its text names an operator or a cast's type of the target's whose function may write,
        or a parameter is declared as such a type (a name is not told apart from a string
        that spells it: held either way)."""
        return self._running_writers(lambda st: True)

    def _running_writers(self, runs: Callable[[StatementInfo], bool]) -> Classification:
        statements = tuple(
            replace(st, opaque=True, flags=st.flags | {"volatile_function"}) if runs(st) else st
            for st in self.statements
        )
        return Classification(self.sql, statements, self.error)

    def calling_switchers(self, names: frozenset[str]) -> Classification:
        """This classification with the statements that call one of ``names`` (functions
        that may change the session's search_path or role, known from the target's catalog)
        marked as changing the search_path."""
        statements = tuple(
            replace(st, sets_search_path=True) if st.functions & names else st
            for st in self.statements
        )
        return Classification(self.sql, statements, self.error)

    def retexted(self, sql: str, text: str) -> Classification:
        """This single-statement classification for ``sql``, another text of the same shape
        whose statement reads ``text``: every derived field is kept, nothing is recomputed."""
        (st,) = self.statements
        estimate_sql = None if st.estimate_sql is None else text
        if _COMPILED:
            return _native_retexted(self, st, sql, text, estimate_sql)
        new_st = _copy_statement(st)
        object.__setattr__(new_st, "text", text)
        object.__setattr__(new_st, "estimate_sql", estimate_sql)
        out: Classification = _copy_classification(self)
        object.__setattr__(out, "sql", sql)
        object.__setattr__(out, "statements", (new_st,))
        object.__setattr__(out, "shape", self.shape or self)
        return out

    @property
    def tables(self) -> frozenset[str]:
        return self.tables_read | self.tables_written

    @staticmethod
    def failed(sql: str, error: str) -> Classification:
        return Classification(sql=sql, statements=(), error=error)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (for the recording and ``pgwarden policy explain``)."""
        return {
            "error": self.error,
            "kinds": sorted(self.kinds),
            "tables_read": sorted(self.tables_read),
            "tables_written": sorted(self.tables_written),
            "functions": sorted(self.functions),
            "dangerous_functions": sorted(self.dangerous_functions),
            "where": self.where,
            "opaque": self.opaque,
            "flags": sorted(self.flags),
            "statements": [s.to_dict() for s in self.statements],
        }


_copy_statement: Final = _slot_copier(StatementInfo)
_copy_classification: Final = _slot_copier(Classification)


def _native_retexted(
    c: Classification, st: StatementInfo, sql: str, text: str, estimate_sql: str | None
) -> Classification:
    """``Classification.retexted`` when compiled: each field stored straight into the new
    objects (~0.2 µs, where the generated copier's setattr calls take ~4 µs; the shape cache
    retexts every statement of a known shape). Compiled stores skip the frozen dataclass's
    ``__setattr__``; interpreted, they would raise, so this runs compiled only.
    tests/unit/sql/test_sql_shape_cache.py checks that every field is carried."""
    n = StatementInfo.__new__(StatementInfo)
    n.kind = st.kind  # type: ignore[misc]
    n.text = text  # type: ignore[misc]
    n.operations = st.operations  # type: ignore[misc]
    n.tables_read = st.tables_read  # type: ignore[misc]
    n.tables_written = st.tables_written  # type: ignore[misc]
    n.functions = st.functions  # type: ignore[misc]
    n.dangerous_functions = st.dangerous_functions  # type: ignore[misc]
    n.opaque = st.opaque  # type: ignore[misc]
    n.flags = st.flags  # type: ignore[misc]
    n.setting = st.setting  # type: ignore[misc]
    n.setting_value = st.setting_value  # type: ignore[misc]
    n.setting_local = st.setting_local  # type: ignore[misc]
    n.prepared_name = st.prepared_name  # type: ignore[misc]
    n.executes_prepared = st.executes_prepared  # type: ignore[misc]
    n.body = st.body  # type: ignore[misc]
    n.estimate_sql = estimate_sql  # type: ignore[misc]
    n.copy = st.copy  # type: ignore[misc]
    n.key_lookup = st.key_lookup  # type: ignore[misc]
    n.sets_search_path = st.sets_search_path  # type: ignore[misc]
    n.nested_kinds = st.nested_kinds  # type: ignore[misc]
    n.kinds = st.kinds  # type: ignore[misc]
    n.wheres = st.wheres  # type: ignore[misc]
    n.where = st.where  # type: ignore[misc]
    n.executed_operations = st.executed_operations  # type: ignore[misc]
    n.changes_names = st.changes_names  # type: ignore[misc]
    out = Classification.__new__(Classification)
    out.sql = sql  # type: ignore[misc]
    out.statements = (n,)  # type: ignore[misc]
    out.error = c.error  # type: ignore[misc]
    out.shape = c.shape or c  # type: ignore[misc]
    out.kinds = c.kinds  # type: ignore[misc]
    out.tables_read = c.tables_read  # type: ignore[misc]
    out.tables_written = c.tables_written  # type: ignore[misc]
    out.functions = c.functions  # type: ignore[misc]
    out.dangerous_functions = c.dangerous_functions  # type: ignore[misc]
    out.flags = c.flags  # type: ignore[misc]
    out.wheres = c.wheres  # type: ignore[misc]
    out.where = c.where  # type: ignore[misc]
    out.opaque = c.opaque  # type: ignore[misc]
    return out
