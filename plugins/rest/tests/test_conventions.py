"""
The conventions of real APIs, against a loopback server that behaves as their documentation
says: rate-limit headers (GitHub's 403, the IETF draft's 429, a window shared by
concurrent readers), cursors in POST bodies (Notion, GraphQL), Stripe's
``starting_after``, and the pages that say "more" without a way to it.

The rate-limited server holds its limit until the announced reset and refuses (and
counts) every request before it, so a client that retries early shows up as more than
one limited response.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from headwater import RateLimited, Registry
from headwater_rest import RestConnector
from headwater_rest._errors import PaginationError

RECORDS = [{"id": f"r{i:03d}", "n": i} for i in range(1, 26)]
PAGE = 5


class Outcome:
    def __init__(self) -> None:
        self.batches: list[Any] = []
        self.error: Any = None

    @property
    def ids(self) -> list[Any]:
        return [row["id"] for batch in self.batches for row in batch.rows()]

    @property
    def states(self) -> list[Any]:
        return [batch.state for batch in self.batches]


class Limit:
    """A fixed-window limit: ``per_window`` requests, windows of ``window`` seconds."""

    def __init__(self, style: str, per_window: int, window: float, *, exhausted: bool) -> None:
        self.style = style
        self.per_window = per_window
        self.window = window
        self.lock = threading.Lock()
        # The first window starts exhausted: the first request is refused, once.
        self.reset_at = time.time() + window if exhausted else time.time()
        self.remaining = 0
        self.index = 0
        self.counts: dict[int, int] = {}
        self.limited = 0

    def admit(self) -> tuple[bool, dict[str, str]]:
        with self.lock:
            now = time.time()
            if now >= self.reset_at:
                self.index += 1
                self.remaining = self.per_window
                self.reset_at = now + self.window
            self.counts[self.index] = self.counts.get(self.index, 0) + 1
            ok = self.remaining > 0
            if ok:
                self.remaining -= 1
            else:
                self.limited += 1
            if self.style == "github":
                headers = {
                    "X-RateLimit-Limit": str(self.per_window),
                    "X-RateLimit-Remaining": str(self.remaining),
                    "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
                }
            else:  # the IETF draft: delta seconds, no Retry-After
                headers = {
                    "RateLimit-Policy": f"{self.per_window};w={self.window:g}",
                    "RateLimit-Remaining": str(self.remaining),
                    "RateLimit-Reset": str(math.ceil(self.reset_at - now)),
                }
            return ok, headers


class Api:
    """What the handler serves; tests set ``limit`` and read the request log."""

    def __init__(self) -> None:
        self.limit: Limit | None = None
        self.requests: list[tuple[str, str, Any]] = []
        self.lock = threading.Lock()
        self.url = ""

    def hits(self, path: str) -> int:
        return sum(1 for _, p, _ in self.requests if p == path)


def _page_from(after: str | None) -> tuple[list[dict[str, Any]], bool]:
    start = 0
    if after:
        start = next(i for i, r in enumerate(RECORDS) if r["id"] == after) + 1
    rows = RECORDS[start : start + PAGE]
    return rows, start + PAGE < len(RECORDS)


class Handler(BaseHTTPRequestHandler):
    api: Api

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._handle(None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._handle(json.loads(self.rfile.read(length) or b"null"))

    def _handle(self, body: Any) -> None:
        api = self.api
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with api.lock:
            api.requests.append((self.command, parts.path, body if body is not None else query))
        headers: dict[str, str] = {}
        if api.limit is not None:
            ok, headers = api.limit.admit()
            if not ok:
                if api.limit.style == "github":
                    message = "API rate limit exceeded for 127.0.0.1."
                    self._send(403, {"message": message}, headers)
                else:
                    self._send(429, {"error": "rate limited"}, headers)
                return
        path = parts.path
        if path == "/v1/customers":  # Stripe: starting_after, has_more, data
            rows, more = _page_from(query.get("starting_after"))
            self._send(200, {"object": "list", "data": rows, "has_more": more}, headers)
        elif path == "/v1/databases/db/query":  # Notion: start_cursor in the POST body
            rows, more = _page_from((body or {}).get("start_cursor"))
            nxt = rows[-1]["id"] if more else None
            self._send(
                200,
                {"object": "list", "results": rows, "next_cursor": nxt, "has_more": more},
                headers,
            )
        elif path == "/graphql":  # GitHub GraphQL: variables.after, pageInfo
            variables = (body or {}).get("variables") or {}
            rows, more = _page_from(variables.get("after"))
            connection = {
                "nodes": rows,
                "pageInfo": {"endCursor": rows[-1]["id"] if rows else None, "hasNextPage": more},
            }
            self._send(200, {"data": {"repository": {"issues": connection}}}, headers)
        elif path == "/lying":  # has_more true on an empty page before the end
            rows, more = _page_from(query.get("starting_after"))
            if query.get("starting_after") == "r010":
                rows, more = [], True
            self._send(200, {"data": rows, "has_more": more}, headers)
        elif path == "/offset":  # offset/limit with a total (windows of the limit above)
            offset = int(query.get("offset", 0))
            limit = int(query.get("limit", PAGE))
            total = int(query.get("claimed_total", len(RECORDS)))
            self._send(200, {"data": RECORDS[offset : offset + limit], "total": total}, headers)
        elif path == "/_search":  # Elasticsearch-style from/size in the POST body
            start = int((body or {}).get("from", 0))
            size = int((body or {}).get("size", PAGE))
            hits = {"total": {"value": len(RECORDS)}, "hits": RECORDS[start : start + size]}
            self._send(200, {"hits": hits}, headers)
        else:
            self._send(404, {"message": "not found"})


@pytest.fixture
def api() -> Iterator[Api]:
    state = Api()
    handler = type("BoundHandler", (Handler,), {"api": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def registry() -> Registry:
    from headwater_rest import hooks

    return Registry(autoload=False, plugins=[hooks])


#: Small jitter: reset windows are 1-2 s here.
RETRY = {"attempts": 4, "initial": 0.05, "maximum": 0.5, "jitter": 0.05, "timeout": 30}


def config(api: Api, stream: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {"base_url": api.url, "retry": RETRY, "streams": {"s": stream}, **overrides}


STRIPE = {
    "path": "/v1/customers",
    "params": {"limit": PAGE},
    "records": "data",
    "pagination": {
        "type": "cursor",
        "cursor_path": "data.-1.id",
        "cursor_param": "starting_after",
        "has_more_path": "has_more",
    },
}
NOTION = {
    "path": "/v1/databases/db/query",
    "method": "POST",
    "json": {"page_size": PAGE, "filter": {"property": "Done", "checkbox": {"equals": False}}},
    "records": "results",
    "pagination": {
        "type": "cursor",
        "inject": "body",
        "cursor_path": "next_cursor",
        "cursor_param": "start_cursor",
        "has_more_path": "has_more",
    },
}
GRAPHQL = {
    "path": "/graphql",
    "method": "POST",
    "json": {
        "query": 'query($after: String) { repository(owner: "o", name: "r") '
        "{ issues(first: 5, after: $after) { nodes { id } pageInfo { endCursor hasNextPage } } } }",
        "variables": {"after": None},
    },
    "records": "$.data.repository.issues.nodes[*]",
    "pagination": {
        "type": "cursor",
        "inject": "body",
        "cursor_path": "$.data.repository.issues.pageInfo.endCursor",
        "cursor_param": "variables.after",
        "has_more_path": "data.repository.issues.pageInfo.hasNextPage",
    },
}


#: One page of all 25 records: 8 readers make 8 requests.
OFFSET = {
    "path": "/offset",
    "records": "data",
    "pagination": {"type": "offset", "limit": 25, "total_path": "total"},
}


def run(mode: str, registry: Registry, cfg: dict[str, Any], state: Any = None) -> Outcome:
    if mode == "sync":
        outcome = Outcome()
        with RestConnector(cfg, registry=registry) as connector:
            try:
                outcome.batches.extend(connector.read("s", state))
            except Exception as exc:
                outcome.error = exc
        return outcome

    async def go() -> Outcome:
        outcome = Outcome()
        async with RestConnector(cfg, registry=registry) as connector:
            try:
                async for batch in connector.aread("s", state):
                    outcome.batches.append(batch)
            except Exception as exc:
                outcome.error = exc
        return outcome

    return asyncio.run(go())


IDS = [r["id"] for r in RECORDS]


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- pagination conventions ---------------------------------------------------------------------


def test_stripe_starting_after_from_the_last_record(api, registry, mode):
    outcome = run(mode, registry, config(api, STRIPE))
    assert outcome.error is None
    assert IDS == outcome.ids


def test_notion_cursor_goes_in_the_post_body(api, registry, mode):
    """start_cursor is sent in the JSON body, next to the stream's own body fields."""
    outcome = run(mode, registry, config(api, NOTION))
    assert outcome.error is None
    assert IDS == outcome.ids
    bodies = [body for _, _, body in api.requests]
    assert 5 == len(bodies)
    assert "start_cursor" not in bodies[0]
    assert [b.get("start_cursor") for b in bodies[1:]] == ["r005", "r010", "r015", "r020"]
    assert all(b["filter"]["checkbox"] == {"equals": False} for b in bodies)


