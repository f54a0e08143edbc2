"""
What an operation will do, decided without I/O: which blobs a read covers and where it
resumes, what a fetch must verify and when an interrupted one gives up, what a write
commits (a new blob, a replacement, or the continuation of a copy's blob, with the copy's
state in the blob's metadata).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from typing import TYPE_CHECKING, Any, Final, Literal

from headwater import (
    AlreadyExists,
    ConfigError,
    ConnectionFailed,
    HeadwaterError,
    IntegrityError,
    State,
)
from headwater.formats import FileFormat
from headwater_azure_blob._names import (
    blob_format,
    content_codec,
    directory,
    format_of,
    glob_to_regex,
    is_glob,
    literal_prefix,
    normalize_etag,
    require_format,
)

if TYPE_CHECKING:
    from headwater.toolkit import RetryPolicy
    from headwater_azure_blob._listing import Listed


@dataclasses.dataclass(frozen=True, slots=True)
class BlobRef:
    """One blob a read covers: name relative to the source prefix, size, etag."""

    name: str
    size: int
    etag: str
    #: The blob's ``Content-Encoding`` property, as stored.
    content_encoding: str | None = None
    #: Its Content-MD5, when it has one.
    md5: bytes | None = None

    @classmethod
    def from_properties(cls, name: str, props: Any) -> BlobRef:
        """From the SDK's ``BlobProperties`` (a HEAD, or an entry of a listing)."""
        settings = props.content_settings
        md5 = settings.content_md5
        return cls(
            name,
            int(props.size),
            normalize_etag(props.etag),
            settings.content_encoding or None,
            bytes(md5) if md5 else None,
        )

    @classmethod
    def from_listed(cls, name: str, entry: Listed) -> BlobRef:
        """From an entry of a listing (`Listed`)."""
        if entry.size is None:
            raise TypeError(f"listed blob {name!r} has no size")
        return cls(
            name, entry.size, normalize_etag(entry.etag), entry.content_encoding, entry.content_md5
        )

    @property
    def coding(self) -> str | None:
        """The compression that undoes the Content-Encoding (``None``: stored as is)."""
        return content_codec(self.content_encoding, self.name)

    @property
    def compressed(self) -> bool:
        """Whether the stored bytes are compressed (by Content-Encoding or by suffix)."""
        if (self.content_encoding or "").strip().lower() not in ("", "identity"):
            return True
        found = blob_format(self.name)
        return found is not None and found.compression is not None


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

    def format_for(self, name: str) -> FileFormat:
        """The record format (and compression) of blob ``name``."""
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
        return self.resume

    def nothing_found(self) -> HeadwaterError:
        """The error for a read that matched no blob at all."""
        from headwater import NotFound

        what = {"glob": "matches", "directory": "with a known format is under", "blob": "is named"}
        return NotFound(f"no blob {what[self.kind]} {self.stream!r}", field="stream")


@dataclasses.dataclass(slots=True)
class FetchPlan:
    """
    The version of a blob a fetch pins, and when an interrupted one resumes: as the
    config's ``retry`` settings say (``policy``), the same rules as every request's.
    """

    item: str
    size: int
    etag: str
    md5: bytes | None
    policy: RetryPolicy
    failures: int = 0

    @classmethod
    def from_properties(cls, item: str, properties: Any, *, policy: RetryPolicy) -> FetchPlan:
        """Read size, etag and Content-MD5 from the SDK's ``BlobProperties``."""
        md5 = properties.content_settings.content_md5
        return cls(
            item=item,
            size=int(properties.size),
            etag=normalize_etag(properties.etag),
            md5=bytes(md5) if md5 else None,
            policy=policy,
        )

    def after_failure(self, error: HeadwaterError, *, progressed: bool) -> float:
        """
        Decide whether to resume after ``error``; return the delay before resuming.

        A failure after progress (a chunk arrived since the last one) starts the count
        again, so a long download over a flaky link keeps going as long as it advances.
        Failures without progress are tried again up to ``policy.attempts`` tries in all,
        each after `RetryPolicy.backoff` of its number.

        Raises:
            HeadwaterError: ``error`` itself when it is not retryable (a changed blob,
                a 403, ...), or a `ConnectionFailed` once the resumes are used up.
        """
        if not error.retryable:
            raise error
        self.failures = 1 if progressed else self.failures + 1
        if self.failures >= self.policy.attempts:
            raise ConnectionFailed(
                f"fetch {self.item!r}: gave up after {self.failures} interrupted attempts "
                f"without progress; nothing was written ({error.message})",
                hint="check the network, or raise retry.attempts",
            )
        return self.policy.backoff(self.failures)

    def download_options(self, max_concurrency: int) -> dict[str, Any]:
        """Keyword arguments for ``download_blob`` that pin this blob version."""
        from azure.core import MatchConditions

        return {
            "etag": self.etag,
            "match_condition": MatchConditions.IfNotModified,
            "max_concurrency": max_concurrency,
            # The stored bytes, as Content-Length, Content-MD5 and the ranges count them:
            # a blob stored with Content-Encoding: gzip is fetched compressed.
            "decompress": False,
        }


