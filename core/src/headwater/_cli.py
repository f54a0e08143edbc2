"""
The ``headwater`` command line.

Data goes to stdout, everything else (progress, warnings, errors) to stderr. Errors are
one line; ``--debug`` adds the (redacted) traceback. Imports are deferred into the
commands so ``headwater --help`` and ``headwater connectors`` start fast.

Exit codes: 0 success; 1 error; 2 usage error; 3 a check found the source unhealthy
(or ``doctor`` found a failed plugin, or a connector id two plugins claim); 130
interrupted.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click

from headwater._start import configure_logging, echo_json, json_fallback, list_connectors, table

if TYPE_CHECKING:
    from headwater._connector import Connector
    from headwater._plugins import Registry
    from headwater._sources import SourceRegistry

EXIT_ERROR = 1
#: 2 is click's own, for usage errors.
EXIT_UNHEALTHY = 3
EXIT_INTERRUPTED = 130

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclasses.dataclass
class _Settings:
    """The group's options, on click's context (``ctx.obj``) for the commands under it."""

    debug: bool = False
    sources_file: str | None = None


def _settings() -> _Settings:
    context = click.get_current_context(silent=True)
    found = context.find_object(_Settings) if context is not None else None
    return found if found is not None else _Settings()


def _registry() -> Registry:
    from headwater._plugins import get_registry

    return get_registry()


def _sources() -> SourceRegistry:
    from headwater._sources import SourceRegistry

    return SourceRegistry(_settings().sources_file, registry=_registry())


def _echo_json(data: Any) -> None:
    echo_json(data)


def _parse_assignments(pairs: tuple[str, ...], option: str) -> dict[str, Any]:
    """``key=value`` pairs; values that parse as JSON (numbers, true, lists) are typed."""
    config: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=option)
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        # Nested keys: auth.type=bearer -> {"auth": {"type": "bearer"}}
        target = config
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return config


def _open_source(source: str, overrides: dict[str, Any] | None = None) -> Connector[Any]:
    """A connector for a saved source name or a URL (`headwater.open_source`)."""
    from headwater._copy import open_source

    if overrides and "://" not in source:
        from headwater.errors import ConfigError

        raise ConfigError(
            "-c/--config overrides apply to URL sources only",
            hint=f"change the saved source with `headwater sources add {source} ... --replace`",
        )
    return open_source(source, overrides, sources=_sources())


@click.group(context_settings=CONTEXT_SETTINGS)
@click.option("--debug", is_flag=True, help="Show tracebacks (redacted) and debug logs.")
@click.option(
    "--sources-file",
    type=click.Path(dir_okay=False),
    envvar="HEADWATER_SOURCES_FILE",
    help="The saved-sources TOML file [env: HEADWATER_SOURCES_FILE].",
)
@click.version_option(package_name="headwater", prog_name="headwater")
@click.pass_context
def cli(ctx: click.Context, debug: bool, sources_file: str | None) -> None:
    """
    headwater: read, list, fetch and write data through connector plugins.

    SOURCE is a saved source name (see `headwater sources`) or a URL such as
    file:///data, postgresql://user@host/db or https://api.example.com/items.

    \b
    Exit codes: 0 ok, 1 error, 2 usage, 3 unhealthy (check, doctor), 130 interrupted.
    """
    settings = ctx.ensure_object(_Settings)
    settings.debug = debug
    settings.sources_file = sources_file
    _configure_logging(debug)


def _configure_logging(debug: bool) -> None:
    configure_logging(debug)


# --- plugins, connectors, doctor ----------------------------------------------------------


def _quiet_plugin_warnings() -> None:
    # These commands report plugin failures themselves; the log line would repeat them.
    logging.getLogger("headwater.plugins").setLevel(logging.ERROR)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """Installed plugins: distribution, version, API, status, connectors, hooks, import time."""
    _quiet_plugin_warnings()
    infos = _registry().plugins()
    if as_json:
        _echo_json([info.to_dict() for info in infos])
        return
    rows = [
        (
            info.name,
            f"{info.distribution or '-'} {info.version or ''}".strip(),
            info.api or "-",
            info.status,
            ",".join(info.connectors) or "-",
            f"{info.import_time * 1000:.1f}ms" if info.import_time is not None else "-",
        )
        for info in infos
    ]
    _table(("plugin", "distribution", "api", "status", "connectors", "import"), rows)
    for info in infos:
        if info.error:
            click.echo(f"  {info.name}: {info.error}", err=info.status != "blocked")
        for warning in info.warnings:
            click.echo(f"  {info.name}: warning: {warning}", err=True)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor(as_json: bool) -> None:
    """
    Plugins with their hooks and errors, plus the environment; exit 3 if a plugin failed
    or two plugins claim one connector id. HEADWATER_* variables other than headwater's
    own settings are shown by name only (value masked).
    """
    from headwater._doctor import diagnose

    _quiet_plugin_warnings()
    found = diagnose(_registry())
    if as_json:
        _echo_json(found.to_dict())
    else:
        versions = f"(plugin API {found.plugin_api}), Python {found.python}"
        click.echo(f"headwater {found.version} {versions}")
        for key, value in found.environment.items():
            click.echo(f"  {key}={value}")
        for info in found.plugins:
            origin = f"{info.distribution} {info.version}" if info.distribution else "registered"
            click.echo(f"{info.name} [{info.status}] {origin} api {info.api or '-'}")
            click.echo(f"  hooks: {', '.join(info.hooks) or '-'}")
            click.echo(f"  connectors: {', '.join(info.connectors) or '-'}")
            if info.import_time is not None:
                click.echo(f"  import time: {info.import_time * 1000:.1f} ms")
            if info.error:
                click.echo(f"  error: {info.error}")
            for warning in info.warnings:
                click.echo(f"  warning: {warning}")
        for cid, origins in found.conflicts.items():
            click.echo(f"conflict: connector id {cid!r} is provided by {' and '.join(origins)}")
    if not found.ok:
        sys.exit(EXIT_UNHEALTHY)


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def connectors(ctx: click.Context, as_json: bool) -> None:
    """Connector ids with their summary and origin; `connectors show ID` for the config schema."""
    if ctx.invoked_subcommand is not None:
        return
    if _replayed is not None:
        raise _replayed
    # `headwater connectors [--json]` runs this code without click (`headwater._start`).
    list_connectors(_registry(), as_json)


@connectors.command("show")
@click.argument("connector_id")
@click.option("--json", "as_json", is_flag=True, help="Only the JSON document.")
def connectors_show(connector_id: str, as_json: bool) -> None:
    """A connector's capabilities and the JSON Schema of its config."""
    registry = _registry()
    entry = registry.connector_entry(connector_id)
    cls = registry.connector_class(connector_id)
    doc = {
        "id": cls.id,
        "summary": cls.summary,
        "origin": entry.origin,
        "capabilities": sorted(str(c) for c in cls.capabilities),
        "secret_fields": cls.Config.secret_fields(),
        "config_schema": cls.Config.model_json_schema(),
    }
    if as_json:
        _echo_json(doc)
        return
    click.echo(f"{doc['id']}: {doc['summary']} [{doc['origin']}]")
    click.echo(f"capabilities: {', '.join(doc['capabilities'])}")
    click.echo(f"secret fields: {', '.join(doc['secret_fields']) or '-'}")
    click.echo("config schema:")
    _echo_json(doc["config_schema"])


