"""
Part writes of azure-blob (`Capability.PART_WRITES`): an engine writes one JSON Lines or
CSV block blob in parts, each exactly once however often the engine retries its task.

A part is encoded as `write` encodes a blob (the suffix or ``format`` decides) and staged
as uncommitted blocks of the target blob itself, ``block_size`` bytes each. Their ids
carry the job, the part index and a token fresh for every attempt, so the blocks of a
retried attempt never mix with those of an attempt that was killed. When its blocks are
staged, the attempt writes a small manifest blob, ``<stream>.hw-parts/<job>/<index>``,
naming them and its record count; a retry writes its own and replaces it. Uncommitted
blocks are invisible: the target does not exist, or keeps its old content, until the
commit, which reads the manifests in index order, checks each count, and makes the
blocks the blob's content with one ``commit_block_list`` (with ``mode="create"``, the
default, only if the blob still does not exist). The manifests are then deleted, and the
service discards the blob's uncommitted blocks the commit did not name (a killed
attempt's). After an abort (which deletes the manifests) the staged blocks stay invisible
until the service drops them (a week without a commit), costing storage and nothing else.

CSV: every part stages its header as a block of its own, and the commit keeps only the
first part's that has one (a part without records has one only with ``columns=[...]``),
after checking every part has the same columns (pass ``columns=[...]`` so they do not
depend on each part's first record). Parts without records and ``columns`` given make a
blob of the header alone, as `write` does.

Not supported, refused before anything is staged: compressed blobs (a stream cut into
parts is not one compressed stream) and Parquet (one footer for the whole file); write
those in one `write`, or as one blob per partition. The blob gets no Content-MD5 (no
process sees all of its bytes). Blobs cannot be appended to (as with `write`): the modes
are ``"create"`` and ``"overwrite"``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import secrets
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from headwater import (
    AlreadyExists,
    ConfigError,
    IntegrityError,
    NotFound,
    NotSupported,
    WriteResult,
)
from headwater.formats import CsvEncoder, FileFormat, JsonLinesEncoder
from headwater.toolkit import check_part
from headwater_azure_blob._names import clean_relative, content_type_for, require_format

if TYPE_CHECKING:
    from headwater_azure_blob._connector import AzureBlobConnector

#: Options a part's encoding takes; the rest are the commit's.
PART_OPTIONS: Final = frozenset({"format", "columns"})
COMMIT_OPTIONS: Final = frozenset({"mode", "overwrite", "content_type", "metadata"})
#: The most blocks one blob may have committed (the service's limit).
MAX_BLOCKS: Final = 50_000
#: Part indexes fit the 8 digits of a block id (ids of one blob must have one length).
MAX_INDEX: Final = 10**8 - 1


def manifest_prefix(stream: str, job: str) -> str:
    """Where the manifests of ``job`` for blob ``stream`` are written."""
    return f"{stream}.hw-parts/{job}/"


def manifest_name(stream: str, job: str, index: int) -> str:
    """The manifest blob of part ``index`` of ``job``."""
    return f"{manifest_prefix(stream, job)}{index}"


def block_id(job: str, index: int, token: str, number: int) -> str:
    """
    A block's id: every id of a blob must have one length (at most 64 bytes), so the
    job is padded to its longest (32) and the numbers to fixed widths.
    """
    return f"p{job:_<32}{index:08d}{token}{number:07d}"


def check_options(stream: str, options: Mapping[str, Any]) -> FileFormat:
    """The part format of ``stream``; options or formats a part write cannot honour refused."""
    clean_relative(stream, "stream")
    unknown = sorted(set(options) - PART_OPTIONS - COMMIT_OPTIONS)
    if unknown:
        raise ConfigError(
            f"azure-blob: unknown part-write option(s): {', '.join(unknown)} "
            f"(known: {', '.join(sorted(PART_OPTIONS | COMMIT_OPTIONS))})",
            field=unknown[0],
        )
    found = require_format(stream, options.get("format"))
    if found.compression is not None or found.fmt not in ("jsonl", "csv"):
        what = f"{found.compression}-compressed" if found.compression else found.fmt
        raise NotSupported(
            f"azure-blob cannot write {stream!r} in parts: a {what} blob is one encoded "
            "stream that parts staged apart cannot make up",
            hint="write an uncompressed .jsonl or .csv blob in parts, or write this blob "
            "with one write (or one blob per partition)",
        )
    return found


def _overwrite(options: Mapping[str, Any]) -> bool:
    """Whether the commit replaces an existing blob: `write`'s ``mode``/``overwrite``."""
    from headwater_azure_blob._connector import _overwrite as write_overwrites

    return write_overwrites(options.get("overwrite", False), options.get("mode"))


