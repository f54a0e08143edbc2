"""headwater's connector contract suite, run over the postgres connector."""

from __future__ import annotations

import itertools

import pytest

from headwater.testing import ConnectorContract
from headwater_postgres import PostgresConnector

_names = itertools.count()


@pytest.fixture(autouse=True, scope="module")
def _contract_schema(pg_dsn):
    """The contract schema: a small table, a 50k-row table, dropped afterwards."""
    import psycopg

    pg_admin = psycopg.connect(pg_dsn, autocommit=True)
    pg_admin.execute("DROP SCHEMA IF EXISTS contract CASCADE")
    pg_admin.execute("CREATE SCHEMA contract")
    pg_admin.execute("CREATE TABLE contract.people (id int PRIMARY KEY, name text)")
    pg_admin.execute(
        "INSERT INTO contract.people SELECT g, 'person ' || g FROM generate_series(1, 9) g"
    )
    pg_admin.execute("CREATE TABLE contract.big (id int PRIMARY KEY, pad text)")
    pg_admin.execute(
        "INSERT INTO contract.big SELECT g, md5(g::text) FROM generate_series(1, 50000) g"
    )
    yield
    pg_admin.execute("DROP SCHEMA IF EXISTS contract CASCADE")
    pg_admin.close()


class TestPostgresContract(ConnectorContract):
    """The shared invariants (ids, schema, check, secrets, resumption, twins, laziness)."""

    connector_id = "postgres"
    stream = "contract.people"
    missing_stream = 'contract."no such table"'
    list_path = "contract"
    large_stream = "contract.big"
    large_min_records = 50_000
    url_example = "postgresql://app@db.example:5432/sales"

    @pytest.fixture
    def connector(self, pg_dsn):
        return PostgresConnector({"url": pg_dsn})

    @pytest.fixture
    def large_stream_connector(self, pg_dsn):
        return PostgresConnector({"url": pg_dsn})

    @pytest.fixture
    def bad_credentials_connector(self, pg_tls_server):
        return PostgresConnector(
            {
                "host": pg_tls_server.host,
                "port": pg_tls_server.port,
                "dbname": "postgres",
                "user": pg_tls_server.password_user,
                "password": "hw-contract-wrong-password",
                "sslmode": "require",
            }
        )

    def new_write_stream(self, connector):
        # postgres writes into existing tables (or declared ones): declare it, empty.
        name = f"contract.written_{next(_names)}"
        connector.write(name, [], schema={"id": int, "name": str}, primary_key="id")
        return name

    def write_records(self):
        return [{"id": i, "name": f"record-{i}"} for i in range(5)]
