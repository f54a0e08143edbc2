"""
The control flow of fetch, upload, write and read, written once for both APIs.

A *flow* is a generator that never touches the network, the disk or the clock: it yields
*steps* and receives their outcomes. The driver — `drive` or `adrive` with the
connector's sync or aio client — performs each step and sends its result back in, or
throws its exception in at the ``yield``, where the flow's own ``try`` and ``with``
blocks see it (error translation, resume after a failure, commit preconditions). So the
range resume and verification of a download, the block upload with its one-request and
one-block paths, and the planning of a read exist once (the connector writes its write,
list and check flows the same way); each side only says how a step is performed. The
steps:

* `Remote` — method calls on the blob's (or the container's) client, each on the result
  of the one before (``download_blob(...)`` then ``readall()``); the async driver awaits
  each one.
* `ListPage` — one page of a blob listing, answered with ``(entries, next_token)``.
* `PULL` — the next item of the driver's source, the batches of a write (`END` after
  the last).
* `Call` — local blocking work (disk writes, hashing, Parquet decoding, compression):
  the sync driver runs it in place, the async one in a worker thread, off the event loop
  (in place too when ``offload`` is false: work too small to pay for the thread).
* `Sleep` — a pause before resuming.
* `Spawn`, `WAIT_ANY`, `WAIT_ALL` — a step started without waiting for it, and waits for
  one or all of those started (answered with how many finished; the first failure is
  thrown in). The flow bounds how many run at once.

A flow of records or items also yields them (`Batch`, `Item`: anything that is not a
step): the driver passes them on to its consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import io
import time
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    Future,
    ThreadPoolExecutor,
    wait,
)
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

from headwater import (
    AlreadyExists,
    Batch,
    ConfigError,
    FetchResult,
    HeadwaterError,
    IntegrityError,
    NotFound,
)
from headwater.formats import CsvRecordEnds
from headwater.toolkit import get_logger
from headwater_azure_blob._names import normalize_etag
from headwater_azure_blob._plan import (
    BlobRef,
    FetchPlan,
    ReadPlan,
    Start,
    WritePlan,
)
from headwater_azure_blob._transfer import BlockPlan, DownloadSink, Rechunker, check_md5

if TYPE_CHECKING:
    from headwater.formats import FileFormat
    from headwater_azure_blob._records import BlobReading, CsvHeaderProbe, Received

logger = get_logger("headwater.azure_blob")

R = TypeVar("R")

#: Bytes per ranged GET when reading records (and probing a blob): a read holds two,
#: the one whose records are decoded and the next, downloading meanwhile.
READ_CHUNK: Final = 1024 * 1024

#: aiohttp warns (``ResourceWarning``) on every request body over 1 MiB given as bytes,
#: which an application that runs with warnings as errors sees as a failed upload; as a
#: stream it is sent in 256 KiB pieces instead. The one-request upload sends bytes, so
#: it is used up to this size; larger data that fits one block is staged as one block
#: (one request more), on both sides, so the two upload the same way.
ONE_REQUEST_MAX: Final = 1 << 20


# --- steps ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Remote:
    """Calls on the client of blob ``blob`` (the container's for ``None``), chained."""

    blob: str | None
    calls: tuple[tuple[str, tuple[Any, ...], dict[str, Any]], ...]

    def then(self, method: str, *args: Any, **kwargs: Any) -> Remote:
        """This step, then ``method`` called on its result."""
        return Remote(self.blob, (*self.calls, (method, args, kwargs)))


def remote(blob: str | None, method: str, *args: Any, **kwargs: Any) -> Remote:
    """The step calling ``method`` on the client of ``blob`` (``None``: the container)."""
    return Remote(blob, ((method, args, kwargs),))


@dataclasses.dataclass(frozen=True, slots=True)
class ListPage:
    """
    One page of the blobs whose relative names start with ``prefix`` (with a
    ``delimiter``, the blobs and prefixes one level down), ``size`` entries at most (the
    configured page size when ``None``); ``options`` go to the SDK call.
    """

    prefix: str
    token: str | None = None
    delimiter: str | None = None
    size: int | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """Local blocking work: ``function(*args)``."""

    function: Callable[..., Any]
    args: tuple[Any, ...] = ()
    offload: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class Spawn:
    """Start ``step`` and go on; its failure comes back at a later wait."""

    step: Remote


@dataclasses.dataclass(frozen=True, slots=True)
class Wait:
    every: bool


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: The step asking the driver for the next item of its source (pieces, batches).
PULL: Final = _Marker("PULL")
#: What `PULL` (and a `next` in a `Call`) gives once the source is exhausted.
END: Final = _Marker("END")
WAIT_ANY: Final = Wait(every=False)
WAIT_ALL: Final = Wait(every=True)

Step: TypeAlias = Remote | ListPage | Call | Sleep | Spawn | Wait | _Marker
_STEPS: Final = (Remote, ListPage, Call, Sleep, Spawn, Wait, _Marker)
Flow: TypeAlias = Generator[Any, Any, R]
Errors: TypeAlias = Callable[[str], contextlib.AbstractContextManager[None]]
#: The batches of a Parquet blob from a start up to a row (``None``: its end), blocking.
ParquetRead: TypeAlias = Callable[["ReadPlan", BlobRef, Start, int, int | None], Iterator[Batch]]
Reading: TypeAlias = Callable[["ReadPlan", BlobRef, Start, "FileFormat", int], "BlobReading"]


# --- drivers ----------------------------------------------------------------------------


class _Stepper:
    """A flow run one step at a time: each outcome goes back in, a value or an exception."""

    def __init__(self, flow: Flow[Any]) -> None:
        self._flow = flow
        self._reply: Any = None
        self._error: Exception | None = None
        self.value: Any = None

    def __iter__(self) -> _Stepper:
        return self

    def __next__(self) -> Any:
        reply, error = self._reply, self._error
        self._reply = self._error = None
        try:
            return self._flow.send(reply) if error is None else self._flow.throw(error)
        except StopIteration as stop:
            self.value = stop.value
            raise StopIteration from None

    def settle(self, outcome: tuple[Any, Exception | None]) -> None:
        """What the last step gave: its result, or the exception it raised."""
        self._reply, self._error = outcome

    def close(self) -> None:
        self._flow.close()


def _outcome(function: Callable[..., Any], *args: Any) -> tuple[Any, Exception | None]:
    try:
        return function(*args), None
    except Exception as exc:  # thrown into the flow, which decides
        return None, exc


async def _aoutcome(awaitable: Awaitable[Any]) -> tuple[Any, Exception | None]:
    try:
        return await awaitable, None
    except Exception as exc:  # thrown into the flow, which decides
        return None, exc


def _raise_first(done: Iterable[Future[Any] | asyncio.Future[Any]]) -> int:
    """Raise the first failure among finished steps; else how many finished."""
    finished = 0
    for future in done:
        error = future.exception()
        if error is not None:
            raise error
        finished += 1
    return finished


class _Threads:
    """Spawned steps of the sync driver: a thread pool, made on first use."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._pending: set[Future[Any]] = set()

    def spawn(self, function: Callable[[Any], Any], step: Remote) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="headwater-upload")
        self._pending.add(self._pool.submit(function, step))

    def wait(self, every: bool) -> int:
        rule = ALL_COMPLETED if every else FIRST_COMPLETED
        done, self._pending = wait(self._pending, return_when=rule)
        return _raise_first(done)

    def close(self) -> None:
        for future in self._pending:
            future.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)


class _Tasks:
    """Spawned steps of the async driver: tasks, cancelled when the flow ends early."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Future[Any]] = set()

    def spawn(self, awaitable: Awaitable[Any]) -> None:
        self._pending.add(asyncio.ensure_future(awaitable))

    async def wait(self, every: bool) -> int:
        if not self._pending:
            return 0
        rule = asyncio.ALL_COMPLETED if every else asyncio.FIRST_COMPLETED
        done, self._pending = await asyncio.wait(self._pending, return_when=rule)
        return _raise_first(done)

    async def close(self) -> None:
        for task in self._pending:
            task.cancel()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


def _sync_step(step: Step, perform: Callable[[Any], Any], threads: _Threads) -> Any:
    if isinstance(step, Call):
        return step.function(*step.args)
    if isinstance(step, Sleep):
        return time.sleep(step.seconds)
    if isinstance(step, Spawn):
        return threads.spawn(perform, step.step)
    if isinstance(step, Wait):
        return threads.wait(step.every)
    return perform(step)


async def _async_step(step: Step, perform: Callable[[Any], Awaitable[Any]], tasks: _Tasks) -> Any:
    if isinstance(step, Call):
        if not step.offload:
            return step.function(*step.args)
        return await asyncio.to_thread(step.function, *step.args)
    if isinstance(step, Sleep):
        return await asyncio.sleep(step.seconds)
    if isinstance(step, Spawn):
        return tasks.spawn(perform(step.step))
    if isinstance(step, Wait):
        return await tasks.wait(step.every)
    return await perform(step)


def _run(steps: _Stepper, perform: Callable[[Any], Any], workers: int) -> Iterator[Any]:
    threads = _Threads(workers)
    try:
        for step in steps:
            if not isinstance(step, _STEPS):
                yield step
            else:
                steps.settle(_outcome(_sync_step, step, perform, threads))
    finally:
        threads.close()
        steps.close()


async def _arun(
    steps: _Stepper, perform: Callable[[Any], Awaitable[Any]]
) -> AsyncGenerator[Any, None]:
    tasks = _Tasks()
    try:
        for step in steps:
            if not isinstance(step, _STEPS):
                yield step
            else:
                steps.settle(await _aoutcome(_async_step(step, perform, tasks)))
    finally:
        await tasks.close()
        steps.close()


def drive_items(flow: Flow[Any], perform: Callable[[Any], Any]) -> Iterator[Any]:
    """Run ``flow`` with the blocking ``perform``; yield the records or items it yields."""
    return _run(_Stepper(flow), perform, 1)


def adrive_items(
    flow: Flow[Any], perform: Callable[[Any], Awaitable[Any]]
) -> AsyncGenerator[Any, None]:
    """Run ``flow`` with the async ``perform``; yield the records or items it yields."""
    return _arun(_Stepper(flow), perform)


def drive(flow: Flow[R], perform: Callable[[Any], Any], *, workers: int = 1) -> R:
    """Run ``flow`` (one that yields no record or item) with the blocking ``perform``."""
    steps = _Stepper(flow)
    for batch in _run(steps, perform, workers):
        raise TypeError(f"a flow of records or items run for its result: {batch!r}")
    result: R = steps.value
    return result


async def adrive(flow: Flow[R], perform: Callable[[Any], Awaitable[Any]]) -> R:
    """Run ``flow`` (one that yields no record or item) with the async ``perform``."""
    steps = _Stepper(flow)
    async with contextlib.aclosing(_arun(steps, perform)) as batches:
        async for batch in batches:
            raise TypeError(f"a flow of records or items run for its result: {batch!r}")
    result: R = steps.value
    return result


# --- small flows ------------------------------------------------------------------------


def not_found_type() -> type[Exception]:
    from azure.core.exceptions import ResourceNotFoundError

    return ResourceNotFoundError


def is_container_missing(exc: Exception) -> bool:
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code)) == "ContainerNotFound"


