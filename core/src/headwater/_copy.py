"""
`copy` and `acopy`: move a stream from a connector into a local file or into another
connector's ``write``, resumably, without ever losing or repeating a record.

The rule that makes a resume exact: **the copy state is committed only after the data it
covers is durable**. The state of a copy (``headwater.copy/1``) holds the source's state
after the last record that is durable at the destination, plus the destination's own
position:

* into a **file**, the sink's position (bytes or part files; see `headwater._sinks`): the
  state file is rewritten atomically after each checkpoint of the sink, and a resume
  first cuts the output back to the committed position;
* into a **connector** that stores state with its writes (`Capability.ATOMIC_STATE`:
  PostgreSQL in the same transaction, a blob in the same commit), the source state is
  committed by the destination together with the records, under a key kept in the state
  file, and read back from the destination on resume: either both landed or neither.
  A destination without that capability cannot promise it, so a resumable copy into one
  is refused.

The control flow lives once, in `_Run`; `copy` and `acopy` are short drivers around it.
The sync driver reads one batch ahead on a thread of its own (`read_ahead`), so the
source decodes the next batch while the destination writes this one; state still comes
only from the batches the destination was handed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from headwater._connector import Batch, Capability, Connector, State, read_ahead
from headwater._files import atomic_file
from headwater._pipe_source import PipeSource
from headwater._redact import redact
from headwater._sinks import FileSink, Position, StreamSink, make_sink
from headwater.errors import ConfigError, ConnectorError
from headwater.formats import detect, json_default

if TYPE_CHECKING:
    from headwater._plugins import Registry
    from headwater._sources import SourceRegistry

#: The ``format`` tag of a copy state; a state without it is a plain source state.
STATE_FORMAT = "headwater.copy/1"
#: Seconds between checkpoints of a file sink (each is an fsync, and for Parquet a part).
DEFAULT_CHECKPOINT_SECONDS = 1.0

Progress = Callable[[int], None]
SourceLike = Connector[Any] | str | os.PathLike[str]
#: What `copy` reads from: a `SourceLike`, or a readable binary stream (stdin).
CopySource = SourceLike | IO[bytes]
DestLike = Connector[Any] | str | os.PathLike[str] | FileSink | IO[bytes]


@dataclasses.dataclass(frozen=True, slots=True)
class CopyResult:
    """What a `copy` did."""

    #: Records delivered to the destination by this run.
    records: int
    #: The copy state after the run (what the state file holds); pass it back to resume.
    state: dict[str, Any] | None
    #: The file or ``connector:stream`` the records went to.
    destination: str
    elapsed: float


# --- state --------------------------------------------------------------------------------


def load_state(path: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """The copy state saved in ``path`` (``None`` when there is no file yet)."""
    if path is None or not Path(path).exists():
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"state file {path} is not valid JSON ({exc})", field="state") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"state file {path} must hold a JSON object", field="state")
    return data


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically and durably (temp file, fsync, rename)."""
    # private: a state may name tables, paths and positions only its owner should read.
    with atomic_file(path, private=True) as handle:
        handle.write(json.dumps(state, default=json_default).encode("utf-8"))


def _normalize(state: dict[str, Any] | None) -> dict[str, Any]:
    """A copy state from what was saved: older files hold a bare source state."""
    if state is None:
        return {"format": STATE_FORMAT, "source": None, "records": 0, "sink": None}
    if state.get("format") == STATE_FORMAT:
        return dict(state)
    return {"format": STATE_FORMAT, "source": state, "records": 0, "sink": None}


# --- endpoints ----------------------------------------------------------------------------


