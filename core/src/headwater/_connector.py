"""
The connector contract: the base class every connector inherits, and the values its
operations return.

A connector subclasses `Connector`, sets ``id``, nests a pydantic ``Config`` model
(subclass of `ConnectorConfig`), declares ``capabilities`` and overrides the sync
operations it supports. Everything else comes from the base:

* operations it does not override raise `NotSupported`;
* ``check()`` turns any failure into a typed `CheckResult` (the connector implements
  ``check_connection()``, which simply raises on failure);
* every operation has an async twin (``acheck``, ``alist``, ``aread``, ``afetch``,
  ``ametadata``, ``awrite``, ``aclose``, ``async with``) that runs the sync code in a
  worker thread. A connector whose driver is natively async overrides the twins
  (``acheck_connection`` for check) and the base uses them instead;
* ``close()`` is idempotent and calls ``release()`` once;
* ``secret(field)`` resolves a `Secret` config field at connect time.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import queue
import re
import threading
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from headwater._redact import MASK, get_logger, redact
from headwater._secrets import Secret
from headwater.errors import (
    Category,
    ConfigError,
    ConnectorError,
    HeadwaterError,
    NotSupported,
)

if TYPE_CHECKING:
    import asyncio

    import pyarrow

    from headwater._plugins import Registry
    from headwater.formats import CopyText, EncodedLines

logger = get_logger("headwater.connector")

#: The resumable position after a batch: a JSON-serializable mapping, opaque to callers.
State = dict[str, Any]


class Capability(StrEnum):
    """What a connector can do; `headwater connectors` shows these."""

    CHECK = "check"
    LIST = "list"
    READ = "read"
    FETCH = "fetch"
    METADATA = "metadata"
    WRITE = "write"
    #: ``read`` accepts a state and resumes exactly after it.
    RESUME = "resume"
    #: ``partitions``/``read_partition`` split a stream for parallel engines.
    PARTITIONS = "partitions"
    #: batches may hold ``pyarrow.RecordBatch`` instead of dicts.
    ARROW = "arrow"
    #: ``upload`` stores a local file (or binary stream) as an item, verified and atomic.
    UPLOAD = "upload"
    #: ``write`` takes ``state_key=`` and ``state=`` and commits that state together with
    #: the data (one transaction, one blob commit); ``written_state`` reads it back. This
    #: is what makes `headwater.copy` into the connector exact across a crash.
    ATOMIC_STATE = "atomic_state"
    #: ``read(..., ordered=False)`` may deliver records in any order (a sequential scan
    #: instead of an ordered one). Its intermediate states cannot be resumed from; the
    #: state of the last batch can. `headwater.copy` asks for it when it keeps no state.
    UNORDERED = "unordered"
    #: ``read(..., json_text=[fields])`` gives those fields of a JSON Lines stream as their
    #: JSON text (`headwater.formats.JsonText`), exactly as written: `headwater.copy`
    #: asks for it for the destination's `json_fields`, so a document reaches a JSON
    #: column with its key order, duplicate keys and every digit of its numbers.
    JSON_TEXT = "json_text"
    #: ``write_part``/``commit_parts``/``abort_parts``: an engine writes a stream in
    #: parts, each staged under its job and index (a retried part replaces its earlier
    #: attempt, never adds to it), and all of them are committed in one step at the end:
    #: each part exactly once, whatever the engine retried (`headwater.dask.to_source`,
    #: `headwater.ray.write`). Its driver asks ``check_part_write`` first, before any task.
    PART_WRITES = "part_writes"


#: A part-write job id: 8 to 32 lowercase letters and digits (`new_part_job` makes one), so
#: a connector can name its staging targets (tables, blobs, files) after it as it is.
_PART_JOB = re.compile(r"[a-z0-9]{8,32}")


def check_part(
    job: str, index: int | None = None, *, parts: Mapping[int, int] | None = None
) -> None:
    """
    Check a part write's ``job`` id (and part ``index``, a whole number >= 0) before a
    connector names a staging target after them; with ``parts`` (what `commit_parts` is
    given), every part index and its record count (a whole number >= 0).

    Raises:
        ConfigError: naming the field that is not valid.
    """
    if not isinstance(job, str) or _PART_JOB.fullmatch(job) is None:
        raise ConfigError(
            "a part-write job id is 8 to 32 lowercase letters and digits", field="job"
        )
    if index is not None and not _whole(index):
        raise ConfigError("a part index is a whole number >= 0", field="index")
    for part, records in (parts or {}).items():
        if not _whole(part):
            raise ConfigError("a part index is a whole number >= 0", field="index")
        if not _whole(records):
            raise ConfigError("each part's record count is a whole number >= 0", field="parts")


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def new_part_job() -> str:
    """A fresh, random part-write job id (16 hex digits)."""
    import uuid

    return uuid.uuid4().hex[:16]


def _no_part_writes(connector_id: str) -> NotSupported:
    return NotSupported(
        f"connector {connector_id!r} cannot write in parts (capability "
        f"{Capability.PART_WRITES.value!r}), which an engine's exactly-once write needs",
        hint="write to a destination with that capability (see `headwater connectors`), "
        "or collect the data and write it from one process with write()",
    )


ItemKind = Literal[
    "stream", "file", "directory", "table", "view", "materialized_view", "schema", "blob", "prefix"
]


def atomic_state_options(options: Mapping[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """
    The ``state_key=`` and ``state=`` write options of a connector with
    `Capability.ATOMIC_STATE` (both or neither), checked: a non-empty string key and a
    dict state.

    Raises:
        ConfigError: one given without the other, or either of the wrong type.
    """
    state_key, state = options.get("state_key"), options.get("state")
    if (state_key is None) != (state is None):
        missing = "state" if state is None else "state_key"
        raise ConfigError(
            f"write({'state_key' if state is None else 'state'}=...) needs {missing}=... "
            "as well: a state is stored under a key",
            field=missing,
        )
    if state_key is not None and (not isinstance(state_key, str) or not state_key):
        raise ConfigError("state_key must be a non-empty string", field="state_key")
    if state is not None and not isinstance(state, dict):
        raise ConfigError("state must be a dict (JSON-serializable)", field="state")
    return state_key, state


@dataclasses.dataclass(frozen=True, slots=True)
class Item:
    """One thing `list` found: a stream, table, file, blob or prefix."""

    #: Name to pass back to ``read``/``fetch``/``metadata`` (or ``list`` for containers).
    name: str
    kind: ItemKind
    #: Size in bytes where the service knows it.
    size: int | None = None
    modified: datetime | None = None
    #: Connector-specific properties (etag, row estimate, content type, ...).
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (datetimes as ISO 8601)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "size": self.size,
            "modified": self.modified.isoformat() if self.modified else None,
            **({"extra": self.extra} if self.extra else {}),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """
    Records read from a stream, and the state to resume right after them.

    ``records`` is a list of dicts, a ``pyarrow.RecordBatch`` when the connector
    produces Arrow natively, or `headwater.formats.EncodedLines` (JSON Lines the source
    encoded itself, e.g. PostgreSQL's server) when asked for with ``format="jsonl"``;
    `rows()` gives dicts in every case. Persist ``state`` after
    you have processed the batch; passing it to ``read`` yields exactly the records
    that follow.
    """

    stream: str
    records: list[dict[str, Any]] | pyarrow.RecordBatch | EncodedLines | CopyText
    state: State
    #: True when every value is the text form of its type, as a CSV file holds them
    #: (``"12"``, ``"2026-01-02"``, ``"true"``): a destination with typed columns parses
    #: them by column type (PostgreSQL: ``text_values``) instead of storing strings.
    text: bool = False

    def __len__(self) -> int:
        if isinstance(self.records, list):
            return len(self.records)
        return int(self.records.num_rows)

    @property
    def is_arrow(self) -> bool:
        """True when ``records`` is a ``pyarrow.RecordBatch``."""
        return type(self.records).__module__.startswith("pyarrow")

    def rows(self) -> list[dict[str, Any]]:
        """The records as dicts (converted from Arrow when needed)."""
        if isinstance(self.records, list):
            return self.records
        if hasattr(self.records, "schema"):  # Arrow: JSON columns parsed, errors named
            from headwater.formats import arrow_rows

            return arrow_rows(self.records)
        rows: list[dict[str, Any]] = self.records.to_pylist()
        return rows


@dataclasses.dataclass(frozen=True, slots=True)
class FetchResult:
    """Where `fetch` put the item, how big it is, and the checksum it verified."""

    path: Path
    size: int
    #: ``"md5:..."``/``"sha256:..."`` of the bytes written; ``None`` if none was computed.
    checksum: str | None = None
    verified: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class WriteResult:
    """What `write` did."""

    stream: str
    records: int


@dataclasses.dataclass(frozen=True, slots=True)
class Estimate:
    """
    How big a stream is, as far as the connector can tell cheaply (for progress bars).

    ``rows`` and ``bytes`` are ``None`` when unknown; ``exact`` says whether they are
    counts or estimates (a catalog statistic, say).
    """

    rows: int | None = None
    bytes: int | None = None
    exact: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Partition:
    """A serializable slice of a stream that a worker can read on its own."""

    stream: str
    index: int
    count: int
    #: Connector-specific bounds (key range, blob prefix, page range); JSON-serializable.
    bounds: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: The connector's id, set on a partition made to ship (`headwater.toolkit.partitions`).
    connector: str | None = None
    #: The connector's config in saved form, secrets as references only (never values),
    #: set with ``connector``: what a worker opens its own connector from.
    config: dict[str, Any] | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class CheckResult:
    """
    The outcome of `Connector.check`: never a traceback, never a secret.

    ``category`` is ``None`` when ``ok``; otherwise one of `Category` (auth, permission,
    network, tls, config, not_found, rate_limited, server).
    """

    ok: bool
    message: str
    category: Category | None = None
    #: The config field at fault, where known.
    field: str | None = None
    hint: str | None = None
    elapsed: float = 0.0

    @classmethod
    def success(cls, message: str = "ok", *, elapsed: float = 0.0) -> CheckResult:
        """A passing result."""
        return cls(ok=True, message=redact(message), elapsed=elapsed)

    @classmethod
    def from_error(cls, error: HeadwaterError, *, elapsed: float = 0.0) -> CheckResult:
        """The failing result for a headwater error."""
        return cls(
            ok=False,
            message=error.message,
            category=error.category or Category.SERVER,
            field=error.field,
            hint=error.hint,
            elapsed=elapsed,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "ok": self.ok,
            "category": str(self.category) if self.category else None,
            "message": self.message,
            "field": self.field,
            "hint": self.hint,
            "elapsed": round(self.elapsed, 4),
        }


class ConnectorConfig(BaseModel):
    """
    Base for connector config models.

    Unknown keys are errors (typos must not be silently ignored), configs are immutable
    once built, and every field should carry a ``Field(description=...)``: the JSON
    Schema of the model is the connector's public configuration reference.
    """

    # hide_input_in_errors: a ValidationError raised by building a config directly would
    # otherwise quote what was given, and a field's input may hold a secret (a URL with
    # its password, a token in a header).
    model_config = ConfigDict(
        extra="forbid", frozen=True, arbitrary_types_allowed=False, hide_input_in_errors=True
    )

    def __init__(self, /, **data: Any) -> None:
        _complete(type(self))
        try:
            super().__init__(**data)
        except ValidationError as exc:
            scrubbed = _scrubbed(exc)
        else:
            return
        raise scrubbed  # outside the except: the original stays out of __context__

    @classmethod
    def model_validate(
        cls,
        obj: Any,
        *,
        strict: bool | None = None,
        extra: Any = None,
        from_attributes: bool | None = None,
        context: Any | None = None,
        by_alias: bool | None = None,
        by_name: bool | None = None,
    ) -> Self:
        """Pydantic's `model_validate`, whose errors never carry the input (see `_scrubbed`)."""
        kwargs = {"extra": extra} if extra is not None else {}
        _complete(cls)
        try:
            return super().model_validate(
                obj,
                strict=strict,
                from_attributes=from_attributes,
                context=context,
                by_alias=by_alias,
                by_name=by_name,
                **kwargs,
            )
        except ValidationError as exc:
            scrubbed = _scrubbed(exc)
        raise scrubbed

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Self:
        """Pydantic's `model_validate_json`, whose errors never carry the input."""
        _complete(cls)
        try:
            return super().model_validate_json(json_data, **kwargs)
        except ValidationError as exc:
            scrubbed = _scrubbed(exc)
        raise scrubbed

    def sanitized(self) -> dict[str, Any]:
        """The config as JSON-friendly data with literal secrets masked (references kept)."""
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def secret_fields(cls) -> list[str]:
        """Names of fields typed `Secret` (or ``Secret | None``)."""
        names = []
        for name, info in cls.model_fields.items():
            if _mentions_secret(info.annotation):
                names.append(name)
        return names


def _complete(model: type[BaseModel]) -> None:
    """
    Finish a model whose annotations named something not yet defined, looking names up
    where the caller of ``__init__``/``model_validate`` is — as pydantic itself would,
    had these overrides not put a frame in between.
    """
    if not model.__pydantic_complete__:
        model.model_rebuild(raise_errors=False, _parent_namespace_depth=4)


def _scrubbed(exc: ValidationError) -> ValidationError:
    """
    ``exc`` without what was given: pydantic keeps each error's ``input`` (in
    ``errors()``, ``json()``) even with ``hide_input_in_errors``, and an input may be a URL
    with its password or a token. Types, locations and (redacted) messages stay.
    """
    from pydantic_core import PydanticCustomError

    details: list[Any] = [
        {
            "type": PydanticCustomError(error["type"], redact(error["msg"]).replace("{", "{{")),
            "loc": error["loc"],
            "input": MASK,
        }
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    return ValidationError.from_exception_data(exc.title, details, hide_input=True)


def _mentions_secret(annotation: Any) -> bool:
    if annotation is Secret:
        return True
    return any(_mentions_secret(arg) for arg in getattr(annotation, "__args__", ()))


ConfigT = TypeVar("ConfigT", bound=ConnectorConfig)
T = TypeVar("T")

_END = object()


class Connector(Generic[ConfigT]):
    """
    Base class of every connector. See the module docstring for the contract.

    Args:
        config: a ``Config`` instance or a mapping validated into one.
        registry: the plugin registry whose credential resolvers (and auth schemes)
            this connector uses; the process-wide default when omitted.
    """

    #: Stable, immutable once released: ``files``, ``postgres``, ``azure-blob``, ``rest``.
    id: ClassVar[str]
    #: The pydantic model for this connector's configuration.
    Config: ClassVar[type[ConnectorConfig]]
    #: What this connector can do.
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.CHECK})
    #: One line for `headwater connectors`.
    summary: ClassVar[str] = ""
    #: Values of ``read(..., format=...)`` besides the default batches of dicts:
    #: ``"arrow"`` (``pyarrow.RecordBatch``), ``"jsonl"`` (`headwater.formats.EncodedLines`).
    #: `headwater.copy` asks for the one its destination writes without converting.
    read_formats: ClassVar[frozenset[str]] = frozenset()
    #: Batch forms ``write`` takes without converting them, named as in `read_formats`
    #: (``"pgcopy"``: `headwater.formats.CopyText`). A copy between two connectors asks
    #: the source for a form both name, so no value is built in Python on the way.
    write_formats: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self, config: ConfigT | dict[str, Any], *, registry: Registry | None = None
    ) -> None:
        if isinstance(config, ConnectorConfig):
            if not isinstance(config, self.Config):
                raise ConfigError(
                    f"{type(self).__name__} needs a {self.Config.__name__}, "
                    f"got {type(config).__name__}"
                )
            self.config: ConfigT = config
        else:
            self.config = validate_config(self.Config, config, connector_id=self.id)  # type: ignore[assignment]
        self._registry = registry
        self._closed = False

    # --- construction helpers ---------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> Self:
        """Build a connector from a URL (``postgresql://...``); connectors opt in."""
        raise NotSupported(f"connector {cls.id!r} cannot be configured from a URL")

    @property
    def registry(self) -> Registry:
        """The plugin registry this connector resolves credentials through."""
        if self._registry is None:
            from headwater._plugins import get_registry

            self._registry = get_registry()
        return self._registry

    def secret(self, field: str) -> str:
        """
        Resolve the secret in config field ``field`` now (connect time).

        The value is registered for redaction and not kept anywhere by headwater; do not
        store it on ``self`` longer than the connection set-up needs it.
        """
        value = getattr(self.config, field, None)
        if value is None:
            raise ConfigError(f"secret field {field!r} is not set", field=field)
        if not isinstance(value, Secret):
            raise TypeError(f"field {field!r} is not a Secret")
        # Only a reference needs the resolvers: a literal or a callable never pays for
        # discovering the plugins.
        resolvers = self.registry.credential_resolvers() if value.reference is not None else {}
        return value.resolve(field, resolvers)

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<{type(self).__name__} id={self.id!r}{state} config={self.config.sanitized()!r}>"

    # --- errors ------------------------------------------------------------------------

    def translate_error(self, exc: BaseException) -> HeadwaterError:
        """
        Map a driver exception to a headwater error. Override to categorise your driver's
        failures; the default keeps only the exception type and a redacted message.
        """
        if isinstance(exc, HeadwaterError):
            return exc
        if isinstance(exc, TimeoutError | ConnectionError):
            from headwater.errors import ConnectionFailed

            return ConnectionFailed(f"{type(exc).__name__}: {exc}")
        return ConnectorError(f"{type(exc).__name__}: {exc}")

    # --- check ---------------------------------------------------------------------------

    def check_connection(self) -> str | None:
        """
        Test connectivity and credentials without side effects; raise on failure.

        Return an optional one-line success message (server version, say).
        """
        raise NotSupported(f"connector {self.id!r} does not implement check")

    async def acheck_connection(self) -> str | None:
        """Async `check_connection`; override when the driver is natively async."""
        return await _to_thread(self.check_connection)

    def check(self) -> CheckResult:
        """Test the connection; always returns a `CheckResult`, never raises for a failure."""
        started = time.perf_counter()
        try:
            message = self.check_connection()
        except Exception as exc:
            return self._check_failed(exc, started)
        return CheckResult.success(message or "ok", elapsed=time.perf_counter() - started)

    async def acheck(self) -> CheckResult:
        """Async twin of `check`."""
        if type(self).acheck_connection is Connector.acheck_connection:
            return await _to_thread(self.check)
        started = time.perf_counter()
        try:
            message = await self.acheck_connection()
        except Exception as exc:
            return self._check_failed(exc, started)
        return CheckResult.success(message or "ok", elapsed=time.perf_counter() - started)

    def _check_failed(self, exc: Exception, started: float) -> CheckResult:
        error = self.translate_error(exc)
        logger.debug("check of %s failed: %s", self.id, error.message)
        return CheckResult.from_error(error, elapsed=time.perf_counter() - started)

    # --- the data operations (sync) ----------------------------------------------------

    def list(self, path: str | None = None) -> Iterator[Item]:
        """Streams, tables, files, blobs or prefixes under ``path`` (the root when ``None``)."""
        raise NotSupported(f"connector {self.id!r} does not support list")

    def read(
        self,
        stream: str,
        state: State | None = None,
        *,
        batch_size: int | None = None,
        **options: Any,
    ) -> Iterator[Batch]:
        """
        Batches of records from ``stream``, each with the state after it.

        With ``state`` from an earlier batch, yields exactly the records that followed it.
        Memory stays bounded by the batch size whatever the stream's size.
        """
        raise NotSupported(f"connector {self.id!r} does not support read")

    def fetch(self, item: str, dest: str | Path, *, overwrite: bool = True) -> FetchResult:
        """
        Download ``item`` into directory ``dest``: streamed, atomic (temp + rename),
        checksummed where possible, never outside ``dest`` (see `safe_destination`).
        """
        raise NotSupported(f"connector {self.id!r} does not support fetch")

    def metadata(self, item: str) -> dict[str, Any]:
        """Properties of one item: schema, size, etag, row estimate, ..."""
        raise NotSupported(f"connector {self.id!r} does not support metadata")

    def write(
        self,
        stream: str,
        batches: Iterable[Batch | builtins.list[dict[str, Any]]],
        **options: Any,
    ) -> WriteResult:
        """Write batches (or lists of dicts) to ``stream``; all-or-nothing where possible."""
        raise NotSupported(f"connector {self.id!r} does not support write")

    def check_part_write(self, stream: str, **options: Any) -> None:
        """
        Refuse a part write into ``stream`` with ``options`` (`write`'s) that this
        connector cannot do exactly once, before any part is written: an engine's driver
        calls it once, before it schedules a task, so the refusal is one error there
        instead of one from each write task on the workers. It decides from the config
        and ``options`` alone, without I/O (the driver may hold no credentials). The
        default refuses a connector without `Capability.PART_WRITES` and accepts
        anything else; `write_part` still checks for itself (a connector used directly).

        Raises:
            NotSupported: such a part write cannot be exactly once (naming the setting).
            ConfigError: ``options`` a part write does not take (naming the option).
        """
        if Capability.PART_WRITES not in self.capabilities:
            raise _no_part_writes(self.id)

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
        Stage part ``index`` of write ``job`` into ``stream`` (`Capability.PART_WRITES`):
        the batches are kept where `commit_parts` finds them, invisible in ``stream``
        until then. Writing the same part again *replaces* what an earlier attempt staged
        (an engine retrying the task), never adds to it; an attempt that fails leaves no
        partial part behind, or one that a later attempt or `commit_parts` replaces.
        ``options`` are `write`'s, the same for every part and the commit: each step
        uses those that concern it. Returns the records staged.
        """
        raise _no_part_writes(self.id)

    def commit_parts(
        self, stream: str, *, job: str, parts: Mapping[int, int], **options: Any
    ) -> WriteResult:
        """
        Commit the staged parts of ``job`` into ``stream`` in one step, with `write`'s
        semantics and ``options`` (append, ``mode="replace"``, an upsert key): ``parts``
        maps each part index to the records `write_part` staged for it, and a part
        missing or holding another count is an error naming it, with nothing committed.
        Every staged part of ``job`` is removed (also ones not named).
        """
        raise _no_part_writes(self.id)

    def abort_parts(self, stream: str, *, job: str) -> None:
        """Remove every part of ``job`` staged for ``stream``; nothing staged is fine."""
        raise _no_part_writes(self.id)

    def json_fields(self, stream: str) -> frozenset[str]:
        """
        The fields of ``stream`` that ``write`` stores as JSON documents (PostgreSQL's
        json and jsonb columns), which it takes as `headwater.formats.JsonText` exactly
        as written; none when the stream does not exist yet or the connector cannot tell.
        """
        return frozenset()

    def upload(self, item: str, source: str | Path | IO[bytes], *, overwrite: bool = False) -> Any:
        """
        Store a local file (a path) or a binary stream as ``item``: streamed, verified
        where the service allows, and atomic (the item appears only when complete).
        """
        raise NotSupported(f"connector {self.id!r} does not support upload")

    def estimate(self, stream: str, **options: Any) -> Estimate:
        """
        The size of ``stream`` for progress reporting: rows and/or bytes, exact or
        estimated. Cheap by contract (a catalog lookup, a listing, a first page); the
        default says nothing is known.
        """
        return Estimate()

    def written_state(self, stream: str, key: str) -> State | None:
        """
        The state last committed with ``write(stream, ..., state_key=key, state=...)``,
        or ``None`` when there is none (connectors with `Capability.ATOMIC_STATE`).
        """
        raise NotSupported(f"connector {self.id!r} does not store state with its writes")

    def local_path(self, stream: str) -> Path | None:
        """
        The local file that holds ``stream``, for connectors whose streams are local
        files (`headwater.copy` uses it to refuse copying a file onto itself); ``None``
        otherwise.
        """
        return None

    def partitions(self, stream: str, count: int, **options: Any) -> builtins.list[Partition]:
        """
        Split ``stream`` into at most ``count`` partitions that can be read independently
        and together hold each record once (``options``: the connector's, e.g. a key).
        """
        raise NotSupported(f"connector {self.id!r} does not support partitions")

    def read_partition(
        self,
        partition: Partition,
        *,
        batch_size: int | None = None,
        state: State | None = None,
        **options: Any,
    ) -> Iterator[Batch]:
        """
        Read one partition produced by `partitions`; pass a batch's ``state`` back to
        resume the partition right after it. ``options`` are read options, as for
        `read` (``format="arrow"``).
        """
        raise NotSupported(f"connector {self.id!r} does not support partitions")

    # --- lifecycle ----------------------------------------------------------------------

    def stats(self) -> dict[str, dict[str, int]]:
        """
        The connector's connection pools, one JSON-ready mapping per pool (``sync`` /
        ``async``, none before first use), for health endpoints: ``size``, ``in_use``,
        ``idle``, ``waiting``, and where the library counts them ``opened``, ``closed``,
        ``errors``, ``max_size``, ``requests``. A count the library does not keep is absent,
        not 0. The default: no pools (a connector that holds no connections).
        `SourceRegistry.stats` gathers them per saved source.
        """
        return {}

    def release(self) -> None:
        """Free pools, clients and files. Called once by `close`; override it, not `close`."""

    async def arelease(self) -> None:
        """Async `release`; override when the driver's resources are async."""
        await _to_thread(self.release)

    @property
    def closed(self) -> bool:
        """Whether `close` (or `aclose`) has run."""
        return self._closed

    def close(self) -> None:
        """Release resources; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self.release()

    async def aclose(self) -> None:
        """Async twin of `close`; also idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.arelease()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- async twins (thread offload by default) -------------------------------------

    async def alist(self, path: str | None = None) -> AsyncIterator[Item]:
        """Async twin of `list`."""
        async with contextlib.aclosing(iterate_in_thread(lambda: self.list(path))) as items:
            async for item in items:
                yield item

    async def aread(
        self,
        stream: str,
        state: State | None = None,
        *,
        batch_size: int | None = None,
        **options: Any,
    ) -> AsyncIterator[Batch]:
        """Async twin of `read`."""
        batches = iterate_in_thread(
            lambda: self.read(stream, state, batch_size=batch_size, **options)
        )
        # aclosing: when the consumer stops early, the sync generator's cleanup (cursors,
        # files) runs now, not whenever the garbage collector gets to it.
        async with contextlib.aclosing(batches) as it:
            async for batch in it:
                yield batch

    async def afetch(self, item: str, dest: str | Path, *, overwrite: bool = True) -> FetchResult:
        """Async twin of `fetch`."""
        return await _to_thread(self.fetch, item, dest, overwrite=overwrite)

    async def ametadata(self, item: str) -> dict[str, Any]:
        """Async twin of `metadata`."""
        return await _to_thread(self.metadata, item)

    async def ajson_fields(self, stream: str) -> frozenset[str]:
        """Async twin of `json_fields`."""
        return await _to_thread(self.json_fields, stream)

    async def awrite(
        self,
        stream: str,
        batches: Iterable[Batch | builtins.list[dict[str, Any]]]
        | AsyncIterable[Batch | builtins.list[dict[str, Any]]],
        **options: Any,
    ) -> WriteResult:
        """Async twin of `write`; accepts a sync or an async iterable of batches."""
        if not isinstance(batches, AsyncIterable):
            sync_batches = batches
            return await _to_thread(lambda: self.write(stream, sync_batches, **options))
        return await _write_from_async(lambda it: self.write(stream, it, **options), batches)

    async def awrite_part(
        self,
        stream: str,
        batches: Iterable[Batch | builtins.list[dict[str, Any]]],
        *,
        job: str,
        index: int,
        **options: Any,
    ) -> WriteResult:
        """Async twin of `write_part`."""
        return await _to_thread(
            lambda: self.write_part(stream, batches, job=job, index=index, **options)
        )

    async def acommit_parts(
        self, stream: str, *, job: str, parts: Mapping[int, int], **options: Any
    ) -> WriteResult:
        """Async twin of `commit_parts`."""
        return await _to_thread(lambda: self.commit_parts(stream, job=job, parts=parts, **options))

    async def aabort_parts(self, stream: str, *, job: str) -> None:
        """Async twin of `abort_parts`."""
        await _to_thread(lambda: self.abort_parts(stream, job=job))

    async def aupload(
        self, item: str, source: str | Path | IO[bytes], *, overwrite: bool = False
    ) -> Any:
        """Async twin of `upload`."""
        return await _to_thread(self.upload, item, source, overwrite=overwrite)

    async def aestimate(self, stream: str, **options: Any) -> Estimate:
        """Async twin of `estimate`."""
        if type(self).estimate is Connector.estimate:
            return Estimate()
        return await _to_thread(lambda: self.estimate(stream, **options))

    async def awritten_state(self, stream: str, key: str) -> State | None:
        """Async twin of `written_state`."""
        return await _to_thread(self.written_state, stream, key)

    async def apartitions(
        self, stream: str, count: int, **options: Any
    ) -> builtins.list[Partition]:
        """Async twin of `partitions`."""
        return await _to_thread(self.partitions, stream, count, **options)

    async def aread_partition(
        self,
        partition: Partition,
        *,
        batch_size: int | None = None,
        state: State | None = None,
        **options: Any,
    ) -> AsyncIterator[Batch]:
        """Async twin of `read_partition`."""
        batches = iterate_in_thread(
            lambda: self.read_partition(partition, batch_size=batch_size, state=state, **options)
        )
        async with contextlib.aclosing(batches) as it:
            async for batch in it:
                yield batch


