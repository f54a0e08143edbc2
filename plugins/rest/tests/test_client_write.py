"""
Calls that are not streams (``client()``, ``aclient()``, ``request()``), ``write`` and the
retry predicates, against the loopback API of tests/fix_http.py: its ``/sink/NAME``
stores what is written (and answers a repeated Idempotency-Key without storing again),
and its request log shows what each server received.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from headwater import AuthFailed, ConfigError, NotFound, ServerError
from headwater_rest import OriginRefused, RestConnector, WriteFailed
from tests.fix_http import HttpServer, oauth_auth

RECORDS = [{"id": i, "name": f"record-{i}"} for i in range(5)]


def _bodies(api: HttpServer, path: str) -> list[Any]:
    return [json.loads(seen.body) for seen in api.state.seen(path) if seen.method != "GET"]


def _get(connector: RestConnector, mode: str, path: str, **kwargs: Any) -> httpx.Response:
    """A GET through ``client()`` or ``aclient()``."""
    if mode == "sync":
        with connector.client() as client:
            return client.get(path, **kwargs)

    async def run() -> httpx.Response:
        async with connector.aclient() as client:
            response = await client.get(path, **kwargs)
            await response.aread()
            return response

    return asyncio.run(run())


def _post(connector: RestConnector, mode: str, path: str, **kwargs: Any) -> httpx.Response:
    """A POST through ``client()`` or ``aclient()``."""
    if mode == "sync":
        with connector.client() as client:
            return client.post(path, **kwargs)

    async def run() -> httpx.Response:
        async with connector.aclient() as client:
            return await client.post(path, **kwargs)

    return asyncio.run(run())


# --- client() / aclient() / request() ------------------------------------------------------


def test_client_authenticates_with_a_cached_oauth_token(http_api, make_config, registry, mode):
    """Two calls, one token request: the client carries the connector's OAuth auth."""
    config = make_config(auth=oauth_auth(http_api))
    with RestConnector(config, registry=registry) as connector:
        first = _get(connector, mode, "/single", params={"n": 2})
        second = _get(connector, mode, "/single", params={"n": 1})
    assert (200, 200) == (first.status_code, second.status_code)
    assert [1, 2] == [row["id"] for row in first.json()["data"]]
    assert 1 == http_api.state.token_hits
    seen = http_api.state.seen("/single")
    assert all(s.headers["authorization"].startswith("Bearer at-") for s in seen)
    assert all(s.headers["user-agent"].startswith("headwater-rest/") for s in seen)


def test_client_sends_configured_headers_and_params(http_api, make_config, registry, mode):
    """Config headers and params go with every call to base_url's origin."""
    config = make_config(headers={"X-Tenant": "acme"}, params={"n": 3})
    with RestConnector(config, registry=registry) as connector:
        response = _get(connector, mode, "/single")
    assert 3 == len(response.json()["data"])
    (seen,) = http_api.state.seen("/single")
    assert ("acme", "3") == (seen.headers["x-tenant"], seen.query["n"])


def test_request_returns_the_response_and_raises_typed_errors(http_api, make_config, registry):
    """request() hands back the read response; error statuses are headwater errors."""
    config = make_config(retry={"attempts": 1})
    with RestConnector(config, registry=registry) as connector:
        created = connector.request("POST", "/sink/adhoc", json={"id": 7})
        with pytest.raises(NotFound) as missing:
            connector.request("GET", "/status/404")
        bad = RestConnector(
            make_config(auth={"type": "bearer", "token": "wrong"}), registry=registry
        )
        with bad, pytest.raises(AuthFailed):
            bad.request("GET", "/single")
    assert 201 == created.status_code
    assert {"stored": 1} == created.json()
    assert "404" in str(missing.value)
    assert [{"id": 7}] == http_api.state.sinks["adhoc"]


def test_arequest_is_the_async_twin(http_api, make_config, registry):
    """arequest() sends the same request as request()."""

    async def run() -> httpx.Response:
        async with RestConnector(make_config(), registry=registry) as connector:
            return await connector.arequest("PUT", "/sink/twin", json={"id": 1})

    response = asyncio.run(run())
    assert 201 == response.status_code
    assert [{"id": 1}] == http_api.state.sinks["twin"]


