"""pgwarden: identity-aware PostgreSQL gateway."""

__version__ = "0.1.0"
