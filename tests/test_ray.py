"""
headwater on Ray Data, what only Ray has, on a real local Ray: the Datasource's read tasks and
their size estimates, partitions split in the driver and read on workers, the Datasink's
name. The scenarios both engines run are in `tests/test_engines.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import headwater  # noqa: F401 - headwater.CredentialError etc. (and headwater.ray below)
from headwater.toolkit import partitions
from tests.fix_engines import pg_config

# Ray 2.60's DataContext() warns about its own defaults of deprecated fields.
pytestmark = [
    pytest.mark.engines,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]

#: Set in the Ray workers' environment only (runtime_env): the driver never has it.
WORKER_ENV = "HW_RAY_WORKER_PW"
SECRET = "ray-pw-5d2b8e-workers-only"


@pytest.fixture(scope="module")
def engine_worker_env() -> dict[str, str]:
    return {WORKER_ENV: SECRET}


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what it wraps: Ray's ``cause`` and Python's ``__cause__`` chains."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [getattr(current, "cause", None), current.__cause__, current.__context__]


def test_serialized_read_tasks_hold_the_reference_not_the_secret(
    ray_local: Any,
    pg_dsn: str,
    pg_engine_table: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Partitions split here (the secret resolved here) pickle into read tasks without it."""
    import headwater.ray

    # The driver resolves the reference too: the secret is here as well as on the workers.
    monkeypatch.setenv(WORKER_ENV, SECRET)  # trust auth: connects with any password
    config = pg_config(pg_dsn, f"env:{WORKER_ENV}")
    with headwater.connect("postgres", config) as source:
        parts = partitions(source, pg_engine_table, 4)
        estimate = source.estimate(pg_engine_table)
        dataset = headwater.ray.read(source, pg_engine_table, parallelism=4)
    datasource = headwater.ray.HeadwaterDatasource(parts, estimate=estimate)
    tasks = datasource.get_read_tasks(1)
    assert 4 == len(tasks)
    assert estimate.bytes is not None
    assert estimate.bytes == datasource.estimate_inmemory_data_size()
    assert [estimate.bytes // 4] * 4 == [task.metadata.size_bytes for task in tasks]
    assert [None] * 4 == [task.metadata.num_rows for task in tasks]

    pickled = [ray_local.cloudpickle.dumps(obj) for obj in (*tasks, datasource, dataset)]
    assert [] == [blob for blob in pickled if SECRET.encode() in blob]
    assert all(f"env:{WORKER_ENV}".encode() in blob for blob in pickled)
    shown = " ".join(repr(obj) for obj in (*tasks, *parts, datasource, dataset))
    assert SECRET not in f"{shown} {caplog.text}"
    assert 20000 == ray_local.data.read_datasource(datasource).count()  # workers: any password


def test_partitions_split_here_fail_on_workers_that_cannot_resolve_the_reference(
    ray_local: Any, pg_dsn: str, pg_engine_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """env:NAME set here, unset on the workers: the read tasks fail with CredentialError."""
    import headwater.ray

    # Split here, where the reference resolves; read on workers, where it does not.
    monkeypatch.setenv("HW_RAY_DRIVER_ONLY", "any")
    with headwater.connect("postgres", pg_config(pg_dsn, "env:HW_RAY_DRIVER_ONLY")) as source:
        parts = partitions(source, pg_engine_table, 2)
    dataset = ray_local.data.read_datasource(headwater.ray.HeadwaterDatasource(parts))
    with pytest.raises(Exception) as wrapped:  # noqa: PT011 - Ray's wrapper; the cause is checked
        dataset.count()
    errors = [e for e in _causes(wrapped.value) if isinstance(e, headwater.CredentialError)]
    assert errors, f"no CredentialError in {wrapped.value!r}"
    assert "env:HW_RAY_DRIVER_ONLY" in errors[0].message
    assert "password" == errors[0].field


def test_the_datasink_is_named_after_its_connector_and_shows_no_secret(
    ray_local: Any, pg_dsn: str, pg_engine_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Datasink's name in Ray's stats is its connector's; its repr never the password."""
    import headwater.ray

    monkeypatch.setenv(WORKER_ENV, SECRET)  # resolved here too (trust auth: any password)
    with headwater.connect("postgres", pg_config(pg_dsn, f"env:{WORKER_ENV}")) as source:
        assert source.check().ok
        sink = headwater.ray.HeadwaterDatasink(source, f"{pg_engine_table}_copy")
    assert SECRET not in repr(sink)
    assert "Headwater(postgres)" == sink.get_name()
