"""
headwater on Ray: a stream read into a ``ray.data.Dataset``, one read task per
partition, on whatever cluster Ray runs (a local one is started if none is).

    import headwater.ray

    orders = headwater.ray.read("warehouse", "public.orders", parallelism=8)
    orders.groupby("status").sum("amount").show()

The partitions come from the connector (`headwater.toolkit.partitions`: PostgreSQL key
ranges, byte ranges of a file, ...); `HeadwaterDatasource` is a Ray Data ``Datasource``
that makes one ``ReadTask`` of each, with the connector's size estimate
(``Connector.estimate``) shared out among them. Each partition carries the connector id
and its config with secret *references* (``env:NAME``, ``file:PATH``,
``keyring:SERVICE/USER``), never their values: every worker resolves the credentials
itself, and a worker that cannot fails with the headwater error naming the reference.
The split (and the first records, which give the dataset's schema) runs as a Ray task,
so the driver needs no credentials at all.

Blocks are ``pyarrow.Table`` values: a connector that reads Arrow hands its record batches
through; dict batches are converted as `headwater.to_arrow` converts them and brought to
one schema, settled from the stream's first records (as `headwater.record_batch_reader`
settles it: a column NULL in the first batch or first seen a few batches on is typed by
its values; one that does not fit afterwards is an error naming the column). Progress is
Ray's own (its progress bars and dashboard).

`HeadwaterDatasink` (and `write`) writes a dataset back, each write task exactly once
even when Ray retries it: the destination stages the task's blocks as the part of its task
index, a retry replaces that part, and one commit at the end makes every part visible at
once (`Capability.PART_WRITES`).

Needs ``pip install 'headwater[ray]'``; imported only when used.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from headwater._connector import Connector, Estimate, Partition, WriteResult
from headwater._redact import get_logger
from headwater.errors import ConfigError, HeadwaterError, IntegrityError

if TYPE_CHECKING:
    import pyarrow
    from ray.data import Dataset, ReadTask
    from ray.data import Datasink as _Datasink
    from ray.data import Datasource as _Datasource

    from headwater._plugins import Registry
    from headwater._sources import SourceRegistry
else:
    try:
        from ray.data import Datasink as _Datasink
        from ray.data import Datasource as _Datasource
    except ImportError:  # read(), write() and the classes say what to install
        _Datasink = _Datasource = object

__all__ = ["HeadwaterDatasink", "HeadwaterDatasource", "read", "write"]

logger = get_logger("headwater.ray")


def read(
    source: Connector[Any] | str,
    stream: str,
    *,
    parallelism: int | None = None,
    batch_size: int | None = None,
    partition_options: dict[str, Any] | None = None,
    sources: SourceRegistry | None = None,
    registry: Registry | None = None,
    **read_options: Any,
) -> Dataset:
    """
    ``stream`` of ``source`` as a lazy ``ray.data.Dataset`` with one read task per
    headwater partition.

    Args:
        source: a saved source name, a URL, or a connector.
        stream: the stream (table, file) to read.
        parallelism: at most this many partitions (default: the CPUs of the Ray worker
            that splits the stream).
        batch_size: records per batch within a partition (the connector's default).
        partition_options: the connector's split options (PostgreSQL: ``{"key": "id"}``).
        sources, registry: where names and URLs are looked up on the driver.
        read_options: passed to each partition's read (``format="dicts"`` asks a
            connector that reads Arrow for dicts).

    Raises:
        ConfigError: the config cannot ship (a literal or callable secret: use a
            reference), or ray is not installed.
        CredentialError: a secret reference cannot be resolved where the split runs.
    """
    engine = _ray()
    from headwater._shipping import plan, shipping

    connector_id, config = shipping(source, sources=sources, registry=registry)
    planner = engine.remote(plan).options(name=f"headwater-{connector_id}-split")
    ref = planner.remote(
        connector_id, config, stream, parallelism, dict(partition_options or {}),
        batch_size, read_options, estimate=True,
    )  # fmt: skip
    planned = _result(engine, ref)
    parts, schema, estimate = planned.partitions, planned.schema, planned.estimate
    datasource = HeadwaterDatasource(
        parts, schema=schema, estimate=estimate, batch_size=batch_size, **read_options
    )
    dataset: Dataset = engine.data.read_datasource(
        datasource, override_num_blocks=max(1, len(parts))
    )
    return dataset


def write(
    dataset: Dataset,
    dest: Connector[Any] | str,
    stream: str,
    *,
    sources: SourceRegistry | None = None,
    registry: Registry | None = None,
    **write_options: Any,
) -> WriteResult:
    """
    Write ``dataset`` into ``stream`` of ``dest`` through a `HeadwaterDatasink`: each
    write task's blocks exactly once however often Ray retries the task, committed
    together at the end.

    Args:
        dataset: the Ray Dataset to write.
        dest: a saved source name, a URL, or a connector with `Capability.PART_WRITES`.
        stream: the table (or other stream) to write into.
        sources, registry: where names and URLs are looked up on the driver.
        write_options: the destination's `write` options (PostgreSQL: ``upsert_on``,
            ``mode="replace"``, ``schema``, ``primary_key``).

    Returns:
        What the commit wrote: the stream and the records committed.

    Raises:
        NotSupported: the destination cannot write in parts (naming it), or not
            ``stream`` with these options (`Connector.check_part_write`, naming the
            setting): raised here, before any task runs.
        ConfigError: the config cannot ship (a literal or callable secret: use a
            reference), or ray is not installed.
        IntegrityError: a staged part does not hold what its task wrote; nothing committed.
    """
    sink = HeadwaterDatasink(dest, stream, sources=sources, registry=registry, **write_options)
    try:
        dataset.write_datasink(sink)
    except Exception as exc:
        cause = next((e for e in _chain(exc) if isinstance(e, HeadwaterError)), None)
        if cause is not None:
            raise cause from None  # headwater's own error, not Ray's wrapper of it
        raise
    assert sink.result is not None  # write_datasink returns only after on_write_complete
    return sink.result


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what it wraps, through Ray's ``cause`` and Python's ``__cause__``."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = getattr(current, "cause", None) or current.__cause__


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError(
            "headwater.ray needs ray[data]", hint="pip install 'headwater[ray]'"
        ) from None
    return ray


def _result(engine: Any, ref: Any) -> Any:
    """``ray.get(ref)``, a headwater error raised by the task as itself, not Ray's wrapper."""
    try:
        return engine.get(ref)
    except engine.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, HeadwaterError):
            raise exc.cause from None  # headwater's own error, not Ray's wrapper of it
        raise