def head(blob: str, *, container_missing: bool = True) -> Flow[Any | None]:
    """
    The blob's properties, ``None`` when there is no such blob; a missing container
    raises, unless ``container_missing`` is false (then it is no blob either).
    """
    try:
        return (yield remote(blob, "get_blob_properties"))
    except Exception as exc:
        if not isinstance(exc, not_found_type()):
            raise
        if container_missing and is_container_missing(exc):
            raise
        return None


def pinned(etag: str) -> dict[str, Any]:
    """Download options that pin one version of a blob and take its stored bytes."""
    from azure.core import MatchConditions

    return {
        "etag": etag,
        "match_condition": MatchConditions.IfNotModified,
        "max_concurrency": 1,
        "decompress": False,
    }


def range_at(ref: BlobRef, offset: int, length: int = READ_CHUNK) -> Flow[bytes]:
    """
    One pinned ranged GET of blob ``ref``: up to ``length`` bytes at ``offset`` (never
    empty).
    """
    length = min(length, ref.size - offset)
    data: bytes = yield remote(
        ref.name, "download_blob", offset=offset, length=length, **pinned(ref.etag)
    ).then("readall")
    if not data:
        raise IntegrityError(f"{ref.name!r} ended at byte {offset} of {ref.size}")
    return data


def csv_header(ref: BlobRef, probe: CsvHeaderProbe, errors: Errors) -> Flow[list[str] | None]:
    """The header of the CSV blob a write continues (its records must fit it)."""
    offset = 0
    with errors(f"write {ref.name!r}"):
        while offset < ref.size:
            chunk = yield from range_at(ref, offset)
            offset += len(chunk)
            if probe.feed(chunk):
                return probe.header
    probe.finish()
    return probe.header