def open_source(
    target: str,
    config: Mapping[str, Any] | None = None,
    *,
    sources: SourceRegistry | None = None,
    registry: Registry | None = None,
) -> Connector[Any]:
    """
    A connector for ``target``: a saved source name or a URL.

    Args:
        target: the name of a saved source (see `SourceRegistry`), or a URL such as
            ``file:///data`` or ``postgresql://etl@db/sales``.
        config: config values for a URL (they win over what the URL says); a saved
            source is changed where it is saved, so ``config`` with a name is an error.
        sources: the saved sources to look names up in (default: the sources file,
            `default_sources_path`).
        registry: the plugin registry URLs are opened with (default: the one of
            ``sources``, else the process-wide one).

    The caller closes the connector (``with open_source(...) as connector:``).
    """
    if "://" in target:
        if registry is None:
            registry = sources.registry if sources is not None else _default_registry()
        return registry.connect(target, dict(config or {}))
    if config:
        raise ConfigError(
            f"config values apply to a URL only; {target!r} is a saved source",
            field="config",
            hint="change a saved source where it is saved (SourceRegistry.add(..., replace=True))",
        )
    if sources is None:
        from headwater._sources import SourceRegistry

        sources = SourceRegistry(registry=registry or _default_registry())
    return sources.connector(target)


def _default_registry() -> Registry:
    from headwater._plugins import get_registry

    return get_registry()


def _file_source(path: os.PathLike[str] | str) -> tuple[Connector[Any], str]:
    from headwater._builtin.files_connector import FilesConnector

    local = Path(path).absolute()
    return FilesConnector({"root": local.parent}), local.name


@dataclasses.dataclass
class _Endpoints:
    source: Connector[Any]
    stream: str
    sink: FileSink | None
    dest: Connector[Any] | None
    dest_stream: str | None
    owned: list[Connector[Any]]

    @property
    def description(self) -> str:
        if self.sink is not None:
            return str(self.sink.path)
        assert self.dest is not None
        return f"{self.dest.id}:{self.dest_stream}"


def _endpoints(
    source: CopySource,
    stream: str | None,
    dest: DestLike,
    dest_stream: str | None,
    *,
    resumable: bool,
    fmt: str | None,
    compression: str | None,
    sink_options: dict[str, Any] | None,
    registry: Registry | None,
    write_options: dict[str, Any] | None = None,
) -> _Endpoints:
    """Open what ``copy`` was given; connectors it opened itself are closed on failure."""
    owned: list[Connector[Any]] = []
    try:
        return _open_endpoints(
            owned, source, stream, dest, dest_stream,
            resumable=resumable, fmt=fmt, compression=compression,
            sink_options=sink_options, registry=registry, write_options=write_options,
        )  # fmt: skip
    except BaseException:
        for connector in owned:
            connector.close()
        raise