# --- source operations ---------------------------------------------------------------------

_config_option = click.option(
    "-c",
    "--config",
    "config_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Config override for a URL source (repeatable; dotted keys nest).",
)


@cli.command()
@click.argument("source")
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check(source: str, config_pairs: tuple[str, ...], as_json: bool) -> None:
    """Test connectivity and credentials of SOURCE; exit 3 when it fails."""
    connector = _open_source(source, _parse_assignments(config_pairs, "--config"))
    try:
        result = connector.check()
    finally:
        connector.close()
    if as_json:
        _echo_json(result.to_dict())
    elif result.ok:
        click.echo(f"ok: {result.message} ({result.elapsed * 1000:.0f} ms)")
    else:
        field = f" [field: {result.field}]" if result.field else ""
        click.echo(f"{result.category}: {result.message}{field}", err=True)
        if result.hint:
            click.echo(f"hint: {result.hint}", err=True)
    if not result.ok:
        sys.exit(EXIT_UNHEALTHY)


@cli.command("ls")
@click.argument("source")
@click.argument("path", required=False)
@_config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def ls(source: str, path: str | None, config_pairs: tuple[str, ...], as_json: bool) -> None:
    """List streams, tables, files or blobs in SOURCE (under PATH)."""
    with _open_source(source, _parse_assignments(config_pairs, "--config")) as connector:
        for item in connector.list(path):
            if as_json:
                click.echo(json.dumps(item.to_dict(), default=json_fallback))
            else:
                size = "" if item.size is None else str(item.size)
                modified = item.modified.isoformat(timespec="seconds") if item.modified else ""
                click.echo(f"{item.kind:<10} {size:>12}  {modified:<25} {_printable(item.name)}")