# --- fetch ------------------------------------------------------------------------------


def fetch(
    plan: FetchPlan, sink: DownloadSink, target: Path, *, concurrency: int, errors: Errors
) -> Flow[FetchResult]:
    """
    Download the missing byte ranges into ``sink`` until none is missing; after a failure,
    resume what is still missing (`FetchPlan.after_failure` decides whether and when).
    Then check size and Content-MD5: the result, or `IntegrityError`.
    """
    options = plan.download_options(concurrency)
    while missing := sink.missing():
        before = sink.received.total()
        failure: HeadwaterError | None = None
        try:
            for start, end in missing:
                sink.seek(start)
                with errors(f"fetch {plan.item!r}"):
                    yield remote(
                        plan.item, "download_blob", offset=start, length=end - start, **options
                    ).then("readinto", sink)
        except HeadwaterError as error:
            failure = error
        # The writer thread's queue: what it holds counts as received only once written.
        yield Call(sink.drain)
        if failure is not None:
            progressed = sink.received.total() > before
            delay = plan.after_failure(failure, progressed=progressed)
            logger.info(
                "fetch %r interrupted at %d of %d bytes (%s); resuming the missing ranges",
                plan.item,
                sink.received.total(),
                plan.size,
                failure.message,
            )
            yield Sleep(delay)
    result: FetchResult = yield Call(_fetch_result, (plan, sink, target))
    return result


