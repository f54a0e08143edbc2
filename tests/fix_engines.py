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

A scenario both engines run is written once against `engine`, a module-scoped fixture
parametrized over the two (`DaskEngine`, `RayEngine`): each adapter reads into its
engine, writes, kills a worker in a read or a write, marks the tasks that run, records
the writes handed to the engine, and gives the serialized form of a write. Its tests run
on Dask first, then on Ray, one engine up at a time.

An engine that cannot start skips the test locally and fails it when ``CI=true``
(`tests.fix_services.service_unavailable`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
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


def assert_refuses_to_ship(pg_dsn: str, password: Any, ship: Callable[[Any], Any]) -> None:
    """
    ``ship(source)`` (an engine's read, `headwater.toolkit.partitions`) of a postgres source
    whose ``password`` is a literal or a callable raises headwater's ConfigError naming the
    field and the ways out (a reference, a saved source), never the secret itself.
    """
    import headwater

    secret = password() if callable(password) else password
    with (
        headwater.connect("postgres", pg_config(pg_dsn, password)) as source,
        pytest.raises(headwater.ConfigError) as caught,
    ):
        ship(source)
    error = caught.value
    assert "password" == error.field
    assert "cannot be shipped" in error.message
    assert "env:NAME" in (error.hint or "")
    assert "saved source" in (error.hint or "")
    assert secret not in f"{error!s} {error!r} {error.hint}"


@pytest.fixture(scope="module")
def engine_worker_env() -> dict[str, str]:
    """Environment variables set in the engine's worker processes only (none by default)."""
    return {}


@contextlib.contextmanager
def _dask_cluster(env: dict[str, str]) -> Iterator[Any]:
    """A LocalCluster of 2 worker processes (1 thread each) with ``env``, and its client."""
    try:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
            env=dict(env),
        )
    except Exception as exc:
        service_unavailable(f"cannot start a dask LocalCluster: {type(exc).__name__}: {exc}")
    with cluster, Client(cluster) as client:
        yield client


@contextlib.contextmanager
def _ray_local(env: dict[str, str]) -> Iterator[Any]:
    """A local Ray of 2 CPUs whose workers' environment holds ``env``: the ``ray`` module."""
    try:
        import ray

        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=256 * 1024 * 1024,
            runtime_env={"env_vars": dict(env)},
        )
    except Exception as exc:
        service_unavailable(f"cannot start a local Ray: {type(exc).__name__}: {exc}")
    import headwater.ray  # noqa: F401 - the module under test, imported with ray there

    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def dask_client(engine_worker_env: dict[str, str]) -> Iterator[Any]:
    """A LocalCluster of 2 worker processes (1 thread each) with `engine_worker_env`."""
    with _dask_cluster(engine_worker_env) as client:
        yield client


@pytest.fixture(scope="module")
def ray_local(engine_worker_env: dict[str, str]) -> Iterator[Any]:
    """A local Ray of 2 CPUs whose workers' environment holds `engine_worker_env`."""
    with _ray_local(engine_worker_env) as ray:
        yield ray


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


# --- one scenario, both engines: the adapters behind the `engine` fixture -----------------


def _claim(marker: str, where: str) -> bool:
    """True in the first process (across the cluster) to create ``marker``; it holds ``where``."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, where.encode())
    os.close(fd)
    return True


def _install_read_killer(marker: str, index: int) -> None:
    """On a Dask worker: partition ``index``'s read kills this worker after its first batch, once."""
    import headwater._shipping as shipping

    original = shipping.read_partition

    def read_partition(partition: Any, **options: Any) -> Iterator[Any]:
        for number, batch in enumerate(original(partition, **options)):
            killing = number == 1 and partition.index == index
            if killing and _claim(marker, f"read_partition {index}"):
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch

    shipping.read_partition = read_partition  # type: ignore[assignment]


