"""
headwater-postgres: the PostgreSQL connector for headwater.

Exports the connector and its config. They are imported on first access (PEP 562), so
importing this package — as plugin discovery does when it loads ``headwater_postgres.hooks``
— costs nothing: neither pydantic nor psycopg is imported until a connector is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from headwater.toolkit import lazy_exports
from headwater_postgres.__about__ import __version__ as __version__

if TYPE_CHECKING:
    from headwater_postgres._connector import PostgresConfig as PostgresConfig
    from headwater_postgres._connector import PostgresConnector as PostgresConnector
    from headwater_postgres._service import ExecuteResult as ExecuteResult

#: public name -> the module that defines it (imported on first access)
_HOMES = {
    "ExecuteResult": "headwater_postgres._service",
    "PostgresConfig": "headwater_postgres._connector",
    "PostgresConnector": "headwater_postgres._connector",
    "__version__": "headwater_postgres.__about__",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
