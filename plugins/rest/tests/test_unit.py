"""Pure logic: pagination flows, Link parsing, selectors, origin policy, config, hooks."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from typing import Any

import pytest

from headwater import ConfigError, Registry, hookimpl
from headwater_rest import PaginationError, RestConfig, RestConnector, hooks
from headwater_rest._config import CursorPagination, OffsetPagination, PageNumberPagination
from headwater_rest._errors import OriginRefused
from headwater_rest._http import Endpoint, RateLimiter, RequestSpec
from headwater_rest._paginate import (
    CursorInBody,
    OffsetLimit,
    Page,
    PageNumber,
    PageRequest,
    PageResponse,
    Position,
    RecordSelector,
    drive,
    page_flow,
    parse_link_header,
    split_path,
)


def run(flow, respond) -> list[Page]:
    """Drive a flow with a scripted ``respond(request) -> body``."""

    def send(request: PageRequest) -> PageResponse:
        return PageResponse("https://api.test/x", {}, respond(request))

    def send_many(requests, concurrency):
        return iter([send(r) for r in requests])

    return list(drive(flow, send, send_many))


def cursor_api(pages: list[tuple[list[int], str | None]]):
    """A fake cursor API: page i has records ``pages[i][0]`` and next cursor ``pages[i][1]``."""
    by_cursor = {None: pages[0]}
    for _records, nxt in pages:
        if nxt is not None and nxt not in by_cursor:
            by_cursor[nxt] = pages[len(by_cursor)]

    def respond(request: PageRequest) -> Any:
        records, nxt = by_cursor[request.params.get("cursor")]
        return {"data": [{"id": i} for i in records], "next": nxt}

    return respond


def ids(pages: list[Page]) -> list[int]:
    return [r["id"] for p in pages for r in p.records]


CURSOR = CursorInBody(CursorPagination(cursor_path="next"))
SELECT = RecordSelector("data")


def test_cursor_flow_follows_cursors_to_the_end():
    """Pages follow the cursor chain and the last page has no successor."""
    pages = run(page_flow(CURSOR, SELECT), cursor_api([([1, 2], "b"), ([3], "c"), ([4], None)]))
    assert [1, 2, 3, 4] == ids(pages)
    assert pages[-1].after is None


def test_cycle_yields_the_page_then_raises():
    """A cursor seen before: the page is delivered, then PaginationError."""
    seen: list[Page] = []
    pages = drive(
        page_flow(CURSOR, SELECT),
        lambda r: PageResponse("u", {}, cursor_api([([1], "b"), ([2], "c"), ([3], "b")])(r)),
        lambda rs, n: iter([]),
    )
    with pytest.raises(PaginationError):
        seen.extend(pages)
    assert [1, 2, 3] == ids(seen)


def test_repeated_cursor_is_a_clean_stop():
    """A page whose next cursor is its own is the last page."""
    pages = run(page_flow(CURSOR, SELECT), cursor_api([([1], "b"), ([2], "b")]))
    assert [1, 2] == ids(pages)


def test_empty_page_ends_the_stream_whatever_the_cursor_says():
    """An empty page stops even with a fresh cursor."""
    pages = run(page_flow(CURSOR, SELECT), cursor_api([([1], "b"), ([], "c"), ([9], None)]))
    assert [1] == ids(pages)


def test_max_records_cuts_mid_page_with_an_exact_position():
    """The cut page's ``after`` points at the first record not delivered."""
    pages = run(
        page_flow(CURSOR, SELECT, max_records=3), cursor_api([([1, 2], "b"), ([3, 4], None)])
    )
    assert [1, 2, 3] == ids(pages)
    assert Position({"cursor": "b"}, 1) == pages[-1].after
    assert pages[-1].limited


def test_resume_skips_within_a_page():
    """A position with ``skip`` re-requests the page and drops the records already read."""
    position = Position({"cursor": "b"}, 1)
    pages = run(page_flow(CURSOR, SELECT, position), cursor_api([([1, 2], "b"), ([3, 4, 5], None)]))
    assert [4, 5] == ids(pages)


def test_offset_plan_covers_the_remaining_pages_in_order():
    """With a total, the remaining offsets are fanned out and answered in order."""
    strategy = OffsetLimit(OffsetPagination(limit=2, total_path="total", concurrency=3))
    fanned: list[list[int]] = []

    def send(request: PageRequest) -> PageResponse:
        off = request.params["offset"]
        body = {"items": [{"id": i} for i in range(off, min(off + 2, 7))], "total": 7}
        return PageResponse("u", {}, body)

    def send_many(requests, concurrency):
        fanned.append([r.params["offset"] for r in requests])
        return iter([send(r) for r in requests])

    pages = list(drive(page_flow(strategy, RecordSelector("items")), send, send_many))
    assert [0, 1, 2, 3, 4, 5, 6] == ids(pages)
    assert [[2, 4, 6]] == fanned


