"""
Sync and async twins give the same results: each scenario runs once through the sync side
(``read``, ``check``, ``request``) and once through the async side (``aread``, ``acheck``,
``arequest``) against the loopback API of tests/fix_http.py, its faults set up afresh
for each side, and the two outcomes — records, states, errors and what the server saw —
are compared. Both sides run the same sans-I/O flows (`headwater_rest._flow`,
`headwater_rest._paginate`); these tests keep their drivers honest.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from headwater import Registry
from headwater.toolkit import reset_breakers
from headwater_rest import RestConnector
from tests.fix_http import ApiState, HttpServer, oauth_auth

CURSOR = {
    "path": "/cursor",
    "params": {"n": 47, "limit": 10},
    "records": "data",
    "pagination": {"type": "cursor", "cursor_path": "meta.next_cursor"},
}
SINGLE = {"path": "/single", "params": {"n": 3}, "records": "data"}
DEAD = {"path": "/status/503", "records": "data"}
OFFSET = {
    "path": "/offset",
    "params": {"n": 23, "total": 1},
    "records": "items",
    "pagination": {"type": "offset", "limit": 5, "total_path": "total", "concurrency": 3},
}
CHILD = {
    "orgs": {"path": "/orgs"},
    "repos": {
        "path": "/orgs/{org.id}/repos",
        "parent": {"stream": "orgs", "alias": "org", "fields": {"org": "id"}},
        "pagination": {"type": "page", "size": 5, "size_param": "per_page"},
    },
}
SIDES = ("sync", "async")


def failure(exc: BaseException | None) -> tuple[Any, ...] | None:
    """What an error says: its type, category, field and message (``None``: no error)."""
    if exc is None:
        return None
    return (
        type(exc).__name__,
        getattr(exc, "category", None),
        getattr(exc, "field", None),
        str(exc),
    )


@dataclasses.dataclass(frozen=True)
class Read:
    """A read's records, states and the error that ended it."""

    records: list[dict[str, Any]]
    states: list[Any]
    error: tuple[Any, ...] | None
    #: Records in each batch.
    sizes: list[int]

    @property
    def ids(self) -> list[Any]:
        return [r.get("id", r.get("name")) for r in self.records]


@dataclasses.dataclass(frozen=True)
class Served:
    """What the API saw: each request's method, path and query, and the token requests."""

    requests: list[tuple[str, str, dict[str, str]]]
    token_hits: int

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.requests]

    def requests_made(self) -> list[tuple[str, str, list[tuple[str, str]]]]:
        """The requests in a stable order (concurrent ones arrive in any)."""
        return sorted((m, p, sorted(q.items())) for m, p, q in self.requests)


class Side:
    """One side of the connector: the sync operations, or their async twins."""

    def __init__(self, name: str, registry: Registry) -> None:
        self.name = name
        self.registry = registry

    def read(self, config: Any, stream: str, state: Any = None, **options: Any) -> Read:
        batches: list[Any] = []
        error: BaseException | None = None

        async def aread(connector: RestConnector) -> None:
            async for batch in connector.aread(stream, state, **options):
                batches.append(batch)

        with RestConnector(config, registry=self.registry) as connector:
            try:
                if self.name == "sync":
                    batches.extend(connector.read(stream, state, **options))
                else:
                    asyncio.run(aread(connector))
            except Exception as exc:
                error = exc
        records = [row for batch in batches for row in batch.rows()]
        states = [batch.state for batch in batches]
        return Read(records, states, failure(error), [len(batch) for batch in batches])

    def after(self, read: Read, batch: int) -> list[Any]:
        """The ids after batch number ``batch`` of ``read``."""
        return read.ids[sum(read.sizes[: batch + 1]) :]

    def check(self, config: Any) -> tuple[Any, ...]:
        with RestConnector(config, registry=self.registry) as connector:
            result = connector.check() if self.name == "sync" else asyncio.run(connector.acheck())
        return (result.ok, result.category, result.field, result.message)

    def request(self, config: Any, method: str, path: str, **kwargs: Any) -> tuple[Any, ...]:
        with RestConnector(config, registry=self.registry) as connector:
            try:
                if self.name == "sync":
                    response = connector.request(method, path, **kwargs)
                else:
                    response = asyncio.run(connector.arequest(method, path, **kwargs))
            except Exception as exc:
                return ("error", failure(exc), connector.breaker_state())
        return (response.status_code, response.json(), connector.breaker_state())


