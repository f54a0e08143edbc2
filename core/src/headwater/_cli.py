"""
The ``headwater`` command line.

Data goes to stdout, everything else (progress, warnings, errors) to stderr. Errors are
one line; ``--debug`` adds the (redacted) traceback. Imports are deferred into the
commands so ``headwater --help`` and ``headwater connectors`` start fast.

Exit codes: 0 success; 1 error; 2 usage error; 3 a check found the source unhealthy
(or ``doctor`` found a failed plugin); 130 interrupted.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from headwater._connector import Batch, Connector
    from headwater._plugins import Registry
    from headwater._sources import SourceRegistry

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNHEALTHY = 3
EXIT_INTERRUPTED = 130

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _State:
    debug: bool = False
    sources_file: str | None = None


_state = _State()


def _registry() -> Registry:
    from headwater._plugins import get_registry

    return get_registry()


def _sources() -> SourceRegistry:
    from headwater._sources import SourceRegistry

    return SourceRegistry(_state.sources_file, registry=_registry())


def _echo_json(data: Any) -> None:
    from headwater._redact import redact

    click.echo(redact(json.dumps(data, indent=2, default=_json_default, ensure_ascii=False)))


def _json_default(value: Any) -> Any:
    import base64
    import datetime
    import decimal
    import uuid

    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        # Exact: a float would lose digits of a NUMERIC.
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


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
    """A connector for a saved source name or a URL."""
    if "://" in source:
        return _registry().connect(source, overrides or {})
    if overrides:
        from headwater.errors import ConfigError

        raise ConfigError(
            "-c/--config overrides apply to URL sources only",
            hint=f"change the saved source with `headwater sources add {source} ... --replace`",
        )
    return _sources().connector(source)


@click.group(context_settings=CONTEXT_SETTINGS)
@click.option("--debug", is_flag=True, help="Show tracebacks (redacted) and debug logs.")
@click.option(
    "--sources-file",
    type=click.Path(dir_okay=False),
    envvar="HEADWATER_SOURCES_FILE",
    help="The saved-sources TOML file [env: HEADWATER_SOURCES_FILE].",
)
@click.version_option(package_name="headwater", prog_name="headwater")
def cli(debug: bool, sources_file: str | None) -> None:
    """
    headwater: read, list, fetch and write data through connector plugins.

    SOURCE is a saved source name (see `headwater sources`) or a URL such as
    file:///data, postgresql://user@host/db or https://api.example.com/items.

    \b
    Exit codes: 0 ok, 1 error, 2 usage, 3 unhealthy (check, doctor), 130 interrupted.
    """
    _state.debug = debug
    _state.sources_file = sources_file
    _configure_logging(debug)


def _configure_logging(debug: bool) -> None:
    from headwater._redact import RedactingFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING)


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


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor(as_json: bool) -> None:
    """Plugins with their hooks and errors, plus the environment; exit 3 if a plugin failed."""
    import platform

    from headwater._version import API_VERSION, __version__

    _quiet_plugin_warnings()
    registry = _registry()
    infos = registry.plugins()
    env = {k: v for k, v in sorted(os.environ.items()) if k.startswith("HEADWATER_")}
    report = {
        "headwater": __version__,
        "plugin_api": API_VERSION,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "environment": env,
        "plugins": [info.to_dict() for info in infos],
    }
    bad = [i for i in infos if i.status in ("failed", "incompatible")]
    if as_json:
        _echo_json(report)
    else:
        click.echo(f"headwater {__version__} (plugin API {API_VERSION}), Python {report['python']}")
        for key, value in env.items():
            click.echo(f"  {key}={value}")
        for info in infos:
            origin = f"{info.distribution} {info.version}" if info.distribution else "registered"
            click.echo(f"{info.name} [{info.status}] {origin} api {info.api or '-'}")
            click.echo(f"  hooks: {', '.join(info.hooks) or '-'}")
            click.echo(f"  connectors: {', '.join(info.connectors) or '-'}")
            if info.import_time is not None:
                click.echo(f"  import time: {info.import_time * 1000:.1f} ms")
            if info.error:
                click.echo(f"  error: {info.error}")
    if bad:
        sys.exit(EXIT_UNHEALTHY)


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def connectors(ctx: click.Context, as_json: bool) -> None:
    """Connector ids with their summary and origin; `connectors show ID` for the config schema."""
    if ctx.invoked_subcommand is not None:
        return
    found = _registry().connectors()
    data = []
    for cid, entries in found.items():
        status = "ok" if len(entries) == 1 else "conflict"
        data.append(
            {
                "id": cid,
                "summary": entries[0].summary,
                "origin": " and ".join(e.origin for e in entries),
                "status": status,
            }
        )
    if as_json:
        _echo_json(data)
        return
    _table(
        ("id", "summary", "origin", "status"),
        [(d["id"], d["summary"], d["origin"], d["status"]) for d in data],
    )


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
                click.echo(json.dumps(item.to_dict(), default=_json_default))
            else:
                size = "" if item.size is None else str(item.size)
                modified = item.modified.isoformat(timespec="seconds") if item.modified else ""
                click.echo(f"{item.kind:<10} {size:>12}  {modified:<25} {item.name}")


@cli.command()
@click.argument("source")
@click.argument("stream", required=False)
@_config_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "parquet"]),
    default="jsonl",
    show_default=True,
    help="Output format (parquet needs pyarrow and -o).",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default="-")
@click.option(
    "--state",
    "state_file",
    type=click.Path(dir_okay=False),
    help="Resume from this JSON state file and keep it updated after every batch.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Stop after N records.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Records per batch.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a TTY).")
@click.option(
    "-R",
    "--read-option",
    "read_option_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Connector read option, e.g. -R cursor_field=updated_at or -R format=arrow "
    "(postgres: Arrow batches, written to Parquet without building Python rows).",
)
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
    fmt: str,
    output: str,
    state_file: str | None,
    limit: int | None,
    batch_size: int | None,
    progress: bool | None,
    read_option_pairs: tuple[str, ...],
    records_path: str | None,
) -> None:
    """
    Read STREAM from SOURCE to stdout or -o FILE.

    With --state FILE, reading resumes after the state saved there and the file is
    rewritten (atomically) after each batch has been written out, so an interrupted
    run continues where it stopped; output to -o FILE is then appended, not replaced.
    """
    from headwater.errors import ConfigError

    state = _load_state(state_file)
    if fmt == "parquet" and output == "-":
        raise ConfigError("--format parquet needs -o FILE", field="output")
    overrides = _parse_assignments(config_pairs, "--config")
    if records_path is not None:
        if overrides.get("records", records_path) != records_path:
            raise ConfigError("--records and -c records= disagree; give one", field="records")
        overrides["records"] = records_path
    with _open_source(source, overrides) as connector:
        stream = stream or _only_stream(connector)
        resuming = state is not None and output != "-"
        with _output(output, fmt, append=resuming) as writer, _progress(progress, stream) as bar:
            options = _parse_assignments(read_option_pairs, "--read-option")
            _copy_batches(
                connector, stream, state, batch_size, limit, writer, bar, state_file, options
            )


def _copy_batches(
    connector: Connector[Any],
    stream: str,
    state: dict[str, Any] | None,
    batch_size: int | None,
    limit: int | None,
    writer: _Writer,
    bar: _Progress,
    state_file: str | None,
    options: dict[str, Any] | None = None,
) -> None:
    """
    Copy batches to the writer, saving state after each, stopping exactly at ``limit``.

    A saved state must sit exactly after the last record written, so a batch is never cut
    in two: when fewer records remain than a batch holds, the read is reopened from the
    last state with a batch size equal to what remains.
    """
    written = 0
    while True:
        remaining = None if limit is None else limit - written
        size = batch_size if remaining is None else min(batch_size or remaining, remaining)
        batches = connector.read(stream, state, batch_size=size, **(options or {}))
        reopen = False
        try:
            for batch in batches:
                rows = batch.rows()
                if remaining is not None and len(rows) > remaining:
                    # The connector ignored batch_size: write what fits, but this
                    # batch's state would skip the rest, so it cannot be saved.
                    rows = rows[:remaining]
                    if state_file:
                        click.echo(
                            "warning: the connector returned a batch larger than --limit; "
                            "state not saved for the partial batch",
                            err=True,
                        )
                        state_file = None
                writer.write(batch, rows)
                written += len(rows)
                bar(len(rows))
                state = batch.state
                if state_file:
                    writer.flush()
                    _save_state(state_file, batch.state)
                if limit is None:
                    continue
                remaining = limit - written
                if remaining <= 0:
                    return
                if size is not None and remaining < size:
                    reopen = True
                    break
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        if not reopen:
            return


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


def _load_state(state_file: str | None) -> dict[str, Any] | None:
    from headwater.errors import ConfigError

    if not state_file or not Path(state_file).exists():
        return None
    try:
        data = json.loads(Path(state_file).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(
            f"state file {state_file} is not valid JSON ({exc})", field="state"
        ) from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"state file {state_file} must hold a JSON object", field="state")
    return data


def _save_state(state_file: str, state: dict[str, Any]) -> None:
    from headwater._files import atomic_file

    with atomic_file(state_file) as handle:
        handle.write(json.dumps(state, default=_json_default).encode("utf-8"))


class _Writer:
    """Writes batches to a binary stream as JSON Lines, CSV or Parquet."""

    def __init__(self, out: IO[bytes], fmt: str, append: bool) -> None:
        self.out = out
        self.fmt = fmt
        self.append = append
        self._csv_header: list[str] | None = None
        self._parquet: Any = None

    def write(self, batch: Batch, rows: list[dict[str, Any]]) -> None:
        if self.fmt == "jsonl":
            data = "".join(
                json.dumps(row, default=_json_default, ensure_ascii=False) + "\n" for row in rows
            )
            self.out.write(data.encode("utf-8"))
        elif self.fmt == "csv":
            self._write_csv(rows)
        else:
            self._write_parquet(batch, rows)

    def _write_csv(self, rows: list[dict[str, Any]]) -> None:
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for row in rows:
            if self._csv_header is None:
                self._csv_header = list(row)
                if not self.append:
                    writer.writerow(self._csv_header)
            writer.writerow(
                [_csv_value(row.get(key)) for key in self._csv_header]
                + [_csv_value(v) for k, v in row.items() if k not in self._csv_header]
            )
        self.out.write(buffer.getvalue().encode("utf-8"))

    def _write_parquet(self, batch: Batch, rows: list[dict[str, Any]]) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            from headwater.errors import ConfigError

            raise ConfigError("--format parquet needs pyarrow: pip install pyarrow") from None
        table = (
            pa.Table.from_batches([batch.records])
            if batch.is_arrow and len(rows) == len(batch)
            else pa.Table.from_pylist(rows)
        )
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self.out, table.schema)
        self._parquet.write_table(table)

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, default=_json_default, ensure_ascii=False)
    if isinstance(value, str | int | float):
        return value
    return _json_default(value)


class _OutputContext:
    def __init__(self, output: str, fmt: str, append: bool) -> None:
        self.output, self.fmt, self.append = output, fmt, append
        self.handle: IO[bytes] | None = None
        self.writer: _Writer | None = None

    def __enter__(self) -> _Writer:
        if self.output == "-":
            self.handle = sys.stdout.buffer
            append = False
        else:
            append = self.append and Path(self.output).exists() and self.fmt != "parquet"
            self.handle = open(self.output, "ab" if append else "wb")
        self.writer = _Writer(self.handle, self.fmt, append)
        return self.writer

    def __exit__(self, *exc: object) -> None:
        assert self.writer is not None
        assert self.handle is not None
        self.writer.close()
        self.handle.flush()
        if self.output != "-":
            self.handle.close()


def _output(output: str, fmt: str, append: bool) -> _OutputContext:
    return _OutputContext(output, fmt, append)


class _Progress:
    """A tqdm bar on stderr when it is a terminal; a no-op otherwise (tqdm not even imported)."""

    def __init__(self, enabled: bool | None, label: str) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.label = label
        self.bar: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(desc=self.label, unit=" rec", file=sys.stderr, dynamic_ncols=True)
        return self

    def __call__(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress(enabled: bool | None, label: str) -> _Progress:
    return _Progress(enabled, label)


@cli.command()
@click.argument("source")
@click.argument("item")
@click.argument("dest", type=click.Path(file_okay=False))
@_config_option
@click.option("--overwrite/--no-overwrite", default=False, help="Replace an existing local file.")
def fetch(
    source: str, item: str, dest: str, config_pairs: tuple[str, ...], overwrite: bool
) -> None:
    """Download ITEM from SOURCE into directory DEST (atomic, verified, never outside DEST)."""
    with _open_source(source, _parse_assignments(config_pairs, "--config")) as connector:
        result = connector.fetch(item, dest, overwrite=overwrite)
    checksum = f" {result.checksum}" if result.checksum else ""
    click.echo(f"{result.path}\t{result.size} bytes{checksum}")


@cli.command()
@click.argument("source")
@click.argument("stream")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@_config_option
@click.option(
    "--input-format",
    type=click.Choice(["jsonl", "csv"]),
    help="Format of FILE (default: from its suffix; '-' reads JSON Lines).",
)
@click.option(
    "-O",
    "--option",
    "option_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Connector write option, e.g. -O mode=append (repeatable).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=10_000, show_default=True)
def write(
    source: str,
    stream: str,
    file: str,
    config_pairs: tuple[str, ...],
    input_format: str | None,
    option_pairs: tuple[str, ...],
    batch_size: int,
) -> None:
    """Write the records in FILE (JSON Lines or CSV) to STREAM of SOURCE."""
    fmt = input_format or ("csv" if file.lower().endswith(".csv") else "jsonl")
    options = _parse_assignments(option_pairs, "--option")
    with _open_source(source, _parse_assignments(config_pairs, "--config")) as connector:
        result = connector.write(stream, _batches_from_file(file, fmt, batch_size), **options)
    click.echo(f"wrote {result.records} records to {result.stream}")


def _batches_from_file(file: str, fmt: str, batch_size: int) -> Iterator[list[dict[str, Any]]]:
    import csv
    import io

    from headwater.errors import ConfigError

    handle = sys.stdin if file == "-" else open(file, encoding="utf-8", newline="")  # noqa: SIM115
    try:
        if fmt == "csv":
            rows: Iterator[dict[str, Any]] = iter(csv.DictReader(handle))
        else:
            rows = _jsonl_rows(handle, file)
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read {file}: {exc}") from None
    finally:
        if not isinstance(handle, io.TextIOWrapper) or handle is not sys.stdin:
            handle.close()


def _jsonl_rows(handle: IO[str], name: str) -> Iterator[dict[str, Any]]:
    from headwater.errors import ConfigError

    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{name}:{number}: invalid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{name}:{number}: expected a JSON object")
        yield row


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
@click.option("--test/--no-test", "test", default=False, help="Check the connection before saving.")
@click.option("--replace", is_flag=True, help="Replace an existing source of that name.")
def sources_add(
    name: str,
    connector_id: str,
    config_pairs: tuple[str, ...],
    config_json: str | None,
    description: str,
    test: bool,
    replace: bool,
) -> None:
    """Save source NAME using connector CONNECTOR."""
    config: dict[str, Any] = {}
    if config_json:
        try:
            config = json.loads(config_json)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--config-json") from None
    config.update(_parse_assignments(config_pairs, "--config"))
    registry = _sources()
    registry.add(name, connector_id, config, description=description, test=test, replace=replace)
    click.echo(f"saved source {name!r} ({connector_id}) in {registry.path}")


@sources.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def sources_list(as_json: bool) -> None:
    """Saved sources."""
    items = _sources().list()
    if as_json:
        _echo_json([s.sanitized() for s in items])
        return
    _table(
        ("name", "connector", "description"), [(s.name, s.connector, s.description) for s in items]
    )


@sources.command("show")
@click.argument("name")
def sources_show(name: str) -> None:
    """A saved source's config, secrets shown as references (never values)."""
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
    """Store secrets in the OS keyring; configs then say keyring:SERVICE/USERNAME."""


