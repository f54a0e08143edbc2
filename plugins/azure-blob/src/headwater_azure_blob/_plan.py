"""
What an operation will do, decided without I/O: which blobs a read covers and where it
resumes, what a fetch must verify and when an interrupted one gives up.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from headwater import ConfigError, ConnectionFailed, HeadwaterError, State
from headwater_azure_blob._names import (
    directory,
    format_of,
    glob_to_regex,
    is_glob,
    literal_prefix,
    normalize_etag,
    require_format,
)


@dataclasses.dataclass(frozen=True, slots=True)
class BlobRef:
    """One blob a read covers: name relative to the source prefix, size, etag."""

    name: str
    size: int
    etag: str


@dataclasses.dataclass(frozen=True, slots=True)
class Start:
    """Where reading one blob starts: byte offset (text) or row (Parquet), CSV header."""

    offset: int = 0
    row: int = 0
    header: list[str] | None = None


class ReadPlan:
    """
    The blobs ``read(stream)`` covers and where a resumed read starts.

    ``stream`` is one blob (``logs/a.jsonl``), a directory (``logs/``: every blob below it
    with a known format) or a glob (``logs/*/part-*.csv``, ``**`` crossing directories).
    Blobs are read in name order, the order the service lists them in; the state names
    the blob and position reached, so a resumed read skips earlier blobs entirely.
    """

    def __init__(self, stream: str, state: State | None, fmt: str | None) -> None:
        if not isinstance(stream, str) or not stream:
            raise ConfigError("stream must be a blob name, a directory or a glob", field="stream")
        self.stream = stream
        self.format = fmt
        if fmt is not None:
            require_format(stream, fmt)
        if is_glob(stream):
            self.kind = "glob"
            self.list_prefix = literal_prefix(stream)
            self._regex = glob_to_regex(stream)
        elif stream.endswith("/"):
            self.kind = "directory"
            self.list_prefix = directory(stream)
        else:
            self.kind = "blob"
            self.list_prefix = stream
        self.resume_blob: str | None = None
        self.resume_etag: str | None = None
        self.resume: Start = Start()
        self.rows = 0
        if state:
            self._load_state(state)

    def _load_state(self, state: State) -> None:
        def bad(why: str) -> ConfigError:
            return ConfigError(
                f"state is not an azure-blob state for stream {self.stream!r}: {why}",
                field="state",
                hint="start again without a state",
            )

        if state.get("stream") != self.stream:
            raise bad(f"it belongs to stream {state.get('stream')!r}")
        blob, etag, rows = state.get("blob"), state.get("etag"), state.get("rows", 0)
        if not isinstance(blob, str) or not isinstance(etag, str) or not isinstance(rows, int):
            raise bad("blob, etag and rows are missing or of the wrong type")
        offset, row, header = state.get("offset", 0), state.get("row", 0), state.get("header")
        if not isinstance(offset, int) or not isinstance(row, int) or offset < 0 or row < 0:
            raise bad("offset/row must be non-negative integers")
        if header is not None and not (
            isinstance(header, list) and all(isinstance(h, str) for h in header)
        ):
            raise bad("header must be a list of strings")
        self.resume_blob, self.resume_etag, self.rows = blob, etag, rows
        self.resume = Start(offset=offset, row=row, header=header)

    def wants(self, name: str) -> bool:
        """Whether a listed blob (relative name) belongs to this read."""
        if self.kind == "glob":
            return self._regex.match(name) is not None
        if self.kind == "directory":
            return self.format is not None or format_of(name) is not None
        return name == self.stream

    def format_for(self, name: str) -> str:
        """The record format of blob ``name``."""
        return require_format(name, self.format)

    def start(self, blob: BlobRef) -> Start | None:
        """Where to start reading ``blob``; ``None`` when the state says it is done."""
        if self.resume_blob is None or blob.name > self.resume_blob:
            return Start()
        if blob.name < self.resume_blob:
            return None
        if blob.etag != self.resume_etag:
            raise ConfigError(
                f"blob {blob.name!r} changed since the state was saved (etag differs)",
                field="state",
                hint="start again without a state to read the new version",
            )
        if self.resume.offset > blob.size:
            raise ConfigError(
                f"state offset {self.resume.offset} is past the end of {blob.name!r}",
                field="state",
            )
        return self.resume

    def nothing_found(self) -> HeadwaterError:
        """The error for a read that matched no blob at all."""
        from headwater import NotFound

        what = {"glob": "matches", "directory": "with a known format is under", "blob": "is named"}
        return NotFound(f"no blob {what[self.kind]} {self.stream!r}", field="stream")


@dataclasses.dataclass(slots=True)
class FetchPlan:
    """The version of a blob a fetch pins, and how many failed resumes it tolerates."""

    item: str
    size: int
    etag: str
    md5: bytes | None
    retries: int
    backoff: float
    failures: int = 0

    @classmethod
    def from_properties(
        cls, item: str, properties: Any, *, retries: int, backoff: float
    ) -> FetchPlan:
        """Read size, etag and Content-MD5 from the SDK's ``BlobProperties``."""
        md5 = properties.content_settings.content_md5
        return cls(
            item=item,
            size=int(properties.size),
            etag=normalize_etag(properties.etag),
            md5=bytes(md5) if md5 else None,
            retries=retries,
            backoff=backoff,
        )

    def after_failure(self, error: HeadwaterError, *, progressed: bool) -> float:
        """
        Decide whether to resume after ``error``; return the delay before resuming.

        A failure after progress (a chunk arrived since the last one) starts the count
        again, so a long download over a flaky link keeps going as long as it advances.

        Raises:
            HeadwaterError: ``error`` itself when it is not retryable (a changed blob,
                a 403, ...), or a `ConnectionFailed` once the resumes are used up.
        """
        if not error.retryable:
            raise error
        self.failures = 1 if progressed else self.failures + 1
        if self.failures > self.retries:
            raise ConnectionFailed(
                f"fetch {self.item!r}: gave up after {self.failures} interrupted attempts "
                f"without progress; nothing was written ({error.message})",
                hint="check the network, or raise `retries`",
            )
        return float(min(self.backoff * 2 ** (self.failures - 1), 30.0))

    def download_options(self, max_concurrency: int) -> dict[str, Any]:
        """Keyword arguments for ``download_blob`` that pin this blob version."""
        from azure.core import MatchConditions

        return {
            "etag": self.etag,
            "match_condition": MatchConditions.IfNotModified,
            "max_concurrency": max_concurrency,
        }
