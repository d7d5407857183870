"""The approvals tests use the session's PostgreSQL cluster (tests.support.fixtures)."""
