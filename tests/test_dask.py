"""
headwater on Dask, what only Dask has, on a real distributed.LocalCluster: an upsert of keys
repeated across a frame's partitions. The scenarios both engines run are in
`tests/test_engines.py`.
"""

from __future__ import annotations

from typing import Any

import pytest

import headwater
import headwater.dask
from tests.fix_engines import pg_config, staged_parts, table_rows

pytestmark = pytest.mark.engines

#: Set in the workers' environment only: the client never has it.
WORKER_ENV = "HW_DASK_WORKER_PW"
SECRET = "dask-pw-31f0c2-workers-only"


@pytest.fixture(scope="module")
def engine_worker_env() -> dict[str, str]:
    return {WORKER_ENV: SECRET}


def test_a_missing_table_is_created_and_upserted_with_the_last_record_of_a_key(
    dask_client: Any, pg_dsn: str, pg_admin: Any, pg_schema: str
) -> None:
    """Keys repeated across partitions with upsert_on: one row each, the later partition's."""
    import pandas as pd
    from dask import dataframe as dd

    ids = [*range(100), *range(50, 150)]
    data = pd.DataFrame({"id": ids, "v": [f"v{n}" for n in range(len(ids))]})
    frame = dd.from_pandas(data, npartitions=4, sort=False)
    assert 4 == frame.npartitions
    table = f"{pg_schema}.made"
    config = pg_config(pg_dsn, f"env:{WORKER_ENV}")
    with headwater.connect("postgres", config) as dest:
        result = headwater.dask.to_source(frame, dest, table, primary_key="id", upsert_on="id")
    assert 150 == result.records
    last = {key: f"v{n}" for n, key in enumerate(ids)}
    assert sorted(last.items()) == table_rows(pg_admin, table)
    assert [] == staged_parts(pg_admin, pg_schema)
