"""`headwater.open_source`, and `headwater.copy` from and into binary streams (stdin, stdout)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

import headwater
from headwater._builtin.files_connector import FilesConnector


class _Flushes(io.BytesIO):
    """A BytesIO that remembers what it held at each flush (what a pipe's reader had)."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[bytes] = []

    def flush(self) -> None:
        super().flush()
        self.flushed.append(self.getvalue())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    lines = "".join(json.dumps({"id": i, "name": f"n{i}"}) + "\n" for i in range(7))
    (data / "events.jsonl").write_text(lines)
    return data


@pytest.fixture
def sources(tmp_path: Path, root: Path) -> headwater.SourceRegistry:
    registry = headwater.Registry(autoload=False)
    saved = headwater.SourceRegistry(tmp_path / "sources.toml", registry=registry)
    saved.add("local", "files", {"root": str(root)})
    return saved


def test_open_source_opens_a_saved_source_by_name(sources, root):
    """A name is looked up in the given sources; the connector reads that source."""
    with headwater.open_source("local", sources=sources) as connector:
        assert "files" == connector.id
        assert root == connector.local_path("events.jsonl").parent


def test_open_source_opens_a_url_with_config(root, tmp_path):
    """A URL is opened with the config given, which wins over the URL."""
    registry = headwater.Registry(autoload=False)
    config = {"batch_size": 3}
    with headwater.open_source(root.as_uri(), config, registry=registry) as connector:
        assert (3, root) == (connector.config.batch_size, connector.config.root)


def test_open_source_refuses_config_for_a_saved_source(sources):
    """Config with a saved source's name is a ConfigError on the config field."""
    with pytest.raises(headwater.ConfigError) as caught:
        headwater.open_source("local", {"root": "elsewhere"}, sources=sources)
    assert "config" == caught.value.field
    assert "'local' is a saved source" in caught.value.message


def test_open_source_unknown_name_is_a_source_error(sources):
    """An unknown name raises the sources' own error, naming it."""
    with pytest.raises(headwater.SourceError) as caught:
        headwater.open_source("nope", sources=sources)
    assert "'nope'" in caught.value.message


def test_copy_into_a_binary_stream_is_json_lines_by_default(root):
    """A writable binary stream takes every record, in order, as JSON Lines."""
    out = io.BytesIO()
    result = headwater.copy(FilesConnector({"root": root}), "events.jsonl", out)
    rows = [json.loads(line) for line in out.getvalue().decode().splitlines()]
    expected = [{"id": i, "name": f"n{i}"} for i in range(7)]
    assert (7, "-", expected) == (result.records, result.destination, rows)


def test_copy_into_a_binary_stream_as_csv(root):
    """format="csv" writes a header and one line per record."""
    out = io.BytesIO()
    headwater.copy(FilesConnector({"root": root}), "events.jsonl", out, format="csv")
    assert "id,name\n" + "".join(f"{i},n{i}\n" for i in range(7)) == out.getvalue().decode()


def test_copy_into_a_binary_stream_saves_the_state_after_each_flushed_batch(root, tmp_path):
    """With a state, each batch is flushed to the stream before the state covering it is saved."""
    out, saved = _Flushes(), []
    source = FilesConnector({"root": root})

    def on_state(state: dict[str, Any]) -> None:
        saved.append((state["records"], out.flushed[-1].decode().count("\n")))

    headwater.copy(source, "events.jsonl", out, on_state=on_state, batch_size=2)
    assert [(2, 2), (4, 4), (6, 6), (7, 7), (7, 7), (7, 7)] == saved


@pytest.mark.parametrize(
    ("options", "field"),
    [({"format": "parquet"}, "format"), ({"compression": "gzip"}, "compression")],
)
def test_copy_into_a_binary_stream_refuses_files_only_options(root, options, field):
    """Parquet, Arrow and compression need a file: a ConfigError names the option, nothing written."""
    out = io.BytesIO()
    with pytest.raises(headwater.ConfigError) as caught:
        headwater.copy(FilesConnector({"root": root}), "events.jsonl", out, **options)
    assert (field, b"") == (caught.value.field, out.getvalue())


def test_copy_from_a_binary_stream_into_a_connector(root):
    """A readable binary stream of JSON Lines is written to the destination's stream."""
    data = io.BytesIO(b'{"k": 1}\n{"k": 2}\n{"k": 3}\n')
    dest = FilesConnector({"root": root})
    result = headwater.copy(data, None, dest, "in.jsonl", batch_size=2)
    back = [row for batch in dest.read("in.jsonl") for row in batch.rows()]
    assert (3, [{"k": 1}, {"k": 2}, {"k": 3}]) == (result.records, back)


def test_copy_from_a_binary_stream_of_csv_gives_text(tmp_path):
    """CSV from a stream: values are text, as from a CSV file, and NULL stays NULL."""
    data = io.BytesIO(b"id,name\n1,a\n2,\n")
    out = tmp_path / "out.jsonl"
    headwater.copy(data, None, out, read_options={"file_format": "csv"})
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [{"id": "1", "name": "a"}, {"id": "2", "name": None}] == rows


def test_copy_from_a_binary_stream_cannot_be_resumable(tmp_path):
    """A stream is read once: a copy from one with a state is refused before reading it."""
    data = io.BytesIO(b'{"k": 1}\n')
    with pytest.raises(headwater.ConfigError) as caught:
        headwater.copy(data, None, tmp_path / "o.jsonl", state_file=tmp_path / "s.json")
    assert ("state", 0) == (caught.value.field, data.tell())


def test_copy_from_a_binary_stream_takes_line_formats_only(tmp_path):
    """Parquet cannot be decoded as it streams in: a ConfigError on the format field."""
    data = io.BytesIO(b"PAR1")
    data.name = "<stdin>"  # type: ignore[attr-defined]
    with pytest.raises(headwater.ConfigError) as caught:
        headwater.copy(data, None, tmp_path / "o.jsonl", read_options={"file_format": "parquet"})
    assert ("format", "stdin takes JSON Lines or CSV, not parquet") == (
        caught.value.field,
        caught.value.message,
    )
    assert not (tmp_path / "o.jsonl").exists()


async def test_acopy_between_binary_streams_equals_copy(root):
    """acopy from a stream into a stream gives the bytes copy gives."""
    lines = (root / "events.jsonl").read_bytes()
    synced, awaited = io.BytesIO(), io.BytesIO()
    headwater.copy(io.BytesIO(lines), None, synced, format="csv", batch_size=3)
    result = await headwater.acopy(io.BytesIO(lines), None, awaited, format="csv", batch_size=3)
    assert (7, synced.getvalue()) == (result.records, awaited.getvalue())
    assert synced.getvalue().startswith(b"id,name\n0,n0\n")