# Typed whether or not ray is installed (the typing session does not install the engines).
class HeadwaterDatasource(_Datasource):  # type: ignore[misc,unused-ignore]
    """
    A Ray Data ``Datasource`` over shipped headwater partitions (from
    `headwater.toolkit.partitions`): one ``ReadTask`` per partition, each yielding
    ``pyarrow.Table`` blocks in ``schema``. Read it with ``ray.data.read_datasource``;
    `read` builds one from a source and a stream.
    """

    def __init__(
        self,
        partitions: list[Partition],
        *,
        schema: pyarrow.Schema | None = None,
        estimate: Estimate | None = None,
        batch_size: int | None = None,
        **read_options: Any,
    ) -> None:
        """
        Args:
            partitions: shipped partitions of one stream (each with connector and config).
            schema: the blocks' schema (default: each block as its batch comes, dict
                batches converted as `headwater.to_arrow` converts one batch).
            estimate: the stream's size, shared out among the read tasks' metadata.
            batch_size, read_options: passed to each partition's read.
        """
        _ray()
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        for part in partitions:
            if part.connector is None or part.config is None:
                raise ConfigError(
                    f"partition {part.index} of {part.stream!r} carries no connector and "
                    "config: it was not made to ship",
                    field="partitions",
                    hint="make partitions with headwater.toolkit.partitions(source, stream, n)",
                )
        self.partitions = list(partitions)
        self.schema = schema
        self.estimate = estimate or Estimate()
        self.batch_size = batch_size
        self.read_options = read_options

    def get_name(self) -> str:
        """The read's name in Ray's progress and stats: ``Headwater(<connector id>)``."""
        ids = sorted({part.connector or "?" for part in self.partitions})
        return f"Headwater({','.join(ids)})" if ids else "Headwater"

    def estimate_inmemory_data_size(self) -> int | None:
        """The stream's bytes as the connector estimates them, or ``None`` when unknown."""
        return self.estimate.bytes

    def _sizes(self) -> list[int | None]:
        """Each partition's share of the estimated bytes (a byte range's own length)."""
        spans = [_byte_span(part) for part in self.partitions]
        if self.partitions and all(span is not None for span in spans):
            return spans
        total = self.estimate.bytes
        if total is None or not self.partitions:
            return [None] * len(self.partitions)
        return [total // len(self.partitions)] * len(self.partitions)

    def get_read_tasks(
        self,
        parallelism: int,
        per_task_row_limit: int | None = None,
        data_context: Any = None,
    ) -> list[ReadTask]:
        """
        One ``ReadTask`` per partition, whatever ``parallelism`` Ray asks for (the split
        was made by `read`'s ``parallelism``). Row counts are left unknown: Ray takes
        them for exact, and a connector's are estimates.
        """
        from ray.data import ReadTask
        from ray.data.block import BlockMetadata

        schema = self.schema if self.schema is not None and len(self.schema) else None
        extra: dict[str, Any] = {}
        if per_task_row_limit is not None:
            extra["per_task_row_limit"] = per_task_row_limit
        if schema is not None and _tasks_take_schema():
            extra["schema"] = schema
        tasks = []
        for part, size in zip(self.partitions, self._sizes(), strict=True):
            metadata = BlockMetadata(
                num_rows=None, size_bytes=size, input_files=None, exec_stats=None
            )
            reader = _PartitionReader(part, self.schema, self.batch_size, self.read_options)
            tasks.append(ReadTask(reader, metadata, **extra))
        return tasks


# Typed whether or not ray is installed (the typing session does not install the engines).
class HeadwaterDatasink(_Datasink):  # type: ignore[misc,unused-ignore,type-arg]
    """
    A Ray Data ``Datasink`` writing into a stream of a connector with
    `Capability.PART_WRITES`, each write task exactly once however often Ray retries it:
    a task stages its blocks as part ``ctx.task_idx`` of this sink's job
    (`Connector.write_part`; a retried task replaces what an attempt staged), and when
    every task is done the staged parts are committed in one step
    (`Connector.commit_parts`, run as a Ray task, so the driver needs no credentials).
    Until then nothing is visible in the stream; a failure removes the staged parts.
    Write with ``dataset.write_datasink(sink)`` (one sink per write) or `write`; the
    commit's `WriteResult` is then ``sink.result``.
    """

    def __init__(
        self,
        dest: Connector[Any] | str,
        stream: str,
        *,
        sources: SourceRegistry | None = None,
        registry: Registry | None = None,
        **write_options: Any,
    ) -> None:
        """
        Args:
            dest: a saved source name, a URL, or a connector with `Capability.PART_WRITES`.
            stream: the stream to write into.
            sources, registry: where names and URLs are looked up on the driver.
            write_options: the destination's `write` options.

        Raises:
            NotSupported: the destination cannot write ``stream`` in parts with these
                options (`Connector.check_part_write`): here, before any task runs.
        """
        _ray()
        _check_write_returns()
        from headwater._shipping import PartWrite

        super().__init__()
        self.write_job = PartWrite.to(
            dest, stream, write_options, sources=sources, registry=registry
        )
        #: What the commit wrote, once the write is complete.
        self.result: WriteResult | None = None

    def __repr__(self) -> str:
        job = self.write_job
        return f"<HeadwaterDatasink {job.connector} {job.stream!r} job {job.job}>"

    def get_name(self) -> str:
        """The write's name in Ray's progress and stats: ``Headwater(<connector id>)``."""
        return f"Headwater({self.write_job.connector})"

    def write(self, blocks: Iterable[Any], ctx: Any) -> tuple[int, int]:
        """Stage this task's blocks as part ``ctx.task_idx``: (the index, records staged)."""
        from ray.data.block import BlockAccessor

        from headwater._shipping import write_part

        index = int(ctx.task_idx)

        def batches() -> Iterator[Any]:
            for block in blocks:
                yield from BlockAccessor.for_block(block).to_arrow().to_batches()

        return index, write_part(self.write_job, index, batches())

    def on_write_complete(self, write_result: Any) -> None:
        """Commit every staged part in one step, as a Ray task; keep its result."""
        from headwater._shipping import commit_parts

        parts: dict[int, int] = {}
        for index, records in write_result.write_returns:
            if index in parts:
                raise IntegrityError(
                    f"Ray ran two write tasks as part {index} of write job "
                    f"{self.write_job.job}: nothing was committed",
                    field="parts",
                )
            parts[index] = records
        engine = _ray()
        task = engine.remote(commit_parts).options(name=f"headwater-{self.write_job.job}-commit")
        self.result = _result(engine, task.remote(self.write_job, parts))

    def on_write_failed(self, error: Exception) -> None:
        """Remove the staged parts (as a Ray task); Ray raises ``error`` afterwards."""
        from headwater._shipping import abort_parts

        engine = _ray()
        try:
            _result(engine, engine.remote(abort_parts).remote(self.write_job))
        except Exception as exc:  # the write's own error is the one Ray raises
            logger.warning(
                "removing the staged parts of write job %s failed: %s", self.write_job.job, exc
            )


def _check_write_returns() -> None:
    """
    Refuse a Ray whose ``on_write_complete`` does not get the write tasks' returns (Ray
    2.38 to 2.40 dropped them): without them no part can be committed.
    """
    from ray.data.datasource import datasink

    result = getattr(datasink, "WriteResult", None)
    if result is None or "write_returns" not in getattr(result, "__dataclass_fields__", {}):
        raise ConfigError(
            "headwater.ray's writes need a Ray Data that passes the write tasks' results "
            "to Datasink.on_write_complete (ray 2.41 or later)",
            hint="pip install 'ray[data]>=2.41'",
        )


@functools.cache
def _tasks_take_schema() -> bool:
    """Whether ``ReadTask`` takes the blocks' schema (Ray 2.47 on; before, metadata did)."""
    from ray.data import ReadTask

    return "schema" in inspect.signature(ReadTask.__init__).parameters


def _byte_span(part: Partition) -> int | None:
    """The length of a partition that is a byte range (``bounds["bytes"] == [lo, hi]``)."""
    span = part.bounds.get("bytes")
    if (
        isinstance(span, list | tuple)
        and len(span) == 2
        and all(isinstance(end, int) and not isinstance(end, bool) for end in span)
    ):
        return max(0, int(span[1]) - int(span[0]))
    return None


class _PartitionReader:
    """A read task's function: one shipped partition as ``pyarrow.Table`` blocks."""

    def __init__(
        self,
        partition: Partition,
        schema: pyarrow.Schema | None,
        batch_size: int | None,
        read_options: dict[str, Any],
    ) -> None:
        self.partition = partition
        self.schema = schema
        self.batch_size = batch_size
        self.read_options = read_options

    def __repr__(self) -> str:
        part = self.partition
        where = f"partition {part.index + 1}/{part.count} of {part.stream!r}"
        return f"<headwater {part.connector} {where}>"

    def __call__(self) -> Iterator[pyarrow.Table]:
        import pyarrow as pa

        # A block per batch made hundreds of small blocks per partition, each one Ray's
        # bookkeeping: batches are gathered (zero-copy) up to Ray's own block size.
        target = _ray().data.DataContext.get_current().target_max_block_size or 0
        pending: list[pyarrow.Table] = []
        size = 0
        for table in self._tables():
            if pending and not table.schema.equals(pending[0].schema):
                yield pa.concat_tables(pending)  # blocks of one schema each
                pending, size = [], 0
            pending.append(table)
            size += table.nbytes
            if size >= target:
                yield pa.concat_tables(pending)
                pending, size = [], 0
        if pending:
            yield pa.concat_tables(pending)

    def _tables(self) -> Iterator[pyarrow.Table]:
        import pyarrow as pa

        from headwater._frames import _arrow_of, _fitted
        from headwater._shipping import read_partition

        schema = self.schema
        batches = read_partition(self.partition, batch_size=self.batch_size, **self.read_options)
        try:
            for batch in batches:
                data = _arrow_of(batch)
                if isinstance(data, pa.RecordBatch):
                    if schema is None or data.schema.equals(schema):
                        yield pa.Table.from_batches([data])  # Arrow, untouched
                        continue
                    data = pa.Table.from_batches([data])
                if schema is None:
                    yield data
                    continue
                yield pa.Table.from_batches(
                    list(_fitted(data, schema, "the dataset's")), schema=schema
                )
        finally:
            batches.close()  # type: ignore[attr-defined]
