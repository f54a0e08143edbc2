"""What reaches the wire: the User-Agent, requests in flight, the rate limit's spacing, proxies."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

import headwater_rest
from tests.fix_http import oauth_auth

USER_AGENT = f"headwater-rest/{headwater_rest.__version__}"
CURSOR = {
    "path": "/cursor",
    "params": {"n": 47, "limit": 10},
    "records": "data",
    "pagination": {"type": "cursor", "cursor_path": "meta.next_cursor"},
}
NEXT_OTHER = {
    "path": "/next-url",
    "params": {"n": 47, "other": 1},
    "records": "data",
    "pagination": {"type": "next_url", "next_url_path": "links.next"},
}
#: The variables httpx (through urllib) reads proxies from; each test starts without them.
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")


def offset_stream(n: int, *, limit: int, concurrency: int, delay: float) -> dict[str, Any]:
    """Offset pages with a known total, each answered after ``delay`` seconds."""
    return {
        "path": "/offset",
        "params": {"n": n, "total": 1, "delay": delay},
        "records": "items",
        "pagination": {
            "type": "offset",
            "limit": limit,
            "total_path": "total",
            "concurrency": concurrency,
        },
    }


@pytest.fixture
def no_proxy_env(monkeypatch):
    """No proxy variable of the environment the tests run in leaks into a test."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_every_request_carries_the_user_agent(read, make_config, http_api):
    """The token request and every page (sequential and concurrent) send headwater-rest/<v>."""
    config = make_config(
        auth=oauth_auth(http_api),
        streams={"s": CURSOR, "c": offset_stream(20, limit=5, concurrency=3, delay=0)},
    )
    assert list(range(1, 48)) == read(config, "s").ids
    assert list(range(1, 21)) == read(config, "c").ids
    assert {"/oauth/token", "/cursor", "/offset"} == {seen.path for seen in http_api.log}
    assert 2 <= http_api.state.hits("/oauth/token")  # one per connector
    assert [USER_AGENT] * len(http_api.log) == [seen.headers["user-agent"] for seen in http_api.log]


def test_user_agent_goes_to_an_allowed_other_host(read, make_config, http_other):
    """A link to an allowed host gets no configured header, but still the User-Agent."""
    config = make_config(
        streams={"s": NEXT_OTHER}, allowed_hosts=[f"{http_other.host}:{http_other.port}"]
    )
    assert list(range(1, 48)) == read(config, "s").ids
    assert 4 == len(http_other.log)
    assert [USER_AGENT] * 4 == [seen.headers["user-agent"] for seen in http_other.log]


def test_concurrent_pages_never_exceed_the_concurrency(read, make_config, http_api):
    """With a known total and concurrency 3, the server has 3 requests in flight, never more."""
    config = make_config(streams={"s": offset_stream(30, limit=5, concurrency=3, delay=0.2)})
    outcome = read(config, "s")
    assert list(range(1, 31)) == outcome.ids
    assert 6 == http_api.state.hits("/offset")
    # Each request takes 0.2 s, so the five planned pages overlap as much as they may.
    assert 3 == http_api.state.max_in_flight


def test_rate_limit_is_shared_by_concurrent_requests(read, make_config, http_api):
    """Concurrency 4 at 4 requests/s: the server sees request starts at least 0.25 s apart."""
    # The server runs in a thread of this process, so it notes an arrival when it gets
    # the GIL: on a loaded machine a note came 0.1 s late (two starts 0.2 ms apart at
    # 10 requests/s). Gaps of 0.25 s with 0.1 s of tolerance leave room for that.
    interval, tolerance = 0.25, 0.1
    config = make_config(
        streams={"s": offset_stream(30, limit=5, concurrency=4, delay=0.6)},
        rate_limit={"requests_per_second": 1 / interval},
    )
    outcome = read(config, "s")
    assert list(range(1, 31)) == outcome.ids
    starts = [seen.at for seen in http_api.state.seen("/offset")]
    assert 6 == len(starts)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert [] == [gap for gap in gaps if gap < interval - tolerance]
    # The limit spaced requests that really were concurrent (each took 0.6 s).
    assert 2 <= http_api.state.max_in_flight


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
def test_requests_go_through_the_proxy_of_the_environment(
    read, make_config, http_api, http_proxy, no_proxy_env, variable
):
    """With HTTP_PROXY set, the token request and every page go through that proxy."""
    no_proxy_env.setenv(variable, http_proxy.url)
    outcome = read(make_config(auth=oauth_auth(http_api), streams={"s": CURSOR}), "s")
    assert outcome.error is None
    assert list(range(1, 48)) == outcome.ids
    # The proxy got absolute-form requests for the API and the API got exactly those.
    proxied = [seen.path for seen in http_proxy.log]
    assert [http_api.url + seen.path for seen in http_api.log] == [
        target.partition("?")[0] for target in proxied
    ]
    assert ["/oauth/token"] + ["/cursor"] * 5 == [seen.path for seen in http_api.log]


def test_no_proxy_bypasses_the_proxy(read, make_config, http_api, http_proxy, no_proxy_env):
    """A host listed in NO_PROXY is reached directly, although HTTP_PROXY is set."""
    no_proxy_env.setenv("HTTP_PROXY", http_proxy.url)
    no_proxy_env.setenv("NO_PROXY", f"example.invalid,{http_api.host}")
    outcome = read(make_config(auth=oauth_auth(http_api), streams={"s": CURSOR}), "s")
    assert list(range(1, 48)) == outcome.ids
    assert 6 == len(http_api.log)
    assert [] == http_proxy.log