def validate_config(
    model: type[ConnectorConfig], data: dict[str, Any], *, connector_id: str
) -> ConnectorConfig:
    """Validate ``data`` into ``model``, turning pydantic's report into one-line `ConfigError`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
    # Raised outside the except, so the ValidationError is not kept as __context__.
    first = errors[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    more = len(errors) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    where = f"field {field!r}" if field else "config"
    raise ConfigError(
        redact(f"{connector_id} config: {where}: {first['msg']}{suffix}"),
        field=field,
        hint=f"see `headwater connectors show {connector_id}` for the config schema",
    )


async def _to_thread(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``asyncio.to_thread``, importing asyncio only when called: sync use never loads it."""
    import asyncio

    return await asyncio.to_thread(func, *args, **kwargs)


async def iterate_in_thread(make: Callable[[], Iterable[T]]) -> AsyncGenerator[T, None]:
    """
    Drive a sync iterator from async code, off the event loop, on one worker thread.

    ``make`` builds the iterator, and every ``next`` and the final ``close`` run, on the
    same thread, which this iterator has to itself: drivers whose objects belong to the
    thread that made them (sqlite3, some ODBC drivers) work, as they would not if each
    step took whichever thread of a pool was free. Use it under ``contextlib.aclosing``
    so the sync generator's cleanup runs as soon as the consumer stops. The base class's
    async twins are built on it; connectors with a partly native async implementation
    use it for the parts that stay sync.
    """
    import asyncio  # here, not at the top: a sync read never needs it

    loop = asyncio.get_running_loop()
    worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="headwater-iterate")
    # The caller's context variables are seen by every step, as asyncio.to_thread does.
    context = contextvars.copy_context()

    def step(function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        return loop.run_in_executor(worker, context.run, function, *args)

    try:
        iterator = await step(lambda: iter(make()))
        try:
            while True:
                item = await step(next, iterator, _END)
                if item is _END:
                    return
                yield item
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                # Closing runs the generator's cleanup (cursors, files) off the event loop.
                await step(close)
    finally:
        worker.shutdown(wait=False)


def read_ahead(make: Callable[[], Iterable[T]]) -> Generator[T, None, None]:
    """
    The items of ``make()``, produced one ahead on a thread of its own: the iterator is
    made, advanced and closed on that thread (as `iterate_in_thread` does for async
    callers, so a connector's ``read`` already runs off the caller's thread there),
    while the caller works on the item before. A failure of the read
    reaches the caller where the item would have; when the caller stops, the read is
    closed on its thread before this returns. Drivers that release the GIL (COPY and
    Arrow decoding, DuckDB and PostgreSQL writes, decompression) overlap.
    """
    ready: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: Any, error: BaseException | None = None) -> bool:
        while not stop.is_set():
            try:
                ready.put((item, error), timeout=0.05)
            except queue.Full:
                continue
            return True
        return False

    def produce() -> None:
        try:
            iterator = iter(make())
            try:
                for item in iterator:
                    if not put(item):
                        return
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
        except BaseException as exc:  # handed to the caller, raised there
            put(_END, exc)
            return
        put(_END)

    # The caller's context variables are seen by the read, as asyncio.to_thread does.
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run, args=(produce,), name="headwater-read-ahead", daemon=True
    )
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            # A producer blocked on the full queue sees ``stop`` within its timeout.
            thread.join(0.05)


