"""
The ``azure-blob`` connector: Azure Blob Storage through azure-storage-blob.

Names are relative to the configured ``prefix`` (the source's root); ``/`` separates
virtual directories. Both twins are native: the sync methods use the SDK's sync client,
the async ones (``alist``, ``afetch``, ``aread``, ...) its ``aio`` client. Everything that
is not I/O — config, plans, record formats, transfer bookkeeping, error mapping — lives
in the sibling modules and is shared; so does the control flow of fetch, upload, write
and read (`_flows`: generators that yield the requests to make), which each twin only
drives with its own client (`_send` / `_asend`).

Guarantees
    * ``fetch`` writes to a temporary file beside the target and renames it only when
      every byte arrived and the size, the pinned etag and the Content-MD5 (when the blob
      has one) check out; an interrupted download resumes the missing byte ranges.
    * A blob name that would land outside ``dest`` (``..``, absolute, backslash, drive
      letter) is refused with `UnsafePath` before anything is downloaded.
    * ``write``/``upload`` stage blocks and commit them at the end, so the blob appears
      whole or not at all; an existing blob is refused unless ``overwrite`` is given.
    * ``write(..., state_key=K, state=S)`` commits S in the blob's metadata with the blob
      itself, and continues a blob that holds K's state (see `WritePlan`).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import errno
import functools
import io
import mimetypes
import os
import threading
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Literal, TypeVar

from headwater import (
    AlreadyExists,
    Batch,
    Capability,
    ConfigError,
    Connector,
    ConnectorError,
    Estimate,
    FetchResult,
    HeadwaterError,
    IntegrityError,
    Item,
    NotFound,
    Partition,
    PermissionDenied,
    State,
    WriteResult,
)
from headwater.formats import byte_ranges, byte_targets, unit_ranges
from headwater.toolkit import atomic_file, forget_after_fork, get_logger, safe_destination
from headwater_azure_blob import _flows as flows
from headwater_azure_blob import _listing as listing
from headwater_azure_blob._clients import (
    build_async_service,
    build_sync_service,
    endpoint_for_display,
)
from headwater_azure_blob._config import AzureBlobConfig, config_from_url
from headwater_azure_blob._errors import broke_mid_body, translate, translated
from headwater_azure_blob._flows import (
    END,
    PULL,
    Call,
    Flow,
    ListPage,
    Remote,
    UploadResult,
    adrive,
    adrive_items,
    drive,
    drive_items,
    remote,
)
from headwater_azure_blob._listing import Listed
from headwater_azure_blob._names import (
    blob_format,
    clean_relative,
    content_type_for,
    directory,
    format_of,
    normalize_etag,
    require_format,
)
from headwater_azure_blob._plan import (
    NOT_ASKED,
    BlobRef,
    FetchPlan,
    ReadPlan,
    Seen,
    Start,
    WritePlan,
    blob_bounds,
    blob_from_bounds,
    size_groups,
    state_in,
)
from headwater_azure_blob._records import BlobReading, CsvHeaderProbe, RecordWriting
from headwater_azure_blob._transfer import DownloadSink, Positioned

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient, ContainerClient
    from azure.storage.blob.aio import BlobServiceClient as AsyncBlobServiceClient
    from azure.storage.blob.aio import ContainerClient as AsyncContainerClient

    from headwater.formats import FileFormat

logger = get_logger("headwater.azure_blob")

Source = str | os.PathLike[str] | IO[bytes]
R = TypeVar("R")


class AzureBlobConnector(Connector[AzureBlobConfig]):
    """Blobs in one Azure Storage container: list, fetch, read records, write, upload."""

    id = "azure-blob"
    Config = AzureBlobConfig
    summary = "Azure Blob Storage: verified atomic downloads, block uploads, resumable reads"
    capabilities = frozenset(
        {
            Capability.CHECK,
            Capability.LIST,
            Capability.READ,
            Capability.RESUME,
            Capability.FETCH,
            Capability.METADATA,
            Capability.WRITE,
            Capability.ARROW,
            Capability.UPLOAD,
            Capability.ATOMIC_STATE,
            Capability.PARTITIONS,
            Capability.PART_WRITES,
        }
    )

    def __init__(self, config: AzureBlobConfig | dict[str, Any], **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._lock = threading.Lock()
        self._sync: BlobServiceClient | None = None
        self._sync_container: ContainerClient | None = None
        self._aio: AsyncBlobServiceClient | None = None
        self._aio_container: AsyncContainerClient | None = None
        self._aio_guard: asyncio.Task[None] | None = None
        self._aio_loop: asyncio.AbstractEventLoop | None = None
        #: The account's blob endpoint (no query): the key of its circuit breaker.
        self._endpoint = self.config.endpoint or ""
        #: What `written_state` saw, by (stream, key): a continuing write requires it.
        self._seen: dict[tuple[str, str], Seen] = {}
        # In a fork's child the clients are dropped (see headwater.toolkit.forget_after_fork).
        forget_after_fork(self, type(self)._forget_clients_after_fork)

    def _forget_clients_after_fork(self) -> builtins.list[Any]:
        """
        In the child of ``os.fork()``: drop the parent's clients (returned, to be kept
        unclosed: see `headwater.toolkit.forget_after_fork`) so the first use makes the child's
        own. The lock is new: another thread of the parent may have held it.
        """
        inherited = [c for c in (self._sync, self._aio, self._aio_guard) if c is not None]
        self._lock = threading.Lock()
        self._sync = self._sync_container = None
        self._aio = self._aio_container = self._aio_guard = self._aio_loop = None
        return inherited

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> AzureBlobConnector:
        """
        ``az://CONTAINER/PATH`` or ``https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH``.

        PATH becomes the prefix; see `config_from_url` for where the account and the
        credential come from.
        """
        return cls(config_from_url(url, overrides))

    # --- clients ------------------------------------------------------------------------

    def _container(self) -> ContainerClient:
        self._ensure_open()
        with self._lock:
            if self._sync_container is None:
                with translated(self.config.auth_field, "connect"):
                    service = build_sync_service(self.config, self.secret)
                self._sync, self._endpoint = service, endpoint_for_display(service.url)
                self._sync_container = service.get_container_client(self.config.container)
            return self._sync_container

    async def _acontainer(self) -> AsyncContainerClient:
        self._ensure_open()
        loop = asyncio.get_running_loop()
        if self._aio_container is None or self._aio_loop is not loop:
            # Clients are bound to the loop that made them. Each gets a guard task that
            # closes it when cancelled: by aclose(), or by asyncio.run() cancelling the
            # tasks left when its loop ends, so a connector used across several
            # asyncio.run() calls leaves no session open behind.
            with translated(self.config.auth_field, "connect"):
                service, credential = build_async_service(self.config, self.secret)
            self._aio, self._aio_loop = service, loop
            self._endpoint = endpoint_for_display(service.url)
            self._aio_container = service.get_container_client(self.config.container)
            self._aio_guard = loop.create_task(
                _close_when_cancelled(service, credential), name="headwater-azure-blob-aio"
            )
        return self._aio_container

    def _ensure_open(self) -> None:
        if self.closed:
            raise ConnectorError(f"connector {self.id!r} is closed")

    def _full(self, name: str) -> str:
        return self.config.prefix + name

    def _relative(self, full: str) -> str:
        return full[len(self.config.prefix) :]

    def _errors(self, context: str | None = None) -> contextlib.AbstractContextManager[None]:
        return translated(self.config.auth_field, context)

    def translate_error(self, exc: BaseException) -> HeadwaterError:
        """Azure SDK exceptions → headwater errors (see ``_errors.translate``)."""
        return translate(exc, auth_field=self.config.auth_field)

    def filesystem(self) -> Any:
        """
        An fsspec filesystem (adlfs, under fsspec's ``DirFileSystem``) rooted at this
        source's container and prefix, with the source's credential resolved by
        headwater: ``pandas.read_parquet("daily/x.parquet", filesystem=fs)``,
        ``pyarrow.dataset.dataset("daily/", filesystem=fs)``, dask. Needs
        ``headwater-azure-blob[fsspec]``. The filesystem is adlfs's own (writes through
        it overwrite; no etag pinning): the connector's guarantees are for its own
        operations. Each call makes a new filesystem; it holds the credential, as a
        client does, so pickling it (dask does, to ship it to workers) carries it too.
        """
        self._ensure_open()
        from headwater_azure_blob._fsspec import build_filesystem

        with translated(self.config.auth_field, "connect"):
            return build_filesystem(self.config, self.secret)

    def stats(self) -> dict[str, dict[str, int]]:
        """
        The HTTP connection pools of the open clients (``sync`` / ``async``; none before
        first use), in the shape of every headwater connector's ``stats()``: ``size``,
        ``in_use``, ``idle``, ``waiting``, ``max_size``, and for the sync client ``opened``
        and ``requests``. What the HTTP libraries do not count (closings, errors, and for
        aiohttp connections made) is absent, not 0: see the README.
        """
        from headwater_azure_blob._stats import async_stats, sync_stats

        stats: dict[str, dict[str, int]] = {}
        if self._sync is not None:
            stats["sync"] = sync_stats(self._sync)
        if self._aio is not None:
            stats["async"] = async_stats(self._aio)
        return stats

    def release(self) -> None:
        """Close the sync client; close the aio client too when its loop allows it."""
        sync, self._sync, self._sync_container = self._sync, None, None
        if sync is not None:
            sync.close()
        guard, loop = self._aio_guard, self._aio_loop
        self._aio = self._aio_container = self._aio_guard = self._aio_loop = None
        if guard is None or guard.done() or loop is None or loop.is_closed():
            return
        if not loop.is_running():
            guard.cancel()
            loop.run_until_complete(asyncio.wait([guard]))
        else:
            # Called from sync code inside a running loop: the guard closes the client
            # once the loop gets to it.
            loop.call_soon_threadsafe(guard.cancel)

    async def arelease(self) -> None:
        """Close both clients."""
        sync, self._sync, self._sync_container = self._sync, None, None
        if sync is not None:
            sync.close()
        guard, loop = self._aio_guard, self._aio_loop
        self._aio = self._aio_container = self._aio_guard = self._aio_loop = None
        if guard is None or guard.done():
            return
        if loop is asyncio.get_running_loop():
            guard.cancel()
            await asyncio.wait([guard])
        elif loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(guard.cancel)

    # --- check ---------------------------------------------------------------------------

    def check_connection(self) -> str:
        container = self._container()
        drive(self._check(), functools.partial(self._send, container))
        return self._check_message(container.url)

    async def acheck_connection(self) -> str:
        container = await self._acontainer()
        await adrive(self._check(), functools.partial(self._asend, container))
        return self._check_message(container.url)

    def _check(self) -> Flow[None]:
        quick = min(self.config.retry.attempts - 1, 1)
        try:
            with self._errors("check"):
                yield remote(None, "get_container_properties", retry_total=quick)
        except PermissionDenied:
            # A container-scoped SAS may list but not read container properties.
            with self._errors("check"):
                yield ListPage("", size=1, options={"retry_total": quick})

    def _check_message(self, url: str) -> str:
        prefix = f", prefix {self.config.prefix!r}" if self.config.prefix else ""
        return f"container {self.config.container!r} at {endpoint_for_display(url)}{prefix}"

    # --- list -----------------------------------------------------------------------------

    def list(self, path: str | None = None, *, recursive: bool = False) -> Iterator[Item]:
        """
        What is under directory ``path`` (the source root when ``None``): prefixes (kind
        ``prefix``, names ending in ``/``) and blobs (kind ``blob``, with size, modified
        time, etag, Content-MD5, content type). ``recursive=True`` lists every blob below.

        Pages are fetched lazily as you iterate (continuation tokens followed). A ``path``
        naming one blob yields just that blob; a path with nothing under it raises
        `NotFound`.
        """
        yield from drive_items(self._list(path, recursive), self._sender())

    async def alist(
        self, path: str | None = None, *, recursive: bool = False
    ) -> AsyncIterator[Item]:
        """Async twin of `list`."""
        send = functools.partial(self._asend, await self._acontainer())
        async with contextlib.aclosing(adrive_items(self._list(path, recursive), send)) as items:
            async for item in items:
                yield item

    def _list(self, path: str | None, recursive: bool) -> Flow[None]:
        found = False
        token = None
        with self._errors(f"list {path or '/'}"):
            while True:
                step = ListPage(directory(path), token, delimiter=None if recursive else "/")
                entries, token = yield step
                for name, entry in entries:
                    found = True
                    yield self._item(name, entry)
                if token is None:
                    break
            if found or not path:
                return
            if not path.endswith("/"):
                props = yield from flows.head(path, container_missing=False)
                if props is not None:
                    yield self._item(self._relative(props.name), listing.from_sdk(props))
                    return
        raise NotFound(f"nothing at {path!r} in container {self.config.container!r}", field="path")

    @staticmethod
    def _item(name: str, entry: Listed) -> Item:
        """The `Item` of a listed entry (or a HEAD's), ``name`` relative to the source."""
        if entry.is_prefix:
            return Item(name, "prefix")
        extra: dict[str, Any] = {"etag": normalize_etag(entry.etag)}
        if entry.content_md5:
            extra["content_md5"] = _b64(entry.content_md5)
        if entry.content_type:
            extra["content_type"] = entry.content_type
        if entry.content_encoding:
            extra["content_encoding"] = entry.content_encoding
        found = blob_format(name)
        if found is not None:
            extra["format"] = found.fmt
            if found.compression is not None:
                extra["compression"] = found.compression
        return Item(name, "blob", size=entry.size, modified=entry.last_modified, extra=extra)

    # --- metadata -------------------------------------------------------------------------

    def metadata(self, item: str) -> dict[str, Any]:
        """Properties and user metadata of blob ``item``."""
        return drive(self._metadata(item), self._sender())

    async def ametadata(self, item: str) -> dict[str, Any]:
        """Async twin of `metadata`."""
        send = functools.partial(self._asend, await self._acontainer())
        return await adrive(self._metadata(item), send)

    def _metadata(self, item: str) -> Flow[dict[str, Any]]:
        name = clean_relative(item)
        with self._errors(f"metadata {item!r}"):
            props = yield remote(name, "get_blob_properties")
        return self._properties(item, props)

    @staticmethod
    def _properties(item: str, props: Any) -> dict[str, Any]:
        settings = props.content_settings

        def iso(value: Any) -> str | None:
            return value.isoformat() if value is not None else None

        out: dict[str, Any] = {
            "name": item,
            "size": props.size,
            "etag": normalize_etag(props.etag),
            "modified": iso(props.last_modified),
            "created": iso(props.creation_time),
            "blob_type": str(getattr(props.blob_type, "value", props.blob_type)),
            "content_type": settings.content_type,
            "content_md5": _b64(settings.content_md5) if settings.content_md5 else None,
            "content_encoding": settings.content_encoding,
            "content_language": settings.content_language,
            "content_disposition": settings.content_disposition,
            "cache_control": settings.cache_control,
            "access_tier": props.blob_tier,
            "lease_state": getattr(props.lease, "state", None),
            "version_id": props.version_id,
            "metadata": dict(props.metadata or {}),
            "format": format_of(item),
        }
        return out

    # --- fetch ----------------------------------------------------------------------------

    def fetch(self, item: str, dest: str | Path, *, overwrite: bool = True) -> FetchResult:
        """
        Download blob ``item`` to ``dest/item``: atomic, verified, resumable, never outside
        ``dest``. With ``overwrite=False`` an existing local file is refused.

        The file holds the blob's stored bytes: one stored with ``Content-Encoding:
        gzip`` is fetched compressed, verified against its size and Content-MD5.

        Raises:
            UnsafePath: the name would map outside ``dest``; nothing is downloaded.
            ConfigError: a segment of the name is longer than the local file system
                allows; nothing is requested.
            IntegrityError: Content-MD5/size mismatch, or the blob changed meanwhile.
            ConnectionFailed: the transfer kept failing without progress.
        """
        target = self._fetch_target(item, dest, overwrite)
        send = functools.partial(self._send, self._container())
        plan = drive(self._fetch_plan(item), send)
        with _local_errors(item), atomic_file(target) as handle:
            sink = DownloadSink(handle, plan.size, checksum=plan.md5 is not None, background=True)
            try:
                return drive(self._fetch(plan, sink, target), send)
            finally:
                sink.close()

    async def afetch(self, item: str, dest: str | Path, *, overwrite: bool = True) -> FetchResult:
        """Async twin of `fetch`."""
        target = self._fetch_target(item, dest, overwrite)
        send = functools.partial(self._asend, await self._acontainer())
        plan = await adrive(self._fetch_plan(item), send)
        with _local_errors(item):
            async with _atomic_file_off_the_loop(target) as handle:
                # The writer thread takes the disk writes and the MD5 off the event loop.
                sink = DownloadSink(
                    handle, plan.size, checksum=plan.md5 is not None, background=True
                )
                try:
                    return await adrive(self._fetch(plan, sink, target), send)
                finally:
                    sink.close()

    def _fetch_target(self, item: str, dest: str | Path, overwrite: bool) -> Path:
        clean_relative(item)
        if item.endswith("/"):
            raise ConfigError(f"{item!r} is a directory; fetch takes one blob", field="item")
        # Refuse unsafe names before any request: nothing may land outside dest.
        target = safe_destination(dest, item)
        _check_name_lengths(item, target)
        _check_no_file_above(item, Path(dest), target)
        if target.is_dir():
            raise AlreadyExists(f"{target} is a directory")
        if target.exists() and not overwrite:
            raise AlreadyExists(f"{target} exists", hint="pass overwrite=True (CLI: --overwrite)")
        return target

    def _fetch_plan(self, item: str) -> Flow[FetchPlan]:
        with self._errors(f"fetch {item!r}"):
            props = yield remote(item, "get_blob_properties")
        return FetchPlan.from_properties(item, props, policy=self.config.retry.policy())

    def _fetch(self, plan: FetchPlan, sink: DownloadSink, target: Path) -> Flow[FetchResult]:
        concurrency = self.config.max_concurrency
        return flows.fetch(plan, sink, target, concurrency=concurrency, errors=self._errors)

    # --- read -----------------------------------------------------------------------------

    def read(self, stream: str, state: State | None = None, **options: Any) -> Iterator[Batch]:
        """
        Records from the JSON Lines / CSV / Parquet blob(s) ``stream`` names: one blob, a
        directory (``logs/``) or a glob (``logs/2024-*/*.jsonl``, ``**`` for any depth).
        Options: ``batch_size`` (records per batch; the config's when ``None``) and
        ``format``.

        Each batch holds records of one blob, and its state (blob, etag, byte offset or
        Parquet row, rows so far) resumes right after it. Parquet blobs yield
        ``pyarrow.RecordBatch`` records (needs pyarrow). ``format`` overrides the suffix;
        compression comes from the suffix (``.gz``, ``.zst``, ``.bz2``, ``.xz``) and from
        the blob's ``Content-Encoding`` (gzip, zstd).
        """
        flow = self._read(stream, state, options)
        yield from drive_items(flow, functools.partial(self._send, self._container()))

    async def aread(
        self, stream: str, state: State | None = None, **options: Any
    ) -> AsyncIterator[Batch]:
        """Async twin of `read` (Parquet decoding runs in a worker thread)."""
        flow = self._read(stream, state, options)
        send = functools.partial(self._asend, await self._acontainer())
        async with contextlib.aclosing(adrive_items(flow, send)) as batches:
            async for batch in batches:
                yield batch

    def _read(self, stream: str, state: State | None, options: dict[str, Any]) -> Flow[None]:
        """The flow of a read; its options are checked now, before any request."""
        batch_size: int | None = options.pop("batch_size", None)
        plan = ReadPlan(stream, state, options.pop("format", None))
        _no_options("read", options)
        return flows.read(
            plan,
            batch_size=batch_size or self.config.batch_size,
            reading=self._reading,
            parquet=self._read_parquet,
            errors=self._errors,
        )

    def _delimiter(self, file_format: FileFormat) -> str:
        """The configured delimiter when one was set, else the suffix's (tab for .tsv)."""
        if "delimiter" in self.config.model_fields_set:
            return self.config.delimiter
        return file_format.delimiter or self.config.delimiter

    def _reading(
        self, plan: ReadPlan, ref: BlobRef, start: Start, file_format: FileFormat, size: int
    ) -> BlobReading:
        return BlobReading(
            plan.stream,
            ref,
            start,
            file_format,
            rows=plan.rows,
            batch_size=size,
            encoding=self.config.encoding,
            delimiter=self._delimiter(file_format),
            null_string=self.config.null_string,
        )

    def _read_parquet(
        self, plan: ReadPlan, ref: BlobRef, start: Start, size: int, stop: int | None = None
    ) -> Iterator[Batch]:
        rows = plan.rows
        handle = _RangeReader(ref, self._sender())
        for record_batch, position in _parquet_batches(handle, ref, start.row, size, self._errors):
            if stop is not None and position > stop:
                before = position - record_batch.num_rows
                if before >= stop:
                    return
                record_batch, position = record_batch.slice(0, stop - before), stop
            rows += record_batch.num_rows
            state: State = {
                "stream": plan.stream,
                "blob": ref.name,
                "etag": ref.etag,
                "row": position,
                "rows": rows,
            }
            yield Batch(plan.stream, record_batch, state)

    # --- partitions ---------------------------------------------------------------------

    def partitions(self, stream: str, count: int, **options: Any) -> builtins.list[Partition]:
        """
        Split ``stream`` into at most ``count`` partitions that together hold each of its
        records once, in the read's order. Many blobs: one partition per blob, or runs of
        consecutive blobs balanced by size. One blob: an uncompressed JSON Lines or CSV
        blob is cut into byte ranges at record boundaries (after the first newline at or
        after each cut; in CSV, one outside quotes), a Parquet blob into ranges of whole
        row groups; a compressed blob stays whole. Each partition names its blobs with the
        etag seen now: reading a blob replaced since fails, naming it. Option: ``format``.
        """
        return drive(self._split(stream, count, options), self._sender())

    async def apartitions(
        self, stream: str, count: int, **options: Any
    ) -> builtins.list[Partition]:
        """Async twin of `partitions`."""
        send = functools.partial(self._asend, await self._acontainer())
        return await adrive(self._split(stream, count, options), send)

    def read_partition(
        self,
        partition: Partition,
        *,
        batch_size: int | None = None,
        state: State | None = None,
        **options: Any,
    ) -> Iterator[Batch]:
        """
        The records of one partition from `partitions`, in order; a batch's ``state``
        resumes the partition right after that batch.
        """
        flow = self._read_partition(partition, batch_size, state, options)
        yield from drive_items(flow, self._sender())

    async def aread_partition(
        self,
        partition: Partition,
        *,
        batch_size: int | None = None,
        state: State | None = None,
        **options: Any,
    ) -> AsyncIterator[Batch]:
        """Async twin of `read_partition`."""
        flow = self._read_partition(partition, batch_size, state, options)
        send = functools.partial(self._asend, await self._acontainer())
        async with contextlib.aclosing(adrive_items(flow, send)) as batches:
            async for batch in batches:
                yield batch

    def _split(self, stream: str, count: int, options: dict[str, Any]) -> Flow[Any]:
        """The flow of `partitions`; options and count are checked before any request."""
        options = dict(options)
        fmt = options.pop("format", None)
        _no_options("partitions", options)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError("partition count must be at least 1", field="count")
        plan = ReadPlan(stream, None, fmt)
        refs = yield from flows.matches(plan, self._errors)
        if not refs:
            raise plan.nothing_found()
        bounds: builtins.list[dict[str, Any]]
        if len(refs) == 1 and count > 1:
            bounds = yield from self._split_blob(plan, refs[0], count)
        else:
            groups = size_groups(refs, count)
            bounds = [{"blobs": [blob_bounds(ref) for ref in group]} for group in groups]
        extra = {"format": fmt} if fmt is not None else {}
        n = len(bounds)
        return [Partition(stream, i, n, {**b, **extra}) for i, b in enumerate(bounds)]

    def _split_blob(
        self, plan: ReadPlan, ref: BlobRef, count: int
    ) -> Flow[builtins.list[dict[str, Any]]]:
        """One blob's partitions: byte ranges, row-group ranges, or the whole blob."""
        blobs = [blob_bounds(ref)]
        found = plan.format_for(ref.name)
        if found.fmt == "parquet":
            if ref.coding is not None:
                return [{"blobs": blobs}]
            units = yield Call(self._row_groups, (ref,))
            return [{"blobs": blobs, "rows": [lo, hi]} for lo, hi in unit_ranges(units, count)]
        if ref.compressed or not self._splittable() or ref.size == 0:
            return [{"blobs": blobs}]
        targets = byte_targets(ref.size, count)
        extra: dict[str, Any] = {}
        with self._errors(f"partition {ref.name!r}"):
            if found.fmt == "csv":
                probe = self._csv_probe(ref, found)
                ends, header = yield from flows.csv_record_ends(
                    ref, targets, probe, self._delimiter(found)
                )
                extra["header"] = header
            else:
                ends = []
                for target in targets:
                    ends.append((yield from flows.line_end(ref, target)))
        ranges = byte_ranges(ref.size, ends)
        return [{"blobs": blobs, "bytes": [lo, hi], **extra} for lo, hi in ranges]

    def _splittable(self) -> bool:
        """Whether newlines and quotes are single bytes of their own in the encoding."""
        return '\n"'.encode(self.config.encoding) == b'\n"'

    def _row_groups(self, ref: BlobRef) -> builtins.list[int]:
        """Rows per row group of Parquet blob ``ref`` (its footer, by ranged GETs)."""
        pq = _parquet_module(ref)
        with self._errors(f"partition {ref.name!r}"):
            metadata = pq.ParquetFile(_RangeReader(ref, self._sender())).metadata
            return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]

    def _read_partition(
        self,
        partition: Partition,
        batch_size: int | None,
        state: State | None,
        options: dict[str, Any],
    ) -> Flow[None]:
        """The flow of `read_partition`; the partition is checked before any request."""
        _no_options("read_partition", dict(options))
        bounds = partition.bounds if isinstance(partition, Partition) else None
        blobs = bounds.get("blobs") if isinstance(bounds, dict) else None
        if not isinstance(blobs, builtins.list) or not blobs:
            raise ConfigError(
                "partition is not an azure-blob partition (it names no blobs)",
                field="partition",
                hint="make the partitions with partitions() of this connector",
            )
        assert bounds is not None
        refs = [blob_from_bounds(blob) for blob in blobs]
        span: tuple[str, int, int] | None = None
        for unit in ("bytes", "rows"):
            if unit in bounds:
                pair = bounds[unit]
                if (
                    not isinstance(pair, builtins.list | tuple)
                    or len(pair) != 2
                    or not all(isinstance(x, int) and 0 <= x for x in pair)
                    or len(refs) != 1
                ):
                    raise ConfigError(
                        f"partition is not an azure-blob partition (bad {unit} range)",
                        field="partition",
                    )
                span = (unit, pair[0], pair[1])
        plan = ReadPlan(partition.stream, state, bounds.get("format"))
        if plan.resume_blob is not None and plan.resume_blob not in {r.name for r in refs}:
            raise ConfigError(
                f"state is not a state of partition {partition.index} of {partition.stream!r}: "
                f"its blob {plan.resume_blob!r} is not one of the partition's",
                field="state",
                hint="resume a partition only from a state of its own batches",
            )
        return flows.read_partition(
            plan,
            refs,
            span,
            bounds.get("header"),
            batch_size=batch_size or self.config.batch_size,
            reading=self._reading,
            parquet=self._read_parquet,
            errors=self._errors,
        )

    # --- estimate -----------------------------------------------------------------------

    def estimate(self, stream: str, **options: Any) -> Estimate:
        """
        The stored bytes of the blob(s) ``stream`` names (summed over a directory or glob,
        from one HEAD or the listing); rows are not known. Exact unless a blob is
        compressed (by suffix or Content-Encoding), whose records take more bytes.
        """
        plan = self._estimate_plan(stream, options)
        send = functools.partial(self._send, self._container())
        return _estimate(plan, drive(flows.matches(plan, self._errors), send))

    async def aestimate(self, stream: str, **options: Any) -> Estimate:
        """Async twin of `estimate`."""
        plan = self._estimate_plan(stream, options)
        send = functools.partial(self._asend, await self._acontainer())
        return _estimate(plan, await adrive(flows.matches(plan, self._errors), send))

    @staticmethod
    def _estimate_plan(stream: str, options: dict[str, Any]) -> ReadPlan:
        options = dict(options)
        fmt = options.pop("format", None)
        options.pop("batch_size", None)
        _no_options("estimate", options)
        return ReadPlan(stream, None, fmt)

    # --- write / upload -----------------------------------------------------------------

    def write(
        self,
        stream: str,
        batches: Iterable[Batch | builtins.list[dict[str, Any]]],
        **options: Any,
    ) -> WriteResult:
        """
        Write records to blob ``stream`` as JSON Lines, CSV or Parquet (format from the
        suffix or ``format``; ``.gz``, ``.zst``, ``.bz2``, ``.xz`` compress), streamed
        through a block upload: memory stays at about ``block_size * (max_concurrency +
        1)`` (plus one row group for Parquet), and the blob appears only when complete.

        Options (`WriteOptions`): ``overwrite`` / ``mode`` (``"create"`` or
        ``"overwrite"``), ``format``, ``content_type``, ``metadata``, ``state_key`` and
        ``state``; CSV ``columns``; Parquet ``compression_codec`` and ``row_group_size``.
        An existing blob is refused (`AlreadyExists`) unless ``overwrite=True`` (or
        ``mode='overwrite'``). Content type and Content-MD5 are set.

        With ``state_key`` and ``state`` (what `headwater.copy` passes), ``state`` is
        stored in the blob's metadata by the same commit, as it is when the last batch has
        been consumed; a blob already holding a state under ``state_key`` is continued:
        its records stay and the new ones follow (see `WritePlan`). A continuation given
        no batch at all leaves the blob as it is.
        """
        flow = self._write_flow(stream, options, stream_bodies=False)
        return self._put(self._container(), flow, batches)

    async def awrite(
        self,
        stream: str,
        batches: Iterable[Batch | builtins.list[dict[str, Any]]]
        | AsyncIterable[Batch | builtins.list[dict[str, Any]]],
        **options: Any,
    ) -> WriteResult:
        """
        Async twin of `write`; ``batches`` may be a sync or an async iterable. Parquet and
        compressed output are encoded in a worker thread.
        """
        flow = self._write_flow(stream, options, stream_bodies=True)
        return await self._aput(await self._acontainer(), flow, _aiter_of(batches))

    def _write_flow(
        self, stream: str, options: dict[str, Any], *, stream_bodies: bool
    ) -> Flow[WriteResult]:
        """The flow of a write; its options are checked now, before any request."""
        given = _take(WriteOptions, options)
        found, extra = _write_format(stream, given.format, options)
        plan = WritePlan(
            stream,
            given.content_type or content_type_for(found),
            given.metadata,
            _overwrite(given.overwrite, given.mode),
            checked=True,
        )
        return self._write(
            found, extra, plan, given.state_key, given.state, stream_bodies=stream_bodies
        )

    def _write(
        self,
        found: FileFormat,
        extra: dict[str, Any],
        plan: WritePlan,
        state_key: str | None,
        state: State | None,
        *,
        stream_bodies: bool,
    ) -> Flow[WriteResult]:
        """
        The flow of a write, its batches `PULL`ed from the driver: decide what the commit
        does (a HEAD when a state key asks for one), continue the blob a state says
        (its blocks and CSV header kept; Parquet rewritten whole, the old row groups
        first), encode the batches and upload them (`flows.Upload`).
        """
        stream = plan.name
        props = None
        if plan.needs_head(state_key):
            with self._errors(f"write {stream!r}"):
                props = yield from flows.head(stream)
        plan = self._with_state(plan, props, state_key, state)
        first: builtins.list[Any] = []
        carried: Generator[Any, None, None] | None = None
        header = None
        if plan.continuing:
            first.append((yield PULL))
            if first[0] is END:
                return WriteResult(stream, 0)  # a continuation given nothing leaves the blob
            ref = BlobRef.from_properties(stream, props)
            if found.fmt == "parquet":
                plan.rewrite_whole()
                carried = yield Call(self._old_rows, (ref,))
            else:
                header = yield from self._continued(plan, ref, found)
        writing = self._writing(found, plan, extra, header)
        # Parquet and compression are CPU work: off the event loop.
        offload = found.fmt == "parquet" or found.compression is not None
        upload = self._upload(plan, stream_bodies=stream_bodies)
        yield from upload.start()
        if carried is not None:
            try:
                while (old := (yield Call(next, (carried, END)))) is not END:
                    yield from upload.feed((yield Call(writing.carry, (old,), offload)))
            finally:
                carried.close()
        while (batch := first.pop() if first else (yield PULL)) is not END:
            yield from upload.feed((yield Call(writing.encode, (batch,), offload)))
        yield from upload.feed((yield Call(writing.finish, (), offload)))
        result = yield from upload.finish()
        self._committed(stream, plan, result)
        return WriteResult(stream, writing.count)

    def _old_rows(self, ref: BlobRef) -> Generator[Any, None, None]:
        """The record batches of the Parquet blob a write rewrites (blocking, sync client)."""
        handle = _RangeReader(ref, self._sender())
        size = self.config.batch_size
        return (b for b, _ in _parquet_batches(handle, ref, 0, size, self._errors))

    def _with_state(
        self, plan: WritePlan, props: Any | None, state_key: str | None, state: State | None
    ) -> WritePlan:
        seen: Seen = NOT_ASKED
        if state_key is not None:
            seen = self._seen.get((plan.name, state_key), NOT_ASKED)
        return plan.decide(props, state_key=state_key, state=state, seen=seen)

    def _committed(self, stream: str, plan: WritePlan, result: UploadResult) -> None:
        if plan.state_key is not None:
            # The blob now holds this key's state: a next write continues this version.
            self._seen[(stream, plan.state_key)] = result.etag

    def _writing(
        self,
        found: FileFormat,
        plan: WritePlan,
        options: dict[str, Any],
        header: builtins.list[str] | None,
    ) -> RecordWriting:
        return RecordWriting(
            found,
            encoding=self.config.encoding,
            delimiter=self._delimiter(found),
            null_string=self.config.null_string,
            columns=options.pop("columns", None),
            continuing=plan.continuing,
            csv_header=header,
            parquet_options=options,
        )

    def _csv_probe(self, ref: BlobRef, found: FileFormat) -> CsvHeaderProbe:
        return CsvHeaderProbe(
            ref.name,
            found,
            ref.coding,
            encoding=self.config.encoding,
            delimiter=self._delimiter(found),
        )

    def _continued(self, plan: WritePlan, ref: BlobRef, found: FileFormat) -> Flow[Any]:
        """
        A write that continues a text blob keeps its committed blocks; a CSV one gives
        the blob's header (its records must fit it, and no second header is written).
        """
        with self._errors(f"write {plan.name!r}"):
            committed, _ = yield remote(plan.name, "get_block_list", "committed")
        plan.keep_blocks([(b.id, int(b.size)) for b in committed], ref.size)
        if found.fmt != "csv":
            return None
        return (yield from flows.csv_header(ref, self._csv_probe(ref, found), self._errors))

    # --- part writes (`Capability.PART_WRITES`, see `_parts`) -----------------------------

    def write_part(
        self,
        stream: str,
        batches: Iterable[Batch | builtins.list[dict[str, Any]]],
        *,
        job: str,
        index: int,
        **options: Any,
    ) -> WriteResult:
        """
        Stage part ``index`` of ``job`` as uncommitted blocks of JSON Lines or CSV blob
        ``stream`` (a retry replaces it); not for compressed or Parquet blobs (`_parts`).
        """
        from headwater_azure_blob import _parts

        return _parts.write_part(self, stream, batches, job, index, options)

    def commit_parts(
        self, stream: str, *, job: str, parts: Mapping[int, int], **options: Any
    ) -> WriteResult:
        """
        Make the staged parts of ``job`` blob ``stream``'s content with one block-list
        commit, in index order, counts checked; ``mode`` is `write`'s.
        """
        from headwater_azure_blob import _parts

        return _parts.commit(self, stream, job, parts, options)

    def abort_parts(self, stream: str, *, job: str) -> None:
        """Forget the parts of ``job`` (their uncommitted blocks expire with the service)."""
        from headwater_azure_blob import _parts

        _parts.abort(self, stream, job)

    # --- the state stored with a write ---------------------------------------------------

    def written_state(self, stream: str, key: str) -> State | None:
        """
        The state committed by ``write(stream, ..., state_key=key, state=...)``: the
        ``state`` when blob ``stream`` exists and its metadata holds one under ``key``,
        else ``None``. A later write with that key continues the version read here, or
        fails if the blob changed meanwhile.
        """
        clean_relative(stream, "stream")
        send = functools.partial(self._send, self._container())
        with self._errors(f"written_state {stream!r}"):
            props = drive(flows.head(stream), send)
        return self._remember(stream, key, props)

    async def awritten_state(self, stream: str, key: str) -> State | None:
        """Async twin of `written_state`."""
        clean_relative(stream, "stream")
        send = functools.partial(self._asend, await self._acontainer())
        with self._errors(f"written_state {stream!r}"):
            props = await adrive(flows.head(stream), send)
        return self._remember(stream, key, props)

    def _remember(self, stream: str, key: str, props: Any | None) -> State | None:
        state = state_in(props.metadata, key, stream) if props is not None else None
        etag = normalize_etag(props.etag) if props is not None and state is not None else None
        self._seen[(stream, key)] = etag
        return state

    # --- upload ----------------------------------------------------------------------------

    def upload(
        self, item: str, source: Source, *, overwrite: bool = False, **options: Any
    ) -> UploadResult:
        """
        Upload a local file (path) or a binary stream to blob ``item`` with a block
        upload at ``max_concurrency``; the blob appears only when complete. Its
        Content-MD5 is computed on the way and set, unless ``checksum=False`` (hashing is
        CPU work: skip it only for data verified otherwise).

        Options (`UploadOptions`): ``overwrite``, ``content_type``, ``metadata``,
        ``checksum``.

        Raises:
            AlreadyExists: the blob exists and ``overwrite`` is false.
        """
        options["overwrite"] = overwrite
        with self._file_upload(item, source, options, stream_bodies=False) as flow:
            return self._put(self._container(), flow)

    async def aupload(
        self, item: str, source: Source, *, overwrite: bool = False, **options: Any
    ) -> UploadResult:
        """Async twin of `upload` (file reads run in a worker thread)."""
        options["overwrite"] = overwrite
        with self._file_upload(item, source, options, stream_bodies=True) as flow:
            return await self._aput(await self._acontainer(), flow)

    @contextlib.contextmanager
    def _file_upload(
        self, blob: str, source: Source, options: dict[str, Any], *, stream_bodies: bool
    ) -> Iterator[Flow[UploadResult]]:
        """The flow of `upload`, reading ``source`` a block at a time (file reads: `Call`)."""
        given = _take(UploadOptions, options)
        _no_options("upload", options)
        clean_relative(blob, "blob")
        content_type = given.content_type or _guess_type(blob)
        plan = WritePlan(blob, content_type, given.metadata, given.overwrite, given.checksum)
        with _open_source(source) as handle:
            read = functools.partial(handle.read, self.config.block_size)
            yield flows.upload(self._upload(plan, stream_bodies=stream_bodies), read)

    def _upload(self, plan: WritePlan, *, stream_bodies: bool) -> flows.Upload:
        return flows.Upload(
            plan,
            block_size=self.config.block_size,
            concurrency=self.config.max_concurrency,
            stream_bodies=stream_bodies,
            errors=self._errors,
        )

    def _put(self, container: ContainerClient, flow: Flow[R], source: Iterable[Any] = ()) -> R:
        """The sync driver of an upload or write flow, ``source`` the items it `PULL`s."""
        items = iter(source)

        def perform(step: Any) -> Any:
            return next(items, END) if step is PULL else self._send(container, step)

        return drive(flow, perform, workers=self.config.max_concurrency)

    async def _aput(
        self,
        container: AsyncContainerClient,
        flow: Flow[R],
        source: AsyncIterator[Any] | None = None,
    ) -> R:
        """The async driver of an upload or write flow (block bodies go as streams)."""

        async def perform(step: Any) -> Any:
            if step is PULL:
                return END if source is None else await anext(source, END)
            return await self._asend(container, step)

        return await adrive(flow, perform)

    # --- performing the steps of a flow (see `flows`) -------------------------------------

    def _send(self, container: ContainerClient, step: Remote | ListPage) -> Any:
        """Perform a `Remote` or `ListPage` step with the sync client, through the breaker."""
        with self._guarded():
            if isinstance(step, ListPage):
                if not listing.can_send(container):
                    pager = self._pages(container, step)
                    return self._named(map(listing.from_sdk, next(pager))), pager.continuation_token
                where = self._listing_where(step)
                with listing.not_xml(where):
                    request = self._list_request(container, step)
                    response = listing.send(container, request, step.options)
                return self._named_page(listing.page(response, where))
            result: Any = self._client(container, step)
            for method, args, kwargs in step.calls:
                result = getattr(result, method)(*args, **kwargs)
            return result

    async def _asend(self, container: AsyncContainerClient, step: Remote | ListPage) -> Any:
        """Perform a `Remote` or `ListPage` step with the aio client (each call awaited)."""
        with self._guarded():
            if isinstance(step, ListPage):
                if not listing.can_send(container):
                    pager = self._pages(container, step)
                    entries = [listing.from_sdk(entry) async for entry in await anext(pager)]
                    return self._named(entries), pager.continuation_token
                where = self._listing_where(step)
                with listing.not_xml(where):
                    request = self._list_request(container, step)
                    response = await listing.send(container, request, step.options)
                return self._named_page(listing.page(response, where))
            target: Any = self._client(container, step)
            for method, args, kwargs in step.calls:
                target = await getattr(target, method)(*args, **kwargs)
            return target

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        """
        One step through the circuit breaker of the account's blob endpoint (config
        ``breaker``, shared process-wide): refused at once with `CircuitOpen` while it is
        open. A transient failure, what is left once the SDK's retries are spent, counts
        against it; any other outcome shows the service answering: a 404, and a body cut
        off after the response began (the fetch flow resumes it, and keeps going as long
        as it advances).
        """
        breaker = self.config.breaker.breaker(self._endpoint)
        breaker.before_call()
        try:
            yield
        except Exception as exc:
            if broke_mid_body(exc):
                breaker.record_success()
            else:
                breaker.record_failure(self.translate_error(exc))
            raise
        except BaseException as exc:  # a cancellation: it only frees a half-open trial
            breaker.record_failure(exc)
            raise
        breaker.record_success()

    def _client(self, container: Any, step: Remote) -> Any:
        return container if step.blob is None else container.get_blob_client(self._full(step.blob))

    def _pages(self, container: Any, step: ListPage) -> Any:
        options: dict[str, Any] = {
            "name_starts_with": self._full(step.prefix) or None,
            "results_per_page": step.size or self.config.list_page_size,
            **step.options,
        }
        if step.delimiter is None:
            return container.list_blobs(**options).by_page(step.token)
        return container.walk_blobs(delimiter=step.delimiter, **options).by_page(step.token)

    def _list_request(self, container: Any, step: ListPage) -> Any:
        """The List Blobs request of ``step`` (the query `_pages` has the SDK send)."""
        return listing.request(
            container,
            prefix=self._full(step.prefix),
            delimiter=step.delimiter,
            marker=step.token,
            size=step.size or self.config.list_page_size,
        )

    def _listing_where(self, step: ListPage) -> str:
        return f"list {step.prefix or '/'!r} in container {self.config.container!r}"

    def _sender(self) -> Any:
        return functools.partial(self._send, self._container())

    def _named(self, entries: Iterable[Listed]) -> builtins.list[tuple[str, Listed]]:
        """Listed entries with their names relative to the source prefix."""
        return [(self._relative(entry.name), entry) for entry in entries]

    def _named_page(
        self, page: tuple[builtins.list[Listed], str | None]
    ) -> tuple[builtins.list[tuple[str, Listed]], str | None]:
        entries, token = page
        return self._named(entries), token


