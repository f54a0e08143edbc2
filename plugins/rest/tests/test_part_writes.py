"""
Part writes of the REST connector (`Capability.PART_WRITES`) against the loopback API of
tests/fix_http.py, whose ``/sink/NAME`` stores what is written and answers a repeated
Idempotency-Key without storing again: a part's pages are sent at once, each keyed by the
job, the part index, its position in the part and its body, so a retried part is stored
once; a stream whose write is not idempotent is refused before any request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from headwater import Capability, ConfigError, NotSupported
from headwater_rest import RestConnector, WriteFailed
from tests.fix_http import HttpServer

RECORDS = [{"id": i, "name": f"record-{i}"} for i in range(7)]
JOB = "job0c4fe1"
KEY = "Idempotency-Key"


def _config(make_config: Any, name: str = "out", **write: Any) -> dict[str, Any]:
    """A stream ``name`` read from and written to ``/sink/name``, with ``write`` settings."""
    return make_config(streams={name: {"path": f"/sink/{name}", "write": write}})


def _keyed(make_config: Any, name: str = "out", **write: Any) -> dict[str, Any]:
    """A stream whose POSTs carry an idempotency key, in pages of 2 records."""
    settings = {"mode": "batch", "batch_size": 2, "idempotency_header": KEY, **write}
    return _config(make_config, name, **settings)


def _write_part(
    connector: RestConnector, mode: str, stream: str, batches: Any, index: int, **options: Any
) -> Any:
    if mode == "sync":
        return connector.write_part(stream, batches, job=JOB, index=index, **options)
    return asyncio.run(connector.awrite_part(stream, batches, job=JOB, index=index, **options))


def _keys(api: HttpServer, path: str = "/sink/out") -> list[str]:
    """The idempotency key of every write request to ``path`` ("" for none), in order."""
    writes = [seen for seen in api.state.seen(path) if seen.method != "GET"]
    return [seen.headers.get("idempotency-key", "") for seen in writes]


def _back(connector: RestConnector, stream: str = "out") -> list[dict[str, Any]]:
    return [row for batch in connector.read(stream) for row in batch.rows()]


def test_the_connector_declares_part_writes() -> None:
    """PART_WRITES is declared for every config (a stream that cannot is refused by name)."""
    assert Capability.PART_WRITES in RestConnector.capabilities


def test_a_part_written_twice_is_stored_once(http_api, make_config, registry, mode):
    """The same job and index again: the same keys, answered by the API without storing."""
    with RestConnector(_keyed(make_config), registry=registry) as connector:
        first = _write_part(connector, mode, "out", [RECORDS[:3], RECORDS[3:]], 0)
        again = _write_part(connector, mode, "out", [RECORDS[:5], RECORDS[5:]], 0)
        back = _back(connector)
    keys = _keys(http_api)
    assert (7, 7) == (first.records, again.records)
    assert (4, 4) == (first.requests, again.requests)  # pages of 2: 2 + 2 + 2 + 1
    assert keys[:4] == keys[4:]
    assert 4 == len(set(keys))
    assert RECORDS == back


def test_a_part_retried_after_a_killed_attempt_is_stored_once(http_api, make_config, registry):
    """An attempt dies after two pages; the retry repeats their keys and sends the rest."""

    def dying() -> Any:
        yield RECORDS[:4]
        raise RuntimeError("the worker died")

    with RestConnector(_keyed(make_config), registry=registry) as connector:
        with pytest.raises(RuntimeError):
            connector.write_part("out", dying(), job=JOB, index=3)
        assert RECORDS[:4] == http_api.state.sinks["out"]  # sent at once, not staged
        result = connector.write_part("out", [RECORDS], job=JOB, index=3)
        back = _back(connector)
    keys = _keys(http_api)
    assert 7 == result.records
    assert keys[:2] == keys[2:4]
    assert RECORDS == back


def test_a_failed_page_fails_the_part_and_its_retry_completes_it(http_api, make_config, registry):
    """A 422 on the second page stops the part (WriteFailed); the retry stores each page once."""
    http_api.state.fail("/sink/out", "ok", "422")
    with RestConnector(_keyed(make_config), registry=registry) as connector:
        with pytest.raises(WriteFailed) as failed:
            connector.write_part("out", [RECORDS], job=JOB, index=1)
        result = connector.write_part("out", [RECORDS], job=JOB, index=1)
        back = _back(connector)
    assert 2 == failed.value.result.records
    assert 7 == result.records
    assert RECORDS == back


def test_identical_pages_in_other_positions_and_parts_are_all_stored(
    http_api, make_config, registry
):
    """The same page twice in a part, and the same part under another index: 8 pages, 8 keys."""
    page = [{"id": 1, "name": "same"}, {"id": 2, "name": "same"}]
    with RestConnector(_keyed(make_config), registry=registry) as connector:
        connector.write_part("out", [page, page], job=JOB, index=0)
        connector.write_part("out", [page + page], job=JOB, index=1)
        connector.write_part("out", [page, page], job="otherjob1", index=0)
        back = _back(connector)
    assert 6 == len(set(_keys(http_api)))
    assert page * 6 == back


def test_plain_write_keys_stay_as_they_were(http_api, make_config, registry):
    """write() keeps its run-independent keys: a part's keys differ from them."""
    with RestConnector(_keyed(make_config), registry=registry) as connector:
        connector.write("out", [RECORDS[:2]])
        connector.write("out", [RECORDS[:2]])
        connector.write_part("out", [RECORDS[:2]], job=JOB, index=0)
    plain, rerun, part = _keys(http_api)
    assert plain == rerun
    assert plain != part
    assert RECORDS[:2] * 2 == http_api.state.sinks["out"]