# --- writes: what one commit does -------------------------------------------------------

#: The metadata entry holding the state a write commits (`Capability.ATOMIC_STATE`).
STATE_METADATA_KEY: Final = "headwater_state"
#: Azure's limit on a blob's metadata: every name and value together, in bytes.
METADATA_LIMIT: Final = 8 * 1024
#: Azure's limit on the committed blocks of one blob.
MAX_BLOCKS: Final = 50_000

#: What `written_state` saw for a (stream, key): the etag of the blob holding that key's
#: state, ``None`` for no such state, `NOT_ASKED` when it was not asked.
NOT_ASKED: Final = False
Seen = str | None | Literal[False]


def encode_state(key: str, state: State) -> str:
    """The metadata value holding ``state`` under ``key``: base64url of a JSON object."""
    from headwater.formats import json_default

    text = json.dumps({"key": key, "state": state}, separators=(",", ":"), default=json_default)
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii")


def state_in(metadata: dict[str, str] | None, key: str, name: str) -> State | None:
    """
    The state blob ``name``'s metadata holds under ``key``, or ``None``.

    Raises:
        ConfigError: the metadata entry is there but is not one this connector wrote.
    """
    value = next((v for k, v in (metadata or {}).items() if k.lower() == STATE_METADATA_KEY), None)
    if value is None:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(value.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("key"), str):
        raise ConfigError(
            f"blob {name!r} has a {STATE_METADATA_KEY} metadata entry that headwater did not write",
            field="state",
            hint="remove the entry, or write to another blob",
        )
    if data["key"] != key:
        return None
    state = data.get("state")
    return state if isinstance(state, dict) else None


@dataclasses.dataclass(slots=True)
class WritePlan:
    """
    What the commit of one block upload does: create, replace or continue a blob, under
    which condition, with which metadata and Content-MD5.

    A write given ``state_key`` (`headwater.copy` into a blob) commits the state with the
    blob (metadata `STATE_METADATA_KEY`), so the state exists exactly when the complete
    blob does. When the blob already holds a state under that key, the write continues
    it: a blob cannot be appended to, so the commit keeps the blob's committed blocks and
    adds the new ones after them (Parquet, whose footer closes the file, is rewritten
    whole, the old row groups first), conditional on the blob still being the version the
    copy read its state from. No record is lost (the old ones stay) and none repeats
    (the copy read on from the committed state).
    """

    name: str
    content_type: str | None
    metadata: dict[str, str] | None
    overwrite: bool
    checksum: bool = True
    state_key: str | None = None
    #: Filled in by the caller while the batches are consumed; encoded at the commit.
    state: State | None = None
    #: Whether the blob's existence was looked at already (writes); uploads check it.
    checked: bool = False
    continuing: bool = False
    #: The version the commit requires (``If-Match``), for a continued blob.
    etag: str | None = None
    #: Committed blocks of the continued blob, kept in front of the new ones.
    base: list[str] = dataclasses.field(default_factory=list)
    #: The metadata of the continued blob (kept, with the new state).
    kept: dict[str, str] = dataclasses.field(default_factory=dict)

    def decide(
        self,
        props: Any | None,
        *,
        state_key: str | None,
        state: State | None,
        seen: Seen = NOT_ASKED,
    ) -> WritePlan:
        """
        Decide from the blob's properties (``None``: no such blob) and from what
        `written_state` saw for ``state_key``; returns this plan.

        Raises:
            AlreadyExists: the blob exists, holds no state under ``state_key`` and
                ``overwrite`` is false.
            IntegrityError: the blob changed since `written_state` read it (another copy
                committed, or someone replaced or deleted it): continuing would repeat or
                lose records.
        """
        if state_key is not None and not isinstance(state, dict):
            raise ConfigError("write(state_key=...) needs state=... (a dict)", field="state")
        self.checked = True
        self.state_key, self.state = state_key, state
        held = None
        if state_key is not None and props is not None:
            held = state_in(props.metadata, state_key, self.name)
        etag = normalize_etag(props.etag) if props is not None else None
        expected = etag if held is not None else None
        if state_key is not None and seen is not NOT_ASKED and seen != expected:
            raise IntegrityError(
                f"blob {self.name!r} changed since this copy read its state from it "
                "(another copy committed to it, or it was replaced or deleted); nothing "
                "was written",
                hint="run the copy again: it goes on from what the blob holds now",
            )
        if held is not None and props is not None:
            self.continuing = True
            self.etag = etag
            self.checksum = False  # the MD5 of the kept blocks would take a download
            self.kept = {
                k: v for k, v in (props.metadata or {}).items() if k.lower() != STATE_METADATA_KEY
            }
        elif props is not None and not self.overwrite:
            raise AlreadyExists(
                f"blob {self.name!r} exists; refusing to overwrite it",
                hint="pass overwrite=True (CLI: -O overwrite=true)",
            )
        return self

    def needs_head(self, state_key: str | None) -> bool:
        """Whether `decide` needs the blob's properties (a plain overwrite does not)."""
        return state_key is not None or not self.overwrite

    @property
    def one_request(self) -> bool:
        """
        Whether small data may go in one Put Blob. Not with a state: a blob created so has
        no block list, and a copy's blob must stay continuable.
        """
        return self.state_key is None and not self.continuing

    def rewrite_whole(self) -> None:
        """The continued blob is written again whole (Parquet): every byte passes, so hash it."""
        self.base = []
        self.checksum = True

    def keep_blocks(self, committed: list[tuple[str, int]], size: int) -> None:
        """
        Keep the continued blob's committed blocks (``(id, size)`` in order).

        Raises:
            ConfigError: they do not add up to the blob (it was not written in blocks).
        """
        if sum(length for _, length in committed) != size:
            raise ConfigError(
                f"blob {self.name!r} was not written as a list of blocks, so it cannot be "
                "continued",
                field="dest_stream",
                hint="copy into a new blob, or delete this one and copy again",
            )
        self.base = [block_id for block_id, _ in committed]

    def block_list(self, ids: list[str]) -> list[Any]:
        """The blocks to commit: the kept ones (committed), then the new ones."""
        from azure.storage.blob import BlobBlock, BlockState

        if len(self.base) + len(ids) > MAX_BLOCKS:
            raise ConfigError(
                f"blob {self.name!r} would have {len(self.base) + len(ids)} blocks, over "
                f"Azure's {MAX_BLOCKS}",
                hint="raise block_size, or copy into a new blob",
            )
        return [BlobBlock(i, state=BlockState.COMMITTED) for i in self.base] + [
            BlobBlock(i) for i in ids
        ]

    def commit_metadata(self) -> dict[str, str] | None:
        """
        The metadata to commit: the user's (and a continued blob's), plus the state as it
        is now (the caller has filled it in by the time the last batch is consumed).

        Raises:
            ConfigError: it exceeds Azure's metadata limit.
        """
        if self.state_key is None:
            return self.metadata
        assert self.state is not None
        metadata = {**self.kept, **(self.metadata or {})}
        metadata[STATE_METADATA_KEY] = encode_state(self.state_key, self.state)
        size = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
        if size > METADATA_LIMIT:
            raise ConfigError(
                f"the state to store with blob {self.name!r} takes "
                f"{len(metadata[STATE_METADATA_KEY])} bytes encoded; with the other metadata "
                f"that is {size} bytes, over Azure's limit of {METADATA_LIMIT} bytes per blob; "
                "nothing was committed",
                field="state",
                hint="the source's state is too large to keep in blob metadata; copy into a "
                "file or another connector",
            )
        return metadata

    def conditions(self) -> dict[str, Any]:
        """The commit's precondition: the continued version, a new blob, or none."""
        from azure.core import MatchConditions

        if self.continuing:
            assert self.etag is not None
            return {"etag": self.etag, "match_condition": MatchConditions.IfNotModified}
        if not self.overwrite:
            return {"match_condition": MatchConditions.IfMissing}
        return {}