def _open_endpoints(
    owned: list[Connector[Any]],
    source: CopySource,
    stream: str | None,
    dest: DestLike,
    dest_stream: str | None,
    *,
    resumable: bool,
    fmt: str | None,
    compression: str | None,
    sink_options: dict[str, Any] | None,
    registry: Registry | None,
    write_options: dict[str, Any] | None,
) -> _Endpoints:
    if isinstance(source, Connector):
        src = source
    elif not isinstance(source, str | os.PathLike):
        src = _pipe_source(source, resumable=resumable)
        stream = stream or src.name
        owned.append(src)
    elif isinstance(source, os.PathLike) or stream is None:
        src, stream = _file_source(source)
        owned.append(src)
    else:
        src = open_source(source, registry=registry)
        owned.append(src)
    if not stream:
        raise ConfigError("copy needs the stream to read", field="stream")
    if isinstance(dest, FileSink):
        return _Endpoints(src, stream, dest, None, None, owned)
    if not isinstance(dest, str | os.PathLike | Connector):
        stream_sink = _stream_sink(dest, fmt, compression, sink_options)
        return _Endpoints(src, stream, stream_sink, None, None, owned)
    target: Connector[Any] | None = None
    local: Path | None = None
    if isinstance(dest, Connector):
        target = dest
    elif dest_stream is None:
        if "://" in os.fspath(dest):
            # A URL names a connector; as a file name it would become a path such as
            # "duckdb:/local.db" beside the user's files.
            raise ConfigError(
                f"{redact(os.fspath(dest))!r} is a URL: copying into a connector needs "
                "the stream to write (a table, a blob name)",
                field="dest_stream",
                hint="give DEST_STREAM after DEST (Python: dest_stream=...), or a local "
                "file name as DEST",
            )
        local = Path(dest)
    else:
        target = open_source(os.fspath(dest), registry=registry)
        owned.append(target)
    origin = src.local_path(stream)
    if target is not None:
        if not dest_stream:
            raise ConfigError(
                "copy into a connector needs the stream to write", field="dest_stream"
            )
        into = target.local_path(dest_stream)
        _refuse_onto_itself(stream, origin, into)
        # A connector over local files is written through its own write (create/append/
        # overwrite) unless the copy must resume, which the file sinks do exactly.
        if into is not None and resumable:
            if write_options:
                raise ConfigError(
                    "write options do not apply to a resumable copy into a local file "
                    "(it always ends with the complete output in place)",
                    field="write_options",
                )
            local = into
        elif Capability.WRITE not in target.capabilities:
            raise ConfigError(
                f"connector {target.id!r} cannot write records", field="dest",
                hint="copy into a file, or into a connector that supports write",
            )  # fmt: skip
        else:
            return _Endpoints(src, stream, None, target, dest_stream, owned)
    assert local is not None
    _refuse_onto_itself(stream, origin, local)
    if local.is_dir():
        raise ConfigError(f"{local} is a directory; give a file name", field="dest")
    file_format = detect(local.name, fmt, compression)
    sink = make_sink(local, file_format, resumable=resumable, options=sink_options)
    return _Endpoints(src, stream, sink, None, None, owned)


def _pipe_source(source: IO[bytes], *, resumable: bool) -> PipeSource:
    if not callable(getattr(source, "read", None)):
        raise ConfigError(f"cannot copy from a {type(source).__name__}", field="source")
    if resumable:
        raise ConfigError(
            "a copy from a binary stream cannot resume: the stream cannot be read again",
            field="state",
            hint="copy without a state, or from a file",
        )
    return PipeSource(source)


def _stream_sink(
    dest: IO[bytes], fmt: str | None, compression: str | None, options: dict[str, Any] | None
) -> StreamSink:
    if not callable(getattr(dest, "write", None)):
        raise ConfigError(f"cannot copy into a {type(dest).__name__}", field="dest")
    if compression is not None:
        raise ConfigError(
            "compression applies to a file destination, not a binary stream",
            field="compression",
        )
    return StreamSink(dest, fmt or "jsonl", options=options)


def _refuse_onto_itself(stream: str, origin: Path | None, target: Path | None) -> None:
    """Reading a file while replacing it would destroy it: refuse before writing anything."""
    if origin is not None and target is not None and _same_file(origin, target):
        raise ConfigError(
            f"refusing to copy {stream!r} onto itself ({target})",
            field="dest",
            hint="write to another file, then rename it",
        )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.absolute() == b.absolute()


# --- the run ------------------------------------------------------------------------------


def _negotiated(
    ends: _Endpoints, read_options: dict[str, Any], *, resumable: bool, limit: int | None
) -> dict[str, Any]:
    """
    The read options, plus what lets this destination take the batches as they come:
    Arrow for a Parquet or Arrow file, encoded lines for JSON Lines, a form the source
    reads and the destination writes natively (PostgreSQL to PostgreSQL: COPY text),
    the destination's JSON fields as JSON text, and an unordered read when no state
    will be kept (no resume, no limit).
    """
    options = dict(read_options)
    source = ends.source
    if "format" not in options and ends.sink is not None:
        wanted = "arrow" if ends.sink.format.columnar else ends.sink.format.fmt
        if wanted in source.read_formats:
            options["format"] = wanted
    elif "format" not in options and ends.dest is not None:
        common = sorted(source.read_formats & ends.dest.write_formats)
        if common:
            options["format"] = common[0]
    if (
        ends.dest is not None
        and ends.dest_stream is not None
        and "json_text" not in options
        and Capability.JSON_TEXT in source.capabilities
    ):
        # The destination's JSON columns take a JSON Lines document's text as written.
        fields = ends.dest.json_fields(ends.dest_stream)
        if fields:
            options["json_text"] = sorted(fields)
    if (
        not resumable
        and limit is None
        and "ordered" not in options
        and Capability.UNORDERED in source.capabilities
    ):
        options["ordered"] = False
    return options


