"""
Partitions that ship: a stream split into `Partition` values that a worker process on
another machine reads on its own (`headwater.dask`, or any engine that pickles tasks).

A shipped partition carries the connector id and the connector's config **in saved
form**: every `Secret` as its reference (``env:NAME``, ``file:PATH``,
``keyring:SERVICE/USER``, or a scheme a resolver plugin registers), never a resolved
value. Each worker resolves credentials itself, when its connector connects. A config
whose secret is a literal or a Python callable cannot be shipped: the same rules as a
saved source (`headwater.SourceRegistry.add`), checked by the same code.

On a worker, `read_partition` opens the connector from id + config once per process and
config (reused by every later partition of that config, closed at process exit) and
yields its batches: Arrow record batches where the connector reads Arrow (``"arrow"`` in
its ``read_formats``), dicts otherwise. `plan` is an engine's read plan (partitions and
schema), worked out on a worker; `PartWrite` is an engine's exactly-once write, whose
`write_part`, `commit_parts` and `abort_parts` run on workers too.
"""

from __future__ import annotations

import atexit
import dataclasses
import inspect
import json
import os
import threading
from collections.abc import Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

from headwater._connector import (
    Batch,
    Capability,
    Connector,
    Estimate,
    Partition,
    State,
    WriteResult,
    _no_part_writes,
    new_part_job,
)
from headwater._redact import get_logger
from headwater.errors import ConfigError, HeadwaterError

if TYPE_CHECKING:
    import pyarrow

    from headwater._plugins import Registry
    from headwater._sources import SourceRegistry

__all__ = [
    "PartWrite",
    "Plan",
    "abort_parts",
    "close_shipped",
    "commit_parts",
    "partitions",
    "plan",
    "read_partition",
    "shipped_connector",
    "shipping",
    "shipping_config",
    "split",
    "write_part",
]

logger = get_logger("headwater.shipping")

#: What to use instead of a secret that cannot ship.
SHIP_HINT: Final = (
    "give the secret as a reference each worker resolves itself (env:NAME, file:PATH, "
    "keyring:SERVICE/USER, or a scheme a resolver plugin installed on the workers "
    "registers), or read a saved source whose config holds such references"
)

#: A source as `partitions` takes it: a connector, a saved source name, or a URL.
ShipSource = Connector[Any] | str


def shipping_config(connector: Connector[Any]) -> dict[str, Any]:
    """
    ``connector``'s config in saved form (JSON-ready, defaults left out), with every
    secret as its reference: what a partition carries to a worker.

    Raises:
        ConfigError: a secret is a literal or a callable, or its reference scheme is not
            known here, or a value would not read back the same (naming the field).
    """
    from headwater._sources import SourceRegistry, _secrets_in
    from headwater._store import MemorySourceStore

    model = connector.config
    where = f"{connector.id} config cannot be shipped to workers"
    for path, secret in _secrets_in(model):
        field = ".".join(str(step) for step in path)
        # Messages name the field only: the value may be the secret itself.
        if secret.is_callable or secret.is_literal or secret.reference is None:
            kind = "a Python callable" if secret.is_callable else "a literal value"
            raise ConfigError(
                f"{where}: secret field {field!r} holds {kind}, which a worker could only "
                "get as the secret itself",
                field=field,
                hint=SHIP_HINT,
            )
    # The checks a saved source passes (known schemes, a dump that reads back the same).
    # What ships is what a worker validates again: it must read back as this config.
    stored: dict[str, Any] = model.model_dump(mode="json", exclude_defaults=True)
    checker = SourceRegistry(store=MemorySourceStore(), registry=connector.registry)
    try:
        cls, _validated = checker._validate(connector.id, stored)
        SourceRegistry._check_faithful(connector.id, cls, model, stored)
    except ConfigError as exc:
        raise ConfigError(
            f"{where}: {exc.message}", field=exc.field, hint=exc.hint or SHIP_HINT
        ) from None
    return stored


def _open(
    source: ShipSource, *, sources: SourceRegistry | None, registry: Registry | None
) -> tuple[Connector[Any], bool]:
    """The connector for ``source`` and whether it was opened here (and is closed here)."""
    if isinstance(source, Connector):
        return source, False
    if not isinstance(source, str):
        raise ConfigError(
            f"a source to partition is a connector, a saved source name or a URL, not "
            f"{type(source).__name__}",
            field="source",
        )
    from headwater._copy import open_source

    return open_source(source, sources=sources, registry=registry), True


def shipping(
    source: ShipSource, *, sources: SourceRegistry | None, registry: Registry | None
) -> tuple[str, dict[str, Any]]:
    """
    The connector id and shipping config (`shipping_config`) of ``source``: what an
    engine's driver sends to its workers, which open their own connector from it.
    """
    connector, owned = _open(source, sources=sources, registry=registry)
    try:
        return connector.id, shipping_config(connector)
    finally:
        if owned:
            connector.close()


