"""Start-up recovery after a gateway crash.

``recover_crashed(store, storage, signer)`` is meant to run once when the gateway starts,
before it accepts connections:

1. a backend with a ``recover()`` method (``S3Storage``) publishes what its spool holds;
2. the sessions the index still calls ``active`` (of this gateway instance, if given; pass
   ``None`` when one gateway owns the data_dir) are marked ``crashed``;
3. each of their recordings is verified and, being unterminated, continued with a
   ``session_end`` (``reason``) and a final signed checkpoint (``recover_session``); the index
   gets that checkpoint's seq/hash. A recording that is tampered or missing is left alone and
   reported.

Afterwards ``verify`` calls those sessions intact (and their index state says ``crashed``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from pgwarden.recording.crypto import RecordingCipher
from pgwarden.recording.errors import RecordingError
from pgwarden.recording.signing import RecordingSigner
from pgwarden.recording.storage.base import RecordingStorage
from pgwarden.recording.writer import recover_session
from pgwarden.store.base import Store

__all__ = ["CRASH_REASON", "RecoveryReport", "recover_crashed"]

log = logging.getLogger(__name__)

CRASH_REASON = "gateway restarted: the session was cut off by a crash"


@dataclass(slots=True)
class RecoveryReport:
    recovered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # session -> why


def recover_crashed(
    store: Store,
    storage: RecordingStorage,
    signer: RecordingSigner,
    *,
    gateway_instance: str | None = None,
    cipher: RecordingCipher | None = None,
    reason: str = CRASH_REASON,
    now: float | None = None,
) -> RecoveryReport:
    report = RecoveryReport()
    publish = getattr(storage, "recover", None)
    if callable(publish):
        try:
            publish()
        except Exception as exc:
            log.warning("cannot publish spooled recordings: %s", exc)
    ids = store.mark_active_crashed(
        ended_at=time.time() if now is None else now,
        reason=reason,
        gateway_instance=gateway_instance,
    )
    for session_id in ids:
        try:
            final = recover_session(session_id, storage, signer, reason=reason, cipher=cipher)
        except (RecordingError, OSError, ValueError) as exc:
            log.warning("session %s: recording not recovered: %s", session_id, exc)
            report.failed[session_id] = str(exc)
            continue
        store.record_progress(session_id, final.seq, final.hash)
        report.recovered.append(session_id)
    return report
