"""The loopback `FaultServer` of headwater.testing: pages, OAuth2 tokens and every fault."""

from __future__ import annotations

import base64
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from headwater.testing import FaultServer


def get(url: str, token: str | None = None) -> tuple[int, dict[str, str], Any]:
    """GET ``url``: (status, headers, decoded JSON body), HTTP errors included."""
    request = urllib.request.Request(url)  # noqa: S310 - loopback http only
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def post_form(
    url: str, form: dict[str, str], headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """POST a form; (status, decoded JSON body)."""
    data = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback http only
        url, data=data, headers=headers or {}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def token_for(server: FaultServer) -> str:
    status, body = post_form(
        server.token_url,
        {
            "grant_type": "client_credentials",
            "client_id": server.client_id,
            "client_secret": server.client_secret,
        },
    )
    assert 200 == status
    return str(body["access_token"])


def test_pages_follow_next_links_to_every_record(fault_server: FaultServer) -> None:
    """Following `next` from /items visits 3 pages of 10 and yields the 25 records in order."""
    url: str | None = fault_server.items_url
    records, pages = [], 0
    while url:
        status, headers, body = get(url)
        assert 200 == status
        if body["next"]:
            assert f'<{body["next"]}>; rel="next"' == headers["Link"]
        else:
            assert "Link" not in headers
        records.extend(body["items"])
        pages += 1
        url = body["next"]
    assert 3 == pages
    assert list(range(1, 26)) == [r["id"] for r in records]


def test_page_size_parameter_and_single_items(fault_server: FaultServer) -> None:
    """?page_size= sets the page length (kept in next links); /items/<id> returns one record."""
    _status, _headers, body = get(f"{fault_server.items_url}?page=2&page_size=7")
    assert [8, 9, 10, 11, 12, 13, 14] == [r["id"] for r in body["items"]]
    assert body["next"].endswith("?page=3&page_size=7")
    assert (200, "item-4") == (
        get(f"{fault_server.items_url}/4")[0],
        get(f"{fault_server.items_url}/4")[2]["name"],
    )
    assert 404 == get(f"{fault_server.items_url}/999")[0]
    assert 400 == get(f"{fault_server.items_url}?page=0")[0]


def test_self_linking_last_page(fault_server: FaultServer) -> None:
    """With self_linking_last_page, the last page's next link is the page itself."""
    fault_server.self_linking_last_page = True
    last = f"{fault_server.items_url}?page=3"
    _status, headers, body = get(last)
    assert last == body["next"]
    assert f'<{last}>; rel="next"' == headers["Link"]


def test_rate_limit_answers_429_with_retry_after_then_recovers(fault_server: FaultServer) -> None:
    """rate_limit(times=2) gives two 429s carrying Retry-After, then normal answers."""
    fault_server.rate_limit(times=2, retry_after=3)
    first, second, third = (get(fault_server.items_url) for _ in range(3))
    assert [429, 429, 200] == [first[0], second[0], third[0]]
    assert "3" == first[1]["Retry-After"]
    assert ["fault 429", "fault 429", "ok"] == [r.outcome for r in fault_server.requests]


def test_rate_limit_with_an_http_date(fault_server: FaultServer) -> None:
    """Retry-After may be an HTTP date; it is sent as given."""
    when = "Wed, 21 Oct 2037 07:28:00 GMT"
    fault_server.rate_limit(retry_after=when)
    assert when == get(fault_server.items_url)[1]["Retry-After"]


def test_server_error_burst(fault_server: FaultServer) -> None:
    """server_errors(times=3, status=502) fails three requests, then the API answers."""
    fault_server.server_errors(times=3, status=502)
    statuses = [get(fault_server.items_url)[0] for _ in range(4)]
    assert [502, 502, 502, 200] == statuses


def test_faults_can_target_one_path(fault_server: FaultServer) -> None:
    """A fault with path= only hits requests under that path."""
    fault_server.fail_next(500, path="/items/")
    assert 200 == get(fault_server.items_url)[0]
    assert 500 == get(f"{fault_server.items_url}/1")[0]
    assert 200 == get(f"{fault_server.items_url}/1")[0]


def test_dropped_connection_then_recovery(fault_server: FaultServer) -> None:
    """drop_connections closes the socket without an answer; the next request works."""
    fault_server.drop_connections(times=1)
    connection = http.client.HTTPConnection("127.0.0.1", fault_server.port, timeout=10)
    connection.request("GET", "/items")
    with pytest.raises(http.client.RemoteDisconnected):
        connection.getresponse()
    connection.close()
    assert 200 == get(fault_server.items_url)[0]
    assert ["dropped", "ok"] == [r.outcome for r in fault_server.requests]


def test_oauth_tokens_expire_and_are_refetched() -> None:
    """With require_auth: 401 without a token, 200 with one, 401 after expiry, 200 when refetched."""
    with FaultServer(require_auth=True) as server:
        status, headers, _ = get(server.items_url)
        assert 401 == status
        assert 'Bearer error="invalid_token"' == headers["WWW-Authenticate"]
        token = token_for(server)
        assert 200 == get(server.items_url, token)[0]
        server.expire_tokens()
        assert 401 == get(server.items_url, token)[0]
        fresh = token_for(server)
        assert fresh != token
        assert 200 == get(server.items_url, fresh)[0]
        assert 200 == get(server.items_url, server.issue_token())[0]
        assert 3 == server.tokens_issued


def test_token_endpoint_checks_client_credentials() -> None:
    """Wrong client secrets get invalid_client; HTTP Basic client authentication works."""
    with FaultServer(require_auth=True, client_secret="s3cret-value") as server:
        status, body = post_form(
            server.token_url,
            {
                "grant_type": "client_credentials",
                "client_id": server.client_id,
                "client_secret": "nope",
            },
        )
        assert (401, "invalid_client") == (status, body["error"])
        basic = base64.b64encode(f"{server.client_id}:s3cret-value".encode()).decode()
        status, body = post_form(
            server.token_url,
            {"grant_type": "client_credentials"},
            {"Authorization": f"Basic {basic}"},
        )
        assert 200 == status
        assert ("Bearer", 3600) == (body["token_type"], body["expires_in"])
        assert 400 == post_form(server.token_url, {"grant_type": "password"})[0]


def test_requests_are_recorded_and_reset(fault_server: FaultServer) -> None:
    """Each request is recorded with method, path, query and headers; reset() clears all."""
    get(f"{fault_server.items_url}?page=2")
    [request] = fault_server.requests
    assert ("GET", "/items", {"page": ["2"]}) == (request.method, request.path, request.query)
    assert "127.0.0.1" in request.headers["Host"]
    fault_server.rate_limit(times=5)
    fault_server.reset()
    assert [] == fault_server.requests
    assert 200 == get(fault_server.items_url)[0]


def test_retry_policy_rides_out_the_faults(fault_server: FaultServer) -> None:
    """headwater's RetryPolicy, fed Retry-After through parse_retry_after, gets past 429 and 503."""
    from headwater._status import error_for_status, parse_retry_after
    from headwater.toolkit import RetryPolicy

    fault_server.rate_limit(times=1, retry_after=0).server_errors(times=2, status=503)
    waits: list[float] = []

    def fetch() -> Any:
        status, headers, body = get(fault_server.items_url)
        if status >= 400:
            raise error_for_status(
                status, f"HTTP {status}", retry_after=parse_retry_after(headers.get("Retry-After"))
            )
        return body

    policy = RetryPolicy(attempts=5, initial=0.0, jitter=0.0, sleep=waits.append)
    body = policy.call(fetch)
    assert 10 == len(body["items"])
    assert 4 == len(fault_server.requests)
    assert 3 == len(waits)


def test_start_and_stop_are_idempotent() -> None:
    """start() twice keeps one server; stop() twice is harmless; url needs a started server."""
    server = FaultServer()
    with pytest.raises(RuntimeError):
        _ = server.url
    server.start()
    port = server.port
    assert port == server.start().port
    server.stop()
    server.stop()
    with pytest.raises(RuntimeError):
        _ = server.url