def test_page_number_stops_at_the_page_count():
    """``total_pages`` bounds page-number pagination."""
    strategy = PageNumber(PageNumberPagination(total_pages_path="pages"))
    requested: list[int] = []

    def respond(request: PageRequest) -> Any:
        requested.append(request.params["page"])
        return {"data": [{"id": request.params["page"]}], "pages": 3}

    assert [1, 2, 3] == ids(run(page_flow(strategy, SELECT), respond))
    assert [1, 2, 3] == requested


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            '<https://a/x?page=2>; rel="next", <https://a/x?page=9>; rel="last"',
            {"next": "https://a/x?page=2", "last": "https://a/x?page=9"},
        ),
        ("<https://a/x?p=2>; rel=next", {"next": "https://a/x?p=2"}),
        ('<u1>; title="a, b"; rel="prev next"', {"prev": "u1", "next": "u1"}),
        ('<https://a/x?q=1,2>; REL="Next"', {"next": "https://a/x?q=1,2"}),
        ("", {}),
        ("not a link", {}),
    ],
)
def test_link_header_parsing(header, expected):
    """RFC 8288 Link headers: quoted/bare rels, several rels, commas inside."""
    assert expected == parse_link_header(header)


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        (None, []),
        ("data", ["data"]),
        ("$.data.items[*]", ["data", "items"]),
        ("a[0].b", ["a", "0", "b"]),
    ],
)
def test_split_path(path, parts):
    """Dotted paths and simple JSONPaths name the same place."""
    assert parts == split_path(path)


def test_selector_wraps_scalars_and_accepts_a_bare_list():
    """A list body needs no path; scalar items become {"value": ...}."""
    assert [{"a": 1}, {"value": 2}] == RecordSelector(None)([{"a": 1}, 2])
    assert [] == RecordSelector("data")({"data": None})


def test_endpoint_origin_policy():
    """Same origin keeps credentials; another scheme/port is refused unless allowed."""
    config = RestConfig(
        base_url="https://api.test/v1", allowed_hosts=["cdn.test", "http://other.test:8080"]
    )
    endpoint = Endpoint(config)
    assert endpoint.build(RequestSpec(url="https://api.test:443/v1/x?p=2")).credentials
    assert not endpoint.build(RequestSpec(url="https://cdn.test/x")).credentials
    assert not endpoint.build(RequestSpec(url="http://other.test:8080/x")).credentials
    for url in (
        "http://api.test/v1/x",
        "https://api.test:8443/x",
        "https://evil.test/x",
        "https://other.test:8080/x",
    ):
        with pytest.raises(OriginRefused):
            endpoint.build(RequestSpec(url=url))


def test_rate_limiter_spaces_reservations():
    """Each reservation waits one interval longer than the one before."""
    limiter = RateLimiter(10.0)
    delays = [limiter.reserve() for _ in range(3)]
    assert delays[0] < delays[1] < delays[2]
    assert 10.0 == pytest.approx(delays[2] - delays[1], abs=0.5)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"base_url": "ftp://x"}, "base_url"),
        ({"base_url": "https://u:p@x"}, "base_url"),
        ({"base_url": "https://x", "streams": {"a": {"path": "https://x/y"}}}, "streams.a.path"),
        (
            {"base_url": "https://x", "streams": {"a": {"path": "/a", "parent": {"stream": "b"}}}},
            None,
        ),
        ({"base_url": "https://x", "verify": False}, None),
        (
            {
                "base_url": "https://x",
                "streams": {"a": {"path": "/a", "pagination": {"type": "page", "total_path": "t"}}},
            },
            "streams.a.pagination.page",
        ),
        ({"base_url": "https://x", "bogus": 1}, "bogus"),
    ],
    ids=[
        "scheme",
        "userinfo",
        "absolute-path",
        "missing-parent",
        "insecure",
        "total-without-size",
        "typo",
    ],
)
def test_invalid_configs_are_one_line_config_errors(config, field):
    """Bad configs fail at construction with the field named."""
    with pytest.raises(ConfigError) as info:
        RestConnector(config)
    assert field == info.value.field
    assert "\n" not in info.value.message


def test_parent_cycle_is_refused():
    """Parent streams that form a cycle are refused."""
    streams = {
        "a": {"path": "/a", "parent": {"stream": "b"}},
        "b": {"path": "/b", "parent": {"stream": "a"}},
    }
    with pytest.raises(ConfigError, match="cycle"):
        RestConnector({"base_url": "https://x", "streams": streams})


def test_json_schema_documents_every_field():
    """The config's JSON Schema has a description on every top-level field."""
    schema = RestConfig.model_json_schema()
    missing = [name for name, prop in schema["properties"].items() if "description" not in prop]
    assert [] == missing
    json.dumps(schema)


