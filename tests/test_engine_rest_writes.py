"""
Exactly-once writes from Dask and Ray into a REST API (the loopback API of tests/fix_http.py,
whose ``/sink/NAME`` answers a repeated Idempotency-Key without storing again): each part's
pages are sent at once with keys derived from the job, the part index, the page's position
and its body, so a part the engine retries after its worker died is stored once. The API
key is resolved on the workers from a reference; each scenario runs on both engines
(`tests.fix_engines.engine`).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import headwater
from tests.fix_http import API_KEY, HttpServer

pytestmark = pytest.mark.engines

#: Set in the engines' worker processes only: the test process never has it.
WORKER_ENV = "HW_ENGINE_REST_KEY"
ROWS = 2000
#: Records per request: parts of 500 records end with a short page.
PAGE = 30


@pytest.fixture(scope="module")
def engine_worker_env() -> dict[str, str]:
    return {WORKER_ENV: API_KEY}


def _config(api: HttpServer, key: str, **write: Any) -> dict[str, Any]:
    """Stream ``out``, read from and written to ``/sink/out`` (batch mode, keyed by default)."""
    settings = {"mode": "batch", "batch_size": PAGE, "idempotency_header": "Idempotency-Key"}
    return {
        "base_url": api.url,
        "auth": {"type": "api_key", "key": key},
        "retry": {"attempts": 4, "initial": 0.05, "maximum": 0.5, "jitter": 0, "timeout": 60},
        "streams": {"out": {"path": "/sink/out", "write": {**settings, **write}}},
    }


def _records() -> list[dict[str, Any]]:
    return [{"id": i, "name": None if i % 7 == 0 else f"e{i}"} for i in range(ROWS)]


def _read_back(api: HttpServer) -> list[dict[str, Any]]:
    """What ``/sink/out`` holds, read with the REST connector here (the key as a literal)."""
    with headwater.connect("rest", _config(api, API_KEY)) as reader:
        return [row for batch in reader.read("out") for row in batch.rows()]


def _multiset(rows: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    return Counter((row["id"], row["name"]) for row in rows)


def _keys(api: HttpServer) -> list[str]:
    """The idempotency key of every write request the API received."""
    return [s.headers["idempotency-key"] for s in api.state.seen("/sink/out") if s.method != "GET"]


def test_an_engine_write_into_a_rest_api_reads_back_equal(
    engine: Any, http_api: HttpServer
) -> None:
    """4 partitions, the key resolved on the workers: the API holds each record once."""
    assert WORKER_ENV not in os.environ
    data = engine.from_records(_records(), 4)
    with headwater.connect("rest", _config(http_api, f"env:{WORKER_ENV}")) as dest:
        result = engine.write(data, dest, "out", batch_size=100)
    assert ROWS == result.records
    assert _multiset(_records()) == _multiset(_read_back(http_api))
    keys = _keys(http_api)
    assert len(keys) == len(set(keys))  # no page was sent twice: nothing to deduplicate


@pytest.mark.parametrize("when", ["before_commit", "after_stage"])
def test_a_write_task_killed_mid_part_is_retried_without_duplicates(
    engine: Any, http_api: HttpServer, tmp_path: Path, when: str
) -> None:
    """A worker dies with its part's pages partly (or all) sent: the retry adds no record."""
    marker = str(tmp_path / "killed")
    data = engine.from_records(_records(), 4)
    with headwater.connect("rest", _config(http_api, f"env:{WORKER_ENV}")) as dest:
        result = engine.write_killing_a_worker(
            data, dest, "out", when=when, marker=marker, batch_size=50
        )
    assert os.path.exists(marker), "no worker was killed"
    assert result is not None
    assert ROWS == result.records
    assert _multiset(_records()) == _multiset(_read_back(http_api))
    keys = _keys(http_api)
    # The retried part sent pages its killed attempt had sent, with the same keys.
    assert len(keys) > len(set(keys))
    assert ROWS == len(http_api.state.sinks["out"])


def test_an_engine_write_without_an_idempotent_write_is_refused_before_any_task(
    engine: Any, http_api: HttpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A POST without idempotency_header: the driver refuses the write (the connector's
    check_part_write) with NotSupported naming the stream and the setting before any task:
    no write was handed to the engine, no task marked its directory, no request reached
    the API, nothing was stored.
    """
    ran = tmp_path / "tasks"
    ran.mkdir()
    data = engine.marking_tasks(engine.from_records(_records(), 2), str(ran))
    handed = engine.recording_writes(monkeypatch)
    config = _config(http_api, f"env:{WORKER_ENV}", idempotency_header=None)
    with headwater.connect("rest", config) as dest, pytest.raises(headwater.NotSupported) as no:
        engine.write(data, dest, "out")
    assert "streams.out.write.idempotency_header" == no.value.field
    assert "stream 'out'" in str(no.value)
    assert [] == handed, "the write reached the engine"
    assert [] == list(ran.iterdir()), "a task ran"
    assert [] == http_api.log
    assert "out" not in http_api.state.sinks


def test_the_probes_of_the_refusal_see_a_write_that_runs(
    engine: Any, http_api: HttpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the refusal test watches does see a write that runs: its handing and its tasks."""
    ran = tmp_path / "tasks"
    ran.mkdir()
    data = engine.marking_tasks(engine.from_records(_records()[:100], 2), str(ran))
    handed = engine.recording_writes(monkeypatch)
    with headwater.connect("rest", _config(http_api, f"env:{WORKER_ENV}")) as dest:
        assert 100 == engine.write(data, dest, "out").records
    assert 1 == len(handed)
    assert list(ran.iterdir())