_read_option = click.option(
    "-R",
    "--read-option",
    "read_option_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Connector read option, e.g. -R cursor_field=updated_at or -R format=arrow "
    "(postgres: Arrow batches, written to Parquet without building Python rows).",
)
_write_option = click.option(
    "-W",
    "--write-option",
    "write_option_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Connector write option, e.g. -W mode=replace or -W upsert_on=id (repeatable).",
)
_format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "parquet", "arrow"]),
    help="File format (default: from the file's suffix; JSON Lines on stdout).",
)
_compression_option = click.option(
    "--compression",
    type=click.Choice(["gzip", "zstd", "bz2", "xz"]),
    help="Compress the output file (default: from its suffix, e.g. .jsonl.gz).",
)
_sink_option = click.option(
    "-F",
    "--file-option",
    "file_option_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Output file option: CSV columns=[...], delimiter, null_string; "
    "Parquet compression_codec (repeatable).",
)
_state_option = click.option(
    "--state",
    "state_file",
    type=click.Path(dir_okay=False),
    help="Copy state file: resume from it, and rewrite it (atomically) each time the "
    "output is made durable.",
)
_limit_option = click.option("--limit", type=click.IntRange(min=1), help="Stop after N records.")
_checkpoint_option = click.option(
    "--checkpoint-seconds",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="With --state: how often the output is made durable and the state saved "
    "(0: after every batch).",
)
_batch_option = click.option(
    "--batch-size", type=click.IntRange(min=1), help="Records per batch read."
)
_progress_option = click.option(
    "--progress/--no-progress", default=None, help="Progress bar on stderr (default: on a TTY)."
)


@cli.command()
@click.argument("source")
@click.argument("stream", required=False)
@_config_option
@_format_option
@_compression_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    help="Output file (default: stdout).",
)
@_state_option
@_checkpoint_option
@_limit_option
@_batch_option
@_progress_option
@_read_option
@_sink_option
@click.option(
    "--records",
    "records_path",
    metavar="PATH",
    help="For a URL source: where the records are in each response, e.g. data.items "
    "(rest); the same as -c records=PATH.",
)
def read(
    source: str,
    stream: str | None,
    config_pairs: tuple[str, ...],
    fmt: str | None,
    compression: str | None,
    output: str,
    state_file: str | None,
    checkpoint_seconds: float,
    limit: int | None,
    batch_size: int | None,
    progress: bool | None,
    read_option_pairs: tuple[str, ...],
    file_option_pairs: tuple[str, ...],
    records_path: str | None,
) -> None:
    """
    Read STREAM from SOURCE to stdout or -o FILE (the same as `copy` into a file).

    The format comes from the output's suffix (.jsonl, .csv, .parquet, .arrow, and .gz,
    .zst, .bz2, .xz for compression); --format overrides. A new output appears only when
    complete: an existing file is replaced atomically, never truncated first.

    With --state FILE, an interrupted read run again resumes exactly after the last
    checkpoint, and a finished one run again adds what the stream has gained since
    (appended to the same -o FILE).

    Without --state and --limit, records come in the order the source reads fastest
    (PostgreSQL: a sequential scan); -R ordered=true keeps the key order.
    """
    from headwater.errors import ConfigError

    overrides = _parse_assignments(config_pairs, "--config")
    if records_path is not None:
        if overrides.get("records", records_path) != records_path:
            raise ConfigError("--records and -c records= disagree; give one", field="records")
        overrides["records"] = records_path
    read_options = _parse_assignments(read_option_pairs, "--read-option")
    sink_options = _parse_assignments(file_option_pairs, "--file-option")
    with _open_source(source, overrides) as connector:
        stream = stream or _only_stream(connector)
        to_stdout = output == "-"
        if to_stdout and fmt not in (None, "jsonl", "csv"):
            raise ConfigError(f"--format {fmt} needs -o FILE", field="output")
        try:
            # A pipe cannot be made durable: with --state, the state is saved after each
            # batch has been flushed to the reader. --compression is for files only.
            _run_copy(
                connector, stream, sys.stdout.buffer if to_stdout else output, None,
                state_file=state_file, limit=limit, batch_size=batch_size, progress=progress,
                read_options=read_options, fmt=fmt, sink_options=sink_options,
                compression=None if to_stdout else compression,
                checkpoint_seconds=checkpoint_seconds, summary=not to_stdout,
            )  # fmt: skip
        except BrokenPipeError:
            if not to_stdout:
                raise
            # `read ... | head`: the reader took what it wanted. Point stdout at /dev/null
            # so the interpreter's last flush does not fail again, and end successfully
            # (click would turn EPIPE into exit 1).
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(0)