def partitions(
    source: ShipSource,
    stream: str,
    n: int | None = None,
    *,
    sources: SourceRegistry | None = None,
    registry: Registry | None = None,
    **options: Any,
) -> list[Partition]:
    """
    ``stream`` of ``source`` split into partitions ready to ship: each carries the
    connector id and its config with secret references only (`shipping_config`), so a
    worker reads it with `read_partition` and resolves credentials itself. Together they
    hold every record of the stream once.

    Args:
        source: a connector, a saved source name, or a URL (as `headwater.open_source`).
        stream: the stream to split.
        n: at most this many partitions (default: the number of CPUs here).
        sources, registry: where names and URLs are looked up (the defaults otherwise).
        options: the connector's partition options (PostgreSQL: ``key=``).

    Raises:
        ConfigError: the config cannot ship (a literal or callable secret), or ``n < 1``.
        NotSupported: the connector cannot split streams.
    """
    connector, owned = _open(source, sources=sources, registry=registry)
    try:
        return split(connector, shipping_config(connector), stream, n, **options)
    finally:
        if owned:
            connector.close()


def split(
    connector: Connector[Any], config: dict[str, Any], stream: str, n: int | None, **options: Any
) -> list[Partition]:
    """``connector.partitions``, each stamped with the connector id and ``config`` to ship."""
    count = n if n is not None else max(1, os.cpu_count() or 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError("the number of partitions must be a whole number >= 1", field="n")
    parts = connector.partitions(stream, count, **options)
    return [dataclasses.replace(p, connector=connector.id, config=config) for p in parts]


@dataclasses.dataclass(frozen=True)
class Plan:
    """What an engine's read is built from: the shipped partitions, their schema, the size."""

    partitions: list[Partition]
    #: The Arrow schema of the records (empty when the stream is).
    schema: pyarrow.Schema
    #: The stream's size as the connector estimates it (unknown unless asked for).
    estimate: Estimate


def plan(
    connector_id: str,
    config: dict[str, Any],
    stream: str,
    n: int | None,
    partition_options: dict[str, Any],
    batch_size: int | None,
    read_options: dict[str, Any],
    *,
    estimate: bool = False,
) -> Plan:
    """
    ``stream`` split into shipped partitions, with the records' Arrow schema, worked out
    where this runs (an engine runs it on a worker, so its driver needs no credentials):
    the connector's own schema from its first Arrow batch, or for dict batches that of
    the first records (up to ``DEFAULT_INFER_ROWS``, read across partitions in order).
    With ``estimate``, also the connector's size estimate (unknown when it cannot tell).
    """
    from headwater._frames import DEFAULT_INFER_ROWS, _settle

    connector = shipped_connector(connector_id, config)
    parts = split(connector, config, stream, n, **partition_options)
    size = Estimate()
    if estimate:
        try:
            size = connector.estimate(stream)
        except HeadwaterError:  # a size is for planning only: unknown is fine
            size = Estimate()
    ahead: list[Any] = []
    batches = _leading_batches(parts, batch_size, read_options)
    try:
        schema, _origin = _settle(batches, ahead, DEFAULT_INFER_ROWS)
    finally:
        batches.close()
    return Plan(parts, schema, size)


def _leading_batches(
    parts: list[Partition], batch_size: int | None, read_options: dict[str, Any]
) -> Generator[Batch, None, None]:
    """The batches of ``parts`` one partition after the other, each read closed when left."""
    for part in parts:
        batches = read_partition(part, batch_size=batch_size, **read_options)
        try:
            yield from batches
        finally:
            batches.close()  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True)
class PartWrite:
    """
    One exactly-once write of an engine, as each of its tasks carries it: the destination
    connector's id and its config with secret references only, the stream, the job id
    that names the staged parts, and `write`'s options.
    """

    connector: str
    #: The connector's config in saved form, secrets as references (`shipping_config`).
    config: dict[str, Any] = dataclasses.field(repr=False)
    stream: str
    job: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def to(
        cls,
        dest: ShipSource,
        stream: str,
        options: dict[str, Any],
        *,
        sources: SourceRegistry | None,
        registry: Registry | None,
    ) -> PartWrite:
        """
        A new write job into ``stream`` of ``dest`` (a connector, saved source name or URL).

        Here, on the driver, before any task is scheduled: the connector's
        `Connector.check_part_write` refuses a part write it cannot do exactly once.

        Raises:
            NotSupported: the destination's connector cannot write in parts, or not
                ``stream`` with ``options`` (naming the setting).
            ConfigError: its config cannot ship (a literal or callable secret), or
                ``options`` a part write does not take.
        """
        connector, owned = _open(dest, sources=sources, registry=registry)
        try:
            if Capability.PART_WRITES not in connector.capabilities:
                raise _no_part_writes(connector.id)
            connector.check_part_write(stream, **options)
            config = shipping_config(connector)
            return cls(connector.id, config, stream, new_part_job(), dict(options))
        finally:
            if owned:
                connector.close()


