"""Fixtures of the postgres plugin's tests (the server itself comes from tests/fix_postgres.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from headwater_postgres import PostgresConnector


@pytest.fixture
def app_name() -> str:
    """A unique application_name, to find this test's connections in pg_stat_activity."""
    return f"hw-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def pg(pg_dsn: str, app_name: str) -> Iterator[PostgresConnector]:
    """A connector on the test server (closed afterwards)."""
    connector = PostgresConnector({"url": pg_dsn, "application_name": app_name})
    try:
        yield connector
    finally:
        connector.close()


@pytest.fixture
async def apg(pg_dsn: str, app_name: str) -> AsyncIterator[PostgresConnector]:
    """A connector used from async code (closed with aclose on the test's loop)."""
    connector = PostgresConnector({"url": pg_dsn, "application_name": app_name})
    try:
        yield connector
    finally:
        await connector.aclose()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The type matrix's counts per path (exact / error / changed), when it ran."""
    import sys

    module = sys.modules.get(f"{__package__}.test_type_matrix")
    summary = getattr(module, "summary_lines", None)
    lines = summary() if summary is not None else []
    if lines:
        terminalreporter.section("type matrix")
        for line in lines:
            terminalreporter.write_line(line)