def _fetch_result(plan: FetchPlan, sink: DownloadSink, target: Path) -> FetchResult:
    digest = sink.finish()
    verified = check_md5(plan.md5, digest, plan.item)
    checksum = f"md5:{digest.hex()}" if digest is not None else None
    return FetchResult(target, plan.size, checksum, verified=verified)


# --- upload -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class UploadResult:
    """What `AzureBlobConnector.upload` stored."""

    #: Blob name relative to the source prefix.
    name: str
    size: int
    etag: str
    #: ``"md5:<hex>"``, also set as the blob's Content-MD5 (``None`` with ``checksum=False``).
    checksum: str | None


class Upload:
    """
    One block upload to blob ``plan.name``, fed piece by piece: `start`, `feed` every
    piece, `finish` (each a flow). Data that ends before a whole block goes in one request
    (up to `ONE_REQUEST_MAX`, when the plan allows one) or as one staged block; more is
    cut into blocks, hashed in order and staged with at most ``concurrency`` in flight,
    then committed with its Content-MD5. The blob appears only with the commit.
    ``stream_bodies`` gives block bodies as streams (for aiohttp).
    """

    def __init__(
        self,
        plan: WritePlan,
        *,
        block_size: int,
        concurrency: int,
        stream_bodies: bool,
        errors: Errors,
    ) -> None:
        self.plan = plan
        self._context = f"write {plan.name!r}"
        self._errors = errors
        self._concurrency = concurrency
        self._stream_bodies = stream_bodies
        self._rechunker = Rechunker(block_size)
        self._blocks = BlockPlan(checksum=plan.checksum)
        self._staged = 0
        self._in_flight = 0

    def start(self) -> Flow[None]:
        """Refuse an existing blob first, unless the caller looked already."""
        if not self.plan.checked and not self.plan.overwrite:
            with self._errors(self._context):
                refuse_existing(self.plan.name, (yield remote(self.plan.name, "exists")))

    def feed(self, piece: bytes) -> Flow[None]:
        """Take the next piece; stage the blocks it completes."""
        for block in self._rechunker.push(piece):
            yield from self._stage(block)

    def finish(self) -> Flow[UploadResult]:
        """Send what is left, wait for every block and commit them; what was stored."""
        plan, name, errors = self.plan, self.plan.name, self._errors
        rest = self._rechunker.rest()
        if not self._staged and plan.one_request and len(rest) <= ONE_REQUEST_MAX:
            md5, options = _one_request(rest, plan)
            with errors(self._context), _commit_errors(plan):
                result = yield remote(name, "upload_blob", rest, **options)
            return UploadResult(name, len(rest), normalize_etag(result["etag"]), _tag(md5))
        if rest:
            yield from self._stage(rest)
        with errors(self._context):
            yield WAIT_ALL
        md5 = self._blocks.md5()
        commit = _commit_options(plan, self._blocks, md5)
        with errors(self._context), _commit_errors(plan):
            result = yield remote(name, "commit_block_list", **commit)
        return UploadResult(name, self._blocks.size, normalize_etag(result["etag"]), _tag(md5))

    def _stage(self, block: bytes) -> Flow[None]:
        # Hash this block while the previous ones upload; then wait for a free connection.
        block_id = yield Call(self._blocks.next_block, (block,))
        if self._in_flight >= self._concurrency:
            with self._errors(self._context):
                self._in_flight -= yield WAIT_ANY
        # A stream is seekable, so the SDK's retry policy can rewind it; BytesIO shares
        # the bytes, no copy.
        body = io.BytesIO(block) if self._stream_bodies else block
        yield Spawn(remote(self.plan.name, "stage_block", block_id, body, length=len(block)))
        self._in_flight += 1
        self._staged += 1