def test_client_retries_after_503(http_api, make_config, registry, mode):
    """A 503 is retried; the caller sees the answer of the second try."""
    http_api.state.fail("/single", "503")
    with RestConnector(make_config(), registry=registry) as connector:
        response = _get(connector, mode, "/single", params={"n": 2})
    assert 200 == response.status_code
    assert 2 == http_api.state.hits("/single")


def test_client_returns_the_last_error_response_after_the_retries(
    http_api, make_config, registry, mode
):
    """When the retries run out the last response is returned, its status for the caller."""
    http_api.state.fail("/single", *["503"] * 10)
    config = make_config(retry={"attempts": 3, "initial": 0, "jitter": 0})
    with RestConnector(config, registry=registry) as connector:
        response = _get(connector, mode, "/single")
    assert 503 == response.status_code
    assert 3 == http_api.state.hits("/single")


def test_client_waits_for_retry_after(http_api, make_config, registry, mode):
    """A 429 with Retry-After: 1 is retried after that second, not at once."""
    http_api.state.retry_after = "1"
    http_api.state.fail("/single", "429")
    with RestConnector(make_config(), registry=registry) as connector:
        response = _get(connector, mode, "/single")
    assert 200 == response.status_code
    first, second = http_api.state.seen("/single")
    assert second.at - first.at >= 0.9


def test_redirect_to_another_origin_is_refused(http_api, http_other, make_config, registry, mode):
    """A redirect to another origin not in allowed_hosts is refused; nothing reaches it."""
    with RestConnector(make_config(), registry=registry) as connector:
        with pytest.raises(OriginRefused) as refused:
            _get(connector, mode, "/redirect", params={"to": "other"})
        with pytest.raises(OriginRefused):
            _get(connector, mode, http_other.url + "/single")
    assert "allowed_hosts" == refused.value.field
    assert [] == http_other.log


def test_redirect_to_an_allowed_origin_drops_credentials(
    http_api, http_other, make_config, registry, mode
):
    """Redirected to an allowed host, the call arrives there without any credential."""
    config = make_config(
        headers={"X-Tenant": "acme", "X-Api-Token": "env:HW_TEST_API_KEY"},
        allowed_hosts=[f"{http_other.host}:{http_other.port}"],
    )
    with RestConnector(config, registry=registry) as connector:
        redirected = _get(connector, mode, "/redirect", params={"to": "other"})
        direct = _get(
            connector, mode, http_other.url + "/single", headers={"Authorization": "Bearer x"}
        )
    assert (200, 200) == (redirected.status_code, direct.status_code)
    assert 2 == len(http_other.log)
    assert [[], []] == [seen.credentials() for seen in http_other.log]
    assert all("x-tenant" not in seen.headers for seen in http_other.log)
    (at_home,) = http_api.state.seen("/redirect")
    assert "x-api-key" in at_home.headers


def test_client_post_is_retried_only_when_safe(http_api, make_config, registry, mode):
    """A POST is retried after 503 and with an Idempotency-Key, never after a bare 502."""
    with RestConnector(make_config(), registry=registry) as connector:
        http_api.state.fail("/sink/a", "502")
        bare = _post(connector, mode, "/sink/a", json={"id": 1})
        hits_bare = http_api.state.hits("/sink/a")
        http_api.state.fail("/sink/b", "503")
        unprocessed = _post(connector, mode, "/sink/b", json={"id": 2})
        http_api.state.fail("/sink/c", "502")
        keyed = _post(connector, mode, "/sink/c", json={"id": 3}, headers={"Idempotency-Key": "k"})
    assert (502, 1) == (bare.status_code, hits_bare)
    assert (201, 2) == (unprocessed.status_code, http_api.state.hits("/sink/b"))
    assert (201, 2) == (keyed.status_code, http_api.state.hits("/sink/c"))


