"""
headwater on Dask: a stream read into a ``dask.dataframe.DataFrame``, one task per
partition, on whatever cluster the Dask client runs.

    import headwater.dask

    frame = headwater.dask.read("warehouse", "public.orders", npartitions=8)
    frame.groupby("status").amount.sum().compute()

The partitions come from the connector (`headwater.toolkit.partitions`: PostgreSQL key
ranges, byte ranges of a file, ...) and are read with ``dask.dataframe.from_map``. Each
carries the connector id and its config with secret *references* (``env:NAME``,
``file:PATH``, ``keyring:SERVICE/USER``), never their values: every worker resolves the
credentials itself, and a worker that cannot fails with the headwater error naming the
reference. With a ``distributed`` client, even the split (and the first batch that
gives the frame's schema) runs on a worker, so the client needs no credentials at all.

Columns have Arrow-backed dtypes (``pandas.ArrowDtype``), as `headwater.to_pandas`
gives them: a connector that reads Arrow hands its record batches through; dict batches
are converted as `headwater.to_arrow` converts them. Progress is Dask's own (its
dashboard, ``dask.diagnostics.ProgressBar``).

`to_source` writes a frame back, one task per partition, each partition exactly once
even when Dask retries a task (a worker died): the destination stages each partition
under the write's job id and the partition's index, a retry replaces that part, and one
commit at the end makes every part visible at once (`Capability.PART_WRITES`).

Needs ``pip install 'headwater[dask]'``; imported only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headwater._connector import Connector, Partition, WriteResult
from headwater._redact import get_logger
from headwater.errors import ConfigError

if TYPE_CHECKING:
    import dask.dataframe
    import pandas
    import pyarrow

    from headwater._plugins import Registry
    from headwater._shipping import PartWrite
    from headwater._sources import SourceRegistry

__all__ = ["read", "to_source"]

logger = get_logger("headwater.dask")

#: Records per batch a write task hands the connector.
DEFAULT_WRITE_BATCH = 65_536


def read(
    source: Connector[Any] | str,
    stream: str,
    *,
    npartitions: int | None = None,
    batch_size: int | None = None,
    partition_options: dict[str, Any] | None = None,
    sources: SourceRegistry | None = None,
    registry: Registry | None = None,
    **read_options: Any,
) -> dask.dataframe.DataFrame:
    """
    ``stream`` of ``source`` as a lazy ``dask.dataframe.DataFrame`` with one partition per
    headwater partition.

    Args:
        source: a saved source name, a URL, or a connector.
        stream: the stream (table, file) to read.
        npartitions: at most this many partitions (default: the CPUs of the process that
            splits the stream).
        batch_size: records per batch within a partition (the connector's default).
        partition_options: the connector's split options (PostgreSQL: ``{"key": "id"}``).
        sources, registry: where names and URLs are looked up on the client.
        read_options: passed to each partition's read (``format="dicts"`` asks a
            connector that reads Arrow for dicts).

    Raises:
        ConfigError: the config cannot ship (a literal or callable secret: use a
            reference), or dask is not installed.
        CredentialError: a secret reference cannot be resolved where the split runs.
    """
    dd, pd = _dask()
    from headwater._shipping import plan, shipping

    connector_id, config = shipping(source, sources=sources, registry=registry)
    task = (connector_id, config, stream, npartitions, dict(partition_options or {}))
    client = _client()
    if client is None:
        planned = plan(*task, batch_size, read_options)
    else:
        planned = client.submit(plan, *task, batch_size, read_options, pure=False).result()
    parts, schema = planned.partitions, planned.schema
    meta = schema.empty_table().to_pandas(types_mapper=pd.ArrowDtype)
    frame: dask.dataframe.DataFrame = dd.from_map(
        _PartitionReader(schema, batch_size, read_options),
        parts,
        meta=meta,
        label=f"headwater-{connector_id}",
        enforce_metadata=False,
    )
    return frame


def to_source(
    frame: dask.dataframe.DataFrame,
    dest: Connector[Any] | str,
    stream: str,
    *,
    batch_size: int | None = None,
    sources: SourceRegistry | None = None,
    registry: Registry | None = None,
    **write_options: Any,
) -> WriteResult:
    """
    Write ``frame`` into ``stream`` of ``dest``, one task per partition, each partition
    exactly once however often Dask retries its task: each task stages its partition
    under this write's job id and its index (`Connector.write_part`; a retry replaces
    what an attempt staged), and once every task is done the staged parts are committed
    together in one step (`Connector.commit_parts`, on a worker when there is a
    ``distributed`` client). Until then nothing is visible in ``stream``; a failure
    removes the staged parts and raises. The index is not written (``reset_index()``
    first to keep it).

    Args:
        frame: the dask DataFrame to write.
        dest: a saved source name, a URL, or a connector with `Capability.PART_WRITES`.
        stream: the table (or other stream) to write into.
        batch_size: records per batch handed to the connector (default: 65,536).
        sources, registry: where names and URLs are looked up on the client.
        write_options: the destination's `write` options (PostgreSQL: ``upsert_on``,
            ``mode="replace"``, ``schema``, ``primary_key``).

    Returns:
        What the commit wrote: the stream and the records committed.

    Raises:
        NotSupported: the destination cannot write in parts (naming it), or not
            ``stream`` with these options (`Connector.check_part_write`, naming the
            setting): raised here, before any task runs.
        ConfigError: the config cannot ship (a literal or callable secret: use a
            reference), or dask is not installed.
        IntegrityError: a staged part does not hold what its task wrote; nothing committed.
    """
    _dask()
    from dask.delayed import delayed

    from headwater._shipping import PartWrite, abort_parts, commit_parts

    write = PartWrite.to(dest, stream, write_options, sources=sources, registry=registry)
    writer = _PartWriter(write, batch_size)
    tasks = [
        delayed(writer, pure=False)(part, index, dask_key_name=f"headwater-{write.job}-{index}")
        for index, part in enumerate(frame.to_delayed())  # type: ignore[no-untyped-call,unused-ignore]
    ]
    client = _client()
    try:
        counts = _compute_parts(client, tasks)
        parts = {index: int(count) for index, count in enumerate(counts)}
        result: WriteResult = _run(client, commit_parts, write, parts)
    except BaseException:
        try:
            _run(client, abort_parts, write)
        except Exception as exc:  # the first error is the one to raise
            logger.warning("removing the staged parts of write job %s failed: %s", write.job, exc)
        raise
    return result


def _compute_parts(client: Any, tasks: list[Any]) -> list[int]:
    """
    The records each write task staged. With a ``distributed`` client, a failure waits
    for the tasks still running before it is raised: the staged parts are removed after
    it, and a task finishing later would leave its part behind.
    """
    if client is None:
        from dask.base import compute

        return list(compute(*tasks))  # type: ignore[no-untyped-call,unused-ignore]
    from distributed import wait

    futures = client.compute(tasks)
    try:
        return list(client.gather(futures))
    except BaseException:
        wait(futures)  # type: ignore[no-untyped-call,unused-ignore]
        raise


def _run(client: Any, function: Any, *args: Any) -> Any:
    """``function(*args)`` on a worker when there is a ``distributed`` client, else here."""
    if client is None:
        return function(*args)
    return client.submit(function, *args, pure=False).result()


class _PartWriter:
    """A write task: one partition of the frame staged as part ``index`` of the write."""

    def __init__(self, write: PartWrite, batch_size: int | None) -> None:
        self.write = write
        self.batch_size = batch_size or DEFAULT_WRITE_BATCH

    def __repr__(self) -> str:
        write = self.write
        return f"<headwater write of {write.stream!r} to {write.connector}, job {write.job}>"

    def __call__(self, partition: pandas.DataFrame, index: int) -> int:
        import pyarrow as pa

        from headwater._shipping import write_part

        table = pa.Table.from_pandas(partition, preserve_index=False)
        return write_part(self.write, index, table.to_batches(max_chunksize=self.batch_size))


def _dask() -> tuple[Any, Any]:
    try:
        import dask.dataframe as dd
        import pandas as pd
    except ImportError:
        raise ConfigError(
            "headwater.dask needs dask and pandas", hint="pip install 'headwater[dask]'"
        ) from None
    return dd, pd


def _client() -> Any:
    """The current ``distributed`` client, or ``None`` (no distributed, or no client)."""
    try:
        from distributed import get_client
    except ImportError:
        return None
    try:
        return get_client()
    except ValueError:
        return None


class _PartitionReader:
    """Reads one shipped partition into a pandas DataFrame in the frame's schema."""

    def __init__(
        self, schema: pyarrow.Schema, batch_size: int | None, read_options: dict[str, Any]
    ) -> None:
        self.schema = schema
        self.batch_size = batch_size
        self.read_options = read_options

    def __call__(self, partition: Partition) -> pandas.DataFrame:
        import pandas as pd
        import pyarrow as pa

        from headwater._frames import _arrow_of, _fitted
        from headwater._shipping import read_partition

        pieces: list[Any] = []
        for batch in read_partition(partition, batch_size=self.batch_size, **self.read_options):
            data = _arrow_of(batch)
            if isinstance(data, pa.RecordBatch):
                if data.schema.equals(self.schema):
                    pieces.append(data)  # Arrow, untouched
                    continue
                data = pa.Table.from_batches([data])
            pieces.extend(_fitted(data, self.schema, "the frame's"))
        table = pa.Table.from_batches(pieces, schema=self.schema)
        return table.to_pandas(types_mapper=pd.ArrowDtype)
