"""
The shared retry settings and circuit breaker on Azure Blob Storage: a transient failure
is retried by the SDK with headwater's back-off (config ``retry``), and an endpoint that
keeps failing opens the breaker of the account's blob endpoint (config ``breaker``).

The service is the real Azurite behind a loopback HTTP proxy that answers 503 to the
requests it is told to fail and passes every other request through.
"""

from __future__ import annotations

import http.client
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from headwater import Category, CircuitOpen, ConfigError, NotFound, ServerError
from headwater.toolkit import RetryPolicy, RetrySettings
from headwater_azure_blob import AzureBlobConnector

#: Headers that belong to one connection, not to the request or response they travel with.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "upgrade"})


class FailingProxy:
    """
    A loopback HTTP proxy in front of Azurite: the first ``failures`` requests get a 503
    (``None``: every request), the others go through unchanged. It counts both.
    """

    def __init__(self, upstream: int, failures: int | None) -> None:
        self.upstream = upstream
        self.failures_left = failures
        self.failed = 0
        self.passed = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: pytest shows stderr of failing tests

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.take_failure():
                    self.send_response(503, "Service Unavailable")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status, reason, headers, data = proxy.forward(
                    self.command, self.path, self.headers.items(), body
                )
                head = self.command == "HEAD"  # its Content-Length is the blob's: kept
                self.send_response(status, reason)
                for name, value in headers:
                    length = name.lower() == "content-length"
                    if name.lower() not in _HOP_BY_HOP and (head or not length):
                        self.send_header(name, value)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def take_failure(self) -> bool:
        with self._lock:
            if self.failures_left is not None:
                if self.failures_left <= 0:
                    self.passed += 1
                    return False
                self.failures_left -= 1
            self.failed += 1
            return True

    def forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=30)
        try:
            sent = {k: v for k, v in headers if k.lower() not in _HOP_BY_HOP}
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            data = response.read()
            return response.status, response.reason, response.getheaders(), data
        finally:
            connection.close()

    @property
    def requests(self) -> int:
        with self._lock:
            return self.failed + self.passed

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def failing_proxy(azurite: Any) -> Iterator[Callable[[int | None], FailingProxy]]:
    """Make proxies in front of the session's Azurite (``None``: fail every request)."""
    made: list[FailingProxy] = []

    def make(failures: int | None) -> FailingProxy:
        proxy = FailingProxy(azurite.port, failures)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


def _via(proxy: FailingProxy, azurite: Any) -> str:
    return f"http://127.0.0.1:{proxy.port}/{azurite.account_name}"


async def test_transient_failures_are_retried(make_twin, azurite, container, failing_proxy):
    """Two 503s in a row are retried by the SDK policy; the read, fetch and list succeed."""
    container.upload_blob("rows.jsonl", b'{"id": 1}\n{"id": 2}\n')
    proxy = failing_proxy(2)
    twin = make_twin(
        account_url=_via(proxy, azurite),
        retry={"attempts": 3, "initial": 0.05, "jitter": 0},
        breaker={"failure_threshold": 1},  # one failed call would open it: none may fail
    )
    started = time.monotonic()
    batches = await twin.read("rows.jsonl")
    assert [{"id": 1}, {"id": 2}] == [row for batch in batches for row in batch.rows()]
    assert 2 == proxy.failed
    assert time.monotonic() - started >= 0.05 + 0.1  # RetryPolicy's waits: 0.05 s, 0.1 s
    proxy.failures_left = 2
    assert ["rows.jsonl"] == [item.name for item in await twin.list()]
    assert 4 == proxy.failed
    breaker = twin.connector.config.breaker.breaker(_via(proxy, azurite))
    assert ("closed", 0) == (breaker.state, breaker.failures)


async def test_too_many_transient_failures_fail_the_call(
    make_twin, azurite, container, failing_proxy
):
    """More 503s than retry.attempts allows: one typed, retryable server error."""
    proxy = failing_proxy(3)
    twin = make_twin(
        account_url=_via(proxy, azurite), retry={"attempts": 3, "initial": 0.01, "jitter": 0}
    )
    with pytest.raises(ServerError) as info:
        await twin.metadata("missing.bin")
    assert (3, 0) == (proxy.failed, proxy.passed)
    assert info.value.retryable
    assert "503" in info.value.message