class _Run:
    """
    The control flow of one copy, without I/O of its own: which read to open, what of
    each batch to deliver, when a checkpoint is due and what state to commit.
    """

    def __init__(
        self,
        ends: _Endpoints,
        *,
        state: dict[str, Any] | None,
        state_file: str | os.PathLike[str] | None,
        on_state: Callable[[dict[str, Any]], None] | None,
        limit: int | None,
        batch_size: int | None,
        read_options: dict[str, Any],
        checkpoint_seconds: float,
        progress: Progress | None,
    ) -> None:
        self.ends = ends
        self.state_file = state_file
        self.on_state = on_state
        self.resumable = state_file is not None or on_state is not None or state is not None
        loaded = load_state(state_file) if state is None else state
        self.state = _normalize(loaded)
        if self.state.get("stream") not in (None, ends.stream):
            raise ConfigError(
                f"the copy state is for stream {self.state['stream']!r}, not {ends.stream!r}",
                field="state",
                hint="give each stream its own state file",
            )
        self.state["stream"] = ends.stream
        #: Records the state already counted before this run.
        self.base_records = int(self.state.get("records") or 0)
        self.limit = limit
        self.batch_size = batch_size
        self.read_options = _negotiated(ends, read_options, resumable=self.resumable, limit=limit)
        every_batch = ends.sink is not None and ends.sink.checkpoint_every_batch
        self.checkpoint_seconds = 0.0 if every_batch else checkpoint_seconds
        self.progress = progress
        self.delivered = 0
        self.pending: State | None = None
        self.last_checkpoint = time.monotonic()
        self.started = time.perf_counter()
        if limit is not None and limit < 1:
            raise ConfigError("limit must be at least 1", field="limit")

    # --- set-up ---------------------------------------------------------------------

    def check_destination(self) -> None:
        """A resumable copy into a connector needs one that commits state with its data."""
        dest = self.ends.dest
        if dest is None or not self.resumable:
            return
        if Capability.ATOMIC_STATE not in dest.capabilities:
            raise ConfigError(
                f"connector {dest.id!r} cannot commit a copy's state together with the "
                "records it writes, so a resumed copy could write records twice",
                field="state",
                hint="copy without a state file (the destination's write is then one "
                "all-or-nothing step), or into a file",
            )
        if not self.state.get("key"):
            # The key must be on disk before the destination can hold a state under it.
            self.state["key"] = uuid.uuid4().hex
            self.commit_local()

    def write_options(self, write_options: dict[str, Any], written: State | None) -> dict[str, Any]:
        """
        The destination's write options: for a resumable copy, the state the destination
        committed last (``written``, the truth: see the module docstring) is adopted, and
        ``state_key``/``state`` ask it to commit the new one with the records. That state
        starts as the state so far (a run finding nothing new commits it again) and is
        updated by `hand_over` as batches pass.
        """
        options = dict(write_options)
        if not (self.resumable and self.state.get("key")):
            return options
        written = written or {}
        self.state["source"] = written.get("source")
        self.state["records"] = self.base_records = int(written.get("records") or 0)
        payload = {"format": STATE_FORMAT, "source": self.state["source"], "records": self.records}
        options.update(state_key=self.state["key"], state=payload)
        return options

    def hand_over(self, batch: Batch, options: dict[str, Any]) -> Batch:
        """
        ``batch``, about to go to the destination. Its state goes into the payload the
        destination reads when it commits, after taking every batch handed to it, so the
        payload always describes the last one handed over.
        """
        if "state" in options:
            options["state"].update(source=batch.state, records=self.records)
        return batch

    def sink_position(self, sink: FileSink) -> Position | None:
        """The committed position to open ``sink`` from; None for a new output file."""
        committed = self.state.get("sink")
        if sink.continues(committed):
            return committed
        # Another output than last time (or none): the source goes on, the file is new.
        self.state["sink"] = None
        return None

    # --- reading ------------------------------------------------------------------------

    def remaining(self) -> int | None:
        return None if self.limit is None else self.limit - self.delivered

    def read_args(self) -> tuple[State | None, int | None]:
        """The state to read from and the batch size for the next (re)opened read."""
        remaining = self.remaining()
        size = self.batch_size
        if remaining is not None:
            size = min(size or remaining, remaining)
        source_state = self.pending if self.pending is not None else self.state.get("source")
        return source_state, size

    def accept(self, batch: Batch, size: int | None) -> tuple[Batch, str]:
        """
        What of ``batch`` to deliver, and what to do next: ``"more"``, ``"stop"`` or
        ``"reopen"`` (a smaller batch is needed to stop exactly at the limit, so the read
        is reopened from this batch's state with that size).
        """
        remaining = self.remaining()
        if remaining is not None and len(batch) > remaining:
            if self.resumable:
                raise ConnectorError(
                    f"connector {self.ends.source.id!r} returned {len(batch)} records for a "
                    f"batch size of {size}; a resumable copy cannot stop exactly at the limit",
                    hint="copy without a limit, or without a state",
                )
            batch = _head(batch, remaining)
        self.delivered += len(batch)
        self.pending = batch.state
        if self.progress is not None:
            self.progress(len(batch))
        remaining = self.remaining()
        if remaining is None:
            return batch, "more"
        if remaining <= 0:
            return batch, "stop"
        if size is not None and remaining < size:
            return batch, "reopen"
        return batch, "more"

    # --- committing ---------------------------------------------------------------------

    def due(self) -> bool:
        return self.resumable and time.monotonic() - self.last_checkpoint >= self.checkpoint_seconds

    @property
    def records(self) -> int:
        """Records the state covers once everything accepted so far is committed."""
        return self.base_records + self.delivered

    def committed(self, position: Position | None) -> None:
        """Record that the data up to the last accepted batch is durable, and save it."""
        if self.pending is not None:
            self.state["source"] = self.pending
        self.state["records"] = self.records
        if position is not None:
            self.state["sink"] = position
        self.last_checkpoint = time.monotonic()
        self.commit_local()

    def commit_local(self) -> None:
        if self.state_file is not None:
            save_state(self.state_file, self.state)
        if self.on_state is not None:
            self.on_state(dict(self.state))

    def result(self) -> CopyResult:
        return CopyResult(
            records=self.delivered,
            state=dict(self.state) if self.resumable else None,
            destination=self.ends.description,
            elapsed=time.perf_counter() - self.started,
        )