def test_from_yaml_reports_bad_yaml_and_bad_shapes(tmp_path):
    """Unreadable files, invalid YAML and non-mappings are ConfigErrors."""
    with pytest.raises(ConfigError, match="cannot read"):
        RestConfig.from_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="invalid YAML"):
        RestConfig.from_yaml("base_url: [\n")
    with pytest.raises(ConfigError, match="mapping"):
        RestConfig.from_yaml("- a\n- b\n")


def test_from_url_builds_a_one_stream_connector():
    """A URL plus ``records`` is a complete config; the registry routes https:// to rest."""
    registry = Registry(autoload=False, plugins=[hooks])
    connector = registry.connect("https://api.test/v1/items?status=open", {"records": "data.items"})
    assert isinstance(connector, RestConnector)
    stream = connector.config.streams["v1/items"]
    assert ("/v1/items", {"status": "open"}, "data.items") == (
        stream.path,
        stream.params,
        stream.records,
    )
    assert [("v1/items", "stream")] == [(i.name, i.kind) for i in connector.list()]


@pytest.mark.parametrize(
    ("url", "claimed"),
    [("https://a/b", "rest"), ("HTTP://a", "rest"), ("postgresql://x", None), ("file:///x", None)],
)
def test_connector_for_url(url, claimed):
    """http(s) URLs are claimed; nothing else is."""
    assert claimed == hooks.connector_for_url(url)


def test_entry_point_and_cheap_import():
    """The distribution registers its hooks; importing them loads neither httpx nor the connector."""
    names = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="headwater")}
    assert "headwater_rest.hooks" == names.get("rest")
    code = (
        "import sys, headwater_rest.hooks as h; h.register_connectors(); h.register_auth_schemes();"
        "print(sorted(m for m in ('httpx', 'headwater_rest._connector', 'yaml') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "[]" == out.stdout.strip()


def test_metadata_describes_the_stream():
    """metadata() reports path, pagination and primary key."""
    connector = RestConnector(
        {
            "base_url": "https://x",
            "streams": {"a": {"path": "/a", "primary_key": "id", "pagination": {"type": "link"}}},
        }
    )
    meta = connector.metadata("a")
    assert ("/a", ["id"], "link") == (meta["path"], meta["primary_key"], meta["pagination"]["type"])


class _ZeroBasedPages:
    """A third-party plugin adding a pagination style through the REST plugin's own hook."""

    @hookimpl
    def register_pagination_styles(self):
        from headwater_rest.pagination import PageRequest, Strategy

        class ZeroBased(Strategy):
            def __init__(self, settings):
                self.size = settings["size"]

            def first(self):
                return {"p": 0}

            def request(self, token):
                return PageRequest(params={"page": token["p"] + 1, "per_page": self.size})

            def next_token(self, token, response, records):
                return {"p": token["p"] + 1} if len(records) == self.size else None

        return {"zero_based": ZeroBased}


def test_pagination_style_from_another_plugin(http_api, monkeypatch):
    """A style registered through ``register_pagination_styles`` reads like a built-in one."""
    from tests.fix_http import API_KEY

    monkeypatch.setenv("HW_TEST_API_KEY", API_KEY)
    registry = Registry(autoload=False, plugins=[hooks, _ZeroBasedPages()])
    config = {
        "base_url": http_api.url,
        "auth": {"type": "api_key", "key": "env:HW_TEST_API_KEY"},
        "streams": {
            "s": {
                "path": "/pages",
                "params": {"n": 23},
                "records": "results",
                "pagination": {"type": "zero_based", "size": 5},
            }
        },
    }
    with RestConnector(config, registry=registry) as connector:
        batches = list(connector.read("s"))
        resumed = list(connector.read("s", batches[1].state))
    assert list(range(1, 24)) == [r["id"] for b in batches for r in b.rows()]
    assert list(range(11, 24)) == [r["id"] for b in resumed for r in b.rows()]
    with pytest.raises(ConfigError, match="zero_based"):
        list(
            RestConnector(
                {**config, "streams": {"s": {"path": "/p", "pagination": {"type": "nope"}}}},
                registry=registry,
            ).read("s")
        )


@pytest.mark.parametrize(
    ("name", "credential"),
    [
        ("Authorization", True),
        ("X-API-Key", True),
        ("api_key", True),
        ("apikey", True),
        ("key", True),
        ("access_key", True),
        ("X-Auth-Token", True),
        ("access_token", True),
        ("Cookie", True),
        ("client_secret", True),
        ("sig", True),
        ("Accept", False),
        ("sort_key", False),
        ("partition_key", False),
        ("lang", False),
        ("limit", False),
    ],
)
def test_credential_names(name, credential):
    """Which header / parameter names carry credentials (their values become secrets)."""
    from headwater_rest._config import is_credential_name

    assert credential == is_credential_name(name)
