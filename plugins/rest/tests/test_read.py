"""Reading every pagination style from the loopback API, sync and async, faults included."""

from __future__ import annotations

import json
from typing import Any

import pytest

from headwater import ConfigError, ConnectorError
from headwater_rest import PaginationError

N = 47

#: style → stream config reading N records (ids 1..N) from the test API.
STYLES: dict[str, dict[str, Any]] = {
    "cursor+has_more": {
        "path": "/cursor",
        "params": {"n": N, "limit": 10},
        "records": "data",
        "pagination": {
            "type": "cursor",
            "cursor_path": "meta.next_cursor",
            "has_more_path": "has_more",
        },
    },
    "cursor": {
        "path": "/cursor",
        "params": {"n": N, "limit": 10},
        "records": "$.data[*]",
        "pagination": {"type": "cursor", "cursor_path": "meta.next_cursor"},
    },
    "header_cursor": {
        "path": "/header-cursor",
        "params": {"n": N, "limit": 10},
        "pagination": {"type": "header_cursor", "header": "X-Next-Cursor"},
    },
    "offset+total": {
        "path": "/offset",
        "params": {"n": N, "total": 1},
        "records": "items",
        "pagination": {"type": "offset", "limit": 10, "total_path": "total"},
    },
    "offset": {
        "path": "/offset",
        "params": {"n": N},
        "records": "items",
        "pagination": {"type": "offset", "limit": 10},
    },
    "offset+concurrent": {
        "path": "/offset",
        "params": {"n": N, "total": 1},
        "records": "items",
        "pagination": {"type": "offset", "limit": 5, "total_path": "total", "concurrency": 4},
    },
    "page+counts": {
        "path": "/pages",
        "params": {"n": N, "counts": 1},
        "records": "results",
        "pagination": {
            "type": "page",
            "size": 10,
            "size_param": "per_page",
            "total_pages_path": "total_pages",
        },
    },
    "page": {
        "path": "/pages",
        "params": {"n": N},
        "records": "results",
        "pagination": {"type": "page", "size": 10, "size_param": "per_page"},
    },
    "page+concurrent": {
        "path": "/pages",
        "params": {"n": N, "counts": 1},
        "records": "results",
        "pagination": {
            "type": "page",
            "size": 4,
            "size_param": "per_page",
            "total_pages_path": "total_pages",
            "concurrency": 3,
        },
    },
    "next_url": {
        "path": "/next-url",
        "params": {"n": N},
        "records": "data",
        "pagination": {"type": "next_url", "next_url_path": "links.next"},
    },
    "next_url+absolute": {
        "path": "/next-url",
        "params": {"n": N, "abs": 1},
        "records": "data",
        "pagination": {"type": "next_url", "next_url_path": "links.next"},
    },
    "link": {"path": "/link", "params": {"n": N}, "pagination": {"type": "link"}},
}


def stream(style: str, **changes: Any) -> dict[str, Any]:
    config = {**STYLES[style], **changes}
    config["params"] = {**STYLES[style]["params"], **changes.get("params", {})}
    return config


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_style_delivers_every_record_once_in_order(read, make_config, style):
    """Each pagination style yields ids 1..N exactly once, in order."""
    outcome = read(make_config(streams={"s": stream(style)}), "s")
    assert outcome.error is None
    assert list(range(1, N + 1)) == outcome.ids
    assert outcome.states[-1]["done"] is True


def test_no_pagination_is_one_request(read, make_config, http_api):
    """``type: none`` makes one request."""
    config = make_config(streams={"s": {"path": "/single", "params": {"n": 4}, "records": "data"}})
    outcome = read(config, "s")
    assert [1, 2, 3, 4] == outcome.ids
    assert 1 == http_api.state.hits("/single")


@pytest.mark.parametrize(
    "style", ["cursor+has_more", "offset+concurrent", "page+concurrent", "link"]
)
def test_faults_are_retried_and_records_stay_exact(read, make_config, http_api, style):
    """429s, 5xxs and a dropped connection are retried; every record arrives once, in order."""
    path = STYLES[style]["path"]
    # Fewer in a row than the breaker's threshold (5), so only the retry policy acts.
    http_api.state.fail(path, "429", "503", "drop", "ok", "502", "504", "ok", "ok", "drop")
    outcome = read(make_config(streams={"s": stream(style)}), "s")
    assert outcome.error is None
    assert list(range(1, N + 1)) == outcome.ids