def _head(batch: Batch, count: int) -> Batch:
    records = batch.records
    head = records[:count] if isinstance(records, list) else records.slice(0, count)
    return Batch(batch.stream, head, batch.state, text=batch.text)


def _start(
    source: CopySource,
    stream: str | None,
    dest: DestLike,
    dest_stream: str | None,
    *,
    state_file: str | os.PathLike[str] | None,
    state: dict[str, Any] | None,
    on_state: Callable[[dict[str, Any]], None] | None,
    limit: int | None,
    batch_size: int | None,
    read_options: dict[str, Any] | None,
    write_options: dict[str, Any] | None,
    format: str | None,
    compression: str | None,
    sink_options: dict[str, Any] | None,
    checkpoint_seconds: float,
    progress: Progress | None,
    registry: Registry | None,
) -> tuple[_Endpoints, _Run]:
    """The endpoints and the run of one copy (the set-up `copy` and `acopy` share)."""
    ends = _endpoints(
        source, stream, dest, dest_stream,
        resumable=state_file is not None or on_state is not None or state is not None,
        fmt=format, compression=compression, sink_options=sink_options, registry=registry,
        write_options=write_options,
    )  # fmt: skip
    try:
        run = _Run(
            ends, state=state, state_file=state_file, on_state=on_state, limit=limit,
            batch_size=batch_size, read_options=dict(read_options or {}),
            checkpoint_seconds=checkpoint_seconds, progress=progress,
        )  # fmt: skip
    except BaseException:
        for connector in ends.owned:
            connector.close()
        raise
    return ends, run


