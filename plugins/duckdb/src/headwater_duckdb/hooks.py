"""
Hooks of the ``duckdb`` connector.

Only hook implementations live here, and the connector is named by import path, so
listing plugins or connectors never imports duckdb or pyarrow.
"""

from __future__ import annotations

from collections.abc import Sequence

from headwater import ConnectorRef, hookimpl

#: The URL scheme this connector claims: ``duckdb:///path/to.db``, ``duckdb:///:memory:``.
SCHEME = "duckdb://"


@hookimpl
def register_connectors() -> Sequence[ConnectorRef]:
    """The ``duckdb`` connector (immutable id)."""
    return [
        ConnectorRef(
            "duckdb",
            "headwater_duckdb._connector:DuckDBConnector",
            summary="DuckDB files (embedded): Arrow reads resumable by key, Arrow writes",
        )
    ]


@hookimpl
def connector_for_url(url: str) -> str | None:
    """Claim ``duckdb://`` URLs."""
    return "duckdb" if url.lower().startswith(SCHEME) else None