@cli.command("copy")
@click.argument("source")
@click.argument("stream")
@click.argument("dest")
@click.argument("dest_stream", required=False)
@_config_option
@_format_option
@_compression_option
@_state_option
@_checkpoint_option
@_limit_option
@_batch_option
@_progress_option
@_read_option
@_write_option
@_sink_option
def copy_command(
    source: str,
    stream: str,
    dest: str,
    dest_stream: str | None,
    config_pairs: tuple[str, ...],
    fmt: str | None,
    compression: str | None,
    state_file: str | None,
    checkpoint_seconds: float,
    limit: int | None,
    batch_size: int | None,
    progress: bool | None,
    read_option_pairs: tuple[str, ...],
    write_option_pairs: tuple[str, ...],
    file_option_pairs: tuple[str, ...],
) -> None:
    """
    Copy STREAM of SOURCE into DEST: a local file, or with DEST_STREAM a saved source or
    URL whose connector writes the records (a table, a blob).

    \b
    headwater copy warehouse public.orders orders.parquet
    headwater copy warehouse public.orders az://exports orders/2026.jsonl.gz
    headwater copy events.csv - warehouse public.events     (a local file as the source)

    With --state FILE the copy resumes exactly: into a file, after the last checkpoint;
    into a connector that commits state with its data (postgres, azure-blob, duckdb:
    `headwater connectors show ID` lists atomic_state), after the last committed write.
    """
    overrides = _parse_assignments(config_pairs, "--config")
    read_options = _parse_assignments(read_option_pairs, "--read-option")
    write_options = _parse_assignments(write_option_pairs, "--write-option")
    sink_options = _parse_assignments(file_option_pairs, "--file-option")
    if stream == "-" and "://" not in source and Path(source).is_file():
        origin: Any = Path(source)
        stream_name: str | None = None
    else:
        origin = _open_source(source, overrides)
        stream_name = stream
    try:
        _run_copy(
            origin, stream_name, dest, dest_stream,
            state_file=state_file, limit=limit, batch_size=batch_size, progress=progress,
            read_options=read_options, write_options=write_options, fmt=fmt,
            compression=compression, sink_options=sink_options,
            checkpoint_seconds=checkpoint_seconds,
        )  # fmt: skip
    finally:
        if not isinstance(origin, Path):
            origin.close()


def _run_copy(
    source: Any,
    stream: str | None,
    dest: Any,
    dest_stream: str | None,
    *,
    state_file: str | None,
    limit: int | None,
    batch_size: int | None,
    progress: bool | None,
    read_options: dict[str, Any],
    write_options: dict[str, Any] | None = None,
    fmt: str | None = None,
    compression: str | None = None,
    sink_options: dict[str, Any] | None = None,
    checkpoint_seconds: float = 1.0,
    summary: bool = True,
) -> None:
    """
    One `headwater.copy` (into a file name, a sink, or a source's DEST_STREAM) with a
    progress bar, a summary line on stderr and Ctrl-C reporting.
    """
    from headwater._copy import copy

    destination: Any = dest
    if dest_stream is not None:
        destination = _open_source(dest)
    label = stream or str(source)
    bar = _Progress(progress, label, unit=" rec")
    try:
        with bar:
            if stream is not None and bar.enabled:
                bar.set_total(_estimate_rows(source, stream))
            result = copy(
                source, stream, destination, dest_stream,
                state_file=state_file, limit=limit, batch_size=batch_size,
                read_options=read_options, write_options=write_options, format=fmt,
                compression=compression, sink_options=sink_options, progress=bar,
                registry=_registry(), checkpoint_seconds=checkpoint_seconds,
            )  # fmt: skip
    except KeyboardInterrupt:
        _interrupted(state_file)
    finally:
        if dest_stream is not None:
            destination.close()
    if summary:
        click.echo(f"copied {result.records} records to {result.destination}", err=True)


