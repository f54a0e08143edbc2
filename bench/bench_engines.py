"""
Engines: headwater read into Dask and Ray against the engines' own readers, in one run.

Scenarios (full size / ``--quick``):

* PostgreSQL, 5,000,000 rows x 10 columns (2,000) read into a Dask frame and counted:
  ``dask.dataframe.read_sql_table`` (SQLAlchemy + psycopg, baseline) vs
  ``headwater.dask.read``, both in 8 partitions split on the same index column (``id``),
  on a ``distributed`` cluster of 2 single-threaded worker processes; then headwater alone
  on 1 worker, for the scaling from 1 to 2 workers (PostgreSQL shares the same 2 cores);
* the same table into Ray Data and counted: ``ray.data.read_sql`` (a psycopg DB-API
  connection factory, sharded on ``id`` with ``hashint8``, PostgreSQL's hash of a bigint;
  its default MD5 needs text) vs ``headwater.ray.read``, 8 read tasks each, on a Ray of
  2 CPUs; then headwater alone on 1 CPU;
* 200 JSON Lines blobs of 1 MB each (4 of 10 kB) on Azurite read into Dask and counted:
  ``dd.read_json("az://...", lines=True, storage_options=...)`` through adlfs (baseline)
  vs ``headwater.dask.read`` of the glob, one partition per blob on both sides, on cold
  workers (fresh processes: every import inside the clock, as a cluster's first job sees
  it) and warm ones (the libraries of both sides imported on the workers already).

Counting is ``map_partitions(len)`` (Dask) or a ``map_batches`` of row counts (Ray), so
every partition is read and built in full on the workers on both sides (a bare
``len()``/``count()`` may answer from metadata or prune columns).

The engines run as a user's would: a cluster already running. Each scenario's setup
starts one out of process (a ``distributed.LocalCluster`` or a ``ray.init`` in a process
of its own, outside the clock) and its teardown stops it; each case connects to it when
its module is imported, before the worker starts the clock (`_attach`): the Dask workers
are restarted there, so no case inherits another's connections or caches, and for warm
scenarios the libraries of both sides are imported on every worker. A Ray client gets
worker processes of its own (Ray does not share workers between jobs); they are started
and given the same imports before the clock. PostgreSQL comes from
``HEADWATER_TEST_PG_DSN`` (default: the project's test server), Azurite is started out
of process as `bench.bench_azure_blob` starts it. The shipped blob config names its key
as a secret reference (``env:...``), set in the workers' environment, as the contract
requires: a literal secret cannot ship.

Without the engines installed (the ``bench_quick`` nox session installs neither), the
cases report "unavailable" and no cluster is started.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from typing import Any

from bench._harness import Case, Done, Scenario, service_affinity

DSN = os.environ.get("HEADWATER_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMA = "headwater_bench"
PARTITIONS = 8
BLOBS = 200

#: What the scenario's setup tells its cases (the cluster to attach to, how warm).
ENGINE_ENV = "HEADWATER_BENCH_ENGINE"
#: The environment variable the shipped blob config's key reference names.
KEY_ENV = "HEADWATER_BENCH_AZURITE_KEY"

_DDL = """
CREATE TABLE {t} (
    id bigint PRIMARY KEY, a integer, b integer, c bigint, x double precision,
    y double precision, s text, t text, ts timestamptz, flag boolean
)
"""
_FILL = """
INSERT INTO {t}
SELECT g, g % 1000, (g * 7) % 100000, g * 31, g / 3.0, random(),
       substr(md5(g::text), 1, 20), 'tag' || (g % 50),
       timestamptz '2024-01-01' + g * interval '1 second', g % 2 = 0
  FROM generate_series(1, {n}) g