def test_retry_after_is_honoured_on_429(read, make_config, http_api):
    """A 429 with ``Retry-After: 1`` is retried no sooner than 1 s later, and the read completes."""
    http_api.state.retry_after = "1"
    http_api.state.fail("/cursor", "429")
    outcome = read(make_config(streams={"s": stream("cursor")}), "s")
    assert outcome.error is None
    assert list(range(1, N + 1)) == outcome.ids
    refused, retried = http_api.state.seen("/cursor")[:2]
    assert refused.query == retried.query
    # FAST_RETRY's own backoff is at most 0.01 s: only Retry-After explains a 1 s gap
    # (a little under it allowed for the event loop's timer resolution).
    assert retried.at - refused.at >= 0.98


@pytest.mark.parametrize("style", ["cursor+has_more", "offset+concurrent"])
def test_burst_of_429s_mid_stream_loses_and_repeats_nothing(read, make_config, http_api, style):
    """Four 429s in a row after two good pages: every record once, in order, each retried."""
    path = STYLES[style]["path"]
    http_api.state.fail(path, "ok", "ok", "429", "429", "429", "429")
    outcome = read(make_config(streams={"s": stream(style)}), "s")
    assert outcome.error is None
    assert list(range(1, N + 1)) == outcome.ids
    pages = 5 if style == "cursor+has_more" else 10
    assert pages + 4 == http_api.state.hits(path)


def test_slow_response_past_read_timeout_is_retried(read, make_config, http_api):
    """A response slower than the read timeout is abandoned and the request retried."""
    http_api.state.slow_delay = 1.0
    http_api.state.fail("/offset", "slow")
    config = make_config(
        streams={"s": stream("offset+total")},
        timeouts={"connect": 2, "read": 0.25, "write": 2, "pool": 2},
    )
    outcome = read(config, "s")
    assert outcome.error is None
    assert list(range(1, N + 1)) == outcome.ids
    assert 6 == http_api.state.hits("/offset")  # 5 pages and the abandoned one


def test_persistent_server_errors_end_with_one_clear_error(read, make_config, http_api):
    """When every attempt fails, the read ends with the last error, naming the request."""
    http_api.state.fail("/cursor", *["503"] * 10)
    config = make_config(streams={"s": stream("cursor")}, retry={**_fast(), "attempts": 3})
    outcome = read(config, "s")
    assert "ServerError" == type(outcome.error).__name__
    assert "GET /cursor returned 503" in str(outcome.error)
    assert 3 == http_api.state.hits("/cursor")


def test_other_4xx_are_not_retried(read, make_config, http_api):
    """A 400 fails at once."""
    config = make_config(streams={"s": {"path": "/status/400"}})
    outcome = read(config, "s")
    assert isinstance(outcome.error, ConnectorError)
    assert 1 == http_api.state.hits("/status/400")


def _fast() -> dict[str, Any]:
    return {"attempts": 6, "initial": 0.0, "maximum": 0.01, "jitter": 0.0, "timeout": 30}


@pytest.mark.parametrize(
    "style", ["cursor+has_more", "header_cursor", "offset+concurrent", "page", "next_url", "link"]
)
def test_resuming_from_any_batch_yields_exactly_the_rest(read, make_config, style):
    """The state of batch i resumes with exactly the records after batch i (pages split in 3s)."""
    config = make_config(streams={"s": stream(style)})
    full = read(config, "s", batch_size=3)
    assert list(range(1, N + 1)) == full.ids
    seen = 0
    for batch in full.batches:
        seen += len(batch)
        rest = read(config, "s", batch.state, batch_size=3)
        assert rest.error is None
        assert list(range(seen + 1, N + 1)) == rest.ids


def test_done_state_resumes_to_nothing(read, make_config):
    """A finished (non-incremental) stream's final state yields no more records."""
    config = make_config(streams={"s": stream("cursor")})
    full = read(config, "s")
    assert [] == read(config, "s", full.states[-1]).ids


