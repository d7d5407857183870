"""Function names: normalization and the list of dangerous functions.

A function is *dangerous* when calling it reaches outside the rows a statement names: it reads
or writes server files, runs SQL text the gateway never sees, signals other sessions, changes
server state, or manipulates large objects (which live outside any table). The match is on the
last component of the name, case-insensitively, so ``pg_catalog.pg_read_file``,
``"pg_read_file"`` and ``PG_READ_FILE`` are all ``pg_read_file`` (a same-named function in
another schema is treated as dangerous too, erring on the safe side).
"""

from __future__ import annotations

from importlib.resources import files

__all__ = [
    "BUILTIN_FUNCTIONS",
    "DANGEROUS_FUNCTIONS",
    "DANGEROUS_PREFIXES",
    "is_dangerous",
    "may_be_users",
    "normalize_function_name",
]

#: Exact names (lowercase).
DANGEROUS_FUNCTIONS: frozenset[str] = frozenset(
    {
        # other sessions
        "pg_terminate_backend", "pg_cancel_backend", "pg_signal_backend",
        "pg_log_backend_memory_contexts",
        # server files (also matched by prefixes below)
        "pg_read_file", "pg_read_binary_file", "pg_stat_file", "pg_ls_dir", "pg_logdir_ls",
        "pg_file_write", "pg_file_rename", "pg_file_unlink", "pg_file_sync", "pg_file_read",
        # large objects: lo_import/lo_export read and write server files
        "lo_import", "lo_export", "lo_unlink", "lo_create", "lo_creat", "lo_open", "lo_put",
        "lo_get", "lo_from_bytea", "lo_truncate", "lo_truncate64", "loread", "lowrite",
        # functions that run SQL text
        "dblink", "dblink_exec", "query_to_xml", "query_to_xmlschema",
        "query_to_xml_and_xmlschema", "cursor_to_xml", "cursor_to_xmlschema", "table_to_xml",
        "table_to_xmlschema", "table_to_xml_and_xmlschema", "schema_to_xml",
        "schema_to_xmlschema", "schema_to_xml_and_xmlschema", "database_to_xml",
        "database_to_xmlschema", "database_to_xml_and_xmlschema", "ts_stat",
        # server state
        "pg_reload_conf", "pg_rotate_logfile", "pg_rotate_logfile_old", "pg_switch_wal",
        "pg_switch_xlog", "pg_promote", "pg_create_restore_point", "pg_start_backup",
        "pg_stop_backup", "pg_backup_start", "pg_backup_stop", "pg_wal_replay_pause",
        "pg_wal_replay_resume", "pg_xlog_replay_pause", "pg_xlog_replay_resume",
        "pg_create_physical_replication_slot", "pg_create_logical_replication_slot",
        "pg_drop_replication_slot", "pg_replication_slot_advance",
        "pg_copy_physical_replication_slot", "pg_copy_logical_replication_slot",
        "pg_import_system_collations", "pg_truncate_visibility_map",
        "pg_stat_reset", "pg_stat_reset_shared", "pg_stat_reset_single_table_counters",
        "pg_stat_reset_single_function_counters", "pg_stat_reset_slru",
        "pg_stat_reset_replication_slot", "pg_stat_reset_subscription_stats",
        "pg_stat_statements_reset",
    }
)  # fmt: skip

#: Name prefixes (lowercase): whole families of dangerous functions.
DANGEROUS_PREFIXES: tuple[str, ...] = (
    "pg_ls_",  # pg_ls_dir, pg_ls_logdir, pg_ls_waldir, pg_ls_tmpdir, ...
    "pg_read_",  # pg_read_file, pg_read_binary_file
    "pg_file_",  # adminpack
    "lo_",  # large objects
    "dblink",  # dblink, dblink_exec, dblink_connect, dblink_send_query, ...
    "query_to_xml",
    "cursor_to_xml",
    "table_to_xml",
    "schema_to_xml",
    "database_to_xml",
    "pg_logical_slot_",  # reads every change in the database
    "pg_replication_origin_",
    "pg_create_",  # restore points, replication slots
    "pg_stat_reset",
    "binary_upgrade_",
)


def normalize_function_name(parts: tuple[str, ...] | list[str]) -> str:
    """``('pg_catalog', 'pg_read_file')`` -> ``'pg_read_file'``; other schemas are kept."""
    names = list(parts)
    if len(names) > 1 and names[0].lower() == "pg_catalog":
        names = names[1:]
    return ".".join(names)


def is_dangerous(name: str) -> bool:
    """True if the (normalized, possibly schema-qualified) function name is dangerous."""
    base = name.rsplit(".", 1)[-1].lower()
    return base in DANGEROUS_FUNCTIONS or base.startswith(DANGEROUS_PREFIXES)


#: PostgreSQL's own function names (pg_catalog and information_schema, PostgreSQL 15).
BUILTIN_FUNCTIONS: frozenset[str] = frozenset(
    line
    for line in files("pgwarden.sql").joinpath("builtin_functions.txt").read_text().splitlines()
    if line and not line.startswith("#")
)
_SYSTEM_SCHEMAS = frozenset({"pg_catalog", "information_schema"})


def may_be_users(name: str) -> bool:
    """Could a call of this (normalized) name run a function a user defined, as far as the
    name tells? Not for PostgreSQL's own names called unqualified or in its schemas:
    pg_catalog comes first in every search_path, so the built-in is the one called, unless a
    user's overload matches the arguments better. The guard asks the target's catalog about
    unqualified built-in names for that (``GuardHooks.judge``); a count of the rows a write
    would touch runs only in a read-only transaction, so a user's overload that slips into
    one cannot write."""
    schema, _, base = name.rpartition(".")
    if schema:
        return schema.lower() not in _SYSTEM_SCHEMAS
    return base not in BUILTIN_FUNCTIONS