def _estimate_rows(source: Any, stream: str) -> int | None:
    """A row total for the progress bar when the connector can tell cheaply."""
    from headwater._connector import Connector

    if not isinstance(source, Connector):
        return None
    try:
        estimate = source.estimate(stream)
    except Exception:  # a progress total is a nicety: never fail the copy for it
        return None
    return estimate.rows


def _interrupted(state_file: str | None) -> NoReturn:
    from headwater._copy import load_state

    if state_file is not None:
        saved = load_state(state_file) or {}
        records = saved.get("records", 0)
        click.echo(
            f"interrupted: the state in {state_file} covers {records} records; run the same "
            "command again to resume",
            err=True,
        )
    raise KeyboardInterrupt


def _only_stream(connector: Connector[Any]) -> str:
    from headwater.errors import ConfigError

    streams = [item.name for item in connector.list() if item.kind in ("stream", "table", "view")]
    if len(streams) == 1:
        return streams[0]
    shown = ", ".join(streams[:10]) + (" ..." if len(streams) > 10 else "")
    raise ConfigError(
        f"STREAM is required: this source has {len(streams)} streams ({shown or 'none'})",
        field="stream",
    )


class _Progress:
    """A tqdm bar on stderr when it is a terminal; a no-op otherwise (tqdm not even imported)."""

    def __init__(self, enabled: bool | None, label: str, *, unit: str) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.label = label
        self.unit = unit
        self.bar: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                desc=self.label,
                unit=self.unit,
                unit_scale=self.unit == "B",
                file=sys.stderr,
                dynamic_ncols=True,
            )
        return self

    def set_total(self, total: int | None) -> None:
        """Show a total and an ETA (when the connector could estimate one)."""
        if self.bar is not None and total:
            self.bar.total = total
            self.bar.refresh()

    def __call__(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def set_position(self, done: int) -> None:
        """Show ``done`` units done (for work measured from outside, as a growing file)."""
        if self.bar is not None and done != self.bar.n:
            self.bar.n = done
            self.bar.refresh()

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


@cli.command()
@click.argument("source")
@click.argument("item")
@click.argument("dest", type=click.Path(file_okay=False))
@_config_option
@click.option("--overwrite/--no-overwrite", default=False, help="Replace an existing local file.")
@_progress_option
def fetch(
    source: str,
    item: str,
    dest: str,
    config_pairs: tuple[str, ...],
    overwrite: bool,
    progress: bool | None,
) -> None:
    """Download ITEM from SOURCE into directory DEST (atomic, verified, never outside DEST)."""
    with (
        _open_source(source, _parse_assignments(config_pairs, "--config")) as connector,
        _Progress(progress, item, unit="B") as bar,
        _FetchWatcher(connector, item, dest, bar),
    ):
        result = connector.fetch(item, dest, overwrite=overwrite)
        bar.set_total(result.size)
        bar.set_position(result.size)
    checksum = f" {result.checksum}" if result.checksum else ""
    click.echo(f"{_printable(str(result.path))}\t{result.size} bytes{checksum}")


class _FetchWatcher:
    """
    Bytes progress for ``fetch`` from outside the connector: every connector writes its
    download to a temporary file beside the target (`atomic_file`, the contract says so),
    and a thread reads its size a few times a second. Total from ``metadata``'s size.
    """

    def __init__(self, connector: Connector[Any], item: str, dest: str, bar: _Progress) -> None:
        self.connector, self.item, self.dest, self.bar = connector, item, dest, bar
        self._stop: Any = None
        self._thread: Any = None

    def __enter__(self) -> _FetchWatcher:
        if self.bar.bar is None:
            return self
        import threading

        from headwater._files import safe_destination, temporary_prefix

        try:
            target = safe_destination(self.dest, self.item)
            size = self.connector.metadata(self.item).get("size")
        except Exception:  # the fetch itself reports a bad name or a missing item
            return self
        self.bar.set_total(size if isinstance(size, int) else None)
        pattern = f"{temporary_prefix(target)}*.part"
        self._stop = threading.Event()

        def watch() -> None:
            while not self._stop.wait(0.2):
                sizes = [p.stat().st_size for p in target.parent.glob(pattern) if p.exists()]
                if sizes:
                    self.bar.set_position(max(sizes))

        self._thread = threading.Thread(target=watch, name="headwater-fetch-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()


@cli.command()
@click.argument("source")
@click.argument("local_file", type=click.Path(dir_okay=False, exists=True))
@click.argument("item")
@_config_option
@click.option("--overwrite/--no-overwrite", default=False, help="Replace an existing item.")
@_progress_option
def upload(
    source: str,
    local_file: str,
    item: str,
    config_pairs: tuple[str, ...],
    overwrite: bool,
    progress: bool | None,
) -> None:
    """Upload LOCAL_FILE to SOURCE as ITEM (streamed, verified, appears only when complete)."""
    from headwater._connector import Capability
    from headwater.errors import NotSupported

    with _open_source(source, _parse_assignments(config_pairs, "--config")) as connector:
        if Capability.UPLOAD not in connector.capabilities:
            raise NotSupported(f"connector {connector.id!r} does not support upload")
        size = Path(local_file).stat().st_size
        with _Progress(progress, item, unit="B") as bar, open(local_file, "rb") as raw:
            bar.set_total(size)
            reader = typing.cast(IO[bytes], _CountingReader(raw, bar))
            result = connector.upload(item, reader, overwrite=overwrite)
    checksum = getattr(result, "checksum", None)
    click.echo(f"{item}\t{size} bytes" + (f" {checksum}" if checksum else ""))


class _CountingReader(io.RawIOBase):
    """A binary file that reports the bytes read from it to a progress bar."""

    def __init__(self, raw: IO[bytes], progress: _Progress) -> None:
        self._raw = raw
        self._progress = progress

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._progress(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        count = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        self._progress(count or 0)
        return int(count or 0)


@cli.command()
@click.argument("source")
@click.argument("stream")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@_config_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "parquet", "arrow"]),
    help="Format of FILE (default: from its suffix; '-' reads JSON Lines from stdin).",
)
@_write_option
@click.option("--batch-size", type=click.IntRange(min=1), default=10_000, show_default=True)
@_progress_option
def write(
    source: str,
    stream: str,
    file: str,
    config_pairs: tuple[str, ...],
    fmt: str | None,
    write_option_pairs: tuple[str, ...],
    batch_size: int,
    progress: bool | None,
) -> None:
    """Write the records in FILE (JSON Lines, CSV, Parquet, Arrow; compressed too) to STREAM."""
    from headwater._copy import copy

    options = _parse_assignments(write_option_pairs, "--write-option")
    origin: Any = sys.stdin.buffer if file == "-" else Path(file)
    read_options = {"file_format": fmt} if fmt else {}  # stdin: JSON Lines by default
    with (
        _open_source(source, _parse_assignments(config_pairs, "--config")) as connector,
        _Progress(progress, "stdin" if file == "-" else Path(file).name, unit=" rec") as bar,
    ):
        result = copy(
            origin, None, connector, stream,
            batch_size=batch_size, read_options=read_options, write_options=options, progress=bar,
        )  # fmt: skip
    click.echo(f"wrote {result.records} records to {stream}")