@pytest.mark.parametrize("style", ["cursor", "offset+concurrent", "link"])
def test_max_records_stops_and_state_continues(read, make_config, style):
    """``max_records`` ends the run mid-page; its state resumes with the next record."""
    config = make_config(streams={"s": stream(style)})
    first = read(config, "s", max_records=13)
    assert list(range(1, 14)) == first.ids
    assert first.states[-1]["done"] is False
    rest = read(config, "s", first.states[-1])
    assert list(range(14, N + 1)) == rest.ids


def test_max_pages_from_config(read, make_config, http_api):
    """The stream's ``max_pages`` bounds the requests of one run."""
    config = make_config(streams={"s": stream("page", max_pages=2)})
    outcome = read(config, "s")
    assert list(range(1, 21)) == outcome.ids
    assert 2 == http_api.state.hits("/pages")


@pytest.mark.parametrize("style", ["cursor", "next_url"])
def test_cycling_cursor_is_an_error_without_repeating_records(read, make_config, style):
    """A cursor / next URL seen before ends the read with PaginationError; nothing repeats."""
    outcome = read(make_config(streams={"s": stream(style, params={"mode": "cycle"})}), "s")
    assert isinstance(outcome.error, PaginationError)
    assert "cycle" in str(outcome.error)
    assert list(range(1, 31)) == outcome.ids


@pytest.mark.parametrize(
    ("style", "misspelt"),
    [
        ("offset", {"offset_param": "skip"}),
        ("page", {"page_param": "p"}),
        ("cursor", {"cursor_param": "after"}),
        ("header_cursor", {"cursor_param": "after"}),
    ],
)
def test_api_ignoring_the_pagination_parameter_is_an_error(
    read, make_config, http_api, style, misspelt
):
    """Every position answered with the first page (no total to stop at): an error, not a loop."""
    pagination = {**STYLES[style]["pagination"], **misspelt}
    outcome = read(make_config(streams={"s": stream(style, pagination=pagination)}), "s")
    assert isinstance(outcome.error, PaginationError)
    assert "same 10 records" in str(outcome.error)
    assert next(iter(misspelt)) in (outcome.error.hint or "")
    # The first page once, the repeat seen and not delivered, nothing fetched after it.
    assert list(range(1, 11)) == outcome.ids
    assert 2 == http_api.state.hits(STYLES[style]["path"])


@pytest.mark.parametrize("style", ["cursor+has_more", "next_url", "link"])
def test_last_page_linking_to_itself_ends_cleanly(read, make_config, http_api, style):
    """A last page pointing at itself is treated as the last page."""
    outcome = read(make_config(streams={"s": stream(style, params={"mode": "self"})}), "s")
    assert outcome.error is None
    assert list(range(1, N + 1)) == outcome.ids
    assert 5 == http_api.state.hits(STYLES[style]["path"])


def test_has_more_lie_without_cursor_fails_after_the_page(read, make_config, http_api):
    """
    ``has_more: true`` with no cursor is a PaginationError naming both, after the page's
    records; the last state resumes past them, so nothing is delivered twice.
    """
    outcome = read(
        make_config(streams={"s": stream("cursor+has_more", params={"mode": "lie"})}), "s"
    )
    assert list(range(1, N + 1)) == outcome.ids
    assert 5 == http_api.state.hits("/cursor")
    assert isinstance(outcome.error, PaginationError)
    assert "has_more is true" in str(outcome.error)
    assert "no cursor at meta.next_cursor" in str(outcome.error)
    last = outcome.states[-1]
    assert {"token": {"cursor": "c40"}, "skip": N - 40} == last["position"]
    assert last["done"] is False


def test_has_more_lie_with_endless_cursors_stops_at_the_empty_page(read, make_config, http_api):
    """An API that keeps saying "more" with fresh cursors stops at its first empty page."""
    config = make_config(streams={"s": stream("cursor+has_more", params={"mode": "lie_empty"})})
    outcome = read(config, "s")
    assert list(range(1, N + 1)) == outcome.ids
    assert 6 == http_api.state.hits("/cursor")
    assert outcome.states[-1]["done"] is True


def test_concurrent_offset_uses_known_total(read, make_config, http_api):
    """With a total, offset pages are fetched concurrently and every page once."""
    outcome = read(make_config(streams={"s": stream("offset+concurrent")}), "s")
    assert list(range(1, N + 1)) == outcome.ids
    assert 10 == http_api.state.hits("/offset")