def test_breaker_state_is_readable(http_api, make_config, registry):
    """breaker_state() reads closed, then open once the API keeps failing."""
    config = make_config(
        retry={"attempts": 1}, breaker={"failure_threshold": 2, "reset_timeout": 60}
    )
    http_api.state.fail("/single", "503", "503")
    with RestConnector(config, registry=registry) as connector:
        before = connector.breaker_state()
        with connector.client() as client:
            codes = [client.get("/single").status_code for _ in range(2)]
        after = connector.breaker_state()
    assert ("closed", [503, 503], "open") == (before, codes, after)


# --- write ------------------------------------------------------------------------------------


def _sink_config(make_config: Any, name: str = "out", **write: Any) -> dict[str, Any]:
    return make_config(streams={name: {"path": f"/sink/{name}", "write": write}})


def _write(connector: RestConnector, mode: str, stream: str, batches: Any, **options: Any) -> Any:
    if mode == "sync":
        return connector.write(stream, batches, **options)
    return asyncio.run(connector.awrite(stream, batches, **options))


def test_write_per_record(http_api, make_config, registry, mode):
    """One POST per record, the record as the body, in order; all counted as sent."""
    with RestConnector(_sink_config(make_config), registry=registry) as connector:
        result = _write(connector, mode, "out", [RECORDS[:2], RECORDS[2:]])
        back = [row for batch in connector.read("out") for row in batch.rows()]
    assert (5, 0, 5) == (result.records, result.failed, result.requests)
    assert RECORDS == _bodies(http_api, "/sink/out")
    assert RECORDS == back


def test_write_per_batch(http_api, make_config, registry, mode):
    """mode: batch sends batch_size records a request, across the input batches."""
    config = _sink_config(make_config, mode="batch", batch_size=2, batch_field="records")
    with RestConnector(config, registry=registry) as connector:
        result = _write(connector, mode, "out", [RECORDS[:3], RECORDS[3:]])
    assert (5, 3) == (result.records, result.requests)
    bodies = _bodies(http_api, "/sink/out")
    assert [RECORDS[0:2], RECORDS[2:4], RECORDS[4:]] == [body["records"] for body in bodies]
    assert RECORDS == http_api.state.sinks["out"]


def test_write_put_fills_the_path_from_each_record(http_api, make_config, registry):
    """PUT /sink/out/{record.id}: one request per record, at its own path."""
    config = _sink_config(make_config, method="PUT", path="/sink/out/{record.id}")
    with RestConnector(config, registry=registry) as connector:
        result = connector.write("out", [RECORDS[:2]])
    assert 2 == result.records
    assert ["/sink/out/0", "/sink/out/1"] == [seen.path for seen in http_api.log]
    assert ["PUT", "PUT"] == [seen.method for seen in http_api.log]


def test_write_post_without_key_is_not_retried_after_502(http_api, make_config, registry, mode):
    """A bare POST answered 502 may have been processed: not sent again; the failure is named."""
    http_api.state.fail("/sink/out", "ok", "502")
    connector = RestConnector(_sink_config(make_config), registry=registry)
    with connector, pytest.raises(WriteFailed) as failed:
        _write(connector, mode, "out", [RECORDS])
    error = failed.value
    assert 2 == http_api.state.hits("/sink/out")  # record 0, record 1 once; nothing after
    assert "record 1" in str(error)
    assert "502" in str(error)
    assert (1, 1, 1, 502) == (
        error.result.records,
        error.result.failed,
        error.failure.index,
        error.failure.status,
    )
    assert "server" == error.category


def test_write_post_is_retried_after_503(http_api, make_config, registry, mode):
    """A 503 says the body was not processed: the POST goes again and nothing is lost."""
    http_api.state.fail("/sink/out", "ok", "503")
    with RestConnector(_sink_config(make_config), registry=registry) as connector:
        result = _write(connector, mode, "out", [RECORDS])
    assert (5, 0) == (result.records, result.failed)
    assert 6 == http_api.state.hits("/sink/out")
    assert RECORDS == http_api.state.sinks["out"]


