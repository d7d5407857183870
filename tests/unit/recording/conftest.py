"""Fixtures for the recording tests: a signer, a memory storage, a session builder."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from recording_helpers import MakeSession, write_session

from pgwarden.recording.signing import RecordingSigner
from pgwarden.recording.storage.memory import MemoryStorage
from pgwarden.recording.writer import RecordingWriter


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests in a fresh event loop (no plugin needed)."""
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        names = pyfuncitem._fixtureinfo.argnames
        asyncio.run(pyfuncitem.obj(**{n: pyfuncitem.funcargs[n] for n in names}))
        return True
    return None


@pytest.fixture
def signer() -> RecordingSigner:
    return RecordingSigner.generate()


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage()


@pytest.fixture
def make_session(storage: MemoryStorage, signer: RecordingSigner) -> MakeSession:
    """``make_session(id, statements=3, end=True, **writer_kwargs)`` writes a session."""

    def make(
        session_id: str = "s1", *, statements: int = 3, end: bool = True, **kwargs: Any
    ) -> RecordingWriter:
        writer = RecordingWriter(session_id, storage, signer, **kwargs)
        return write_session(writer, statements=statements, end=end)

    return make