@secrets.command("set")
@click.argument("service")
@click.argument("username")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the secret from stdin (one line).")
def secrets_set(service: str, username: str, from_stdin: bool) -> None:
    """Store the secret for SERVICE/USERNAME (prompted without echo)."""
    from headwater._resolvers import keyring_set, split_keyring_reference
    from headwater.errors import ConfigError

    split_keyring_reference(f"{service}/{username}")
    if "/" in service:
        raise ConfigError("SERVICE may not contain '/'", field="service")
    if from_stdin:
        value = sys.stdin.readline().rstrip("\r\n")
    else:
        value = click.prompt("secret", hide_input=True, confirmation_prompt=True, err=True)
    if not value:
        raise ConfigError("refusing to store an empty secret")
    keyring_set(service, username, value)
    click.echo(f"stored; reference it as keyring:{service}/{username}")


@secrets.command("delete")
@click.argument("service")
@click.argument("username")
def secrets_delete(service: str, username: str) -> None:
    """Delete the secret for SERVICE/USERNAME from the OS keyring."""
    from headwater._resolvers import keyring_delete

    keyring_delete(service, username)
    click.echo(f"deleted keyring:{service}/{username}")


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
    from headwater._redact import redact

    widths = [max([len(h), *(len(str(r[i])) for r in rows)]) for i, h in enumerate(header)]
    for line in [header, *rows]:
        click.echo(
            redact(
                "  ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            )
        )


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI, turning errors into one line and an exit code."""
    from headwater._redact import redact

    try:
        cli.main(args=argv, prog_name="headwater", standalone_mode=False)
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

        if _state.debug:
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