def upload(upload: Upload, read: Callable[[], bytes]) -> Flow[UploadResult]:
    """Feed ``upload`` what ``read`` gives (a blocking read, so a `Call`) until ``b""``."""
    yield from upload.start()
    while piece := (yield Call(read)):
        yield from upload.feed(piece)
    return (yield from upload.finish())


def _one_request(data: bytes, plan: WritePlan) -> tuple[bytes | None, dict[str, Any]]:
    """The MD5 (if asked for) and the ``upload_blob`` options of a one-request upload."""
    md5 = hashlib.md5(data, usedforsecurity=False).digest() if plan.checksum else None
    options = {
        "length": len(data),
        "overwrite": plan.overwrite,
        "content_settings": _settings(plan.content_type, md5),
        "metadata": plan.commit_metadata(),
        "max_concurrency": 1,
    }
    return md5, options


def _commit_options(plan: WritePlan, blocks: BlockPlan, md5: bytes | None) -> dict[str, Any]:
    """The ``commit_block_list`` arguments, built once every block is staged."""
    return {
        "block_list": plan.block_list(blocks.ids),
        "content_settings": _settings(plan.content_type, md5),
        # The state the caller filled in while the batches were consumed.
        "metadata": plan.commit_metadata(),
        **plan.conditions(),
    }


def _settings(content_type: str | None, md5: bytes | None) -> Any:
    from azure.storage.blob import ContentSettings

    return ContentSettings(
        content_type=content_type, content_md5=bytearray(md5) if md5 is not None else None
    )


def _tag(md5: bytes | None) -> str | None:
    return f"md5:{md5.hex()}" if md5 is not None else None


def refuse_existing(name: str, exists: bool) -> None:
    if exists:
        raise AlreadyExists(
            f"blob {name!r} exists; refusing to overwrite it",
            hint="pass overwrite=True (CLI: -O overwrite=true)",
        )


@contextlib.contextmanager
def _exists_as_conflict(name: str) -> Iterator[None]:
    # A blob created by someone else between our check and the commit fails the
    # If-None-Match: * condition with 412 (or 409): report it as what it is.
    try:
        yield
    except IntegrityError:
        refuse_existing(name, True)
    except AlreadyExists:
        refuse_existing(name, True)


@contextlib.contextmanager
def _commit_errors(plan: WritePlan) -> Iterator[None]:
    """What a failed precondition of the commit means: someone else's blob, or a change."""
    if not plan.continuing:
        with _exists_as_conflict(plan.name):
            yield
        return
    try:
        yield
    except IntegrityError:
        raise IntegrityError(
            f"blob {plan.name!r} changed while this write continued it (another writer "
            "committed to it); nothing was committed",
            hint="run the copy again: it goes on from what the blob holds now",
        ) from None