# --- sync driver ----------------------------------------------------------------------------


def copy(
    source: CopySource,
    stream: str | None,
    dest: DestLike,
    dest_stream: str | None = None,
    *,
    state_file: str | os.PathLike[str] | None = None,
    state: dict[str, Any] | None = None,
    on_state: Callable[[dict[str, Any]], None] | None = None,
    limit: int | None = None,
    batch_size: int | None = None,
    read_options: dict[str, Any] | None = None,
    write_options: dict[str, Any] | None = None,
    format: str | None = None,
    compression: str | None = None,
    sink_options: dict[str, Any] | None = None,
    checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
    progress: Progress | None = None,
    registry: Registry | None = None,
) -> CopyResult:
    """
    Copy ``stream`` of ``source`` into ``dest``, exactly once, resumably.

    Args:
        source: a connector, a saved source name or URL, a local file (a path; then
            ``stream`` is ``None``), or a readable binary stream such as
            ``sys.stdin.buffer`` (JSON Lines, or CSV with ``read_options={"file_format":
            "csv"}``; read once, so the copy cannot be resumable).
        stream: what to read from ``source``.
        dest: a local file (a path; the format comes from its suffix, ``format`` overrides)
            or a writable binary stream such as ``sys.stdout.buffer`` (JSON Lines, or CSV
            with ``format="csv"``; its state is saved after each batch has been flushed)
            when ``dest_stream`` is ``None``; otherwise a connector, a saved source name or
            a URL whose ``write`` receives the records.
        dest_stream: the stream (table, blob) to write at a connector destination.
        state_file: where the copy state lives: read at the start to resume, rewritten
            (atomically) at every checkpoint. With it, an interrupted copy run again
            continues exactly where the last checkpoint left it; a completed one, run
            again, copies what the source has gained since.
        state, on_state: the same without a file: a state from an earlier `CopyResult`
            or ``on_state`` call, and a callback receiving each committed state.
        limit: stop after this many records (exactly).
        batch_size, read_options: passed to the source's ``read``.
        write_options: passed to the destination's ``write`` (``mode``, ``upsert_on``, ...).
        format, compression, sink_options: for a file destination (CSV ``columns``,
            ``delimiter``, ``null_string``; Parquet ``compression_codec``).
        checkpoint_seconds: how often a file sink is made durable and the state saved.
        progress: called with the number of records of each batch delivered.
        registry: the plugin registry for names and URLs (the process default otherwise).

    Returns:
        A `CopyResult` with the records delivered and the final state.
    """
    # locals() is exactly the parameters here: copy and acopy share one set-up.
    ends, run = _start(**locals())
    try:
        if ends.sink is not None:
            _to_sink(run, ends.sink)
        else:
            _to_connector(run, write_options or {})
        return run.result()
    finally:
        for connector in ends.owned:
            connector.close()


def _batches(run: _Run) -> Iterator[Batch]:
    """The source's batches as the run accepts them, reopening the read at a limit."""
    source = run.ends.source
    # A connector that is also the destination is read on the caller's thread: its read
    # and its write would otherwise run at once on one connector.
    ahead = source is not run.ends.dest
    while True:
        source_state, size = run.read_args()

        def read(state: State | None = source_state, size: int | None = size) -> Iterator[Batch]:
            return source.read(run.ends.stream, state, batch_size=size, **run.read_options)

        batches = read_ahead(read) if ahead else read()
        action = "more"
        try:
            for batch in batches:
                delivered, action = run.accept(batch, size)
                yield delivered
                if action != "more":
                    break
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        if action != "reopen":
            return