def twins(
    api: HttpServer,
    registry: Registry,
    setup: Callable[[ApiState], None],
    act: Callable[[Side], Any],
) -> list[tuple[Any, Served]]:
    """``act`` on each side, the API's faults set by ``setup`` and the breakers reset first."""
    results = []
    for name in SIDES:
        api.reset()
        reset_breakers()
        setup(api.state)
        outcome = act(Side(name, registry))
        state = api.state
        served = [(s.method, s.path, s.query) for s in state.log]
        results.append((outcome, Served(served, state.token_hits)))
    return results


def no_faults(state: ApiState) -> None:
    """Nothing to set up."""


def test_a_503_is_retried_then_the_read_goes_on(http_api, make_config, registry):
    """A 503 on the first page: the same page is asked for again, then every record arrives."""
    config = make_config(streams={"s": CURSOR})
    sync, asynchronous = twins(
        http_api,
        registry,
        lambda st: st.fail("/cursor", "503"),
        lambda side: side.read(config, "s"),
    )
    assert sync == asynchronous
    read, served = sync
    assert (list(range(1, 48)), None) == (read.ids, read.error)
    assert ["/cursor"] * 6 == served.paths()
    assert served.requests[0] == served.requests[1]  # the retry asked for the same page


def test_a_429_waits_for_its_retry_after(http_api, make_config, registry):
    """A 429 with Retry-After: 1: the retry comes a second later on both sides, then succeeds."""

    def setup(state: ApiState) -> None:
        state.retry_after = "1"
        state.fail("/single", "429")

    gaps: list[float] = []

    def act(side: Side) -> Read:
        read = side.read(make_config(streams={"s": SINGLE}), "s")
        first, second = http_api.state.seen("/single")
        gaps.append(second.at - first.at)
        return read

    sync, asynchronous = twins(http_api, registry, setup, act)
    assert sync == asynchronous
    read, served = sync
    assert ([1, 2, 3], None, ["/single"] * 2) == (read.ids, read.error, served.paths())
    assert [] == [gap for gap in gaps if gap < 0.9]


def test_a_401_refreshes_the_token_once(http_api, make_config, registry, caplog):
    """A token revoked mid-read: one new token, the refused page replayed, nothing lost."""
    config = make_config(auth=oauth_auth(http_api), streams={"s": CURSOR})
    tokens: list[str] = []

    def setup(state: ApiState) -> None:
        state.revoke_after = 2

    def act(side: Side) -> Read:
        read = side.read(config, "s")
        tokens.extend(http_api.state.tokens)
        return read

    sync, asynchronous = twins(http_api, registry, setup, act)
    assert sync == asynchronous
    read, served = sync
    assert (list(range(1, 48)), None, 2) == (read.ids, read.error, served.token_hits)
    assert ["/oauth/token", "/cursor", "/cursor"] == served.paths()[:3]
    assert ["/cursor"] * 6 + ["/oauth/token"] * 2 == sorted(served.paths())
    assert 4 == len(tokens)
    assert [] == [token for token in tokens if token in caplog.text]


def test_a_dead_endpoint_opens_the_breaker(http_api, make_config, registry):
    """An API answering 503 every time: three tries open the breaker, and the read says so."""
    config = make_config(streams={"s": DEAD}, breaker={"failure_threshold": 3, "reset_timeout": 60})

    def act(side: Side) -> tuple[Read, tuple[Any, ...]]:
        read = side.read(config, "s")
        # The breaker is per origin and process: a call now is refused without a request.
        return read, side.request(config, "GET", "/single")

    sync, asynchronous = twins(http_api, registry, no_faults, act)
    assert sync == asynchronous
    (read, refused), served = sync
    assert [] == read.records
    assert read.error is not None
    kind, _, _, message = read.error
    assert ("CircuitOpen", "failed 3 times in a row") == (
        kind,
        message[message.index("failed") :][:23],
    )
    assert ("error", "open") == (refused[0], refused[2])
    assert "CircuitOpen" == refused[1][0]
    assert ["/status/503"] * 3 == served.paths()


