"""
headwater-postgres: the PostgreSQL connector for headwater.

Exports the connector and its config. They are imported on first access (PEP 562), so
importing this package — as plugin discovery does when it loads ``headwater_postgres.hooks``
— costs nothing: neither pydantic nor psycopg is imported until a connector is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from headwater_postgres.__about__ import __version__

if TYPE_CHECKING:
    from headwater_postgres._connector import PostgresConfig as PostgresConfig
    from headwater_postgres._connector import PostgresConnector as PostgresConnector
    from headwater_postgres._service import ExecuteResult as ExecuteResult

__all__ = ["ExecuteResult", "PostgresConfig", "PostgresConnector", "__version__"]


_HOMES = {
    "PostgresConfig": "headwater_postgres._connector",
    "PostgresConnector": "headwater_postgres._connector",
    "ExecuteResult": "headwater_postgres._service",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
        # Tracebacks and reprs name the public package, not the private module.
        value.__module__ = __name__
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