async def test_dead_endpoint_opens_the_breaker(make_twin, azurite, container, failing_proxy):
    """
    After failure_threshold calls that failed all their tries the breaker opens: the
    next call fails at once, naming the endpoint, and never reaches the proxy.
    """
    proxy = failing_proxy(None)
    endpoint = _via(proxy, azurite)
    twin = make_twin(
        account_url=endpoint,
        retry={"attempts": 2, "initial": 0.01, "jitter": 0},
        breaker={"failure_threshold": 2, "reset_timeout": 60},
    )
    for _ in range(2):
        with pytest.raises(ServerError):
            await twin.metadata("any.bin")
    assert 4 == proxy.requests  # two calls, two tries each
    started = time.monotonic()
    with pytest.raises(CircuitOpen) as info:
        await twin.read("any.jsonl")
    assert time.monotonic() - started < 0.5
    assert 4 == proxy.requests
    assert endpoint in info.value.message
    assert Category.NETWORK == info.value.category
    result = await twin.check()  # check() reports it, never raises
    assert (False, Category.NETWORK) == (result.ok, result.category)
    assert endpoint in result.message
    assert 4 == proxy.requests


async def test_breaker_is_shared_per_endpoint(make_twin, azurite, container, failing_proxy):
    """A second connector on the same endpoint finds the breaker open; another endpoint not."""
    proxy = failing_proxy(None)
    options = {
        "account_url": _via(proxy, azurite),
        "retry": {"attempts": 1},
        "breaker": {"failure_threshold": 1, "reset_timeout": 60},
    }
    with pytest.raises(ServerError):
        await make_twin(**options).metadata("a.bin")
    with pytest.raises(CircuitOpen):
        await make_twin(**options).metadata("a.bin")
    assert 1 == proxy.requests
    container.upload_blob("direct.txt", b"ok")
    assert 2 == (await make_twin().metadata("direct.txt"))["size"]  # Azurite itself: closed


async def test_not_found_does_not_count(make_twin, azurite, container, failing_proxy):
    """A 404 is an answer: it never opens the breaker, however many come in a row."""
    proxy = failing_proxy(0)
    twin = make_twin(account_url=_via(proxy, azurite), breaker={"failure_threshold": 1})
    for _ in range(3):
        with pytest.raises(NotFound):
            await twin.metadata("nothing-here.bin")
    assert (await twin.check()).ok
    assert (0, 4) == (proxy.failed, proxy.passed)


# --- the SDK policy and RetryPolicy: one formula ---------------------------------------


def _sdk_policies(policy: RetryPolicy) -> list[Any]:
    from headwater_azure_blob._sdk_retry import AsyncHeadwaterRetry, HeadwaterRetry

    return [HeadwaterRetry(policy), AsyncHeadwaterRetry(policy)]


def _request() -> Any:
    from azure.core.pipeline import PipelineContext, PipelineRequest
    from azure.core.rest import HttpRequest

    return PipelineRequest(HttpRequest("GET", "http://127.0.0.1/x"), PipelineContext(None))


def _waits(sdk: Any, now: list[float] | None = None) -> list[float]:
    """
    The waits the SDK policy chooses for one request failing until it gives up; each
    wait moves the fake clock ``now`` (the policy's) on, as sleeping would.
    """
    from azure.core.exceptions import ServiceRequestError

    request = _request()
    settings = sdk.configure_retries(request)
    waits = []
    while sdk.increment(settings, request.http_request, error=ServiceRequestError("refused")):
        waits.append(sdk.get_backoff_time(settings))
        if now is not None:
            now[0] += waits[-1]
    return waits


def test_sdk_backoff_is_retry_policy_backoff():
    """Sync and aio SDK policies wait RetryPolicy.backoff(n) before retry n, attempts - 1 times."""
    settings = RetrySettings(attempts=7, initial=0.25, maximum=3.0, jitter=0, timeout=600)
    policy = settings.policy()
    expected = [policy.backoff(n) for n in range(1, 7)]
    assert [0.25, 0.5, 1.0, 2.0, 3.0, 3.0] == expected
    for sdk in _sdk_policies(policy):
        assert expected == _waits(sdk)


def test_sdk_backoff_jitter_stays_within_retry_policy_bounds():
    """With jitter, each wait lies in RetryPolicy's bounds: the capped back-off plus jitter."""
    policy = RetrySettings(attempts=5, initial=0.1, maximum=0.3, jitter=0.05).policy()
    for sdk in _sdk_policies(policy):
        waits = _waits(sdk)
        assert 4 == len(waits)
        for n, wait in enumerate(waits, start=1):
            base = min(0.1 * 2 ** (n - 1), 0.3)
            assert base <= wait <= base + 0.05


