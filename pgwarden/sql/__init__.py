"""SQL classification: the only part of pgwarden that imports pglast (PostgreSQL's parser).

``classify(sql)`` turns a query string into a ``Classification``: for each statement its kind,
every nested kind, tables read and written, functions called, whether each UPDATE/DELETE has a
real WHERE clause, and whether it runs code the gateway cannot see. See ``pgwarden.sql.model``
for the vocabulary. Pure: no I/O.
"""

from pgwarden.sql.classifier import (
    CACHE_MAX_ENTRIES,
    SqlSyntaxError,
    cache_clear,
    cache_info,
    classify,
    classify_cached,
    split_statements,
)
from pgwarden.sql.functions import DANGEROUS_FUNCTIONS, is_dangerous, normalize_function_name
from pgwarden.sql.model import (
    FLAGS,
    KINDS,
    OBJECT_TYPES,
    Classification,
    CopyOptions,
    KeyLookup,
    Operation,
    StatementInfo,
    Where,
)
from pgwarden.sql.prepared import PreparedRegistry

__all__ = [
    "CACHE_MAX_ENTRIES",
    "DANGEROUS_FUNCTIONS",
    "FLAGS",
    "KINDS",
    "OBJECT_TYPES",
    "Classification",
    "CopyOptions",
    "KeyLookup",
    "Operation",
    "PreparedRegistry",
    "SqlSyntaxError",
    "StatementInfo",
    "Where",
    "cache_clear",
    "cache_info",
    "classify",
    "classify_cached",
    "is_dangerous",
    "normalize_function_name",
    "split_statements",
]