def _install_write_killer(marker: str, index: int, when: str) -> None:
    """On a Dask worker: part ``index``'s write kills this worker mid-COPY or once staged, once."""
    import headwater._shipping as shipping

    original = shipping.write_part

    def write_part(write: Any, part: int, batches: Any) -> int:
        if part != index:
            return original(write, part, batches)
        if when == "before_commit":

            def dying() -> Iterator[Any]:
                for number, batch in enumerate(batches):
                    if number == 2 and _claim(marker, f"write_part {index} mid-COPY"):
                        os.kill(os.getpid(), signal.SIGKILL)
                    yield batch

            return original(write, part, dying())
        records = original(write, part, batches)
        if _claim(marker, f"write_part {index} staged"):
            os.kill(os.getpid(), signal.SIGKILL)  # staged, never reported: the retry replaces it
        return records

    shipping.write_part = write_part  # type: ignore[assignment]


def _task_marker(directory: str) -> Any:
    """A function that leaves a new file in ``directory`` and returns what it is given."""

    def mark(data: Any) -> Any:  # shipped by value to the worker that calls it
        import os
        import uuid

        with open(os.path.join(directory, uuid.uuid4().hex), "w"):
            pass
        return data

    return mark


class DaskEngine:
    """
    headwater on a Dask ``distributed`` client: data is a dask DataFrame, a collected or
    single-process read a pandas DataFrame (compared with ``assert_frame_equal``).
    """

    name = "dask"
    #: A frame has one partition per headwater partition, fixed before anything runs.
    fixes_partitions = True
    #: In the marker of `read_killing_a_worker`: the read that was killed.
    killed_reading = "read_partition 2"

    def __init__(self, client: Any) -> None:
        self.client = client

    def on_workers(self, function: Any) -> list[Any]:
        """``function()`` on each of the 2 workers."""
        return list(self.client.run(function).values())

    def read(self, source: Any, stream: str, parts: int, **options: Any) -> Any:
        import headwater.dask

        return headwater.dask.read(source, stream, npartitions=parts, **options)

    def partitions(self, data: Any) -> int:
        return int(data.npartitions)

    def count(self, data: Any) -> int:
        return len(data)

    def columns(self, data: Any) -> list[str]:
        return list(data.columns)

    def collect(self, data: Any) -> Any:
        """Every record of ``data``, in ``id`` order."""
        return self.ordered(data.compute())

    def local(self, source: Any, stream: str) -> Any:
        """The single-process read: `headwater.to_pandas`."""
        import headwater

        return headwater.to_pandas(source, stream)

    def ordered(self, table: Any) -> Any:
        return table.sort_values("id").reset_index(drop=True)

    def ids(self, table: Any) -> list[Any]:
        return list(table["id"].tolist())

    def assert_equal(self, expected: Any, got: Any, *, loose: str | None = None) -> None:
        """Equal frames; with ``loose`` (a column whose type may differ) dtypes are not compared."""
        import pandas as pd

        pd.testing.assert_frame_equal(expected, got, check_dtype=loose is None)

    def from_records(self, records: list[dict[str, Any]], parts: int) -> Any:
        import pandas as pd
        from dask import dataframe as dd

        return dd.from_pandas(pd.DataFrame(records), npartitions=parts)

    def marking_tasks(self, data: Any, directory: str) -> Any:
        """``data`` whose every task, when it runs, first leaves a file in ``directory``."""
        return data.map_partitions(_task_marker(directory), meta=data._meta)

    def recording_writes(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """Each write handed to Dask from now on (its tasks computed), as it is handed."""
        import headwater.dask

        compute = headwater.dask._compute_parts
        handed: list[str] = []

        def recording(client: Any, tasks: list[Any]) -> Any:
            handed.append(f"{len(tasks)} write tasks")
            return compute(client, tasks)

        monkeypatch.setattr(headwater.dask, "_compute_parts", recording)
        return handed

    def write(
        self, data: Any, dest: Any, stream: str, *, batch_size: int | None = None, **options: Any
    ) -> Any:
        import headwater.dask

        return headwater.dask.to_source(data, dest, stream, batch_size=batch_size, **options)

    def write_killing_a_worker(
        self, data: Any, dest: Any, stream: str, *, when: str, marker: str, batch_size: int
    ) -> Any:
        """
        The worker writing part 2 is killed once: ``before_commit`` at the third batch of
        its COPY, ``after_stage`` once the part is staged and before the task reports it.
        """
        self.client.wait_for_workers(2, timeout=60)  # one killed by an earlier test restarts
        self.client.run(_install_write_killer, marker, 2, when)
        return self.write(data, dest, stream, batch_size=batch_size)

    def read_killing_a_worker(self, data: Any, marker: str) -> tuple[list[Any], str]:
        """
        The ids read while the worker reading partition 2 dies after its first batch, and
        what the marker says was killed.
        """
        self.client.wait_for_workers(2, timeout=60)  # one killed by an earlier test restarts
        self.client.run(_install_read_killer, marker, 2)
        ids = data["id"].compute().tolist()
        return ids, Path(marker).read_text() if Path(marker).exists() else ""

    def shipped(self, parts: int) -> int:
        """How many serialized forms a write of ``parts`` partitions ships: a graph a task."""
        return parts

    def write_serialized(
        self, data: Any, dest: Any, stream: str, monkeypatch: pytest.MonkeyPatch
    ) -> tuple[Any, list[bytes], str]:
        """The write's result, its task graphs as Dask pickles them, and their reprs."""
        import cloudpickle

        import headwater.dask

        compute = headwater.dask._compute_parts
        graphs: list[bytes] = []
        shown: list[str] = []

        def capturing(client: Any, tasks: list[Any]) -> Any:
            for task in tasks:
                graph = dict(task.__dask_graph__())
                graphs.append(cloudpickle.dumps(graph))
                shown.append(repr(graph))
            return compute(client, tasks)

        monkeypatch.setattr(headwater.dask, "_compute_parts", capturing)
        result = self.write(data, dest, stream)
        return result, graphs, " ".join(shown)


def _ray_killer(marker: str) -> Any:
    """A function that kills the process calling it, once across processes (``marker``)."""

    def kill_once() -> None:  # shipped by value to the Ray worker that calls it
        import os
        import signal

        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)

    return kill_once