# --- read -------------------------------------------------------------------------------


def matches(plan: ReadPlan, errors: Errors) -> Flow[list[BlobRef]]:
    """Every blob ``plan`` covers, in name order."""
    found: list[BlobRef] = []
    token: str | None = None
    while True:
        refs, token = yield from _matching_page(plan, token, errors)
        found += refs
        if token is None:
            return found


def _matching_page(
    plan: ReadPlan, token: str | None, errors: Errors
) -> Flow[tuple[list[BlobRef], str | None]]:
    """The blobs ``plan`` covers on one page of the listing, and the next page's token."""
    with errors(f"read {plan.stream!r}"):
        if plan.kind == "blob":
            props = yield from head(plan.stream, container_missing=False)
            found = [] if props is None else [BlobRef.from_properties(plan.stream, props)]
            return found, None
        entries, token = yield ListPage(plan.list_prefix, token)
    return [BlobRef.from_listed(name, e) for name, e in entries if plan.wants(name)], token


def read(
    plan: ReadPlan,
    *,
    batch_size: int,
    reading: Reading,
    parquet: ParquetRead,
    errors: Errors,
) -> Flow[None]:
    """
    The batches of every blob ``plan`` covers, from where its state left off: text blobs
    by pinned ranged GETs fed to `BlobReading`, Parquet blobs through ``parquet`` (a
    blocking iterator of batches, each of its steps a `Call`).
    """
    found = False
    token: str | None = None
    while True:
        refs, token = yield from _matching_page(plan, token, errors)
        for ref in refs:
            found = True
            start = plan.start(ref)
            if start is not None:
                plan.rows = yield from _read_blob(
                    plan, ref, start, batch_size, reading, parquet, errors
                )
        if token is None:
            break
    if not found:
        raise plan.nothing_found()


def _read_blob(
    plan: ReadPlan,
    ref: BlobRef,
    start: Start,
    size: int,
    reading: Reading,
    parquet: ParquetRead,
    errors: Errors,
    stop: int | None = None,
) -> Flow[int]:
    """
    Yield the batches of one blob, up to byte (text) or row (Parquet) ``stop`` when
    given; return the running row count.
    """
    file_format = plan.format_for(ref.name)
    if file_format.fmt == "parquet":
        rows = plan.rows
        batches: Iterator[Batch] = yield Call(parquet, (plan, ref, start, size, stop))
        try:
            while (batch := (yield Call(next, (batches, END)))) is not END:
                rows = int(batch.state["rows"])
                yield batch
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        return rows
    text = reading(plan, ref, start, file_format, size)
    end = ref.size if stop is None else stop
    with errors(f"read {ref.name!r}"):
        try:
            ahead = _Get.at(ref, text, text.fetch_from, end)
            if ahead is not None:
                yield ahead.step()
            while ahead is not None:
                yield WAIT_ALL
                text.hand(ahead.received())
                # The next GET downloads (and a compressed blob's is inflated as it
                # arrives) while this one's records are decoded.
                ahead = _Get.at(ref, text, ahead.offset + ahead.length, end)
                if ahead is not None:
                    yield ahead.step()
                # A compressed blob's pieces are inflated on a thread: waiting for one
                # is blocking work (in place for the sync driver).
                while (piece := (yield Call(text.decoded, offload=text.compressed))) is not None:
                    yield from text.batches(piece)
            yield from text.finish()
        finally:
            text.close()
    return text.rows


@dataclasses.dataclass(frozen=True, slots=True)
class _Get:
    """One pinned ranged GET of a text blob, written into its reading's `Received`."""

    ref: BlobRef
    offset: int
    length: int
    into: Received

    @classmethod
    def at(cls, ref: BlobRef, text: BlobReading, offset: int, end: int) -> _Get | None:
        """The GET of the stored bytes at ``offset`` (up to ``end``), None past it."""
        if offset >= end:
            return None
        return cls(ref, offset, min(READ_CHUNK, end - offset), text.receiver())

    def step(self) -> Spawn:
        """The GET, started without waiting for it (`WAIT_ALL` waits)."""
        options = pinned(self.ref.etag)
        return Spawn(
            remote(
                self.ref.name, "download_blob", offset=self.offset, length=self.length, **options
            ).then("readinto", self.into)
        )

    def received(self) -> Received:
        """What the finished GET wrote; a short one is an error (the blob ended early)."""
        if self.into.size != self.length:
            raise IntegrityError(
                f"{self.ref.name!r} ended at byte {self.offset + self.into.size} of {self.ref.size}"
            )
        return self.into


