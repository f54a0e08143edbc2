"""Fixtures of the duckdb plugin's tests: DuckDB files in a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from headwater_duckdb import DuckDBConnector


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where this test's database file goes (not created)."""
    return tmp_path / "test.db"


@pytest.fixture
def duck(db_path: Path) -> Iterator[DuckDBConnector]:
    """A connector on a fresh file (created by its first write), closed afterwards."""
    connector = DuckDBConnector({"path": str(db_path)})
    try:
        yield connector
    finally:
        connector.close()