def test_sync_and_async_parts_send_the_same_requests(http_api, make_config, registry):
    """write_part then awrite_part of the same part: the same bodies and keys, stored once."""
    with RestConnector(_keyed(make_config), registry=registry) as connector:
        sync = connector.write_part("out", [RECORDS], job=JOB, index=2)
        asynchronous = asyncio.run(connector.awrite_part("out", [RECORDS], job=JOB, index=2))
    seen = [s for s in http_api.state.seen("/sink/out") if s.method != "GET"]
    sent = [(s.method, s.headers["idempotency-key"], json.loads(s.body)) for s in seen]
    assert (sync.records, sync.requests) == (asynchronous.records, asynchronous.requests)
    assert sent[:4] == sent[4:]
    assert RECORDS == http_api.state.sinks["out"]


def test_arrow_record_batches_are_written_as_records(http_api, make_config, registry):
    """What the engines hand over (pyarrow.RecordBatch) is sent as the records it holds."""
    import pyarrow as pa

    batches = pa.Table.from_pylist(RECORDS).to_batches(max_chunksize=3)
    with RestConnector(_keyed(make_config), registry=registry) as connector:
        result = connector.write_part("out", batches, job=JOB, index=0)
    assert 7 == result.records
    assert RECORDS == http_api.state.sinks["out"]


def test_put_parts_need_no_key(http_api, make_config, registry, mode):
    """A PUT is idempotent by nature: its part is written, with no key header added."""
    config = _config(make_config, method="PUT", path="/sink/out/{record.id}")
    with RestConnector(config, registry=registry) as connector:
        result = _write_part(connector, mode, "out", [RECORDS[:3]], 0)
    seen = http_api.state.seen("/sink/out/0") + http_api.state.seen("/sink/out/2")
    assert 3 == result.records
    assert ["PUT", "PUT"] == [s.method for s in seen]
    assert not any("idempotency-key" in s.headers for s in seen)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_write_without_an_idempotency_key_is_refused(
    http_api, make_config, registry, mode, method
):
    """A POST or PATCH without idempotency_header: NotSupported naming the stream and the fix."""
    config = _config(make_config, method=method)
    with RestConnector(config, registry=registry) as connector:
        with pytest.raises(NotSupported) as refused:
            _write_part(connector, mode, "out", [RECORDS], 0)
        with pytest.raises(NotSupported):
            connector.commit_parts("out", job=JOB, parts={0: 7})
    error = refused.value
    assert "streams.out.write.idempotency_header" == error.field
    assert "'out'" in error.message
    assert "idempotency_header" in (error.hint or "")
    assert "PUT" in (error.hint or "")
    assert [] == http_api.log


