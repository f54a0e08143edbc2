"""
Part writes of the files connector (`Capability.PART_WRITES`): an engine writes one file
in parts, each exactly once however often the engine retries its task.

Part ``i`` of job ``J`` for ``dir/name.ext`` is the hidden file ``dir/.hwpart-J-i.name.ext``
(same format, from the same suffix), written with ``mode="overwrite"``: a temporary file
renamed into place, so a retried part replaces what an earlier attempt wrote and an attempt
that dies leaves only its temporary file behind, never a partial part. The commit is one
`write` of the target whose batches are the parts read back in index order, each part's
records counted against what its ``write_part`` reported: the target appears (or is
replaced, or appended to) only when every part has been read in full, as `write` publishes
a file. The parts are then deleted. The cost: the committing process reads every part and
writes the target once more, in one stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from headwater._connector import WriteResult, check_part
from headwater.errors import IntegrityError

if TYPE_CHECKING:
    from headwater._builtin.files_connector import FilesConnector

#: Options a part's own write takes (the format's); ``mode`` is the commit's.
_COMMIT_ONLY = frozenset({"mode"})


def part_stream(stream: str, job: str, index: int) -> str:
    """The stream (path under the root) part ``index`` of ``job`` is written to."""
    path = PurePosixPath(stream)
    return str(path.parent / f".hwpart-{job}-{index}.{path.name}")


def _part_paths(connector: FilesConnector, stream: str, job: str) -> list[Path]:
    target = connector.local_path(stream)
    assert target is not None  # a files stream is always a local file
    return sorted(target.parent.glob(f".hwpart-{job}-*.{target.name}"))


def _first_non_empty(batches: Iterable[Any]) -> Iterator[Any] | None:
    it = iter(batches)
    for batch in it:
        if len(batch):
            return _chain(batch, it)
    return None


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def write_part(
    connector: FilesConnector,
    stream: str,
    batches: Iterable[Any],
    job: str,
    index: int,
    options: Mapping[str, Any],
) -> WriteResult:
    """Write part ``index`` of ``job`` in place of any earlier attempt; its record count."""
    check_part(job, index)
    name = part_stream(stream, job, index)
    records = _first_non_empty(batches)
    if records is None:  # nothing to stage: drop what an earlier attempt may have left
        path = connector.local_path(name)
        if path is not None:
            path.unlink(missing_ok=True)
        return WriteResult(stream, 0)
    own = {key: value for key, value in options.items() if key not in _COMMIT_ONLY}
    result = connector.write(name, records, mode="overwrite", **own)
    return WriteResult(stream, result.records)


def commit(
    connector: FilesConnector,
    stream: str,
    job: str,
    parts: Mapping[int, int],
    options: Mapping[str, Any],
) -> WriteResult:
    """Write the target from the parts in index order (counts checked), then delete them."""
    check_part(job, parts=parts)
    names: list[tuple[int, str, int]] = []
    for index in sorted(parts):
        name = part_stream(stream, job, index)
        path = connector.local_path(name)
        if path is None or not path.is_file():
            if parts[index] == 0:
                continue
            raise IntegrityError(
                f"part {index} of write job {job} into {stream!r} is not staged "
                f"({parts[index]} records were): nothing was written",
                field="parts",
            )
        names.append((index, name, parts[index]))
    arrow = "arrow" in connector.read_formats and _columnar(connector, stream)

    def records() -> Iterator[Any]:
        for index, name, expected in names:
            found = 0
            batches = connector.read(name, format="arrow") if arrow else connector.read(name)
            for batch in batches:
                found += len(batch)
                yield batch
            if found != expected:
                raise IntegrityError(
                    f"part {index} of write job {job} into {stream!r} holds {found} records, "
                    f"not the {expected} its write staged: nothing was written",
                    field="parts",
                )

    result = connector.write(stream, records(), **options)
    for path in _part_paths(connector, stream, job):
        path.unlink(missing_ok=True)
    return result


def _columnar(connector: FilesConnector, stream: str) -> bool:
    path = connector.local_path(stream)
    return path is not None and connector._format(path).columnar


def abort(connector: FilesConnector, stream: str, job: str) -> None:
    """Delete every part of ``job`` written for ``stream`` (none is fine)."""
    check_part(job)
    for path in _part_paths(connector, stream, job):
        path.unlink(missing_ok=True)