# --- sources ---------------------------------------------------------------------------------


@cli.group()
def sources() -> None:
    """Saved sources: a name for a connector and its config (secret references only)."""


@sources.command("add")
@click.argument("name")
@click.argument("connector_id", metavar="CONNECTOR")
@click.option(
    "-c",
    "--config",
    "config_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Config value (repeatable; dotted keys nest). Secrets as env:/file:/keyring: references.",
)
@click.option("--config-json", help="The whole config as a JSON object.")
@click.option("--description", default="", help="Free text shown by `sources list`.")
@click.option("--owner", default="", help="Who answers for the source (shown; filterable).")
@click.option(
    "--environment", default="", help="prod, staging, ... (shown; `sources list` filters on it)."
)
@click.option(
    "--label",
    "label_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A label (repeatable), shown by `sources show`; `sources list --label` filters on it.",
)
@click.option("--test/--no-test", "test", default=False, help="Check the connection before saving.")
@click.option("--replace", is_flag=True, help="Replace an existing source of that name.")
def sources_add(
    name: str,
    connector_id: str,
    config_pairs: tuple[str, ...],
    config_json: str | None,
    description: str,
    owner: str,
    environment: str,
    label_pairs: tuple[str, ...],
    test: bool,
    replace: bool,
) -> None:
    """Save source NAME using connector CONNECTOR; owner, environment and labels describe it."""
    config: dict[str, Any] = {}
    if config_json:
        try:
            config = json.loads(config_json)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--config-json") from None
    config.update(_parse_assignments(config_pairs, "--config"))
    registry = _sources()
    registry.add(
        name,
        connector_id,
        config,
        description=description,
        owner=owner,
        environment=environment,
        labels=_labels(label_pairs),
        test=test,
        replace=replace,
    )
    click.echo(f"saved source {name!r} ({connector_id}) in {registry.path}")