def test_graphql_connection_by_configuration_only(api, registry, mode):
    outcome = run(mode, registry, config(api, GRAPHQL))
    assert outcome.error is None
    assert IDS == outcome.ids
    afters = [body["variables"]["after"] for _, _, body in api.requests]
    assert afters == [None, "r005", "r010", "r015", "r020"]
    assert all("query" in body for _, _, body in api.requests)


def test_cursor_in_a_header(api, registry, mode):
    """inject: header sends the pagination parameter as a request header."""
    stream = {**STRIPE, "pagination": {**STRIPE["pagination"], "inject": "header"}}
    seen: list[str | None] = []
    original = Handler._handle

    def spy(self: Handler, body: Any) -> None:
        seen.append(self.headers.get("starting_after"))
        original(self, body)

    Handler._handle = spy  # type: ignore[method-assign]
    try:
        # The server reads the query only, so it repeats page one: the repeat guard stops it.
        outcome = run(mode, registry, config(api, stream))
    finally:
        Handler._handle = original  # type: ignore[method-assign]
    assert seen[:2] == [None, "r005"]
    assert isinstance(outcome.error, PaginationError)


@pytest.mark.parametrize(
    ("field", "path"),
    [
        ("cursor_path", "$.data[-1:].id"),
        ("cursor_path", "$..id"),
        ("has_more_path", "$.meta[?(@.more)]"),
        ("cursor_path", "data[*].id"),
    ],
)
def test_paths_outside_the_language_are_refused_at_load(api, registry, field, path):
    from headwater import ConfigError

    stream = {**STRIPE, "pagination": {**STRIPE["pagination"], field: path}}
    with pytest.raises(ConfigError) as caught:
        RestConnector(config(api, stream), registry=registry)
    assert caught.value.field == f"streams.s.pagination.cursor.{field}"
    assert "not supported" in str(caught.value)


