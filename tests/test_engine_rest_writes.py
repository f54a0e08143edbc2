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


def test_an_engine_write_without_an_idempotent_write_is_refused(
    engine: Any, http_api: HttpServer
) -> None:
    """A POST without idempotency_header: NotSupported naming the stream, nothing stored."""
    data = engine.from_records(_records(), 2)
    config = _config(http_api, f"env:{WORKER_ENV}", idempotency_header=None)
    # Dask raises the worker's error; Ray a RayTaskError that is also a NotSupported.
    with headwater.connect("rest", config) as dest, pytest.raises(headwater.NotSupported) as no:
        engine.write(data, dest, "out")
    assert "streams.out.write.idempotency_header" == no.value.field
    assert "stream 'out'" in str(no.value)
    assert "out" not in http_api.state.sinks