"""

#: The libraries each side runs on the workers (warm scenarios import them all there).
_PG_LIBRARIES = (
    "pandas",
    "pyarrow",
    "sqlalchemy",
    "psycopg",
    "headwater",
    "headwater._shipping",
    "headwater_postgres._connector",
    "headwater_postgres._plan",
    "headwater_postgres._arrow",
    "adbc_driver_postgresql.dbapi",
)
_BLOB_LIBRARIES = (
    "pandas",
    "pyarrow",
    "adlfs",
    "headwater",
    "headwater._shipping",
    "headwater_azure_blob._connector",
)


def _installed(*modules: str) -> bool:
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except ImportError:  # a dotted name whose parent package is missing
        return False


def scenarios(quick: bool) -> list[Scenario]:
    """The engine scenarios; ``quick`` uses tiny sizes (CI smoke run)."""
    here = "bench.bench_engines"
    rows = "2,000 rows" if quick else "5M rows"
    return [
        Scenario(
            f"engines: postgres {rows} x 10 into Dask, 2 workers",
            [
                Case("dask read_sql_table", f"{here}:dask_read_sql_table"),
                Case("headwater.dask.read", f"{here}:hw_dask_pg"),
            ],
            baseline="dask read_sql_table",
            setup=f"{here}:setup_dask_pg_2",
            teardown=f"{here}:teardown",
            goal=3.0,
        ),
        Scenario(
            f"engines: postgres {rows} x 10 into Dask, 1 worker",
            [Case("headwater.dask.read", f"{here}:hw_dask_pg")],
            baseline="headwater.dask.read",
            setup=f"{here}:setup_dask_pg_1",
            teardown=f"{here}:teardown",
        ),
        Scenario(
            f"engines: postgres {rows} x 10 into Ray, 2 CPUs",
            [
                Case("ray.data.read_sql", f"{here}:ray_read_sql"),
                Case("headwater.ray.read", f"{here}:hw_ray_pg"),
            ],
            baseline="ray.data.read_sql",
            setup=f"{here}:setup_ray_pg_2",
            teardown=f"{here}:teardown",
            goal=3.0,
        ),
        Scenario(
            f"engines: postgres {rows} x 10 into Ray, 1 CPU",
            [Case("headwater.ray.read", f"{here}:hw_ray_pg")],
            baseline="headwater.ray.read",
            setup=f"{here}:setup_ray_pg_1",
            teardown=f"{here}:teardown",
        ),
        *(
            Scenario(
                f"engines: {4 if quick else BLOBS} JSON Lines blobs of "
                f"{'10 kB' if quick else '1 MB'} into Dask, 2 workers, {start}",
                [
                    Case("dd.read_json az:// (adlfs)", f"{here}:dask_read_json"),
                    Case("headwater.dask.read", f"{here}:hw_dask_blobs"),
                ],
                baseline="dd.read_json az:// (adlfs)",
                setup=f"{here}:setup_blobs_{start}",
                teardown=f"{here}:teardown",
                goal=1.0,
            )
            for start in ("cold", "warm")
        ),
    ]


# --- clusters (started by a scenario's setup, each in a process of its own) --------------

_RAY_CLUSTER = """
import sys
import ray

ray.init(num_cpus=int(sys.argv[1]), include_dashboard=False, _temp_dir=sys.argv[2])
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
ray.shutdown()
"""

_cluster: subprocess.Popen[str] | None = None
#: The case's own Dask cluster (`_attach`), closed when the case's process exits.
_dask_cluster: Any = None
_ray_temp: str | None = None


def _start_cluster(engine: str, workers: int, libraries: tuple[str, ...], warm: bool) -> bool:
    """
    Start the scenario's Ray, or for Dask only say what each case starts, and tell the
    cases (`ENGINE_ENV`); False (and no cluster) when the engine is not installed: the
    cases say so.
    """
    global _cluster, _ray_temp
    needs = ("dask.dataframe", "distributed") if engine == "dask" else ("ray.data",)
    if not _installed(*needs):
        return False
    spec: dict[str, Any] = {"engine": engine, "workers": workers}
    spec["libraries"] = list(libraries) if warm else []
    if engine == "dask":
        # Each case starts its own cluster before its clock (`_attach`): restarting the
        # workers of a shared one between cases left them hanging at times (120 s).
        os.environ[ENGINE_ENV] = json.dumps(spec)
        return True
    # A directory of its own: another Ray on this machine keeps its own sessions.
    _ray_temp = tempfile.mkdtemp(prefix="hw-bench-ray-")
    # Ray clusters require a token: one made for this cluster, which the cases (and
    # only they) inherit from this process's environment.
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(16)
    argv = [sys.executable, "-c", _RAY_CLUSTER, str(workers), _ray_temp]
    with service_affinity():
        _cluster = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ.copy()
        )
    assert _cluster.stdout is not None
    address = _cluster.stdout.readline().strip()
    if not address:
        _stop_cluster()
        raise RuntimeError(f"the {engine} cluster did not start")
    spec["address"] = address
    os.environ[ENGINE_ENV] = json.dumps(spec)
    return True


def _stop_cluster() -> None:
    global _cluster, _ray_temp
    for name in (ENGINE_ENV, "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
        os.environ.pop(name, None)
    if _cluster is not None:
        assert _cluster.stdin is not None
        _cluster.stdin.close()
        try:
            _cluster.wait(timeout=60)
        except subprocess.TimeoutExpired:
            _cluster.kill()
            _cluster.wait()
        _cluster = None
    if _ray_temp is not None:
        shutil.rmtree(_ray_temp, ignore_errors=True)
        _ray_temp = None


def _attach() -> None:
    """
    In a case's process, at import (before the clock): start the case's own Dask cluster
    (fresh worker processes for every case), or connect to the scenario's Ray (which
    gives this client worker processes of its own); when the scenario is warm, the
    workers import the libraries of both sides first.
    """
    raw = os.environ.get(ENGINE_ENV)
    if not raw:
        return
    spec = json.loads(raw)
    if spec["engine"] == "dask":
        from distributed import Client, LocalCluster

        global _dask_cluster
        _dask_cluster = LocalCluster(
            n_workers=spec["workers"],
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        client = Client(_dask_cluster, set_as_default=True)
        # A function of this module would be pickled by reference, and pickling it
        # imports this module, which this thread is importing still: a deadlock.
        for name in spec["libraries"]:
            client.run(importlib.import_module, name)
    else:
        import ray

        ray.init(address=spec["address"], logging_level=logging.ERROR, log_to_driver=False)
        if spec["libraries"]:

            def import_all(names: list[str]) -> None:  # nested: pickled by value
                for name in names:
                    importlib.import_module(name)

            warm = ray.remote(num_cpus=1)(import_all)
            ray.get([warm.remote(spec["libraries"]) for _ in range(spec["workers"])])
        import ray.data

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False


def _in_case_worker() -> bool:
    """Whether this process is the harness's case worker (``python -m bench._worker``)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == "bench._worker"


