"""headwater on Dask: reads and exactly-once writes on a real distributed.LocalCluster."""

from __future__ import annotations

import json
import os
import signal
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import headwater
import headwater.dask
from tests.fix_engines import (
    PG_ENGINE_ROWS,
    forwards_read_options,
    no_part_writes_connector,
    pg_config,
    staged_parts,
    table_rows,
)

pytestmark = pytest.mark.engines

#: Set in the workers' environment only: the client never has it.
WORKER_ENV = "HW_DASK_WORKER_PW"
SECRET = "dask-pw-31f0c2-workers-only"


@pytest.fixture(scope="module")
def engine_worker_env() -> dict[str, str]:
    return {WORKER_ENV: SECRET}


def test_postgres_on_dask_equals_to_pandas(
    dask_client: Any, pg_dsn: str, pg_engine_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """4 partitions on 2 workers, the password resolved there from env:, equal to_pandas."""
    import pandas as pd

    assert WORKER_ENV not in os.environ
    assert [True, True] == list(dask_client.run(lambda: WORKER_ENV in os.environ).values())
    with headwater.connect("postgres", pg_config(pg_dsn, f"env:{WORKER_ENV}")) as source:
        frame = headwater.dask.read(source, pg_engine_table, npartitions=4)
        assert 4 == frame.npartitions
        got = frame.compute().sort_values("id").reset_index(drop=True)

    monkeypatch.setenv("HW_DASK_CLIENT_PW", "any")  # trust auth: any password connects
    with headwater.connect("postgres", pg_config(pg_dsn, "env:HW_DASK_CLIENT_PW")) as local:
        expected = (
            headwater.to_pandas(local, pg_engine_table).sort_values("id").reset_index(drop=True)
        )
    assert 20000 == len(got)
    pd.testing.assert_frame_equal(expected, got, check_dtype=False)
    if not forwards_read_options(source):
        pytest.xfail(
            "headwater-postgres's read_partition does not pass read options (format='arrow') "
            "on to read yet: its partitions come as dicts, numeric as text"
        )
    pd.testing.assert_frame_equal(expected, got)


def test_files_jsonl_on_dask_equals_to_pandas(dask_client: Any, tmp_path: Path) -> None:
    """A JSON Lines file split into byte ranges on the workers equals to_pandas of the file."""
    import pandas as pd

    with (tmp_path / "events.jsonl").open("w") as out:
        for i in range(6000):
            name = None if i % 5 == 0 else f"event {i}"
            out.write(json.dumps({"id": i, "name": name, "v": i / 4, "doc": {"k": i % 9}}) + "\n")
    url = tmp_path.as_uri()
    frame = headwater.dask.read(url, "events.jsonl", npartitions=3)
    assert 3 == frame.npartitions
    got = frame.compute().sort_values("id").reset_index(drop=True)
    expected = headwater.to_pandas(url, "events.jsonl")
    pd.testing.assert_frame_equal(expected, got)


def test_a_reference_the_workers_cannot_resolve_fails_naming_it(
    dask_client: Any, pg_dsn: str, pg_engine_table: str
) -> None:
    """env:NAME set nowhere: the workers raise headwater's CredentialError naming the reference."""

    with (
        headwater.connect("postgres", pg_config(pg_dsn, "env:HW_DASK_NOWHERE")) as source,
        pytest.raises(headwater.CredentialError) as caught,
    ):
        headwater.dask.read(source, pg_engine_table, npartitions=2).compute()
    assert "env:HW_DASK_NOWHERE" in caught.value.message
    assert "password" == caught.value.field
    # Raised by headwater before the driver ran: no frame of psycopg, nothing chained from it.
    frames = [frame.filename for frame in traceback.extract_tb(caught.value.__traceback__)]
    assert [] == [name for name in frames if f"{os.sep}psycopg" in name]
    assert caught.value.__cause__ is None


# --- writes: exactly once, also when a worker dies ----------------------------------------


def _kill_once(marker: str) -> bool:
    """True once across the cluster (the first to create ``marker``): this process then dies."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _install_read_killer(marker: str, index: int) -> None:
    """On a worker: partition ``index``'s read kills this worker after its first batch, once."""
    import headwater._shipping as shipping

    original = shipping.read_partition

    def read_partition(partition: Any, **options: Any) -> Iterator[Any]:
        for number, batch in enumerate(original(partition, **options)):
            if number == 1 and partition.index == index and _kill_once(marker):
                _die()
            yield batch

    shipping.read_partition = read_partition  # type: ignore[assignment]


def _install_write_killer(marker: str, index: int, when: str) -> None:
    """On a worker: part ``index``'s write kills this worker mid-COPY or once staged, once."""
    import headwater._shipping as shipping

    original = shipping.write_part

    def write_part(write: Any, part: int, batches: Any) -> int:
        if part != index:
            return original(write, part, batches)
        if when == "mid_copy":

            def dying() -> Iterator[Any]:
                for number, batch in enumerate(batches):
                    if number == 2 and _kill_once(marker):
                        _die()
                    yield batch

            return original(write, part, dying())
        records = original(write, part, batches)
        if _kill_once(marker):
            _die()  # staged and committed, never reported: the retry must replace it
        return records

    shipping.write_part = write_part  # type: ignore[assignment]


def test_postgres_write_on_dask_reads_back_equal(
    dask_client: Any, pg_dsn: str, pg_admin: Any, pg_schema: str, pg_engine_table: str
) -> None:
    """Read on the workers, written back by 4 write tasks: the copy equals the table."""
    config = pg_config(pg_dsn, f"env:{WORKER_ENV}")
    copy = f"{pg_schema}.copy"
    pg_admin.execute(f"CREATE TABLE {copy} (LIKE {pg_engine_table})")
    with headwater.connect("postgres", config) as source:
        frame = headwater.dask.read(source, pg_engine_table, npartitions=4)
        result = headwater.dask.to_source(frame, source, copy, batch_size=1000)
    assert (copy, PG_ENGINE_ROWS) == (result.stream, result.records)
    assert table_rows(pg_admin, pg_engine_table) == table_rows(pg_admin, copy)
    assert [] == staged_parts(pg_admin, pg_schema)


@pytest.mark.parametrize("when", ["mid_copy", "after_stage"])
def test_a_write_task_retried_after_its_worker_died_writes_once(
    dask_client: Any,
    pg_dsn: str,
    pg_admin: Any,
    pg_schema: str,
    pg_engine_table: str,
    tmp_path: Path,
    when: str,
) -> None:
    """The worker writing part 2 is killed (mid-COPY, or once staged): Dask retries, no duplicates."""
    config = pg_config(pg_dsn, f"env:{WORKER_ENV}")
    copy = f"{pg_schema}.copy"
    pg_admin.execute(f"CREATE TABLE {copy} (LIKE {pg_engine_table})")  # no key: duplicates fit
    marker = str(tmp_path / "killed")
    dask_client.wait_for_workers(2, timeout=60)  # one killed by an earlier test restarts
    dask_client.run(_install_write_killer, marker, 2, when)
    with headwater.connect("postgres", config) as source:
        frame = headwater.dask.read(source, pg_engine_table, npartitions=4)
        result = headwater.dask.to_source(frame, source, copy, batch_size=1000)
    assert os.path.exists(marker), "no worker was killed"
    assert PG_ENGINE_ROWS == result.records
    assert table_rows(pg_admin, pg_engine_table) == table_rows(pg_admin, copy)
    assert [] == staged_parts(pg_admin, pg_schema)


def test_a_worker_killed_mid_read_is_retried_and_the_read_is_exact(
    dask_client: Any, pg_dsn: str, pg_engine_table: str, tmp_path: Path
) -> None:
    """The worker reading partition 2 dies after its first batch: Dask reads it again, exactly."""
    config = pg_config(pg_dsn, f"env:{WORKER_ENV}")
    marker = str(tmp_path / "killed")
    with headwater.connect("postgres", config) as source:
        frame = headwater.dask.read(source, pg_engine_table, npartitions=4, batch_size=500)
    dask_client.wait_for_workers(2, timeout=60)  # one killed by an earlier test restarts
    dask_client.run(_install_read_killer, marker, 2)
    ids = frame["id"].compute().tolist()
    assert os.path.exists(marker), "no worker was killed"
    assert list(range(1, PG_ENGINE_ROWS + 1)) == sorted(ids)


def test_serialized_write_tasks_hold_the_reference_not_the_secret(
    dask_client: Any,
    pg_dsn: str,
    pg_admin: Any,
    pg_schema: str,
    pg_engine_table: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The write's task graph, as Dask pickles it, holds env:NAME and never the password."""
    import cloudpickle

    monkeypatch.setenv(WORKER_ENV, SECRET)  # resolved here too (trust auth: any password)
    config = pg_config(pg_dsn, f"env:{WORKER_ENV}")
    copy = f"{pg_schema}.copy"
    pg_admin.execute(f"CREATE TABLE {copy} (LIKE {pg_engine_table})")
    compute = headwater.dask._compute_parts
    graphs: list[bytes] = []

    def capturing(client: Any, tasks: list[Any]) -> Any:
        graphs.extend(cloudpickle.dumps(dict(task.__dask_graph__())) for task in tasks)
        return compute(client, tasks)

    monkeypatch.setattr(headwater.dask, "_compute_parts", capturing)
    with headwater.connect("postgres", config) as source:
        assert source.check().ok  # the secret is resolved in this process
        frame = headwater.dask.read(source, pg_engine_table, npartitions=3)
        result = headwater.dask.to_source(frame, source, copy)
    assert PG_ENGINE_ROWS == result.records
    assert 3 == len(graphs)
    assert [] == [graph for graph in graphs if SECRET.encode() in graph]
    assert all(f"env:{WORKER_ENV}".encode() in graph for graph in graphs)
    assert SECRET not in caplog.text


def test_a_destination_without_part_writes_is_refused_naming_it(dask_client: Any) -> None:
    """A connector that cannot write in parts: NotSupported naming it and the capability."""
    import pandas as pd
    from dask import dataframe as dd

    frame = dd.from_pandas(pd.DataFrame({"id": [1, 2, 3]}), npartitions=2)
    with pytest.raises(headwater.NotSupported) as caught:
        headwater.dask.to_source(frame, no_part_writes_connector(), "out")
    assert "'whole-writes'" in caught.value.message
    assert "part_writes" in caught.value.message
    assert "headwater connectors" in (caught.value.hint or "")


def test_files_write_on_dask_reads_back_equal(dask_client: Any, tmp_path: Path) -> None:
    """A JSON Lines file read in 3 byte ranges, written as 3 parts: the copy reads back equal."""
    import pandas as pd

    with (tmp_path / "events.jsonl").open("w") as out:
        for i in range(3000):
            out.write(json.dumps({"id": i, "name": None if i % 5 == 0 else f"e{i}"}) + "\n")
    url = tmp_path.as_uri()
    frame = headwater.dask.read(url, "events.jsonl", npartitions=3)
    result = headwater.dask.to_source(frame, url, "out/copy.jsonl")
    assert 3000 == result.records
    expected = headwater.to_pandas(url, "events.jsonl")
    got = headwater.to_pandas(url, "out/copy.jsonl").sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(expected, got)
    assert ["copy.jsonl"] == [p.name for p in (tmp_path / "out").iterdir()]


def test_a_failed_write_leaves_no_staged_part_and_no_row(
    dask_client: Any, pg_dsn: str, pg_admin: Any, pg_schema: str, pg_engine_table: str
) -> None:
    """A column the table lacks fails the write tasks: the error names it, nothing stays."""
    config = pg_config(pg_dsn, f"env:{WORKER_ENV}")
    copy = f"{pg_schema}.copy"
    pg_admin.execute(f"CREATE TABLE {copy} (id bigint, name text)")
    with headwater.connect("postgres", config) as source:
        frame = headwater.dask.read(source, pg_engine_table, npartitions=3)
        with pytest.raises(headwater.HeadwaterError) as caught:
            headwater.dask.to_source(frame, source, copy)
    assert "amount" in str(caught.value)
    assert [] == table_rows(pg_admin, copy)
    assert [] == staged_parts(pg_admin, pg_schema)


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


def test_a_write_whose_reference_the_workers_cannot_resolve_fails_naming_it(
    dask_client: Any, pg_dsn: str, pg_schema: str
) -> None:
    """env:NAME set nowhere: the write tasks raise headwater's CredentialError naming it."""
    import pandas as pd
    from dask import dataframe as dd

    frame = dd.from_pandas(pd.DataFrame({"id": range(10)}), npartitions=2)
    with (
        headwater.connect("postgres", pg_config(pg_dsn, "env:HW_DASK_NOWHERE")) as dest,
        pytest.raises(headwater.CredentialError) as caught,
    ):
        headwater.dask.to_source(frame, dest, f"{pg_schema}.never")
    assert "env:HW_DASK_NOWHERE" in caught.value.message
    assert "password" == caught.value.field
