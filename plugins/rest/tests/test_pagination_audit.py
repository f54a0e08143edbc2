"""
Pagination and resume probed where the other tests do not reach: a server capping the
page size without concurrency, resumes from mid-page states of such a server, an allowed
host named with a scheme other than the link's, a saved state whose next URL points at
another origin, and a text where the list of records should be.
"""

from __future__ import annotations

from typing import Any

import pytest

from headwater_rest import OriginRefused

N = 47

CAPPED_OFFSET = {
    "path": "/offset",
    # The server gives at most 7 records whatever limit is asked for.
    "params": {"n": N, "total": 1, "cap": 7},
    "records": "items",
    "pagination": {"type": "offset", "limit": 10, "total_path": "total"},
}
NEXT_OTHER = {
    "path": "/next-url",
    "params": {"n": N, "other": 1},
    "records": "data",
    "pagination": {"type": "next_url", "next_url_path": "links.next"},
}
LINK_OTHER = {"path": "/link", "params": {"n": N, "other": 1}, "pagination": {"type": "link"}}


def test_capping_server_with_a_total_reads_every_record_once(read, make_config, http_api):
    """Short pages in the middle (limit 10, server gives 7): offsets follow what came back."""
    outcome = read(make_config(streams={"s": CAPPED_OFFSET}), "s")
    assert outcome.error is None
    assert list(range(1, N + 1)) == outcome.ids
    offsets = [int(seen.query["offset"]) for seen in http_api.state.seen("/offset")]
    assert list(range(0, N, 7)) == offsets
    assert outcome.states[-1]["done"] is True


@pytest.mark.parametrize("cut", [1, 6, 7, 13, 46])
def test_capping_server_resume_from_mid_page_gives_exactly_the_rest(read, make_config, cut):
    """A state saved after ``cut`` records of short pages resumes with the rest, none twice."""
    config = make_config(streams={"s": CAPPED_OFFSET})
    first = read(config, "s", max_records=cut)
    assert first.error is None
    assert list(range(1, cut + 1)) == first.ids
    assert first.states[-1]["done"] is not True
    rest = read(config, "s", first.states[-1])
    assert rest.error is None
    assert list(range(cut + 1, N + 1)) == rest.ids


@pytest.mark.parametrize("stream", [NEXT_OTHER, LINK_OTHER], ids=["next_url", "link"])
def test_allowed_host_with_https_does_not_allow_plain_http(read, make_config, http_other, stream):
    """``allowed_hosts: [https://host:port]`` does not open the same host over plain http."""
    config = make_config(
        streams={"s": stream}, allowed_hosts=[f"https://{http_other.host}:{http_other.port}"]
    )
    outcome = read(config, "s")
    assert isinstance(outcome.error, OriginRefused)
    assert list(range(1, 11)) == outcome.ids
    assert [] == http_other.log


@pytest.mark.parametrize("stream", [NEXT_OTHER, LINK_OTHER], ids=["next_url", "link"])
def test_state_pointing_at_another_origin_is_refused_on_resume(
    read, make_config, http_other, stream
):
    """
    A state saved while another host was allowed, resumed without it: the saved next URL
    goes through the origin policy again; nothing (no credential either) reaches that host.
    """
    allowed = make_config(
        streams={"s": stream}, allowed_hosts=[f"{http_other.host}:{http_other.port}"]
    )
    first = read(allowed, "s", max_pages=1)
    assert first.error is None
    state: dict[str, Any] = first.states[-1]
    assert str(http_other.port) in str(state)
    http_other.reset()
    http_other.state.require_auth = False
    outcome = read(make_config(streams={"s": stream}), "s", state)
    assert isinstance(outcome.error, OriginRefused)
    assert [] == outcome.ids
    assert [] == http_other.log


@pytest.mark.parametrize("stream", [NEXT_OTHER, LINK_OTHER], ids=["next_url", "link"])
def test_resume_on_an_allowed_host_sends_no_credential(read, make_config, http_other, stream):
    """Resumed at a saved URL on an allowed other host: the rest arrives, without credentials."""
    config = make_config(
        streams={"s": stream}, allowed_hosts=[f"{http_other.host}:{http_other.port}"]
    )
    first = read(config, "s", max_pages=1)
    http_other.reset()
    http_other.state.require_auth = False
    rest = read(config, "s", first.states[-1])
    assert rest.error is None
    assert list(range(11, N + 1)) == rest.ids
    assert http_other.log
    assert [] == [seen.credentials() for seen in http_other.log if seen.credentials()]


@pytest.fixture
def scalar_api() -> Any:
    """A loopback API whose records key holds a text in place of the list."""
    import http.server
    import json
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = json.dumps({"data": "rate limit exceeded", "has_more": False}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_text_at_the_records_path_is_an_error_not_a_record(read, make_config, scalar_api):
    """``{"data": "rate limit exceeded"}`` is no record: the read fails naming the path."""
    from headwater import ConfigError

    config = make_config(
        base_url=scalar_api,
        auth={"type": "none"},
        streams={
            "s": {
                "path": "/items",
                "records": "data",
                "pagination": {"type": "cursor", "cursor_path": "next"},
            }
        },
    )
    outcome = read(config, "s")
    assert [] == outcome.records
    assert isinstance(outcome.error, ConfigError)
    assert "records" == outcome.error.field
    assert "records path 'data' holds a str" in str(outcome.error)