if _in_case_worker():
    _attach()


# --- set-up / tear-down (the parent process) -----------------------------------------------


def _pg_table(quick: bool) -> dict[str, Any]:
    """
    The table, made once per run and size: four scenarios read it, and filling 5M rows
    takes a minute. A table left by an earlier run is made afresh (it may be stale).
    """
    from bench.bench_postgres import make_table

    rows = 2_000 if quick else 5_000_000
    name = f"e_read_{rows}"
    if name not in _made:
        make_table(name, rows, schema=SCHEMA, ddl=_DDL, fill=_FILL)
        _made.add(name)
    return {"dsn": DSN, "schema": SCHEMA, "table": f"{SCHEMA}.{name}", "rows": rows}


#: The tables this run has made (`_pg_table`).
_made: set[str] = set()


def _setup_pg(engine: str, workers: int, quick: bool) -> dict[str, Any]:
    out = _pg_table(quick)
    _start_cluster(engine, workers, _PG_LIBRARIES, warm=True)
    return out


def setup_dask_pg_2(quick: bool) -> dict[str, Any]:
    return _setup_pg("dask", 2, quick)


def setup_dask_pg_1(quick: bool) -> dict[str, Any]:
    return _setup_pg("dask", 1, quick)


def setup_ray_pg_2(quick: bool) -> dict[str, Any]:
    return _setup_pg("ray", 2, quick)


def setup_ray_pg_1(quick: bool) -> dict[str, Any]:
    return _setup_pg("ray", 1, quick)


_azurite: Any = None


def _jsonl_blob(first: int, size: int) -> tuple[bytes, int]:
    """JSON Lines records of ten fields from number ``first`` on, until ``size`` bytes."""
    lines: list[str] = []
    total = 0
    i = first
    while total < size:
        h = format(i * 2654435761 % 2**64, "016x")
        line = (
            f'{{"id":{i},"n":{i % 1000},"x":{i / 3!r},"amount":{i // 100}.{i % 100:02d},'
            f'"s":"{h}","ts":"2024-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:'
            f'{i % 60:02d}+00:00","flag":{"true" if i % 2 else "false"},'
            f'"k":{i % 7},"tag":"v{i % 13}","d":"2000-01-{i % 28 + 1:02d}"}}\n'
        )
        lines.append(line)
        total += len(line)
        i += 1
    return "".join(lines).encode(), len(lines)


def _setup_blobs(quick: bool, warm: bool) -> dict[str, Any]:
    """Azurite (out of process) with the blobs, and the key in the environment workers get."""
    global _azurite
    from bench import bench_azure_blob

    url = os.environ.get("HEADWATER_TEST_AZURITE_BLOB_URL")
    if url is None:
        from tests.fix_azurite import start_azurite

        with service_affinity():
            _azurite = start_azurite()
        url = str(_azurite.blob_url)
    service = bench_azure_blob._service(url)
    container = f"bench-{uuid.uuid4().hex[:12]}"
    service.create_container(container)
    client = service.get_container_client(container)
    count, size = (4, 10_000) if quick else (BLOBS, 1_000_000)
    records = 0
    for i in range(count):
        data, n = _jsonl_blob(records, size)
        client.upload_blob(f"data/part-{i:04d}.jsonl", data)
        records += n
    # Set before the cluster starts: its workers inherit it and resolve the reference.
    os.environ[KEY_ENV] = bench_azure_blob._key()
    _start_cluster("dask", 2, _BLOB_LIBRARIES, warm=warm)
    return {
        "url": url,
        "container": container,
        "records": records,
        "blobs": count,
    }