# --- partitions: how a read splits, decided without I/O ---------------------------------


def blob_bounds(ref: BlobRef) -> dict[str, Any]:
    """The JSON form of ``ref`` a partition carries (its etag pins the version split)."""
    return {
        "name": ref.name,
        "size": ref.size,
        "etag": ref.etag,
        "content_encoding": ref.content_encoding,
        "md5": base64.b64encode(ref.md5).decode("ascii") if ref.md5 else None,
    }


def blob_from_bounds(data: Any) -> BlobRef:
    """Inverse of `blob_bounds`; a `ConfigError` for anything else."""
    try:
        md5 = data.get("md5")
        ref = BlobRef(
            data["name"],
            data["size"],
            data["etag"],
            data.get("content_encoding"),
            base64.b64decode(md5) if md5 else None,
        )
    except (AttributeError, KeyError, TypeError, ValueError, binascii.Error):
        ref = None
    if (
        ref is None
        or not isinstance(ref.name, str)
        or not isinstance(ref.etag, str)
        or isinstance(ref.size, bool)
        or not isinstance(ref.size, int)
    ):
        raise ConfigError(
            "partition is not an azure-blob partition (its blobs are malformed)",
            field="partition",
            hint="make the partitions with partitions() of this connector",
        )
    return ref


def size_groups(refs: list[BlobRef], count: int) -> list[list[BlobRef]]:
    """
    ``refs`` (in name order) cut into at most ``count`` runs of consecutive blobs,
    balanced by size, greedily: a run closes once the bytes so far reach the next
    ``1/count`` share of the total. One blob per run when there are no more blobs than
    ``count``. Consecutive runs keep the read order: the runs read one after the other
    are the read of the whole stream.
    """
    if len(refs) <= count:
        return [[ref] for ref in refs]
    weights = [ref.size + 1 for ref in refs]  # an empty blob still weighs something
    total = sum(weights)
    groups: list[list[BlobRef]] = [[]]
    seen = 0
    for index, (ref, weight) in enumerate(zip(refs, weights, strict=True)):
        groups[-1].append(ref)
        seen += weight
        left = len(refs) - index - 1
        if left and len(groups) < count and seen * count >= total * len(groups):
            groups.append([])
    return groups