async def _write_from_async(
    write: Callable[[Iterable[Any]], Awaitable[WriteResult] | WriteResult],
    batches: AsyncIterable[Any],
) -> WriteResult:
    """Run a sync ``write`` in a thread, feeding it from an async iterable with back-pressure."""
    import asyncio  # here, not at the top: a sync read never needs it

    channel: queue.Queue[Any] = queue.Queue(maxsize=2)

    def pull() -> Iterator[Any]:
        while True:
            item = channel.get()
            if item is _END:
                return
            if isinstance(item, _Abort):
                # The producer failed: make the writer fail too, so it rolls back
                # instead of committing a partial write.
                raise ConnectorError("write aborted: the batch source raised an error")
            yield item

    writer = asyncio.ensure_future(asyncio.to_thread(write, pull()))
    try:
        async for batch in batches:
            if not await _offer(channel, batch, writer) or writer.done():
                break
    except BaseException:
        if not writer.done():
            await _offer(channel, _Abort(), writer)
            with contextlib.suppress(Exception):
                await writer
        raise
    if not writer.done():
        await _offer(channel, _END, writer)
    result = await writer
    assert isinstance(result, WriteResult)
    return result


async def _offer(channel: queue.Queue[Any], item: Any, writer: asyncio.Future[Any]) -> bool:
    """Put ``item`` for the writer thread unless the writer finishes (or fails) first."""
    import asyncio  # here, not at the top: a sync read never needs it

    put = asyncio.ensure_future(asyncio.to_thread(channel.put, item))
    await asyncio.wait({writer, put}, return_when=asyncio.FIRST_COMPLETED)
    if not put.done():
        # The writer stopped consuming; empty the channel so the blocked put returns
        # and its worker thread is not left waiting forever.
        _drain(channel)
        await put
        return False
    return True


class _Abort:
    pass


def _drain(channel: queue.Queue[Any]) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            channel.get_nowait()