def setup_blobs_cold(quick: bool) -> dict[str, Any]:
    return _setup_blobs(quick, warm=False)


def setup_blobs_warm(quick: bool) -> dict[str, Any]:
    return _setup_blobs(quick, warm=True)


def teardown(**setup: Any) -> None:
    """Stop the scenario's cluster; drop its container and stop its Azurite."""
    global _azurite
    _stop_cluster()
    if "container" in setup:
        from bench import bench_azure_blob

        with contextlib.suppress(Exception):
            bench_azure_blob._service(setup["url"]).delete_container(setup["container"])
        os.environ.pop(KEY_ENV, None)
    if _azurite is not None:
        _azurite.stop()
        _azurite = None


# --- the cases (each in a fresh process, attached to the scenario's cluster) -------------


def _counted(expected: int, got: int) -> Done:
    if got != expected:
        raise RuntimeError(f"counted {got} records, the source holds {expected}")
    return Done(got)


def _dask_count(frame: Any) -> int:
    return int(frame.map_partitions(len).compute().sum())


def _ray_count(dataset: Any) -> int:
    counts = dataset.map_batches(
        lambda table: {"n": [table.num_rows]}, batch_format="pyarrow", batch_size=None
    )
    return int(counts.sum("n"))


def _engine(name: str) -> None:
    """Refuse to time a case without its engine's cluster (reported as unavailable)."""
    spec = json.loads(os.environ.get(ENGINE_ENV) or "{}")
    if spec.get("engine") != name:
        raise ImportError(f"no {name} cluster (is {name} installed?)")


def dask_read_sql_table(dsn: str, schema: str, table: str, rows: int, **_: Any) -> Done:
    """``dd.read_sql_table`` on SQLAlchemy + psycopg: 8 partitions on ``id``."""
    _engine("dask")
    import dask.dataframe as dd

    uri = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    name = table.split(".", 1)[1]
    frame = dd.read_sql_table(name, uri, index_col="id", npartitions=PARTITIONS, schema=schema)
    return _counted(rows, _dask_count(frame))


def hw_dask_pg(dsn: str, table: str, rows: int, **_: Any) -> Done:
    """``headwater.dask.read``: 8 key ranges on ``id`` (the primary key)."""
    _engine("dask")
    import headwater.dask

    frame = headwater.dask.read(dsn, table, npartitions=PARTITIONS)
    return _counted(rows, _dask_count(frame))


def _connect(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn)


def ray_read_sql(dsn: str, table: str, rows: int, **_: Any) -> Done:
    """``ray.data.read_sql`` with a psycopg connection factory, 8 shards on ``id``."""
    _engine("ray")
    import ray.data

    dataset = ray.data.read_sql(
        f"SELECT * FROM {table}",  # noqa: S608 - the benchmark's own table
        functools.partial(_connect, dsn),
        shard_keys=["id"],
        shard_hash_fn="hashint8",
        override_num_blocks=PARTITIONS,
    )
    return _counted(rows, _ray_count(dataset))


def hw_ray_pg(dsn: str, table: str, rows: int, **_: Any) -> Done:
    """``headwater.ray.read``: 8 key ranges on ``id``."""
    _engine("ray")
    import headwater.ray

    dataset = headwater.ray.read(dsn, table, parallelism=PARTITIONS)
    return _counted(rows, _ray_count(dataset))


def _connection_string(url: str) -> str:
    from bench import bench_azure_blob

    return (
        f"DefaultEndpointsProtocol=http;AccountName={bench_azure_blob.ACCOUNT};"
        f"AccountKey={bench_azure_blob._key()};BlobEndpoint={url};"
    )


def dask_read_json(url: str, container: str, records: int, **_: Any) -> Done:
    """``dd.read_json`` of ``az://container/data/*.jsonl`` through adlfs: one partition a blob."""
    _engine("dask")
    import dask.dataframe as dd

    frame = dd.read_json(
        f"az://{container}/data/*.jsonl",
        lines=True,
        storage_options={"connection_string": _connection_string(url)},
    )
    return _counted(records, _dask_count(frame))


def hw_dask_blobs(url: str, container: str, records: int, blobs: int, **_: Any) -> Done:
    """``headwater.dask.read`` of the glob, one partition a blob, the key by reference."""
    _engine("dask")
    import headwater.dask
    from headwater_azure_blob import AzureBlobConnector

    connector = AzureBlobConnector(
        {"account_url": url, "account_key": f"env:{KEY_ENV}", "container": container}
    )
    with connector:
        frame = headwater.dask.read(connector, "data/*.jsonl", npartitions=blobs)
        return _counted(records, _dask_count(frame))
