"""
Hooks of the ``postgres`` connector.

Only hook implementations live here, and the connector is named by import path, so
listing plugins or connectors never imports psycopg.
"""

from __future__ import annotations

from collections.abc import Sequence

from headwater import ConnectorRef, hookimpl

#: URL schemes this connector claims (libpq accepts both).
SCHEMES = ("postgresql://", "postgres://")


@hookimpl
def register_connectors() -> Sequence[ConnectorRef]:
    """The ``postgres`` connector (immutable id)."""
    return [
        ConnectorRef(
            "postgres",
            "headwater_postgres._connector:PostgresConnector",
            summary="PostgreSQL tables and queries: resumable reads, COPY writes, Arrow",
        )
    ]


@hookimpl
def connector_for_url(url: str) -> str | None:
    """Claim ``postgresql://`` and ``postgres://`` URLs."""
    return "postgres" if url.lower().startswith(SCHEMES) else None
