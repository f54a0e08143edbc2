"""The reference `files` connector passes the contract suite (JSON Lines and CSV streams)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from headwater._builtin.files_connector import FilesConnector
from headwater.testing import ConnectorContract

EVENTS = [{"id": i, "name": f"event-{i}", "note": 'ü, "quoted"' if i % 3 else ""} for i in range(7)]


def _data(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "events.jsonl").write_text(
        "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in EVENTS), encoding="utf-8"
    )
    # A quoted field spanning lines: resuming must land on record boundaries, not lines.
    (root / "table.csv").write_text(
        'id,text\n1,"multi\nline"\n2,plain\n3,"a,b"\n4,"x ""y"""\n5,last\n', encoding="utf-8"
    )
    (root / "nested").mkdir(exist_ok=True)
    (root / "nested" / "inner.jsonl").write_text('{"a": 1}\n', encoding="utf-8")
    (root / "notes.txt").write_text("not a stream\n", encoding="utf-8")
    return root


class TestFilesJsonlContract(ConnectorContract):
    """The contract on a JSON Lines stream, with a large stream for the memory check."""

    connector_id = "files"
    stream = "events.jsonl"
    large_stream = "large.jsonl"
    entry_point = "headwater._builtin.files"
    url_example = "file:///srv/data"

    @pytest.fixture
    def connector(self, tmp_path: Path) -> FilesConnector:
        return FilesConnector({"root": str(_data(tmp_path / "data"))})

    @pytest.fixture
    def large_stream_connector(self, tmp_path: Path) -> FilesConnector:
        root = tmp_path / "large"
        root.mkdir()
        line = '{"id": %d, "name": "record-%d", "payload": "' + "x" * 40 + '"}\n'
        with (root / "large.jsonl").open("w", encoding="utf-8") as out:
            out.writelines(line % (i, i) for i in range(self.large_min_records))
        return FilesConnector({"root": str(root)})

    def new_write_stream(self, connector: FilesConnector) -> str:
        return f"written-{uuid.uuid4().hex}.jsonl"


class TestFilesCsvContract(TestFilesJsonlContract):
    """The same contract on a CSV stream with quoted multi-line fields."""

    stream = "table.csv"

    @pytest.fixture
    def large_stream_connector(self) -> None:
        return None  # the JSON Lines class covers memory

    def new_write_stream(self, connector: FilesConnector) -> str:
        return f"written-{uuid.uuid4().hex}.csv"

    def write_records(self) -> list[dict[str, object]]:
        # CSV has no types: strings read back as written.
        return [{"id": str(i), "text": f"line {i}, with a comma"} for i in range(5)]