@contextlib.contextmanager
def _calling(connector: AzureBlobConnector, context: str) -> Iterator[None]:
    """One request through the account's circuit breaker, its errors translated."""
    with connector._errors(context), connector._guarded():
        yield


def _client(connector: AzureBlobConnector, name: str) -> Any:
    return connector._container().get_blob_client(connector._full(name))


def write_part(
    connector: AzureBlobConnector,
    stream: str,
    batches: Iterable[Any],
    job: str,
    index: int,
    options: Mapping[str, Any],
) -> WriteResult:
    """Stage part ``index`` of ``job`` in place of any earlier attempt; its record count."""
    check_part(job, index)
    if index > MAX_INDEX:
        raise ConfigError(f"a blob's part index is at most {MAX_INDEX}", field="index")
    found = check_options(stream, options)
    _overwrite(options)  # a bad mode fails the part, not only the commit
    config = connector.config
    delimiter = connector._delimiter(found)
    encoder: JsonLinesEncoder | CsvEncoder
    if found.fmt == "csv":
        encoder = CsvEncoder(
            columns=options.get("columns"),
            encoding=config.encoding,
            delimiter=delimiter,
            null_string=config.null_string,
            header=False,
        )
    else:
        encoder = JsonLinesEncoder(encoding=config.encoding)
    token = secrets.token_hex(6)
    target = _client(connector, stream)
    blocks: list[str] = []
    pending = bytearray()

    def stage(data: bytes | bytearray) -> str:
        name = block_id(job, index, token, len(blocks) + 1)
        with _calling(connector, f"write_part {stream!r}"):
            target.stage_block(name, bytes(data), length=len(data))
        return name

    for batch in batches:
        pending += encoder.encode(batch)
        while len(pending) >= config.block_size:
            blocks.append(stage(pending[: config.block_size]))
            del pending[: config.block_size]
    if pending:
        blocks.append(stage(pending))
    header: str | None = None
    columns: list[str] | None = None
    # With no record and no columns= a part has no header; the blob takes the first one.
    if isinstance(encoder, CsvEncoder) and encoder.columns is not None:
        columns = encoder.columns
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerow(columns)
        header = block_id(job, index, token, 0)
        data = buffer.getvalue().encode(config.encoding)
        with _calling(connector, f"write_part {stream!r}"):
            target.stage_block(header, data, length=len(data))
    manifest = {
        "records": encoder.count,
        "blocks": blocks,
        "header": header,
        "columns": columns,
    }
    body = json.dumps(manifest).encode()
    # Written last: a manifest names only blocks already staged.
    with _calling(connector, f"write_part {stream!r}"):
        _client(connector, manifest_name(stream, job, index)).upload_blob(
            body, overwrite=True, content_type="application/json"
        )
    return WriteResult(stream, encoder.count)


def _manifests(connector: AzureBlobConnector, stream: str, job: str) -> dict[int, str]:
    """The job's manifests: part index -> blob name (relative to the connector's prefix)."""
    prefix = manifest_prefix(stream, job)
    found: dict[int, str] = {}
    with _calling(connector, f"commit_parts {stream!r}"):
        for blob in connector._container().list_blobs(name_starts_with=connector._full(prefix)):
            name = connector._relative(blob.name)
            tail = name[len(prefix) :]
            if tail.isdigit():
                found[int(tail)] = name
    return found