@pytest.mark.parametrize(
    ("write", "stream", "options", "refusal", "field"),
    [
        ({"idempotency_header": KEY}, "out", {}, None, None),
        ({"method": "PUT", "path": "/sink/out/{record.id}"}, "out", {}, None, None),
        ({"method": "POST"}, "out", {}, NotSupported, "streams.out.write.idempotency_header"),
        ({"method": "PATCH"}, "out", {}, NotSupported, "streams.out.write.idempotency_header"),
        ({"idempotency_header": KEY}, "out", {"on_error": "continue"}, ConfigError, "on_error"),
        ({"idempotency_header": KEY}, "out", {"upsert_on": "id"}, ConfigError, None),
        ({"idempotency_header": KEY}, "nope", {}, ConfigError, "stream"),
        (None, "out", {}, ConfigError, "streams.out.write"),
    ],
    ids=["keyed", "put", "post", "patch", "continue", "unknown-option", "no-stream", "no-write"],
)
def test_check_part_write_refuses_what_write_part_would_without_a_request(
    http_api, make_config, registry, write, stream, options, refusal, field
):
    """
    check_part_write (an engine's driver asks it before any task) accepts a PUT or a keyed
    write and refuses as write_part would, from the config alone: no request, and no
    credential resolved (the API key's reference is set nowhere).
    """
    settings = {"path": "/sink/out", **({"write": write} if write is not None else {})}
    config = make_config(streams={"out": settings})
    config["auth"] = {"type": "api_key", "key": "env:HW_TEST_KEY_SET_NOWHERE"}
    with RestConnector(config, registry=registry) as connector:
        if refusal is None:
            assert connector.check_part_write(stream, **options) is None
        else:
            with pytest.raises(refusal) as refused:
                connector.check_part_write(stream, **options)
            assert field == refused.value.field
            with pytest.raises(refusal):  # write_part, used directly, still refuses
                connector.write_part(stream, [RECORDS], job=JOB, index=0, **options)
    assert [] == http_api.log


def test_a_stream_without_write_settings_is_refused(http_api, make_config, registry):
    """No write section: ConfigError naming streams.NAME.write, nothing sent."""
    config = make_config(streams={"items": {"path": "/single"}})
    connector = RestConnector(config, registry=registry)
    with connector, pytest.raises(ConfigError) as refused:
        connector.write_part("items", [RECORDS], job=JOB, index=0)
    assert "streams.items.write" == refused.value.field
    assert [] == http_api.log


@pytest.mark.parametrize(
    ("job", "index", "options", "field"),
    [
        ("Not-A-Job", 0, {}, "job"),
        (JOB, -1, {}, "index"),
        (JOB, 0, {"on_error": "continue"}, "on_error"),
        (JOB, 0, {"upsert_on": "id"}, None),
    ],
)
def test_bad_part_arguments_are_refused_before_any_request(
    http_api, make_config, registry, job, index, options, field
):
    """A bad job id or index, on_error=continue, an unknown option: ConfigError, nothing sent."""
    connector = RestConnector(_keyed(make_config), registry=registry)
    with connector, pytest.raises(ConfigError) as refused:
        connector.write_part("out", [RECORDS], job=job, index=index, **options)
    assert field == refused.value.field
    assert [] == http_api.log


def test_commit_checks_the_counts(http_api, make_config, registry, mode):
    """commit_parts returns the sum of the parts' counts; a bad count or index is refused."""
    with RestConnector(_keyed(make_config), registry=registry) as connector:

        def commit(parts: dict[Any, Any]) -> Any:
            if mode == "sync":
                return connector.commit_parts("out", job=JOB, parts=parts)
            return asyncio.run(connector.acommit_parts("out", job=JOB, parts=parts))

        result = commit({0: 7, 1: 0, 2: 3})
        with pytest.raises(ConfigError) as negative:
            commit({0: 7, 1: -2})
        with pytest.raises(ConfigError) as bad_index:
            commit({"0": 7})
        with pytest.raises(ConfigError) as bad_job:
            connector.commit_parts("out", job="x", parts={0: 1})
    assert ("out", 10) == (result.stream, result.records)
    assert ("parts", "index", "job") == (
        negative.value.field,
        bad_index.value.field,
        bad_job.value.field,
    )
    assert [] == http_api.log


def test_abort_cannot_take_back_accepted_pages_and_says_so(
    http_api, make_config, registry, caplog, mode
):
    """After abort_parts the sent pages are still stored, and a warning names the job."""
    caplog.set_level(logging.WARNING, logger="headwater_rest")
    with RestConnector(_keyed(make_config), registry=registry) as connector:
        connector.write_part("out", [RECORDS[:3]], job=JOB, index=0)
        if mode == "sync":
            connector.abort_parts("out", job=JOB)
        else:
            asyncio.run(connector.aabort_parts("out", job=JOB))
        back = _back(connector)
    assert RECORDS[:3] == back
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(JOB in text and "stay stored" in text for text in warnings)
