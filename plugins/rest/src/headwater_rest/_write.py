"""
``write`` for REST: records as JSON bodies to a stream's ``write`` endpoint.

One request per record (the record is the body; the path may hold ``{record.field}``)
or per ``batch_size`` records (a JSON array, or ``{batch_field: [...]}``), in order,
through `Http.send`: origin rule, budget, breaker, retries. A POST or PATCH is retried
only when that is safe — it carries an idempotency key (``idempotency_header``: a key
derived from method, path and body, so every retry and every later run sends the same
one), or the API cannot have processed it (no connection, 429, 503). A PUT is
idempotent and retried as a read is.

Nothing is lost silently: the result counts the records sent and failed, and each
failure names its record or request index, status and message.

Part writes (`Capability.PART_WRITES`, for `headwater.dask.to_source` and
`headwater.ray.write`): a REST API has nowhere to stage a part, so `write_part` sends the
part's pages at once, and exactly once rests on the API answering a repeated request
without storing it again. So a part is written only to a stream whose write is
idempotent: a PUT, or a POST/PATCH with ``idempotency_header`` (`part_settings`, which
the connector's ``check_part_write`` runs on the engine's driver before any task, and
``write_part`` again on each worker), where each page's key is derived from the job,
the part index, the page's position in the part and its body (`idempotency_key` with
``part``). A retried part, its records recomputed the same, sends the same pages with the
same keys, which the API answers without storing; two identical
pages in different parts or positions get different keys. `check_commit` checks the
counts the engine gives; there is nothing to swap in. Pages the API accepted cannot be
taken back: an aborted job leaves them stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from headwater import (
    Batch,
    ConfigError,
    ConnectorError,
    HeadwaterError,
    NotSupported,
    WriteResult,
)
from headwater.toolkit import check_part

if TYPE_CHECKING:
    import httpx

    from headwater_rest._config import StreamConfig, WriteSettings
    from headwater_rest._flow import Flow
    from headwater_rest._http import Http, RequestSpec

_OPTIONS = frozenset({"on_error"})


@dataclasses.dataclass(frozen=True, slots=True)
class WriteFailure:
    """One request that did not succeed."""

    #: The record's index (mode record) or the request's (mode batch), 0-based.
    index: int
    #: Index of the first record the request carried and how many it carried.
    first_record: int
    records: int
    #: The HTTP status of the last try (``None``: no response, e.g. no connection).
    status: int | None
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class RestWriteResult(WriteResult):
    """What `write` did: ``records`` sent (2xx), ``failed`` not, and each failure."""

    failed: int = 0
    requests: int = 0
    failures: tuple[WriteFailure, ...] = ()


class WriteFailed(ConnectorError):
    """
    A write request failed (``on_error="stop"``): the message names the record or request
    index and the status; ``result`` counts what was sent before it.
    """

    def __init__(
        self, message: str, *, result: RestWriteResult, failure: WriteFailure, cause: HeadwaterError
    ) -> None:
        super().__init__(message, field=cause.field, hint=cause.hint)
        # The cause's category (auth, rate_limited, server...) is what went wrong.
        if cause.category is not None:
            self.category = cause.category  # type: ignore[misc]
        self.result = result
        self.failure = failure


def idempotency_key(
    method: str, path: str, body: bytes, *, part: tuple[str, int, int] | None = None
) -> str:
    """
    The key of one request: the same for the same method, path and body, on every run.
    With ``part`` (the job, the part index, the request's position in the part), the key
    of a part write's page: the same on every attempt of that part, and different for the
    same body at another position, in another part or in another job.
    """
    digest = hashlib.sha256(method.encode() + b"\0" + path.encode() + b"\0")
    if part is not None:
        job, index, position = part
        digest.update(f"part\0{job}\0{index}\0{position}\0".encode())
    digest.update(body)
    return digest.hexdigest()


def records_of(batches: Iterable[Any]) -> Iterator[dict[str, Any]]:
    """The records of ``batches`` (`Batch`, lists of dicts, Arrow record batches), one at a time."""
    from headwater.formats import arrow_rows

    for batch in batches:
        if isinstance(batch, Batch):
            rows = batch.rows()
        elif hasattr(batch, "schema") and hasattr(batch, "num_rows"):  # what engines hand over
            rows = arrow_rows(batch)
        else:
            rows = batch
        if not isinstance(rows, list):
            raise ConfigError(
                f"write takes batches of records (lists of dicts), not {type(rows).__name__}"
            )
        yield from rows


def encode(value: Any) -> bytes:
    """The JSON body of a record or a batch (dates, decimals, bytes as headwater writes them)."""
    from headwater.formats import dumps_document

    try:
        return dumps_document(value).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"a record cannot be sent as JSON: {exc}", field="records") from None


class Writer:
    """Sends one write's requests; sync and async share everything but the sending."""

    def __init__(
        self,
        stream: str,
        path: str,
        settings: WriteSettings,
        options: dict[str, Any],
        *,
        part: tuple[str, int] | None = None,
    ) -> None:
        """``part``: the job and part index of a part write (its pages keyed per part)."""
        self.on_error: Literal["stop", "continue"] = check_options(options)
        #: The job and part index of a part write, which its pages' keys derive from.
        self.part = part
        self.stream = stream
        self.path = settings.path or path
        self.settings = settings
        self.sent = 0
        self.failed = 0
        self.requests = 0
        self.failures: list[WriteFailure] = []
        self._next_record = 0

    @property
    def safe(self) -> bool:
        """Whether a request may be sent again whatever happened to the last try."""
        return self.settings.method == "PUT" or self.settings.idempotency_header is not None

    def requests_of(
        self, batches: Iterable[Batch | list[dict[str, Any]]]
    ) -> Iterator[tuple[int, int, RequestSpec]]:
        """``(index, records, spec)`` of every request, built lazily (bounded memory)."""
        from headwater_rest._connector import _fill_path
        from headwater_rest._http import RequestSpec

        s = self.settings
        records = records_of(batches)
        if s.mode == "record":
            chunks: Iterator[tuple[Any, int, str]] = (
                (
                    record,
                    1,
                    _fill_path(self.path, ("record", record)) if "{" in self.path else self.path,
                )
                for record in records
            )
        else:
            chunks = (
                ({s.batch_field: chunk} if s.batch_field else chunk, len(chunk), self.path)
                for chunk in _chunked(records, s.batch_size)
            )
        for index, (body, count, path) in enumerate(chunks):
            content = encode(body)
            headers = {"Content-Type": "application/json"}
            if s.idempotency_header:
                part = None if self.part is None else (*self.part, index)
                headers[s.idempotency_header] = idempotency_key(s.method, path, content, part=part)
            yield (
                index,
                count,
                RequestSpec(method=s.method, path=path, headers=headers, content=content),
            )

    def record_outcome(
        self, index: int, count: int, error: HeadwaterError | None, status: int | None
    ) -> None:
        """Count one request's records as sent or failed; raise `WriteFailed` on stop."""
        first = self._next_record
        self._next_record += count
        self.requests += 1
        if error is None:
            self.sent += count
            return
        self.failed += count
        what = (
            f"record {index}"
            if self.settings.mode == "record"
            else f"request {index} (records {first}-{first + count - 1})"
        )
        failure = WriteFailure(index, first, count, status, error.message)
        self.failures.append(failure)
        if self.on_error == "stop":
            raise WriteFailed(
                f"write to {self.stream!r}: {what} failed: {error.message}; "
                f"{self.sent} record(s) sent before it",
                result=self.result(),
                failure=failure,
                cause=error,
            )

    def result(self) -> RestWriteResult:
        return RestWriteResult(
            self.stream,
            self.sent,
            failed=self.failed,
            requests=self.requests,
            failures=tuple(self.failures),
        )

    def flow(
        self,
        http: Http,
        client: httpx.Client | httpx.AsyncClient,
        batches: Iterable[Batch | list[dict[str, Any]]],
    ) -> Flow[RestWriteResult]:
        """The write's requests, in order, each with its retries: `run` / `arun` drive it."""
        for index, count, spec in self.requests_of(batches):
            try:
                result = yield from http.request_flow(client, spec, safe=self.safe)
            except HeadwaterError as exc:
                # No response at all (no connection, the breaker open): the same accounting.
                self.record_outcome(index, count, exc, None)
                continue
            self.record_outcome(index, count, result.error, result.response.status_code)
        return self.result()

    def run(self, http: Http, batches: Iterable[Batch | list[dict[str, Any]]]) -> RestWriteResult:
        """`flow` on the connector's sync client."""
        from headwater_rest._flow import run

        client = http.client
        return run(self.flow(http, client, batches), client)

    async def arun(
        self, http: Http, batches: Iterable[Batch | list[dict[str, Any]]]
    ) -> RestWriteResult:
        """`flow` on an async client of its own (an async pool belongs to one event loop)."""
        from headwater_rest._flow import arun

        async with http.aclient() as client:
            return await arun(self.flow(http, client, batches), client)


def check_options(options: Mapping[str, Any]) -> Literal["stop", "continue"]:
    """`write`'s options checked (part writes take the same): the ``on_error`` they give."""
    unknown = set(options) - _OPTIONS
    if unknown:
        raise ConfigError(f"rest: unknown write option(s): {', '.join(sorted(unknown))}")
    on_error = options.get("on_error", "stop")
    if on_error not in ("stop", "continue"):
        raise ConfigError('on_error must be "stop" or "continue"', field="on_error")
    return on_error  # type: ignore[no-any-return]


# --- part writes ---------------------------------------------------------------------------------


def write_settings(stream: str, config: StreamConfig) -> WriteSettings:
    """The write settings of ``stream``; a stream without any is refused, naming the field."""
    if config.write is None:
        raise ConfigError(
            f"stream {stream!r} has no write settings",
            field=f"streams.{stream}.write",
            hint="add write: {method: POST} (and the path the records go to) to the stream",
        )
    return config.write


def part_settings(stream: str, config: StreamConfig, options: Mapping[str, Any]) -> WriteSettings:
    """
    The write settings of ``stream`` written in parts, refused unless its write is
    idempotent (a retried part must not store its pages again) and ``options`` stop at
    the first failed request (a part that skipped one would be counted as complete).
    """
    settings = write_settings(stream, config)
    if settings.method != "PUT" and settings.idempotency_header is None:
        raise NotSupported(
            f"rest cannot write stream {stream!r} in parts: its write is a {settings.method} "
            "without an idempotency key, so a part the engine retries would store the pages "
            "its killed attempt sent a second time",
            field=f"streams.{stream}.write.idempotency_header",
            hint="set write.idempotency_header to the header the API deduplicates requests "
            "on (e.g. Idempotency-Key), or write with method: PUT; or write from one "
            "process with write()",
        )
    if check_options(options) != "stop":
        raise ConfigError(
            f'a part write of {stream!r} stops at its first failed request (on_error="stop"): '
            "a part that went on past one would be committed without its records",
            field="on_error",
        )
    return settings


def check_commit(stream: str, job: str, parts: Mapping[int, int]) -> WriteResult:
    """
    What committing ``parts`` (index -> records each `write_part` sent) of ``job`` wrote:
    the counts checked (`check_part`). The pages are in the API already; nothing to swap.
    """
    check_part(job, parts=parts)
    return WriteResult(stream, sum(parts.values()))


def _chunked(records: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    while chunk := list(itertools.islice(records, size)):
        yield chunk