class RayEngine:
    """
    headwater on a local Ray: data is a Ray Dataset, a collected or single-process read a
    list of dicts (``to_arrow(...).to_pylist()``).
    """

    name = "ray"
    #: Ray's blocks may change while a dataset runs: no partition count before it does.
    fixes_partitions = False
    #: In the stats of `read_killing_a_worker`: the map that kills runs in the read task.
    killed_reading = "ReadHeadwater(postgres)->MapBatches(dying)"

    def __init__(self, ray: Any) -> None:
        self.ray = ray

    def on_workers(self, function: Any) -> list[Any]:
        """``function()`` in 2 Ray tasks."""
        remote = self.ray.remote(function)
        return list(self.ray.get([remote.remote() for _ in range(2)]))

    def read(self, source: Any, stream: str, parts: int, **options: Any) -> Any:
        import headwater.ray

        return headwater.ray.read(source, stream, parallelism=parts, **options)

    def partitions(self, data: Any) -> int:
        raise NotImplementedError("Ray fixes no partition count before a dataset runs")

    def count(self, data: Any) -> int:
        return int(data.count())

    def columns(self, data: Any) -> list[str]:
        return list(data.schema().names)

    def collect(self, data: Any) -> Any:
        """Every record of ``data``, in ``id`` order."""
        return self.ordered(data.take_all())

    def local(self, source: Any, stream: str) -> Any:
        """The single-process read: `headwater.to_arrow`, as dicts."""
        import headwater

        return headwater.to_arrow(source, stream).to_pylist()

    def ordered(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(rows, key=lambda row: row["id"])

    def ids(self, rows: list[dict[str, Any]]) -> list[Any]:
        return [row["id"] for row in rows]

    def assert_equal(self, expected: Any, got: Any, *, loose: str | None = None) -> None:
        """Equal rows; with ``loose`` (a numeric column as text or Decimal) its digits compared."""
        if loose is not None:
            from decimal import Decimal

            expected = [{**row, loose: Decimal(str(row[loose]))} for row in expected]
            got = [{**row, loose: Decimal(str(row[loose]))} for row in got]
        assert expected == got

    def from_records(self, records: list[dict[str, Any]], parts: int) -> Any:
        return self.ray.data.from_items(records, override_num_blocks=parts)

    def marking_tasks(self, data: Any, directory: str) -> Any:
        """
        ``data`` whose every task, when it runs, first leaves a file in ``directory`` (Ray
        fuses the mark into the write task, which runs it as the sink takes its blocks).
        """
        return data.map_batches(_task_marker(directory), batch_format="pyarrow")

    def recording_writes(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """Each write handed to Ray from now on (``write_datasink``), as it is handed."""
        dataset_type = self.ray.data.Dataset
        write_datasink = dataset_type.write_datasink
        handed: list[str] = []

        def recording(dataset: Any, datasink: Any, *args: Any, **kwargs: Any) -> Any:
            handed.append(repr(datasink))
            return write_datasink(dataset, datasink, *args, **kwargs)

        monkeypatch.setattr(dataset_type, "write_datasink", recording)
        return handed

    def write(
        self, data: Any, dest: Any, stream: str, *, batch_size: int | None = None, **options: Any
    ) -> Any:
        """`headwater.ray.write` (which takes no batch size: a task writes its blocks' batches)."""
        import headwater.ray

        return headwater.ray.write(data, dest, stream, **options)

    def write_killing_a_worker(
        self, data: Any, dest: Any, stream: str, *, when: str, marker: str, batch_size: int
    ) -> Any:
        """
        The worker of write task 1 is killed once: ``before_commit`` once all its blocks
        are sent (the part's COPY not committed), ``after_stage`` once the part is staged
        and before the task reports it. The sink's result (None if it has none).
        """
        import headwater.ray

        kill_once = _ray_killer(marker)

        class DyingSink(headwater.ray.HeadwaterDatasink):
            def write(self, blocks: Any, ctx: Any) -> tuple[int, int]:
                if ctx.task_idx != 1:
                    return super().write(blocks, ctx)
                if when == "before_commit":

                    def dying() -> Iterator[Any]:
                        yield from blocks
                        kill_once()  # the part's COPY is sent, its transaction not committed

                    return super().write(dying(), ctx)
                staged = super().write(blocks, ctx)
                kill_once()  # staged and committed, never reported: the retry must replace it
                return staged

        sink = DyingSink(dest, stream)
        data.write_datasink(sink)
        return sink.result

    def read_killing_a_worker(self, data: Any, marker: str) -> tuple[list[Any], str]:
        """
        The ids read while the read task holding id 12345 dies after reading it, and Ray's
        stats of the run (which name the stages fused into the task that died).
        """

        kill_once = _ray_killer(marker)

        def dying(batch: Any) -> Any:
            if 12345 in batch.column("id").to_pylist():
                kill_once()
            return batch

        mapped = data.map_batches(dying, batch_format="pyarrow")
        ids = [row["id"] for row in mapped.take_all()]
        return ids, str(mapped.stats())

    def shipped(self, parts: int) -> int:
        """How many serialized forms a write ships: one Datasink, pickled into every task."""
        return 1

    def write_serialized(
        self, data: Any, dest: Any, stream: str, monkeypatch: pytest.MonkeyPatch
    ) -> tuple[Any, list[bytes], str]:
        """The write's result, its Datasink as Ray pickles it, and its repr."""
        dataset_type = type(data)
        write_datasink = dataset_type.write_datasink
        sinks: list[bytes] = []
        shown: list[str] = []

        def capturing(dataset: Any, datasink: Any, *args: Any, **kwargs: Any) -> Any:
            sinks.append(self.ray.cloudpickle.dumps(datasink))
            shown.append(repr(datasink))
            return write_datasink(dataset, datasink, *args, **kwargs)

        monkeypatch.setattr(dataset_type, "write_datasink", capturing)
        result = self.write(data, dest, stream)
        return result, sinks, " ".join(shown)


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("dask", id="dask"),
        pytest.param(
            "ray",
            id="ray",
            # Ray 2.60's DataContext() warns about its own defaults of deprecated fields.
            marks=pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
        ),
    ],
)
def engine(
    request: pytest.FixtureRequest, engine_worker_env: dict[str, str]
) -> Iterator[DaskEngine | RayEngine]:
    """Each engine in turn (Dask's tests, then Ray's), with `engine_worker_env` on its workers."""
    if request.param == "dask":
        with _dask_cluster(engine_worker_env) as client:
            yield DaskEngine(client)
    else:
        with _ray_local(engine_worker_env) as ray:
            yield RayEngine(ray)
