"""Helpers of the duckdb plugin's tests (not collected)."""

from __future__ import annotations

from pathlib import Path


def make_db(path: Path, *statements: str) -> None:
    """Run ``statements`` on the DuckDB file at ``path`` (created), then close it."""
    import duckdb

    con = duckdb.connect(str(path))
    try:
        for statement in statements:
            con.execute(statement).fetchall()
    finally:
        con.close()