# --- helpers ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class WriteOptions:
    """The options of `AzureBlobConnector.write` that are not the format's."""

    #: Replace an existing blob (``True``, or ``"true"`` from a command line).
    overwrite: bool | str = False
    #: ``"create"`` (refuse an existing blob) or ``"overwrite"``; wins over ``overwrite``.
    mode: Literal["create", "overwrite"] | None = None
    #: The record format, when the suffix does not say it.
    format: str | None = None
    content_type: str | None = None
    #: The blob's user metadata.
    metadata: dict[str, str] | None = None
    #: With ``state``: the key the state is committed under (see `WritePlan`).
    state_key: str | None = None
    state: State | None = None


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class UploadOptions:
    """The options of `AzureBlobConnector.upload`."""

    #: Replace an existing blob.
    overwrite: bool = False
    #: Guessed from the name when not given.
    content_type: str | None = None
    #: The blob's user metadata.
    metadata: dict[str, str] | None = None
    #: Compute and set the Content-MD5.
    checksum: bool = True


Options = TypeVar("Options", WriteOptions, UploadOptions)


def _take(kind: type[Options], options: dict[str, Any]) -> Options:
    """The ``kind`` options taken out of ``options`` (what is left stays there)."""
    names = [field.name for field in dataclasses.fields(kind)]
    return kind(**{name: options.pop(name) for name in names if name in options})