def test_records_path_outside_the_language_is_refused_at_load(api, registry):
    from headwater import ConfigError

    with pytest.raises(ConfigError) as caught:
        RestConnector(config(api, {**STRIPE, "records": "$.data[0:2]"}), registry=registry)
    assert caught.value.field == "streams.s.records"


def test_negative_index_in_jsonpath_form_works(api, registry, mode):
    stream = {**STRIPE, "pagination": {**STRIPE["pagination"], "cursor_path": "$.data[-1].id"}}
    outcome = run(mode, registry, config(api, stream))
    assert outcome.error is None
    assert IDS == outcome.ids


def test_body_inject_needs_post(api, registry):
    from headwater import ConfigError

    with pytest.raises(ConfigError, match="POST"):
        RestConnector(config(api, {**NOTION, "method": "GET"}), registry=registry)


# --- no silent early end --------------------------------------------------------------------------


def test_has_more_without_a_cursor_is_an_error_after_the_records(api, registry, mode):
    """An empty page saying has_more: the 10 records before it arrive, then PaginationError."""
    stream = {**STRIPE, "path": "/lying"}
    outcome = run(mode, registry, config(api, stream))
    assert isinstance(outcome.error, PaginationError)
    assert "r010" in str(outcome.error)  # names the page
    assert IDS[:10] == outcome.ids
    last = outcome.states[-1]
    assert last["done"] is False
    # Resuming starts again at the page that broke, not after it.
    assert last["position"]["token"] == {"cursor": "r010"}