def write_part(write: PartWrite, index: int, batches: Iterable[Any]) -> int:
    """Stage part ``index`` of ``write`` where this runs (a worker); the records staged."""
    connector = shipped_connector(write.connector, write.config)
    result = connector.write_part(
        write.stream, batches, job=write.job, index=index, **write.options
    )
    return result.records


def commit_parts(write: PartWrite, parts: dict[int, int]) -> WriteResult:
    """Commit the staged ``parts`` (index -> records) of ``write`` in one step, here."""
    connector = shipped_connector(write.connector, write.config)
    return connector.commit_parts(write.stream, job=write.job, parts=parts, **write.options)


def abort_parts(write: PartWrite) -> None:
    """Remove every part ``write`` staged, here."""
    connector = shipped_connector(write.connector, write.config)
    connector.abort_parts(write.stream, job=write.job)


# --- the worker side -------------------------------------------------------------------------

_lock = threading.Lock()
#: (registry id, connector id, config JSON) -> the connector this process opened for it.
_live: dict[tuple[int, str, str], Connector[Any]] = {}
_live_pid = os.getpid()
_at_exit = False


def _worker_connector(partition: Partition, registry: Registry | None) -> Connector[Any]:
    """The connector for a shipped partition: one per process, registry and config."""
    if partition.connector is None or partition.config is None:
        raise ConfigError(
            f"partition {partition.index} of {partition.stream!r} carries no connector "
            "and config: it was not made to ship",
            field="partition",
            hint="make partitions with headwater.toolkit.partitions(source, stream, n)",
        )
    return shipped_connector(partition.connector, partition.config, registry)


def shipped_connector(
    connector_id: str, config: dict[str, Any], registry: Registry | None = None
) -> Connector[Any]:
    """
    The connector this process opened for ``connector_id`` and a shipped ``config``
    (opened now on first use; reused afterwards; closed at exit). Credentials are
    resolved here, when it connects.
    """
    global _live_pid, _at_exit
    if registry is None:
        from headwater._plugins import get_registry

        registry = get_registry()
    key = (id(registry), connector_id, json.dumps(config, sort_keys=True))
    with _lock:
        if _live_pid != os.getpid():
            # A forked child: the parent's connectors hold the parent's connections;
            # drop them (unclosed, they are the parent's) and open our own.
            _live.clear()
            _live_pid = os.getpid()
        live = _live.get(key)
        if live is None or live.closed:
            live = registry.connect(connector_id, config)
            _live[key] = live
            if not _at_exit:
                atexit.register(close_shipped)
                _at_exit = True
        return live


def close_shipped() -> None:
    """Close the connectors `read_partition` opened in this process (runs at exit)."""
    with _lock:
        opened = list(_live.values()) if _live_pid == os.getpid() else []
        _live.clear()
    for connector in opened:
        try:
            connector.close()
        except Exception as exc:  # at exit: one failing close must not stop the others
            logger.debug("closing a shipped %s connector failed: %s", connector.id, exc)


def _takes_options(connector: Connector[Any]) -> bool:
    """
    Whether the connector's ``read_partition`` accepts read options (``format=``), as the
    contract's does; a plugin written to the older signature (without ``**options``)
    reads its partitions as dicts.
    """
    parameters = inspect.signature(connector.read_partition).parameters.values()
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def read_partition(
    partition: Partition,
    *,
    state: State | None = None,
    batch_size: int | None = None,
    registry: Registry | None = None,
    **read_options: Any,
) -> Iterator[Batch]:
    """
    The batches of a shipped partition (from `partitions`), read where this runs: the
    connector is opened from the partition's id and config (once per process and
    config; closed at exit) and resolves its credentials here.

    Batches are Arrow record batches where the connector reads Arrow (``"arrow"`` in its
    ``read_formats``; ``format="dicts"`` asks for dicts), dicts otherwise. Pass a batch's
    ``state`` back to resume the partition right after that batch.

    Raises:
        CredentialError: a secret reference cannot be resolved here (naming it).
    """
    connector = _worker_connector(partition, registry)
    options = dict(read_options)
    arrow = "format" not in options and "arrow" in connector.read_formats
    if arrow:
        options["format"] = "arrow"
    if options.get("format") == "dicts":
        options.pop("format")
    if options and not _takes_options(connector):
        if set(options) != {"format"} or not arrow:
            raise ConfigError(
                f"connector {connector.id!r} reads partitions without read options "
                f"(given: {', '.join(sorted(options))})",
                field="read_options",
            )
        options, arrow = {}, False  # it reads its partitions as dicts
    batches = connector.read_partition(partition, batch_size=batch_size, state=state, **options)
    if not arrow:
        yield from batches
        return
    # A connector whose Arrow path needs an extra that is missing (PostgreSQL's ADBC
    # driver) says so on the first batch: read dicts instead, as `headwater.to_arrow` does.
    try:
        first = next(batches, None)
    except ConfigError as exc:
        if exc.field != "format":
            raise
        options.pop("format")
        yield from connector.read_partition(
            partition, batch_size=batch_size, state=state, **options
        )
        return
    if first is None:
        return
    yield first
    yield from batches
