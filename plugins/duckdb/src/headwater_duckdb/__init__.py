"""
headwater-duckdb: the DuckDB connector for headwater.

Exports the connector and its config. They are imported on first access (PEP 562), so
importing this package — as plugin discovery does when it loads ``headwater_duckdb.hooks``
— costs nothing: neither duckdb nor pyarrow is imported until a connector is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from headwater_duckdb.__about__ import __version__

if TYPE_CHECKING:
    from headwater_duckdb._connector import DuckDBConfig as DuckDBConfig
    from headwater_duckdb._connector import DuckDBConnector as DuckDBConnector

__all__ = ["DuckDBConfig", "DuckDBConnector", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("DuckDBConfig", "DuckDBConnector"):
        value = getattr(importlib.import_module("headwater_duckdb._connector"), name)
        # Tracebacks and reprs name the public package, not the private module.
        value.__module__ = __name__
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