def test_cursor_path_that_finds_nothing_while_has_more_is_an_error(api, registry, mode):
    """A cursor path naming a missing field: has_more is true, so no exit 0 with 5 of 25."""
    stream = {**STRIPE, "pagination": {**STRIPE["pagination"], "cursor_path": "data.-1.uuid"}}
    outcome = run(mode, registry, config(api, stream))
    assert isinstance(outcome.error, PaginationError)
    assert "cursor_path" in f"{outcome.error} {outcome.error.field}"
    assert IDS[:5] == outcome.ids


def test_a_total_beyond_the_records_is_an_error_not_an_end(api, registry, mode):
    """An empty page where total_path says 5 more remain: PaginationError, exit != 0."""
    stream = {
        "path": "/offset",
        "params": {"claimed_total": 30},
        "records": "data",
        "pagination": {"type": "offset", "limit": 5, "total_path": "total"},
    }
    outcome = run(mode, registry, config(api, stream))
    assert isinstance(outcome.error, PaginationError)
    assert '"offset": 25' in str(outcome.error)
    assert IDS == outcome.ids
    assert outcome.states[-1]["done"] is False


def test_offset_in_the_post_body(api, registry, mode):
    """inject: body works for every style: Elasticsearch's from/size."""
    stream = {
        "path": "/_search",
        "method": "POST",
        "json": {"query": {"match_all": {}}},
        "records": "hits.hits",
        "pagination": {
            "type": "offset",
            "inject": "body",
            "offset_param": "from",
            "limit_param": "size",
            "limit": 10,
            "total_path": "hits.total.value",
        },
    }
    outcome = run(mode, registry, config(api, stream))
    assert outcome.error is None
    assert IDS == outcome.ids
    assert [(b["from"], b["size"]) for _, _, b in api.requests] == [(0, 10), (10, 10), (20, 10)]


# --- rate limits -------------------------------------------------------------------------------


def test_github_primary_limit_403_is_waited_out(api, registry, mode):
    """403 with X-RateLimit-Remaining: 0 is a limit to wait for, not PermissionDenied."""
    api.limit = Limit("github", per_window=3, window=1.0, exhausted=True)
    outcome = run(mode, registry, config(api, STRIPE))
    assert outcome.error is None
    assert IDS == outcome.ids
    # One refusal (the exhausted first window); then the client paused whenever a
    # response said 0 remain, so no second refusal.
    assert 1 == api.limit.limited
    assert all(count <= 3 for index, count in api.limit.counts.items() if index > 0)


def test_ietf_429_without_retry_after_waits_for_the_reset(api, registry, mode):
    api.limit = Limit("ietf", per_window=2, window=1.0, exhausted=True)
    outcome = run(mode, registry, config(api, NOTION))
    assert outcome.error is None
    assert IDS == outcome.ids
    assert 1 == api.limit.limited


def test_a_reset_beyond_the_maximum_wait_ends_with_rate_limited(api, registry, mode):
    api.limit = Limit("github", per_window=3, window=60.0, exhausted=True)
    retry = {**RETRY, "max_rate_limit_wait": 5}
    outcome = run(mode, registry, config(api, STRIPE, retry=retry))
    assert isinstance(outcome.error, RateLimited)
    text = str(outcome.error)
    assert "UTC" in text
    assert "resumes" in text
    assert 1 == api.limit.limited  # not retried into