def test_pagination_resumes_from_every_state(http_api, make_config, registry):
    """Concurrent offset pages in batches of 4: the same states, and each resumes exactly."""
    config = make_config(streams={"s": OFFSET})

    def act(side: Side) -> tuple[Read, list[list[Any]], list[list[Any]]]:
        read = side.read(config, "s", batch_size=4)
        resumed = [side.read(config, "s", state, batch_size=4).ids for state in read.states]
        return read, resumed, [side.after(read, i) for i in range(len(read.states))]

    sync, asynchronous = twins(http_api, registry, no_faults, act)
    assert sync[0] == asynchronous[0]
    # Pages fetched concurrently arrive in any order: the same requests, though.
    assert sync[1].requests_made() == asynchronous[1].requests_made()
    read, resumed, expected = sync[0]
    assert (list(range(1, 24)), None) == (read.ids, read.error)
    assert [4, 1] * 4 + [3] == read.sizes  # pages of 5 in batches of 4; 23 records
    assert expected == resumed
    assert read.states[-1]["done"]


def test_a_child_stream_resumes_mid_parent(http_api, make_config, registry):
    """A child stream read in batches of 2 and resumed from a state in the middle."""
    config = make_config(streams=CHILD)

    def act(side: Side) -> tuple[Read, Read]:
        read = side.read(config, "repos", batch_size=2)
        return read, side.read(config, "repos", read.states[3], batch_size=2)

    sync, asynchronous = twins(http_api, registry, no_faults, act)
    assert sync == asynchronous
    (read, resumed), _ = sync
    names = [f"acme-repo-{i}" for i in range(1, 6)] + [f"initech-repo-{i}" for i in range(1, 13)]
    # acme's 5 repos in batches of 2, 2, 1; then initech's first batch of 2.
    assert (names, names[7:]) == (read.ids, resumed.ids)


def test_limits_cut_the_read_at_the_same_record(http_api, make_config, registry):
    """max_records in the middle of a fanned-out page: both sides stop at record 12."""
    config = make_config(streams={"s": OFFSET})
    sync, asynchronous = twins(
        http_api, registry, no_faults, lambda side: side.read(config, "s", max_records=12)
    )
    assert sync[0] == asynchronous[0]
    read, _ = sync
    assert list(range(1, 13)) == read.ids
    assert not read.states[-1]["done"]


@pytest.mark.parametrize(
    ("fault", "expected_status", "expected_hits"),
    [("503", 201, 2), ("after-502", None, 1)],
)
def test_a_post_is_retried_only_when_unprocessed(
    http_api, make_config, registry, fault, expected_status, expected_hits
):
    """POST without an idempotency key: a 503 is sent again, a 502 after storing is not."""
    config = make_config()
    sync, asynchronous = twins(
        http_api,
        registry,
        lambda st: st.fail("/sink/t", fault),
        lambda side: side.request(config, "POST", "/sink/t", json={"id": 1}),
    )
    assert sync == asynchronous
    outcome, served = sync
    assert expected_hits == len(served.requests)
    if expected_status is None:
        assert ("error", "ServerError") == (outcome[0], outcome[1][0])
    else:
        assert (expected_status, {"stored": 1}) == outcome[:2]
    assert [{"id": 1}] == http_api.state.sinks["t"]


def test_check_reports_a_refused_key_the_same(http_api, make_config, registry, monkeypatch):
    """A wrong API key: check() and acheck() give the same auth failure on the same field."""
    monkeypatch.setenv("HW_TEST_API_KEY", "not-the-key")
    config = make_config(streams={"s": SINGLE})
    sync, asynchronous = twins(http_api, registry, no_faults, lambda side: side.check(config))
    assert sync == asynchronous
    (ok, category, _, _), served = sync
    assert (False, "auth", ["/single"]) == (ok, category, served.paths())