def commit(
    connector: AzureBlobConnector,
    stream: str,
    job: str,
    parts: Mapping[int, int],
    options: Mapping[str, Any],
) -> WriteResult:
    """Commit the parts' blocks in index order with one ``commit_block_list`` (counts checked)."""
    from azure.core import MatchConditions
    from azure.storage.blob import BlobBlock, ContentSettings

    check_part(job, parts=parts)
    found = check_options(stream, options)
    overwrite = _overwrite(options)
    staged = _manifests(connector, stream, job)
    ids: list[str] = []
    header: str | None = None
    columns: list[str] | None = None
    records = 0
    for index in sorted(parts):
        expected = parts[index]
        if index not in staged:
            if expected == 0:
                continue
            raise IntegrityError(
                f"part {index} of write job {job} into {stream!r} is not staged "
                f"({expected} records were): nothing was written",
                field="parts",
            )
        with _calling(connector, f"commit_parts {stream!r}"):
            raw = _client(connector, staged[index]).download_blob().readall()
        manifest = json.loads(raw)
        if manifest["records"] != expected:
            raise IntegrityError(
                f"part {index} of write job {job} into {stream!r} holds "
                f"{manifest['records']} records, not the {expected} its write staged: "
                "nothing was written",
                field="parts",
            )
        if manifest["header"] is not None:
            if header is None:
                header, columns = manifest["header"], manifest["columns"]
                ids.append(header)
            elif manifest["columns"] != columns:
                raise IntegrityError(
                    f"part {index} of write job {job} into {stream!r} has the CSV columns "
                    f"{manifest['columns']}, not {columns} as an earlier part: nothing was "
                    "written",
                    field="columns",
                    hint="pass columns=[...] so every part writes the same header",
                )
        ids.extend(manifest["blocks"])
        records += expected
    if len(ids) > MAX_BLOCKS:
        raise ConfigError(
            f"the parts of write job {job} into {stream!r} staged {len(ids)} blocks, more "
            f"than the {MAX_BLOCKS} a blob may have: nothing was written",
            field="block_size",
            hint="raise block_size, or write fewer, larger parts",
        )
    settings = ContentSettings(content_type=options.get("content_type") or content_type_for(found))
    condition: dict[str, Any] = {}
    if not overwrite:
        condition = {"match_condition": MatchConditions.IfMissing}
    try:
        with _calling(connector, f"commit_parts {stream!r}"):
            _client(connector, stream).commit_block_list(
                [BlobBlock(block_id=i) for i in ids],
                content_settings=settings,
                metadata=options.get("metadata"),
                **condition,
            )
    except (AlreadyExists, IntegrityError) as exc:  # 409, or 412 from If-None-Match: *
        if overwrite:
            raise
        raise AlreadyExists(
            f"blob {stream!r} exists: the parts of write job {job} were not committed "
            "(they stay staged until abort_parts)",
            hint="pass mode='overwrite' to replace it",
        ) from exc
    _delete(connector, stream, staged.values())
    return WriteResult(stream, records)


def _delete(connector: AzureBlobConnector, stream: str, names: Iterable[str]) -> None:
    for name in names:
        try:
            with _calling(connector, f"parts of {stream!r}"):
                _client(connector, name).delete_blob()
        except NotFound:  # deleted by a concurrent commit or abort: what we wanted
            pass


def abort(connector: AzureBlobConnector, stream: str, job: str) -> None:
    """Delete every manifest of ``job`` for ``stream`` (its blocks expire uncommitted)."""
    check_part(job)
    clean_relative(stream, "stream")
    _delete(connector, stream, _manifests(connector, stream, job).values())