def test_retried_statuses_are_configurable(api, registry):
    """A 500 is not retried by default; retry.statuses can make it so."""
    calls = {"n": 0}
    original = Handler._handle

    def flaky(self: Handler, body: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            self._send(500, {"message": "try again"})
            return
        original(self, body)

    Handler._handle = flaky  # type: ignore[method-assign]
    try:
        refused = run("sync", registry, config(api, STRIPE))
        calls["n"] = 0
        retry = {**RETRY, "statuses": [429, 500, 502, 503, 504]}
        allowed = run("sync", registry, config(api, STRIPE, retry=retry))
    finally:
        Handler._handle = original  # type: ignore[method-assign]
    assert refused.error is not None
    assert [] == refused.ids
    assert allowed.error is None
    assert IDS == allowed.ids


def test_eight_concurrent_readers_share_one_budget(api, registry):
    """8 threads reading through one connector: the API never sees more than N per window."""
    api.limit = Limit("github", per_window=3, window=1.0, exhausted=False)
    streams = {f"s{i}": OFFSET for i in range(8)}
    cfg = {"base_url": api.url, "retry": RETRY, "streams": streams}
    results: dict[str, list[Any]] = {}
    errors: list[BaseException] = []
    with RestConnector(cfg, registry=registry) as connector:

        def reader(name: str) -> None:
            try:
                results[name] = [r["id"] for b in connector.read(name) for r in b.rows()]
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=reader, args=(f"s{i}",)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert [] == errors
    assert all(IDS == ids for ids in results.values())
    assert 8 == len(results)
    assert 0 == api.limit.limited
    assert max(api.limit.counts.values()) <= 3


def test_eight_concurrent_async_readers_share_one_budget(api, registry):
    api.limit = Limit("ietf", per_window=3, window=1.0, exhausted=False)
    streams = {f"s{i}": OFFSET for i in range(8)}
    cfg = {"base_url": api.url, "retry": RETRY, "streams": streams}

    async def go() -> dict[str, list[Any]]:
        async with RestConnector(cfg, registry=registry) as connector:

            async def reader(name: str) -> list[Any]:
                return [r["id"] async for b in connector.aread(name) for r in b.rows()]

            names = [f"s{i}" for i in range(8)]
            found = await asyncio.gather(*(reader(n) for n in names))
            return dict(zip(names, found, strict=True))

    results = asyncio.run(go())
    assert all(IDS == ids for ids in results.values())
    assert 8 == len(results)
    assert 0 == api.limit.limited
    assert max(api.limit.counts.values()) <= 3


def test_graphql_example_reads_every_issue(api, registry, mode, monkeypatch):
    """examples/graphql.yaml, against a server answering as GitHub's GraphQL API does."""
    from pathlib import Path

    from headwater_rest import RestConfig

    monkeypatch.setenv("EXAMPLE_TOKEN", "example-token-for-the-loopback-api")
    text = (Path(__file__).parent.parent / "examples" / "graphql.yaml").read_text()
    cfg = RestConfig.from_yaml(text.replace("https://api.example.com", api.url))
    stream = cfg.streams["issues"]
    outcome = run(mode, registry, {**cfg.model_dump(by_alias=True), "streams": {"s": stream}})
    assert outcome.error is None
    assert IDS == outcome.ids
    afters = [body["variables"]["after"] for _, _, body in api.requests]
    assert afters == [None, "r005", "r010", "r015", "r020"]
    assert all(body["variables"]["owner"] == "octocat" for _, _, body in api.requests)


def test_concurrent_pages_of_one_stream_share_the_budget(api, registry, mode):
    """Offset pages fetched 8 at a time stay within the announced limit too."""
    api.limit = Limit("ietf", per_window=3, window=1.0, exhausted=False)
    stream = {
        "path": "/offset",
        "records": "data",
        "pagination": {"type": "offset", "limit": 5, "total_path": "total", "concurrency": 8},
    }
    outcome = run(mode, registry, config(api, stream))
    assert outcome.error is None
    assert IDS == outcome.ids
    assert 0 == api.limit.limited
    assert max(api.limit.counts.values()) <= 3


def test_a_403_with_requests_remaining_is_still_permission_denied(api, registry):
    """Only a 403 that announces an exhausted limit is a limit; others stay permission errors."""
    from headwater import PermissionDenied

    original = Handler._handle

    def forbidden(self: Handler, body: Any) -> None:
        with api.lock:
            api.requests.append((self.command, "/forbidden", None))
        headers = {"X-RateLimit-Remaining": "4999", "X-RateLimit-Reset": "1900000000"}
        self._send(403, {"message": "Resource not accessible by integration"}, headers)

    Handler._handle = forbidden  # type: ignore[method-assign]
    try:
        outcome = run("sync", registry, config(api, STRIPE))
    finally:
        Handler._handle = original  # type: ignore[method-assign]
    assert isinstance(outcome.error, PermissionDenied)
    assert 1 == len(api.requests)  # not retried