def test_write_idempotency_key_is_stable_across_retries(http_api, make_config, registry, mode):
    """A keyed POST stored but answered 502 is retried with the same key: stored once."""
    http_api.state.fail("/sink/out", "after-502")
    config = _sink_config(make_config, idempotency_header="Idempotency-Key")
    with RestConnector(config, registry=registry) as connector:
        result = _write(connector, mode, "out", [RECORDS[:3]])
        again = _write(connector, mode, "out", [RECORDS[:3]])  # a re-run: the same keys
    keys = [seen.headers["idempotency-key"] for seen in http_api.state.seen("/sink/out")]
    assert (3, 3) == (result.records, again.records)
    assert 7 == len(keys)  # 3 + the retry of the first + 3 for the re-run
    assert keys[0] == keys[1]
    assert 3 == len(set(keys))
    assert keys[1:4] == keys[4:]
    assert RECORDS[:3] == http_api.state.sinks["out"]


def test_write_partial_failure_is_counted_and_reported(http_api, make_config, registry, mode):
    """on_error=continue sends the rest; the result counts and names each failure."""
    http_api.state.fail("/sink/out", "ok", "ok", "422")
    with RestConnector(_sink_config(make_config), registry=registry) as connector:
        result = _write(connector, mode, "out", [RECORDS], on_error="continue")
    assert (4, 1, 5) == (result.records, result.failed, result.requests)
    (failure,) = result.failures
    assert (2, 2, 1, 422) == (failure.index, failure.first_record, failure.records, failure.status)
    assert "422" in failure.message
    assert [r for r in RECORDS if r["id"] != 2] == http_api.state.sinks["out"]


def test_write_batch_failure_names_the_request_and_its_records(http_api, make_config, registry):
    """A failed batch names its request index and record range; earlier batches counted."""
    http_api.state.fail("/sink/out", "ok", "400")
    config = _sink_config(make_config, mode="batch", batch_size=2)
    connector = RestConnector(config, registry=registry)
    with connector, pytest.raises(WriteFailed) as failed:
        connector.write("out", [RECORDS])
    assert "request 1 (records 2-3)" in str(failed.value)
    assert "400" in str(failed.value)
    assert (2, 2) == (failed.value.result.records, failed.value.result.failed)


def test_write_needs_write_settings(http_api, make_config, registry):
    """A stream without write settings refuses write, naming the field."""
    config = make_config(streams={"items": {"path": "/single"}})
    connector = RestConnector(config, registry=registry)
    with connector, pytest.raises(ConfigError) as refused:
        connector.write("items", [RECORDS])
    assert "streams.items.write" == refused.value.field
    assert [] == http_api.log


def test_write_settings_are_validated_at_load(make_config, registry):
    """Placeholders in a batch path are refused when the config is loaded."""
    config = _sink_config(make_config, mode="batch", path="/sink/{record.id}")
    with pytest.raises(ConfigError) as refused:
        RestConnector(config, registry=registry)
    assert "streams.out.write" == refused.value.field


# --- retry on a predicate over the response ---------------------------------------------------


def test_retry_on_response_rule_retries_a_status_not_in_statuses(
    http_api, make_config, registry, mode
):
    """A rule on status and body makes a 500 retried, which retry.statuses does not."""
    plain = make_config(retry={"attempts": 3, "initial": 0, "jitter": 0})
    ruled = make_config(
        retry={
            "attempts": 3,
            "initial": 0,
            "jitter": 0,
            "on_response": [{"status": 500, "path": "error", "equals": "status 500"}],
        }
    )
    with RestConnector(plain, registry=registry) as connector:
        assert 500 == _get(connector, mode, "/status/500").status_code
    hits_plain = http_api.state.hits("/status/500")
    with RestConnector(ruled, registry=registry) as connector:
        assert 500 == _get(connector, mode, "/status/500").status_code
    assert (1, 4) == (hits_plain, http_api.state.hits("/status/500"))


def test_retry_on_response_rule_over_a_2xx_body_ends_the_read(
    http_api, make_config, registry, read
):
    """A 200 whose body matches is tried again; still matching, the read ends with an error."""
    config = make_config(
        retry={
            "attempts": 3,
            "initial": 0,
            "jitter": 0,
            "on_response": [{"path": "data", "equals": []}],
        },
        streams={
            "empty": {"path": "/single", "params": {"n": 0}, "records": "data"},
            "full": {"path": "/single", "params": {"n": 2}, "records": "data"},
        },
    )
    empty = read(config, "empty")
    hits_empty = http_api.state.hits("/single")
    full = read(config, "full")
    assert isinstance(empty.error, ServerError)
    assert "retry.on_response" in str(empty.error)
    assert 3 == hits_empty
    assert (None, [1, 2], 4) == (full.error, full.ids, http_api.state.hits("/single"))