def _to_sink(run: _Run, sink: FileSink) -> None:
    sink.open(run.sink_position(sink))
    try:
        for batch in _batches(run):
            sink.write(batch)
            if run.due():
                run.committed(sink.checkpoint())
        run.committed(sink.finish())
        run.committed(sink.publish())
    except BaseException:
        sink.abort()
        raise


def _to_connector(run: _Run, write_options: dict[str, Any]) -> None:
    dest, stream = run.ends.dest, run.ends.dest_stream
    assert dest is not None
    assert stream is not None
    run.check_destination()
    key = run.state.get("key")
    written = dest.written_state(stream, key) if run.resumable and key else None
    options = run.write_options(write_options, written)
    dest.write(stream, (run.hand_over(b, options) for b in _batches(run)), **options)
    run.committed(None)


# --- async driver ---------------------------------------------------------------------------


async def acopy(
    source: CopySource,
    stream: str | None,
    dest: DestLike,
    dest_stream: str | None = None,
    *,
    state_file: str | os.PathLike[str] | None = None,
    state: dict[str, Any] | None = None,
    on_state: Callable[[dict[str, Any]], None] | None = None,
    limit: int | None = None,
    batch_size: int | None = None,
    read_options: dict[str, Any] | None = None,
    write_options: dict[str, Any] | None = None,
    format: str | None = None,
    compression: str | None = None,
    sink_options: dict[str, Any] | None = None,
    checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
    progress: Progress | None = None,
    registry: Registry | None = None,
) -> CopyResult:
    """
    Async twin of `copy`: the source is read with ``aread`` and a connector destination
    written with ``awrite``; file writes and fsyncs run in a worker thread.
    """
    # locals() is exactly the parameters here: copy and acopy share one set-up.
    arguments = locals()
    ends, run = await asyncio.to_thread(lambda: _start(**arguments))
    try:
        if ends.sink is not None:
            await _ato_sink(run, ends.sink)
        else:
            await _ato_connector(run, write_options or {})
        return run.result()
    finally:
        for connector in ends.owned:
            await connector.aclose()


async def _abatches(run: _Run) -> AsyncIterator[Batch]:
    while True:
        source_state, size = run.read_args()
        batches = run.ends.source.aread(
            run.ends.stream, source_state, batch_size=size, **run.read_options
        )
        action = "more"
        try:
            async for batch in batches:
                delivered, action = run.accept(batch, size)
                yield delivered
                if action != "more":
                    break
        finally:
            aclose = getattr(batches, "aclose", None)
            if aclose is not None:
                await aclose()
        if action != "reopen":
            return


async def _ato_sink(run: _Run, sink: FileSink) -> None:
    await asyncio.to_thread(sink.open, run.sink_position(sink))
    try:
        async for batch in _abatches(run):
            await asyncio.to_thread(sink.write, batch)
            if run.due():
                await asyncio.to_thread(lambda: run.committed(sink.checkpoint()))
        await asyncio.to_thread(lambda: run.committed(sink.finish()))
        await asyncio.to_thread(lambda: run.committed(sink.publish()))
    except BaseException:
        await asyncio.to_thread(sink.abort)
        raise


async def _ato_connector(run: _Run, write_options: dict[str, Any]) -> None:
    dest, stream = run.ends.dest, run.ends.dest_stream
    assert dest is not None
    assert stream is not None
    await asyncio.to_thread(run.check_destination)
    key = run.state.get("key")
    written = await dest.awritten_state(stream, key) if run.resumable and key else None
    options = run.write_options(write_options, written)

    async def batches() -> AsyncIterator[Batch]:
        async for batch in _abatches(run):
            yield run.hand_over(batch, options)

    await dest.awrite(stream, batches(), **options)
    await asyncio.to_thread(run.committed, None)
