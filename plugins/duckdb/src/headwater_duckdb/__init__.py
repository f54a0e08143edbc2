"""
headwater-duckdb: the DuckDB connector for headwater.

Exports the connector and its config. They are imported on first access (PEP 562), so
importing this package — as plugin discovery does when it loads ``headwater_duckdb.hooks``
— costs nothing: neither duckdb nor pyarrow is imported until a connector is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from headwater.toolkit import lazy_exports
from headwater_duckdb.__about__ import __version__ as __version__

if TYPE_CHECKING:
    from headwater_duckdb._connector import DuckDBConfig as DuckDBConfig
    from headwater_duckdb._connector import DuckDBConnector as DuckDBConnector

#: public name -> the module that defines it (imported on first access)
_HOMES = {
    "DuckDBConfig": "headwater_duckdb._connector",
    "DuckDBConnector": "headwater_duckdb._connector",
    "__version__": "headwater_duckdb.__about__",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