def test_concurrent_offset_with_a_capping_server_is_an_error(read, make_config):
    """A server returning fewer records than planned cannot silently lose records."""
    config = make_config(streams={"s": stream("offset+concurrent", params={"cap": 3})})
    outcome = read(config, "s")
    # The first page is short, so nothing is planned: the sequential path advances by
    # what arrived and every record still comes through.
    assert outcome.error is None
    assert list(range(1, N + 1)) == outcome.ids


def test_incremental_run_asks_only_for_newer_records(read, make_config, http_api):
    """A finished incremental run's state makes the next run send ``since`` = highest seen."""
    inc = {"field": "updated", "param": "since", "initial": 0}
    config = make_config(streams={"s": stream("cursor", params={"n": 20}, incremental=inc)})
    first = read(config, "s")
    assert list(range(1, 21)) == first.ids
    assert 20 == first.states[-1]["max"]
    grown = make_config(streams={"s": stream("cursor", params={"n": 26}, incremental=inc)})
    second = read(grown, "s", first.states[-1])
    assert [21, 22, 23, 24, 25, 26] == second.ids
    assert "20" == http_api.log[-1].query["since"]


def test_child_stream_reads_each_parent_record(read, make_config):
    """``/orgs/{org.id}/repos`` is read once per org, with parent fields copied in."""
    config = make_config(
        streams={
            "orgs": {"path": "/orgs"},
            "repos": {
                "path": "/orgs/{org.id}/repos",
                "parent": {"stream": "orgs", "alias": "org", "fields": {"org": "id"}},
                "pagination": {"type": "page", "size": 5, "size_param": "per_page"},
            },
        }
    )
    outcome = read(config, "repos", batch_size=2)
    names = [f"acme-repo-{i}" for i in range(1, 6)] + [f"initech-repo-{i}" for i in range(1, 13)]
    assert names == outcome.ids
    assert {"acme", "initech"} == {r["org"] for r in outcome.records}
    seen = 0
    for batch in outcome.batches:
        seen += len(batch)
        assert names[seen:] == read(config, "repos", batch.state, batch_size=2).ids


def test_missing_records_path_is_a_config_error(read, make_config):
    """A records path absent from the response names what the response has."""
    config = make_config(streams={"s": {"path": "/single", "records": "itemz"}})
    outcome = read(config, "s")
    assert isinstance(outcome.error, ConfigError)
    assert "itemz" in str(outcome.error)
    assert "data" in str(outcome.error)


def test_non_json_response_is_a_clear_error(read, make_config):
    """An HTML page instead of JSON says so."""
    outcome = read(make_config(streams={"s": {"path": "/html"}}), "s")
    assert "not JSON" in str(outcome.error)


def test_post_with_json_body(read, make_config, http_api):
    """``method: POST`` with ``json`` sends exactly that body as JSON, on a retry too."""
    body = {"q": 1, "filter": {"ids": [1, 2], "name": "café"}, "all": True, "none": None}
    http_api.state.fail("/single", "503")
    config = make_config(
        streams={"s": {"path": "/single", "method": "POST", "json": body, "records": "data"}}
    )
    outcome = read(config, "s")
    assert outcome.error is None
    assert [1, 2, 3] == outcome.ids
    sent = http_api.state.seen("/single")
    assert ["POST", "POST"] == [seen.method for seen in sent]
    assert [body, body] == [json.loads(seen.body) for seen in sent]
    assert {"application/json"} == {seen.headers["content-type"] for seen in sent}


def test_unknown_stream_and_options_are_config_errors(read, make_config):
    """A typo in a stream name or read option is refused with the known names."""
    config = make_config(streams={"s": stream("cursor")})
    assert "streams: s" in str(read(config, "nope").error)
    assert isinstance(read(config, "s", bogus=1).error, ConfigError)


def test_estimate_is_the_total_the_first_page_states(make_config, registry, http_api):
    """A stream with a total_path estimates its size from one page; others are unknown."""
    from headwater_rest import RestConnector

    config = make_config(streams={"t": stream("offset+total"), "n": stream("offset")})
    with RestConnector(config, registry=registry) as connector:
        before = http_api.state.hits("/offset")
        assert N == connector.estimate("t").rows
        assert before + 1 == http_api.state.hits("/offset")
        assert 7 == connector.estimate("t", max_records=7).rows
        assert connector.estimate("n").rows is None
