"""Session recording: replayable, tamper-evident evidence of every session.

Pure parts (no I/O):
  ``events``     the versioned event model (``FORMAT_VERSION``), payload dataclasses,
                 value/parameter encoding, ``ResultBuilder``, ``statement_hash``
  ``canonical``  canonical JSON and the exact stored-line / hash-chain construction
  ``codec``      stored lines <-> ``Event`` (encryption, migrations via ``compat``)
  ``signing``    Ed25519 checkpoint signatures, key files
  ``crypto``     optional AES-256-GCM encryption at rest
  ``verify``     ``verify_recording`` / ``verify_session`` -> ``VerifyResult``
  ``context``    ``parse_sqlcommenter`` and ``ContextState``
  ``export``     ``export_jsonl``, ``export_ocsf``
I/O parts:
  ``storage``    ``RecordingStorage`` Protocol; ``LocalFileStorage``, ``S3Storage``,
                 ``MemoryStorage``; ``open_storage``
  ``writer``     ``RecordingWriter`` (per session), ``GroupCommitter`` (shared),
                 ``recover_session``
  ``retention``  ``prune``
  ``recovery``   ``recover_crashed`` (run at start-up: ends sessions cut by a crash)

Failing closed: any recording failure surfaces as ``RecordingError`` from the writer.
"""

from __future__ import annotations

from pgwarden.recording.codec import read_events
from pgwarden.recording.context import ContextState, StatementContext, parse_sqlcommenter
from pgwarden.recording.crypto import RecordingCipher
from pgwarden.recording.errors import DecryptionError, FormatError, RecordingError
from pgwarden.recording.events import (
    DEFAULT_RESULT_ROW_CAP,
    FORMAT_VERSION,
    ApprovalEvent,
    Column,
    ContextEvent,
    Decision,
    ErrorEvent,
    Event,
    NoticeEvent,
    ResultBuilder,
    ResultEvent,
    SessionEnd,
    SessionStart,
    StatementEvent,
    encode_params,
    encode_value,
    statement_hash,
)
from pgwarden.recording.export import export_jsonl, export_ocsf
from pgwarden.recording.recovery import RecoveryReport, recover_crashed
from pgwarden.recording.retention import PruneResult, prune
from pgwarden.recording.signing import RecordingSigner, load_trusted_keys
from pgwarden.recording.storage import (
    LocalFileStorage,
    MemoryStorage,
    RecordingNotFound,
    RecordingStorage,
    S3Storage,
    StorageError,
    open_storage,
)
from pgwarden.recording.verify import IndexInfo, VerifyResult, verify_recording, verify_session
from pgwarden.recording.writer import GroupCommitter, RecordingWriter, Written, recover_session

__all__ = [
    "DEFAULT_RESULT_ROW_CAP",
    "FORMAT_VERSION",
    "ApprovalEvent",
    "Column",
    "ContextEvent",
    "ContextState",
    "Decision",
    "DecryptionError",
    "ErrorEvent",
    "Event",
    "FormatError",
    "GroupCommitter",
    "IndexInfo",
    "LocalFileStorage",
    "MemoryStorage",
    "NoticeEvent",
    "PruneResult",
    "RecordingCipher",
    "RecordingError",
    "RecordingNotFound",
    "RecordingSigner",
    "RecordingStorage",
    "RecordingWriter",
    "RecoveryReport",
    "ResultBuilder",
    "ResultEvent",
    "S3Storage",
    "SessionEnd",
    "SessionStart",
    "StatementContext",
    "StatementEvent",
    "StorageError",
    "VerifyResult",
    "Written",
    "encode_params",
    "encode_value",
    "export_jsonl",
    "export_ocsf",
    "load_trusted_keys",
    "open_storage",
    "parse_sqlcommenter",
    "prune",
    "read_events",
    "recover_crashed",
    "recover_session",
    "statement_hash",
    "verify_recording",
    "verify_session",
]
