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
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal

from headwater import Batch, ConfigError, ConnectorError, HeadwaterError, WriteResult

if TYPE_CHECKING:
    from headwater_rest._config import WriteSettings
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


def idempotency_key(method: str, path: str, body: bytes) -> str:
    """The key of one request: the same for the same method, path and body, on every run."""
    digest = hashlib.sha256(method.encode() + b"\0" + path.encode() + b"\0" + body)
    return digest.hexdigest()


def records_of(batches: Iterable[Batch | list[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """The records of ``batches``, one at a time."""
    for batch in batches:
        rows = batch.rows() if isinstance(batch, Batch) else batch
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
        self, stream: str, path: str, settings: WriteSettings, options: dict[str, Any]
    ) -> None:
        unknown = set(options) - _OPTIONS
        if unknown:
            raise ConfigError(f"rest: unknown write option(s): {', '.join(sorted(unknown))}")
        on_error = options.get("on_error", "stop")
        if on_error not in ("stop", "continue"):
            raise ConfigError('on_error must be "stop" or "continue"', field="on_error")
        self.on_error: Literal["stop", "continue"] = on_error
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
                headers[s.idempotency_header] = idempotency_key(s.method, path, content)
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

    def run(self, http: Http, batches: Iterable[Batch | list[dict[str, Any]]]) -> RestWriteResult:
        for index, count, spec in self.requests_of(batches):
            try:
                result = http.send(spec, safe=self.safe)
            except HeadwaterError as exc:
                # No response at all (no connection, the breaker open): the same accounting.
                self.record_outcome(index, count, exc, None)
                continue
            self.record_outcome(index, count, result.error, result.response.status_code)
        return self.result()


def _chunked(records: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    while chunk := list(itertools.islice(records, size)):
        yield chunk