# --- partitions -------------------------------------------------------------------------

#: Bytes per ranged GET when looking for the newline after a cut.
PROBE_CHUNK: Final = 64 * 1024


def line_end(ref: BlobRef, offset: int) -> Flow[int]:
    """The byte after the first newline at or after ``offset`` of ``ref`` (its size if none)."""
    position = offset
    while position < ref.size:
        chunk = yield from range_at(ref, position, PROBE_CHUNK)
        found = chunk.find(b"\n")
        if found >= 0:
            return position + found + 1
        position += len(chunk)
    return ref.size


def csv_record_ends(
    ref: BlobRef, targets: list[int], probe: CsvHeaderProbe, delimiter: str
) -> Flow[tuple[list[int], list[str] | None]]:
    """
    The record boundaries after ``targets`` in CSV blob ``ref`` of fields separated by
    ``delimiter`` (newlines outside quotes: one pass from its first byte, as far as the
    last target needs) and its header.
    """
    ends = CsvRecordEnds(targets, delimiter)
    offset = 0
    header_known = False
    while offset < ref.size and not (ends.done and header_known):
        chunk = yield from range_at(ref, offset)
        offset += len(chunk)
        ends.feed(chunk)
        if not header_known:
            header_known = probe.feed(chunk)
    if not header_known:
        probe.finish()
    return ends.finish(ref.size), probe.header


def read_partition(
    plan: ReadPlan,
    refs: list[BlobRef],
    span: tuple[str, int, int] | None,
    header: list[str] | None,
    *,
    batch_size: int,
    reading: Reading,
    parquet: ParquetRead,
    errors: Errors,
) -> Flow[None]:
    """
    The batches of one partition: its blobs in order, each from where the state left
    off, or the byte (``("bytes", lo, hi)``) or row (``("rows", lo, hi)``) range of its
    one blob. Every request pins the etag the split saw: a blob replaced since fails,
    naming it, instead of mixing two versions.
    """
    for ref in refs:
        start = plan.start(ref)
        if start is None:
            continue
        stop = None
        read_ref = ref
        if span is not None:
            unit, lo, hi = span
            if plan.resume_blob is None:
                bytes_start = Start(offset=lo, header=header if lo else None)
                start = bytes_start if unit == "bytes" else Start(row=lo)
            at = start.offset if unit == "bytes" else start.row
            if not lo <= at <= hi:
                raise ConfigError(
                    f"state is not a state of partition [{lo}, {hi}) of {plan.stream!r}: "
                    f"it is at {unit[:-1]} {at}",
                    field="state",
                    hint="resume a partition only from a state of its own batches",
                )
            stop = hi
            if unit == "bytes" and (lo, hi) != (0, ref.size):
                read_ref = dataclasses.replace(ref, md5=None)  # a part does not hash to it
        try:
            plan.rows = yield from _read_blob(
                plan, read_ref, start, batch_size, reading, parquet, errors, stop
            )
        except IntegrityError:
            with errors(f"read {ref.name!r}"):
                props = yield from head(ref.name, container_missing=False)
            if props is None or normalize_etag(props.etag) != ref.etag:
                raise _replaced(ref, props is None) from None
            raise
        except NotFound:
            with errors(f"read {ref.name!r}"):
                props = yield from head(ref.name, container_missing=False)
            if props is None:
                raise _replaced(ref, True) from None
            raise


def _replaced(ref: BlobRef, deleted: bool) -> IntegrityError:
    what = "deleted" if deleted else "replaced (its etag differs)"
    return IntegrityError(
        f"blob {ref.name!r} was {what} after the stream was split into partitions; a "
        "partition reads only the version it was made from, so nothing of the new one was read",
        hint="make the partitions again and read them anew",
    )