def test_retry_if_callable(http_api, make_config, registry, mode):
    """The Python predicate retries the responses it says; the next one is handed over."""
    seen: list[int] = []

    def pending(response: httpx.Response) -> bool:
        seen.append(response.status_code)
        return len(seen) == 1

    config = make_config(
        streams={"items": {"path": "/single", "params": {"n": 2}, "records": "data"}}
    )
    with RestConnector(config, registry=registry, retry_if=pending) as connector:
        if mode == "sync":
            rows = [row for batch in connector.read("items") for row in batch.rows()]
        else:

            async def run() -> list[Any]:
                return [row async for batch in connector.aread("items") for row in batch.rows()]

            rows = asyncio.run(run())
    assert [1, 2] == [row["id"] for row in rows]
    assert ([200, 200], 2) == (seen, http_api.state.hits("/single"))


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"equals": 1}, "retry.on_response.0"),
        ({}, "retry.on_response.0"),
        ({"status": 700}, "retry.on_response.0.status"),
        ({"path": "data[?x]"}, "retry.on_response.0.path"),
        ({"path": "a", "equals": 1, "in": [1]}, "retry.on_response.0"),
        ({"status": 200, "body": "x"}, "retry.on_response.0.body"),
    ],
)
def test_retry_on_response_is_validated_at_load(make_config, registry, rule, field):
    """A malformed rule is a ConfigError naming the field, before any request."""
    with pytest.raises(ConfigError) as refused:
        RestConnector(make_config(retry={"on_response": [rule]}), registry=registry)
    assert field == refused.value.field


def test_stats_counts_the_sync_clients_pool(http_api, make_config, registry):
    """stats(): nothing before first use; after requests, the kept-alive connection is idle."""
    import json as _json

    with RestConnector(make_config(), registry=registry) as connector:
        assert {} == connector.stats()
        for _ in range(3):
            assert 200 == connector.request("GET", "/single", params={"n": 2}).status_code
        stats = connector.stats()
        _json.dumps(stats)  # JSON-ready, for a health endpoint
        assert 1 == stats["sync"]["size"]  # one keep-alive connection served all three
        assert 1 == stats["sync"]["idle"]
        assert 0 == stats["sync"]["in_use"]
        assert connector.config.max_connections == stats["sync"]["max_size"]


def _forked_child(connector: RestConnector, out: Any) -> None:
    """In the forked child: the parent's connector, used again (no client is shared)."""
    try:
        before = connector.stats()
        status = connector.request("GET", "/single", params={"n": 2}).status_code
        out.put((before, status, connector.stats()))
    except BaseException as exc:  # the parent reports it
        out.put(repr(exc))
    finally:
        connector.close()


def test_fork_child_makes_its_own_client(http_api, make_config, registry):
    """
    A connector used before os.fork(): in the child it has no client (stats() is empty)
    until its first call opens one of its own; the parent's client still serves afterwards.
    """
    import multiprocessing

    with RestConnector(make_config(), registry=registry) as connector:
        assert 200 == connector.request("GET", "/single", params={"n": 2}).status_code
        assert 1 == connector.stats()["sync"]["size"]
        context = multiprocessing.get_context("fork")
        out = context.Queue()
        child = context.Process(target=_forked_child, args=(connector, out))
        child.start()
        result = out.get(timeout=60)
        child.join(timeout=60)
        assert not isinstance(result, str), result
        before, status, after = result
        assert {} == before  # the parent's client was not carried into the child
        assert 200 == status
        assert 1 == after["sync"]["size"]
        assert 0 == child.exitcode
        assert 200 == connector.request("GET", "/single", params={"n": 2}).status_code
        assert 1 == connector.stats()["sync"]["size"]
