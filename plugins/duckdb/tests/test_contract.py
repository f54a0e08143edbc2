"""headwater's connector contract suite, run over the duckdb connector."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from headwater.testing import DEFAULT_HEAVY_MODULES, ConnectorContract
from headwater_duckdb import DuckDBConnector

from .duck_helpers import make_db

_names = itertools.count()


@pytest.fixture(scope="module")
def contract_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """
    A file with a small table and a 50k-row table, in schema ``contract`` of
    ``contract.db``: the database (named after the file) and the schema share a name, which
    makes ``contract.people`` ambiguous to DuckDB unless the connector qualifies it fully.
    """
    path = tmp_path_factory.mktemp("contract") / "contract.db"
    make_db(
        path,
        "CREATE SCHEMA contract.contract",
        "CREATE TABLE contract.contract.people (id INTEGER PRIMARY KEY, name VARCHAR)",
        "INSERT INTO contract.contract.people SELECT g, 'person ' || g FROM range(1, 10) t(g)",
        "CREATE TABLE contract.contract.big (id INTEGER PRIMARY KEY, pad VARCHAR)",
        "INSERT INTO contract.contract.big SELECT g, md5(g::VARCHAR) FROM range(1, 50001) t(g)",
    )
    return path


class TestDuckDBContract(ConnectorContract):
    """The shared invariants (ids, schema, check, resumption, twins, laziness)."""

    connector_id = "duckdb"
    stream = "contract.people"
    missing_stream = 'contract."no such table"'
    list_path = "contract"
    large_stream = "contract.big"
    large_min_records = 50_000
    url_example = "duckdb:///warehouse.db"
    # duckdb is heavy too (a ~70 MB native library): imported only when a connection is made.
    heavy_modules = (*DEFAULT_HEAVY_MODULES, "duckdb")

    @pytest.fixture
    def connector(self, contract_db):
        # read_write: the write checks write into the same file the reads use.
        return DuckDBConnector({"path": str(contract_db), "access": "read_write"})

    @pytest.fixture
    def large_stream_connector(self, contract_db):
        return DuckDBConnector({"path": str(contract_db), "access": "read_write"})

    def new_write_stream(self, connector):
        name = f"contract.written_{next(_names)}"
        connector.write(name, [], schema={"id": "BIGINT", "name": "VARCHAR"}, primary_key="id")
        return name