def test_sdk_policy_keeps_to_the_retry_budget():
    """No wait may end past retry.timeout: the SDK policy stops as RetryPolicy would."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    def refused() -> None:
        calls.append(now[0])
        raise ConnectionRefusedError("refused")

    policy = RetryPolicy(
        attempts=10, initial=0.4, jitter=0, timeout=1.0, clock=lambda: now[0], sleep=sleep
    )
    calls: list[float] = []
    with pytest.raises(ConnectionRefusedError):
        policy.call(refused)
    assert [0.0, 0.4] == calls  # core: a retry after 0.4 s; 0.8 s more would end past 1 s
    for sdk in _sdk_policies(policy):
        now[0] = 0.0
        assert [0.4] == _waits(sdk, now)


async def test_clients_carry_the_derived_policy():
    """Both service clients are built with the named policy classes, from config ``retry``."""
    from headwater_azure_blob._clients import build_async_service, build_sync_service
    from headwater_azure_blob._sdk_retry import AsyncHeadwaterRetry, HeadwaterRetry
    from tests.fix_azurite import ACCOUNT_KEY

    connector = AzureBlobConnector(
        {
            "account_url": "http://127.0.0.1:9/devstoreaccount1",
            "account_key": ACCOUNT_KEY,
            "container": "data",
            "retry": {"attempts": 6, "initial": 0.2},
        }
    )
    sync = build_sync_service(connector.config, connector.secret)
    aio, _ = build_async_service(connector.config, connector.secret)
    for client, kind in ((sync, HeadwaterRetry), (aio, AsyncHeadwaterRetry)):
        retry = client._config.retry_policy
        assert (kind, 5) == (type(retry), retry.total_retries)
        assert (6, 0.2) == (retry.policy.attempts, retry.policy.initial)
    sync.close()
    await aio.close()


# --- the fields of earlier releases -----------------------------------------------------

_BASE = {"account_url": "http://127.0.0.1:9/devstoreaccount1", "container": "data"}


def _old_config(**fields: Any) -> AzureBlobConnector:
    from tests.fix_azurite import ACCOUNT_KEY

    return AzureBlobConnector({**_BASE, "account_key": ACCOUNT_KEY, **fields})


def test_deprecated_retry_fields_are_mapped_with_a_warning():
    """retries=N / retry_backoff=S still work, as retry.attempts=N+1 / retry.initial=S."""
    with pytest.warns(DeprecationWarning, match="is deprecated; use 'retry") as caught:
        connector = _old_config(retries=2, retry_backoff="0.1")
    messages = sorted(str(w.message) for w in caught)
    assert 2 == len(messages)
    assert "'retries' is deprecated; use 'retry.attempts'" in messages[0]
    assert "'retry_backoff' is deprecated; use 'retry.initial'" in messages[1]
    assert (3, 0.1) == (connector.config.retry.attempts, connector.config.retry.initial)
    dumped = connector.config.sanitized()
    assert ("retries" in dumped, 3) == (False, dumped["retry"]["attempts"])
    with pytest.warns(DeprecationWarning, match="'retry.attempts'"):
        kept = _old_config(retries=0, retry={"maximum": 2.0})
    assert (1, 2.0) == (kept.config.retry.attempts, kept.config.retry.maximum)


def test_deprecated_retry_fields_refused_when_wrong_or_doubled():
    """A setting given in both forms, or a bad old value: ConfigError naming the old field."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fields, why in (
            ({"retries": 2, "retry": {"attempts": 3}}, "given twice"),
            ({"retries": -1}, ">= 0"),
            ({"retry_backoff": "soon"}, ">= 0"),
        ):
            with pytest.raises(ConfigError) as info:
                _old_config(**fields)
            field = next(iter(name for name in fields if name != "retry"))
            assert (field, True) == (info.value.field, why in info.value.message)


def test_retry_and_breaker_settings_are_validated():
    """Bad values are errors naming the nested field."""
    for fields, field in (
        ({"retry": {"attempts": 0}}, "retry.attempts"),
        ({"breaker": {"failure_threshold": 0}}, "breaker.failure_threshold"),
        ({"breaker": {"x": 1}}, "breaker"),
    ):
        with pytest.raises(ConfigError) as info:
            _old_config(**fields)
        assert field in str(info.value)


def test_a_body_cut_mid_transfer_is_an_answer():
    """
    A body cut after the response began (which fetch resumes) shows the endpoint alive:
    it never opens the breaker; a refused connection does.
    """
    from azure.core.exceptions import HttpResponseError, IncompleteReadError, ServiceRequestError

    connector = _old_config(breaker={"failure_threshold": 1})
    breaker = connector.config.breaker.breaker(connector._endpoint)
    cut = HttpResponseError(message="cut", error=IncompleteReadError("short body"))
    with pytest.raises(HttpResponseError), connector._guarded():
        raise cut
    assert "closed" == breaker.state
    with pytest.raises(ServiceRequestError), connector._guarded():
        raise ServiceRequestError("refused")
    assert "open" == breaker.state
    with pytest.raises(CircuitOpen), connector._guarded():
        raise AssertionError("an open breaker admits nothing")