class _RangeReader(Positioned, io.RawIOBase):
    """
    A seekable read-only file over one blob version (``ref``, its etag pinned): each read
    is the flow of one ranged GET (`flows.range_at`) performed by ``perform`` (the sync
    `_send`, so through the endpoint's breaker like every request).
    """

    def __init__(self, ref: BlobRef, perform: Callable[[Any], Any]) -> None:
        super().__init__()
        self._ref = ref
        self._perform = perform
        self.size = ref.size
        self._position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        length = min(len(view), self.size - self._position)
        if length <= 0:
            return 0
        data = drive(flows.range_at(self._ref, self._position, length), self._perform)
        view[: len(data)] = data
        self._position += len(data)
        return len(data)


def _parquet_module(ref: BlobRef) -> Any:
    """``pyarrow.parquet``, or the error saying Parquet blob ``ref`` needs it."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            f"{ref.name!r} is Parquet, which needs pyarrow",
            field="format",
            hint="pip install 'headwater-azure-blob[parquet]'",
        ) from None
    return pq


def _parquet_batches(
    handle: _RangeReader,
    ref: BlobRef,
    skip: int,
    size: int,
    errors: Any,
) -> Iterator[tuple[Any, int]]:
    """
    The record batches of Parquet blob ``ref`` from row ``skip`` on, each with the row
    just after it; row groups before ``skip`` are not fetched.
    """
    pq = _parquet_module(ref)
    if ref.coding is not None:
        raise ConfigError(
            f"Parquet blob {ref.name!r} is stored with Content-Encoding "
            f"{ref.content_encoding!r}; Parquet is read by ranges, which that prevents",
            field="content_encoding",
            hint="store Parquet without a Content-Encoding (it compresses its own pages)",
        )
    with errors(f"read {ref.name!r}"):
        parquet = pq.ParquetFile(handle)
        groups: builtins.list[int] = []
        position = 0
        for index in range(parquet.num_row_groups):
            rows_in_group = parquet.metadata.row_group(index).num_rows
            if skip >= rows_in_group and not groups:
                skip -= rows_in_group
                position += rows_in_group
                continue
            groups.append(index)
        if not groups:
            return
        for record_batch in parquet.iter_batches(
            batch_size=size, row_groups=groups, use_threads=False
        ):
            if skip:
                if record_batch.num_rows <= skip:
                    skip -= record_batch.num_rows
                    position += record_batch.num_rows
                    continue
                record_batch = record_batch.slice(skip)
                position += skip
                skip = 0
            position += record_batch.num_rows
            yield record_batch, position


def _estimate(plan: ReadPlan, refs: builtins.list[BlobRef]) -> Estimate:
    if not refs:
        raise plan.nothing_found()
    exact = not any(ref.compressed for ref in refs)
    return Estimate(bytes=sum(ref.size for ref in refs), exact=exact)


def _write_format(
    stream: str, fmt: str | None, options: dict[str, Any]
) -> tuple[FileFormat, dict[str, Any]]:
    """The format of a write and its format options (unknown ones refused)."""
    clean_relative(stream, "stream")
    found = require_format(stream, fmt)
    allowed = _WRITE_OPTIONS.get(found.fmt, frozenset())
    _no_options("write", {k: v for k, v in options.items() if k not in allowed})
    return found, dict(options)


#: Options `write` takes per format.
_WRITE_OPTIONS: Final = {
    "csv": frozenset({"columns"}),
    "parquet": frozenset({"compression_codec", "row_group_size"}),
}


async def _aiter_of(batches: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(batches, AsyncIterable):
        async for batch in batches:
            yield batch
    else:
        for batch in batches:
            yield batch


@contextlib.contextmanager
def _open_source(source: Source) -> Iterator[IO[bytes]]:
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"no file {str(path)!r} to upload", field="source")
        with path.open("rb") as handle:
            yield handle
    else:
        yield source


def _guess_type(name: str) -> str:
    found = blob_format(name)
    if found is not None:
        return content_type_for(found)
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def _overwrite(value: bool | str, mode: str | None) -> bool:
    if mode is not None:
        if mode not in ("create", "overwrite"):
            raise ConfigError(
                f"write mode must be 'create' or 'overwrite', not {mode!r} "
                "(blobs cannot be appended to by this connector)",
                field="mode",
            )
        return mode == "overwrite"
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"overwrite must be true or false, not {value!r}", field="overwrite")


def _no_options(operation: str, options: dict[str, Any]) -> None:
    if options:
        raise ConfigError(
            f"azure-blob: unknown {operation} option(s): {', '.join(sorted(options))}"
        )


def _b64(value: bytes | bytearray) -> str:
    import base64

    return base64.b64encode(bytes(value)).decode()


async def _close_when_cancelled(service: Any, credential: Any) -> None:
    """Wait forever; when cancelled, close the aio client (and its credential)."""
    try:
        await asyncio.Event().wait()
    finally:
        await service.close()
        if credential is not None:
            await credential.close()


def _name_max(directory: Path) -> int:
    """The longest file name, in bytes, the file system holding ``directory`` allows."""
    where = directory
    while not where.exists() and where.parent != where:
        where = where.parent
    try:
        return int(os.pathconf(where, "PC_NAME_MAX"))
    except (AttributeError, ValueError, OSError):
        return 255  # no pathconf (Windows) or no answer: the common limit


def _check_name_lengths(item: str, target: Path) -> None:
    """Refuse, before any request, a blob whose name has a segment too long for a file."""
    limit = _name_max(target.parent)
    for segment in item.split("/"):
        length = len(os.fsencode(segment))
        if length > limit:
            raise ConfigError(
                f"cannot fetch {item!r}: its name has a segment of {length} bytes, and the "
                f"local file system allows {limit} bytes per name",
                field="item",
                hint="read() its records (which writes no file), or rename the blob",
            )


def _check_no_file_above(item: str, dest: Path, target: Path) -> None:
    """
    Refuse, before any request, a blob whose local directory is a file already: blobs
    ``dir`` and ``dir/child.txt`` both exist in a container, but not both on a disk.
    """
    root = dest.resolve()
    existing = root
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise AlreadyExists(
            f"cannot fetch {item!r}: {existing} is a file, so it cannot be the destination "
            "directory (or one above it)",
            hint="fetch into a directory",
        )
    for parent in target.parents:
        if parent == root or root not in parent.parents:
            return
        if parent.exists() and not parent.is_dir():
            raise AlreadyExists(
                f"cannot fetch {item!r}: {parent} is a file (another blob's), so it cannot "
                "also be the directory this blob goes in",
                hint="fetch one of the two blobs into another directory",
            )


def _too_long(item: str, exc: OSError) -> ConfigError:
    return ConfigError(
        f"cannot fetch {item!r}: the local file system refuses the name of its temporary "
        f"file ({os.strerror(exc.errno or errno.ENAMETOOLONG)})",
        field="item",
        hint="read() its records (which writes no file), or rename the blob",
    )


@contextlib.contextmanager
def _local_errors(item: str) -> Iterator[None]:
    """
    A local file-system failure of a fetch (creating the directories or the temporary
    file, writing, hashing, fsync, rename: disk full, file too large, I/O error, ...)
    reported as one line naming the blob and the cause. `atomic_file` has removed the
    temporary file by then, and the target was never touched.
    """
    try:
        yield
    except (ConnectionError, TimeoutError):
        raise  # the network's (OSError subclasses too), mapped where requests are sent
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise _too_long(item, exc) from None
        code = errno.errorcode.get(exc.errno or 0)
        cause = f"{exc.strerror or type(exc).__name__}{f' [{code}]' if code else ''}"
        where = f" ({exc.filename})" if exc.filename else ""
        raise IntegrityError(
            f"cannot fetch {item!r}: writing the local file failed: {cause}{where}; "
            "nothing was written",
            hint="check the destination (free space, file size limit, permissions, disk "
            "health) and fetch again",
        ) from None


@contextlib.asynccontextmanager
async def _atomic_file_off_the_loop(target: Path) -> AsyncIterator[IO[bytes]]:
    """
    `atomic_file` for async code: the fsync and rename of a completed download (which
    can take a while for a large file) run in a worker thread, not on the event loop.

    On failure the temporary file is removed right here, without awaiting anything, so
    even a cancelled task leaves no partial file behind.
    """
    manager = atomic_file(target)
    handle = await asyncio.to_thread(manager.__enter__)
    try:
        yield handle
    except BaseException as exc:
        if not manager.__exit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        await asyncio.to_thread(manager.__exit__, None, None, None)