def _labels(pairs: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--label")
        labels[key] = value
    return labels


@sources.command("list")
@click.option("--owner", help="Only sources with this owner.")
@click.option("--environment", help="Only sources of this environment.")
@click.option(
    "--label",
    "label_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only sources with this label (repeatable: all must match).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def sources_list(
    owner: str | None, environment: str | None, label_pairs: tuple[str, ...], as_json: bool
) -> None:
    """Saved sources, optionally filtered by owner, environment and labels."""
    items = _sources().list(owner=owner, environment=environment, labels=_labels(label_pairs))
    if as_json:
        _echo_json([s.sanitized() for s in items])
        return
    # The owner and environment columns appear once any listed source has them.
    if any(s.owner or s.environment for s in items):
        _table(
            ("name", "connector", "environment", "owner", "description"),
            [(s.name, s.connector, s.environment, s.owner, s.description) for s in items],
        )
        return
    _table(
        ("name", "connector", "description"), [(s.name, s.connector, s.description) for s in items]
    )


@sources.command("show")
@click.argument("name")
def sources_show(name: str) -> None:
    """A saved source's config and metadata, secrets shown as references (never values)."""
    _echo_json(_sources().show(name))


@sources.command("remove")
@click.argument("name")
def sources_remove(name: str) -> None:
    """Forget a saved source."""
    _sources().remove(name)
    click.echo(f"removed source {name!r}")


# --- secrets ---------------------------------------------------------------------------------


@cli.group()
def secrets() -> None:
    """
    Store secrets; configs then reference them instead of holding them.

    \b
    --store keyring (default): the OS keyring; reference keyring:SERVICE/USERNAME.
    --store encrypted: a Fernet-encrypted file for servers without a keyring
      (pip install 'headwater[encrypted]'); reference encrypted:NAME. Its key comes from
      HEADWATER_SECRETS_KEY or HEADWATER_SECRETS_KEY_FILE (see `secrets new-key`), the
      file is HEADWATER_SECRETS_FILE (default: encrypted-secrets.json in headwater's
      config directory).
    """


_store_option = click.option(
    "--store",
    type=click.Choice(["keyring", "encrypted"]),
    default="keyring",
    show_default=True,
    help="The OS keyring, or the encrypted file (for servers without a keyring).",
)


def _secret_target(store: str, service: str, username: str | None) -> str:
    """The reference for SERVICE [USERNAME] in ``store``; checks the arguments."""
    from headwater._resolvers import split_keyring_reference
    from headwater.errors import ConfigError

    if store == "encrypted":
        # NAME, or SERVICE USERNAME stored as SERVICE/USERNAME.
        return f"encrypted:{service}/{username}" if username else f"encrypted:{service}"
    if username is None:
        raise click.UsageError("the keyring store needs SERVICE and USERNAME")
    split_keyring_reference(f"{service}/{username}")
    if "/" in service:
        raise ConfigError("SERVICE may not contain '/'", field="service")
    return f"keyring:{service}/{username}"


@secrets.command("set")
@click.argument("service", metavar="SERVICE|NAME")
@click.argument("username", required=False)
@_store_option
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the secret from stdin (one line).")
def secrets_set(service: str, username: str | None, store: str, from_stdin: bool) -> None:
    """
    Store a secret (prompted without echo): SERVICE USERNAME in the keyring, or NAME in
    the encrypted store (`--store encrypted`).
    """
    from headwater._secret_store import store_secret

    reference = _secret_target(store, service, username)
    if from_stdin:
        value = sys.stdin.readline().rstrip("\r\n")
    else:
        value = click.prompt("secret", hide_input=True, confirmation_prompt=True, err=True)
    store_secret(reference, value)
    click.echo(f"stored; reference it as {reference}")


@secrets.command("delete")
@click.argument("service", metavar="SERVICE|NAME")
@click.argument("username", required=False)
@_store_option
def secrets_delete(service: str, username: str | None, store: str) -> None:
    """Delete the secret for SERVICE USERNAME (keyring) or NAME (`--store encrypted`)."""
    from headwater._secret_store import delete_secret

    reference = _secret_target(store, service, username)
    delete_secret(reference)
    click.echo(f"deleted {reference}")


@secrets.command("list")
def secrets_list() -> None:
    """The names in the encrypted store (never values; no key needed)."""
    from headwater._encrypted import EncryptedSecrets

    for name in EncryptedSecrets().names():
        click.echo(f"encrypted:{name}")


@secrets.command("new-key")
@click.option(
    "--key-file",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the key (a new file, mode 0600); the key is never printed.",
)
def secrets_new_key(key_file: str) -> None:
    """Write a new random Fernet key for the encrypted store to a new file."""
    from headwater._encrypted import KEY_FILE_VARIABLE, write_key_file

    path = write_key_file(key_file)
    click.echo(f"wrote a new key to {path}; use it with {KEY_FILE_VARIABLE}={path}")


@secrets.command("rotate")
@click.option(
    "--new-key-file",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help="The new key (first line used; see `secrets new-key`).",
)
def secrets_rotate(new_key_file: str) -> None:
    """
    Re-encrypt every value of the encrypted store with a new key.

    The current key comes from HEADWATER_SECRETS_KEY / HEADWATER_SECRETS_KEY_FILE as
    usual; nothing changes if a value cannot be decrypted with it. Afterwards point
    HEADWATER_SECRETS_KEY_FILE at the new key (or give NEW,OLD while processes move over).
    """
    from pathlib import Path

    from headwater._encrypted import EncryptedSecrets, read_key_file
    from headwater.errors import ConfigError

    keys = read_key_file(Path(new_key_file))
    if not keys:
        raise ConfigError(f"{new_key_file} holds no key", field="new_key_file")
    count = EncryptedSecrets().rotate(keys[0])
    click.echo(f"re-encrypted {count} secret(s) with the key in {new_key_file}")


# --- plugin authoring ---------------------------------------------------------------------------


@cli.command("new-plugin")
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    help="Where to write the project (default: ./headwater-NAME); must be new or empty.",
)
def new_plugin(name: str, directory: str | None) -> None:
    """
    Write a complete plugin project for connector id NAME.

    The project (distribution headwater-NAME, package headwater_NAME) holds a working
    connector over a small demo service, its entry point, tests running headwater's
    contract suite, a README with a generated config table, and a noxfile.
    """
    from headwater._scaffold import create_plugin

    path = create_plugin(name, directory)
    click.echo(f"created {path}")
    click.echo("next: cd into it, pip install -e '.[test]', then run pytest")


