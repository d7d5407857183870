"""Named prepared statements: judge ``EXECUTE p`` (and protocol Bind/Execute) by what was prepared.

One registry per session. The caller records what is prepared and what is deallocated:

- SQL ``PREPARE p AS ...``: call ``observe(classification)`` once it ran (or before, if the
  caller prefers to track optimistically); ``DEALLOCATE`` and ``DISCARD ALL`` are applied the
  same way.
- extended protocol ``Parse`` of a named (or the unnamed, ``""``) statement:
  ``remember(name, classify(sql))``; ``Close`` of a statement: ``forget(name)``.

``resolve(classification)`` folds the prepared bodies into every statement that runs a
prepared statement (``EXECUTE p``, ``EXPLAIN ANALYZE EXECUTE p``, ``CREATE TABLE t AS EXECUTE
p``): their operations are appended with ``via="execute"`` and their tables, functions, flags
and opacity are merged, so the policy judges the statement by what it really runs. A name the
registry does not know gives a classification with ``error`` set: fail closed (PostgreSQL
would refuse it anyway, since every PREPARE passes through the gateway).
"""

from __future__ import annotations

from dataclasses import replace

from pgwarden.sql.model import Classification, StatementInfo

__all__ = ["PreparedRegistry"]


class PreparedRegistry:
    """What each named prepared statement of one session was classified as."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._statements: dict[str, Classification] = {}
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._statements)

    def __contains__(self, name: object) -> bool:
        return name in self._statements

    def get(self, name: str) -> Classification | None:
        return self._statements.get(name)

    def remember(self, name: str, classification: Classification) -> None:
        """Record the classification of the statement prepared under ``name``."""
        if name not in self._statements and len(self._statements) >= self._max_entries:
            # Bounded memory; a forgotten name fails closed in resolve().
            self._statements.pop(next(iter(self._statements)))
        self._statements[name] = classification

    def forget(self, name: str) -> None:
        self._statements.pop(name, None)

    def clear(self) -> None:
        self._statements.clear()

    def observe(self, classification: Classification) -> None:
        """Apply the PREPARE / DEALLOCATE / DISCARD ALL statements of a query that ran."""
        for st in classification.statements:
            _apply(self._statements, st)
        while len(self._statements) > self._max_entries:
            # Bounded memory; a forgotten name fails closed in resolve().
            self._statements.pop(next(iter(self._statements)))

    def resolve(self, classification: Classification) -> Classification:
        """The classification with prepared bodies folded into the statements that run them.

        Statements are taken in order, so ``PREPARE p AS ...; EXECUTE p`` in one query string
        resolves ``p`` to the PREPARE before it. The registry itself is not changed (call
        ``observe`` once the query ran).
        """
        if classification.error is not None:
            return classification
        if not any(st.executes_prepared for st in classification.statements):
            return classification
        known = dict(self._statements)
        resolved: list[StatementInfo] = []
        for st in classification.statements:
            merged = st
            for name in st.executes_prepared:
                body = known.get(name)
                if body is None:
                    return Classification.failed(
                        classification.sql,
                        f'prepared statement "{name}" is not known to the gateway',
                    )
                if body.error is not None:
                    return Classification.failed(
                        classification.sql,
                        f'prepared statement "{name}" could not be classified: {body.error}',
                    )
                merged = _merge(merged, body)
            resolved.append(merged)
            _apply(known, st)
        return Classification(sql=classification.sql, statements=tuple(resolved))


def _apply(known: dict[str, Classification], st: StatementInfo) -> None:
    # PREPARE of a name already in use fails on the server: the old statement stays.
    if st.kind == "prepare" and st.prepared_name is not None and st.body is not None:
        known.setdefault(st.prepared_name, st.body)
    elif st.kind == "deallocate":
        if st.prepared_name is None:
            known.clear()
        else:
            known.pop(st.prepared_name, None)
    elif st.kind == "discard" and st.setting == "all":
        known.clear()


def _merge(st: StatementInfo, body: Classification) -> StatementInfo:
    ops = list(st.operations)
    for b in body.statements:
        ops.extend(replace(op, via=op.via or "execute") for op in b.operations)
    return replace(
        st,
        operations=tuple(ops),
        tables_read=st.tables_read | body.tables_read,
        tables_written=st.tables_written | body.tables_written,
        functions=st.functions | body.functions,
        dangerous_functions=st.dangerous_functions | body.dangerous_functions,
        opaque=st.opaque or body.opaque,
        flags=st.flags | body.flags,
    )
