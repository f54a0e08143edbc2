"""
Engines for the tests marked ``engines``: a real ``distributed.LocalCluster`` of 2 worker
processes and a local Ray of 2 CPUs, both started once per test module, and the 20,000-row
PostgreSQL table the engine tests read.

A test module gives its workers (and only them) environment variables by overriding
`engine_worker_env` — the secret a reference such as ``env:NAME`` resolves to on the
workers, while the test process never has it::

    @pytest.fixture(scope="module")
    def engine_worker_env() -> dict[str, str]:
        return {"HW_TEST_PW": SECRET}

An engine that cannot start skips the test locally and fails it when ``CI=true``
(`tests.fix_services.service_unavailable`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fix_services import service_unavailable

#: Rows of `pg_engine_table`.
PG_ENGINE_ROWS = 20_000


def no_part_writes_connector() -> Any:
    """A connector that writes, but not in parts (no `Capability.PART_WRITES`)."""
    from headwater.toolkit import Capability, Connector, ConnectorConfig

    class WholeWrites(Connector[ConnectorConfig]):
        id = "whole-writes"
        Config = ConnectorConfig
        capabilities = frozenset({Capability.CHECK, Capability.WRITE})

    return WholeWrites({})


def pg_config(pg_dsn: str, password: Any) -> dict[str, Any]:
    """A postgres connector config for the test server, with ``password`` as given."""
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(pg_dsn)
    config = {key: info[key] for key in ("host", "port", "dbname", "user") if key in info}
    return {**config, "password": password}


@pytest.fixture(scope="module")
def engine_worker_env() -> dict[str, str]:
    """Environment variables set in the engine's worker processes only (none by default)."""
    return {}


@pytest.fixture(scope="module")
def dask_client(engine_worker_env: dict[str, str]) -> Iterator[Any]:
    """A LocalCluster of 2 worker processes (1 thread each) with `engine_worker_env`."""
    try:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
            env=dict(engine_worker_env),
        )
    except Exception as exc:
        service_unavailable(f"cannot start a dask LocalCluster: {type(exc).__name__}: {exc}")
    with cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def ray_local(engine_worker_env: dict[str, str]) -> Iterator[Any]:
    """A local Ray of 2 CPUs whose workers' environment holds `engine_worker_env`."""
    try:
        import ray

        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=256 * 1024 * 1024,
            runtime_env={"env_vars": dict(engine_worker_env)},
        )
    except Exception as exc:
        service_unavailable(f"cannot start a local Ray: {type(exc).__name__}: {exc}")
    import headwater.ray  # noqa: F401 - the module under test, imported with ray there

    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture
def pg_engine_table(pg_admin: Any, pg_schema: str) -> str:
    """20,000 rows: bigint key, text with NULLs, numeric(12,2), timestamptz, jsonb."""
    table = f'"{pg_schema}".t'
    pg_admin.execute(
        f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text, amount numeric(12,2), "
        "at timestamptz, doc jsonb)"
    )
    pg_admin.execute(
        f"""INSERT INTO {table}
        SELECT i, CASE WHEN i % 7 = 0 THEN NULL ELSE 'name ' || i END, i * 1.25,
               timestamptz '2026-01-01 00:00+00' + i * interval '1 minute',
               jsonb_build_object('i', i, 'tags', jsonb_build_array('a', i % 3))
        FROM generate_series(1, {PG_ENGINE_ROWS}) i"""  # noqa: S608 - the test's own schema
    )
    return f"{pg_schema}.t"


def forwards_read_options(connector: Any) -> bool:
    """Whether ``connector.read_partition`` takes read options (``**options``)."""
    import inspect

    parameters = inspect.signature(connector.read_partition).parameters.values()
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def table_rows(pg_admin: Any, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table`` (the test's own), in ``id`` order."""
    return pg_admin.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()  # noqa: S608


def staged_parts(pg_admin: Any, schema: str) -> list[str]:
    """The part-write staging tables left in ``schema``."""
    rows = pg_admin.execute(
        "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND relname LIKE 'hw_part_%%'",
        (schema,),
    ).fetchall()
    return [row[0] for row in rows]