# --- helpers -----------------------------------------------------------------------------------


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    table(header, rows)


def _printable(name: str) -> str:
    """
    ``name`` safe to print on a terminal: control and format characters (escape
    sequences, newlines, bidirectional overrides) written as ``\\x1b``, ``\\n``,
    ``\\u202e``, so a remote item's name can neither drive the terminal nor fake lines.
    """
    if name.isprintable():
        return name
    import unicodedata

    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if not ch.isprintable() and unicodedata.category(ch) != "Zs"
        else ch
        for ch in name
    )


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


#: The error `replay` has the command raise.
_replayed: BaseException | None = None


def replay(argv: list[str], exc: BaseException) -> NoReturn:
    """
    End as `main` ends when the command of ``argv`` raises ``exc``: click's handling, then
    main's. `headwater._start` lists connectors without click and hands its errors here.
    """
    global _replayed
    _replayed = exc
    main(argv)
    raise AssertionError("main returned")  # main always exits


def main(argv: list[str] | None = None) -> None:
    """The CLI (the console script is `_start.main`): errors as one line and an exit code."""
    from headwater._redact import redact

    settings = _Settings()
    try:
        cli.main(args=argv, prog_name="headwater", standalone_mode=False, obj=settings)
    except click.exceptions.Abort:
        _fail("aborted", EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        # `headwater read ... | head`: the reader went away; not an error worth a trace.
        sys.stderr.close()
        sys.exit(0)
    except Exception as exc:
        from headwater.errors import HeadwaterError

        if settings.debug:
            import traceback

            click.echo(redact("".join(traceback.format_exception(exc))), err=True)
        if isinstance(exc, HeadwaterError):
            message = exc.message
            if exc.hint:
                message += f" (hint: {exc.hint})"
        else:
            message = redact(f"{type(exc).__name__}: {exc}".splitlines()[0])
        _fail(message, EXIT_ERROR)
    sys.exit(0)
