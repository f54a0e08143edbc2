"""
Tests for the shared retry policy and circuit breaker (headwater._retry).

Pure logic: time is a fake clock that the injected sleep advances, so nothing waits.
The loopback tests use a real TCP port on 127.0.0.1 that refuses connections.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import pickle
import re
import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from headwater import _retry
from headwater._breaker import CircuitBreaker, breaker_for, reset_breakers
from headwater._redact import _forget_all, register_secret
from headwater._retry import RetryPolicy
from headwater._status import (
    RETRYABLE_STATUS,
    error_for_status,
    is_retryable,
    parse_retry_after,
)
from headwater.errors import (
    AuthFailed,
    Category,
    CircuitOpen,
    ConnectionFailed,
    ConnectorError,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
)


class FakeClock:
    """Monotonic seconds that move only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sleeper:
    """Records each requested sleep and advances the fake clock by it, instantly."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.advance(seconds)

    async def asleep(self, seconds: float) -> None:
        self(seconds)


class Flaky:
    """Raises or returns its outcomes in order; the last one repeats forever."""

    def __init__(self, *outcomes: object, clock: FakeClock | None = None, takes: float = 0.0):
        self.outcomes = list(outcomes)
        self.calls = 0
        self.clock = clock
        self.takes = takes

    def __call__(self) -> object:
        self.calls += 1
        if self.clock is not None:
            self.clock.advance(self.takes)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def async_call(self) -> object:
        await asyncio.sleep(0)
        return self()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeper(clock: FakeClock) -> Sleeper:
    return Sleeper(clock)


@pytest.fixture
def make_policy(clock: FakeClock, sleeper: Sleeper):
    """A RetryPolicy factory wired to the fake clock and sleep, jitter off unless asked."""

    def make(**kwargs: object) -> RetryPolicy:
        options: dict[str, object] = {
            "jitter": 0.0,
            "sleep": sleeper,
            "asleep": sleeper.asleep,
            "clock": clock,
        }
        options.update(kwargs)
        return RetryPolicy(**options)  # type: ignore[arg-type]

    return make


@pytest.fixture(autouse=True)
def _fresh_breakers():
    reset_breakers()
    yield
    reset_breakers()


def refused_port() -> int:
    """A loopback port nothing listens on: bound to learn a free number, then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


RETRYABLE_ERRORS = [
    pytest.param(lambda: error_for_status(429, "throttled"), id="429"),
    pytest.param(lambda: error_for_status(502, "bad gateway"), id="502"),
    pytest.param(lambda: error_for_status(503, "unavailable"), id="503"),
    pytest.param(lambda: error_for_status(504, "gateway timeout"), id="504"),
    pytest.param(lambda: error_for_status(408, "request timeout"), id="408"),
    pytest.param(lambda: ConnectionError("reset"), id="ConnectionError"),
    pytest.param(lambda: ConnectionRefusedError(errno.ECONNREFUSED, "refused"), id="refused"),
    pytest.param(lambda: ConnectionResetError(errno.ECONNRESET, "reset"), id="reset"),
    pytest.param(lambda: TimeoutError("timed out"), id="TimeoutError"),
    pytest.param(lambda: socket.gaierror(socket.EAI_AGAIN, "try again"), id="gaierror"),
    pytest.param(lambda: ConnectionFailed("no route"), id="ConnectionFailed"),
]

NON_RETRYABLE_ERRORS = [
    pytest.param(lambda: error_for_status(400, "bad request"), id="400"),
    pytest.param(lambda: error_for_status(401, "unauthorized"), id="401"),
    pytest.param(lambda: error_for_status(403, "forbidden"), id="403"),
    pytest.param(lambda: error_for_status(404, "not found"), id="404"),
    pytest.param(lambda: error_for_status(409, "conflict"), id="409"),
    pytest.param(lambda: error_for_status(422, "unprocessable"), id="422"),
    pytest.param(lambda: error_for_status(500, "internal error"), id="500"),
    pytest.param(lambda: ValueError("bug"), id="ValueError"),
    pytest.param(lambda: CircuitOpen("dead"), id="CircuitOpen"),
]


# --------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("header", "expected"),
    [("120", 120.0), (" 7 ", 7.0), ("0", 0.0), ("1.5", 1.5)],
)
def test_parse_retry_after_seconds(header, expected):
    """Delta-seconds are read as seconds."""
    assert expected == parse_retry_after(header)


@pytest.mark.parametrize(
    "form",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850
        "Sun Nov  6 08:49:37 1994",  # obsolete asctime
    ],
)
def test_parse_retry_after_http_date_forms(form):
    """All three HTTP-date forms give the seconds until that date."""
    now = datetime(1994, 11, 6, 8, 47, 7, tzinfo=UTC)
    assert 150.0 == parse_retry_after(form, now=now)


def test_parse_retry_after_http_date_naive_now_is_utc():
    """A naive `now` is taken as UTC, like the HTTP date itself."""
    assert 30.0 == parse_retry_after(
        "Sun, 06 Nov 1994 08:49:37 GMT", now=datetime(1994, 11, 6, 8, 49, 7)
    )


def test_parse_retry_after_date_in_the_past_is_zero():
    """A date already passed means retry now, never a negative delay."""
    now = datetime(2000, 1, 1, tzinfo=UTC)
    assert 0.0 == parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now=now)


def test_parse_retry_after_uses_the_system_clock_by_default():
    """Without `now`, a date an hour ahead is roughly an hour away."""
    future = datetime.now(UTC) + timedelta(hours=1)
    seconds = parse_retry_after(format_datetime(future, usegmt=True))
    assert seconds is not None
    assert 3500 < seconds <= 3600


@pytest.mark.parametrize(
    "header",
    [None, "", "   ", "soon", "-5", "inf", "nan", "Wed, 99 Foo 2015 07:28:00 GMT", "12 parsecs"],
)
def test_parse_retry_after_garbage_is_none(header):
    """Missing, negative, non-finite and unparsable values give None (fall back to backoff)."""
    assert parse_retry_after(header) is None


# --------------------------------------------------------------------------- status mapping


@pytest.mark.parametrize(
    ("status", "cls", "retryable", "category"),
    [
        (401, AuthFailed, False, Category.AUTH),
        (403, PermissionDenied, False, Category.PERMISSION),
        (404, NotFound, False, Category.NOT_FOUND),
        (408, ConnectionFailed, True, Category.NETWORK),
        (429, RateLimited, True, Category.RATE_LIMITED),
        (502, ServerError, True, Category.SERVER),
        (503, ServerError, True, Category.SERVER),
        (504, ServerError, True, Category.SERVER),
        (500, ServerError, False, Category.SERVER),
        (501, ServerError, False, Category.SERVER),
        (400, ConnectorError, False, Category.CONFIG),
        (405, ConnectorError, False, Category.CONFIG),
        (422, ConnectorError, False, Category.CONFIG),
    ],
)
def test_error_for_status(status, cls, retryable, category):
    """Each status maps to its error class, retryability and category."""
    err = error_for_status(status, f"GET /items returned {status}", field="url")
    assert cls is type(err)
    assert retryable == err.retryable
    assert retryable == is_retryable(err)
    assert category == err.category
    assert f"GET /items returned {status}" == str(err)
    assert "url" == err.field


@pytest.mark.parametrize("status", [429, 503])
def test_error_for_status_carries_retry_after(status):
    """429 and 503 keep the parsed Retry-After for the policy."""
    err = error_for_status(status, "slow down", retry_after=12.0)
    assert 12.0 == err.retry_after  # type: ignore[attr-defined]


def test_retryable_statuses():
    """The retryable set is exactly 429, 502, 503, 504."""
    assert frozenset({429, 502, 503, 504}) == RETRYABLE_STATUS


def test_other_4xx_does_not_change_the_class_category():
    """Marking one 4xx error as config leaves ConnectorError's own category alone."""
    error_for_status(418, "teapot")
    assert Category.SERVER == ConnectorError("x").category


# --------------------------------------------------------------------------- is_retryable


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ConnectionFailed("down"), True),
        (RateLimited("slow"), True),
        (ServerError("503"), True),
        (ServerError("500", retryable=False), False),
        (NotFound("gone"), False),
        (CircuitOpen("dead"), False),
        (TimeoutError(), True),
        (ConnectionRefusedError(), True),
        (ConnectionResetError(), True),
        (ConnectionAbortedError(), True),
        (BrokenPipeError(), True),
        (socket.gaierror(socket.EAI_NONAME, "unknown host"), True),
        (OSError(errno.ENETUNREACH, "network unreachable"), True),
        (OSError(errno.EHOSTUNREACH, "no route to host"), True),
        (OSError(errno.ENOENT, "no such file"), False),
        (PermissionError(errno.EACCES, "denied"), False),
        (OSError("no errno"), False),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), False),
        (ValueError("bad"), False),
        (KeyboardInterrupt(), False),
    ],
    ids=repr,
)
def test_is_retryable(exc, expected):
    """Network blips and retryable headwater errors are retried; nothing else is."""
    assert expected == is_retryable(exc)


# --------------------------------------------------------------------------- backoff


def test_backoff_grows_exponentially_and_is_capped():
    """Without jitter the waits double from `initial` up to `maximum`."""
    policy = RetryPolicy(initial=0.5, maximum=30.0, jitter=0.0)
    assert [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0] == [policy.backoff(n) for n in range(1, 9)]


def test_backoff_jitter_stays_within_bounds():
    """Jitter adds between 0 and `jitter` seconds, and actually varies."""
    policy = RetryPolicy(initial=1.0, maximum=30.0, jitter=2.0)
    samples = [policy.backoff(3) for _ in range(300)]
    assert all(4.0 <= s <= 6.0 for s in samples)
    assert len(set(samples)) > 1


def test_backoff_jitter_still_applies_at_the_cap():
    """At the cap the wait is spread over [maximum, maximum + jitter]."""
    policy = RetryPolicy(initial=1.0, maximum=10.0, jitter=1.0)
    samples = [policy.backoff(50) for _ in range(300)]
    assert all(10.0 <= s <= 11.0 for s in samples)
    assert len(set(samples)) > 1


def test_backoff_huge_attempt_numbers_do_not_overflow():
    """A very late attempt is just capped."""
    assert 30.0 == RetryPolicy(jitter=0.0).backoff(100_000)


def test_wait_for_prefers_retry_after():
    """An error's retry_after is the wait; other errors get backoff."""
    policy = RetryPolicy(initial=1.0, jitter=0.0)
    assert 7.0 == policy.wait_for(1, RateLimited("slow", retry_after=7.0))
    assert 42.0 == policy.wait_for(1, ServerError("503", retry_after=42.0))
    assert 4.0 == policy.wait_for(3, ConnectionError())
    assert 4.0 == policy.wait_for(3, RateLimited("slow", retry_after=None))


def test_wait_for_adds_jitter_to_retry_after():
    """Throttled workers do not all come back at the same instant."""
    policy = RetryPolicy(jitter=1.0)
    samples = [policy.wait_for(1, RateLimited("slow", retry_after=5.0)) for _ in range(200)]
    assert all(5.0 <= s <= 6.0 for s in samples)
    assert len(set(samples)) > 1


# --------------------------------------------------------------------------- policy object


def test_policy_defaults():
    """The documented defaults."""
    policy = RetryPolicy()
    assert (5, 0.5, 30.0, 1.0, 120.0) == (
        policy.attempts,
        policy.initial,
        policy.maximum,
        policy.jitter,
        policy.timeout,
    )
    assert is_retryable is policy.retry_on


def test_policy_is_frozen():
    """A policy cannot be changed after creation."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        RetryPolicy().attempts = 3  # type: ignore[misc]


def test_policy_pickles():
    """A policy crosses process boundaries intact."""
    policy = RetryPolicy(attempts=3, initial=0.1, maximum=2.0, jitter=0.5, timeout=None)
    assert policy == pickle.loads(pickle.dumps(policy))


def test_policy_none_calls_once():
    """RetryPolicy.NONE (and the module constant NONE) never retries."""
    assert _retry.NONE is RetryPolicy.NONE
    flaky = Flaky(ConnectionError("down"), "ok")
    with pytest.raises(ConnectionError):
        RetryPolicy.NONE.call(flaky)
    assert 1 == flaky.calls


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"initial": -1.0},
        {"maximum": float("inf")},
        {"jitter": -0.1},
        {"timeout": 0.0},
    ],
    ids=repr,
)
def test_policy_rejects_nonsense(kwargs):
    """Impossible settings fail at construction."""
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RetryPolicy(**kwargs)


def test_policy_rejects_non_int_attempts():
    """attempts must be an int."""
    with pytest.raises(TypeError):
        RetryPolicy(attempts=2.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- call (sync)


def test_call_success_first_time(make_policy, sleeper):
    """A call that works returns its value without sleeping."""
    flaky = Flaky("ok")
    assert "ok" == make_policy().call(flaky)
    assert (1, []) == (flaky.calls, sleeper.delays)


@pytest.mark.parametrize("make_error", RETRYABLE_ERRORS)
def test_call_retries_retryable_errors(make_policy, sleeper, make_error):
    """429, 502, 503, 504, 408, connect errors and timeouts are retried until success."""
    flaky = Flaky(make_error(), make_error(), "ok")
    assert "ok" == make_policy().call(flaky)
    assert 3 == flaky.calls
    assert 2 == len(sleeper.delays)


@pytest.mark.parametrize("make_error", NON_RETRYABLE_ERRORS)
def test_call_never_retries_other_errors(make_policy, sleeper, make_error):
    """400, 401, 403, 404, other 4xx, 500, unknown errors and CircuitOpen fail at once."""
    error = make_error()
    flaky = Flaky(error, "ok")
    with pytest.raises(type(error)) as info:
        make_policy().call(flaky)
    assert error is info.value
    assert (1, []) == (flaky.calls, sleeper.delays)


def test_call_sleeps_follow_backoff(make_policy, sleeper):
    """Waits double from `initial` and stop growing at `maximum`."""
    flaky = Flaky(ConnectionError())
    with pytest.raises(ConnectionError):
        make_policy(attempts=6, initial=1.0, maximum=4.0).call(flaky)
    assert [1.0, 2.0, 4.0, 4.0, 4.0] == sleeper.delays


def test_call_attempts_bound(make_policy, sleeper):
    """A service that never recovers is called exactly `attempts` times."""
    flaky = Flaky(ConnectionError())
    with pytest.raises(ConnectionError):
        make_policy(attempts=4, timeout=None).call(flaky)
    assert 4 == flaky.calls
    assert 3 == len(sleeper.delays)


def test_call_reraises_the_last_original_exception(make_policy):
    """When retries end the caller gets the last error itself, not tenacity's RetryError."""
    errors = [ConnectionFailed(f"attempt {n}") for n in range(1, 4)]
    flaky = Flaky(*errors)
    with pytest.raises(ConnectionFailed) as info:
        make_policy(attempts=3).call(flaky)
    assert errors[-1] is info.value


def test_call_total_time_bound(make_policy, sleeper, clock):
    """No wait may end past the budget: retries stop before crossing `timeout`."""
    flaky = Flaky(ConnectionError())
    with pytest.raises(ConnectionError):
        make_policy(attempts=100, initial=10.0, maximum=10.0, timeout=35.0).call(flaky)
    assert [10.0, 10.0, 10.0] == sleeper.delays
    assert 4 == flaky.calls


def test_call_budget_counts_time_spent_in_calls(make_policy, sleeper, clock):
    """Slow failing calls use up the budget too."""
    flaky = Flaky(TimeoutError(), clock=clock, takes=50.0)
    with pytest.raises(TimeoutError):
        make_policy(attempts=10, initial=1.0, timeout=120.0).call(flaky)
    # t=0..50 fail, wait 1; t=51..101 fail, wait 2; t=103..153 fail: 4 more would pass 120.
    assert [1.0, 2.0] == sleeper.delays
    assert 3 == flaky.calls


def test_call_honours_retry_after(make_policy, sleeper):
    """The service's Retry-After is the wait, even beyond `maximum` when the budget allows."""
    flaky = Flaky(RateLimited("slow", retry_after=45.0), ServerError("busy", retry_after=2.0), "ok")
    assert "ok" == make_policy(maximum=30.0, timeout=120.0).call(flaky)
    assert [45.0, 2.0] == sleeper.delays


def test_call_retry_after_beyond_budget_stops_at_once(make_policy, sleeper):
    """A Retry-After that would end past the budget re-raises instead of sleeping."""
    error = RateLimited("slow", retry_after=500.0)
    flaky = Flaky(error, "ok")
    with pytest.raises(RateLimited) as info:
        make_policy(timeout=120.0).call(flaky)
    assert error is info.value
    assert (1, []) == (flaky.calls, sleeper.delays)


def test_call_retry_after_beyond_maximum_without_budget_stops(make_policy, sleeper):
    """With no budget, `maximum` bounds a Retry-After wait; longer ends the retries."""
    flaky = Flaky(RateLimited("slow", retry_after=31.0), "ok")
    with pytest.raises(RateLimited):
        make_policy(timeout=None, maximum=30.0).call(flaky)
    assert (1, []) == (flaky.calls, sleeper.delays)


def test_call_retry_after_within_maximum_without_budget(make_policy, sleeper):
    """With no budget, a Retry-After within `maximum` is honoured."""
    flaky = Flaky(RateLimited("slow", retry_after=29.0), "ok")
    assert "ok" == make_policy(timeout=None, maximum=30.0).call(flaky)
    assert [29.0] == sleeper.delays


def test_call_no_budget_keeps_backoff_at_the_cap(make_policy, sleeper):
    """With no budget, capped backoff (plus jitter) does not end the retries early."""
    flaky = Flaky(ConnectionError())
    with pytest.raises(ConnectionError):
        make_policy(attempts=6, initial=8.0, maximum=8.0, jitter=1.0, timeout=None).call(flaky)
    assert 6 == flaky.calls


def test_call_custom_retry_on(make_policy):
    """retry_on decides what is worth another call."""
    flaky = Flaky(ValueError("flaky parse"), "ok")
    assert "ok" == make_policy(retry_on=lambda exc: isinstance(exc, ValueError)).call(flaky)
    assert 2 == flaky.calls


def test_call_default_sleep_really_sleeps():
    """Without an injected sleep the policy uses time.sleep (tiny waits here)."""
    flaky = Flaky(ConnectionError(), "ok")
    assert "ok" == RetryPolicy(initial=0.001, jitter=0.0).call(flaky)
    assert 2 == flaky.calls


def test_call_logs_each_retry_and_giving_up(make_policy, caplog):
    """Each retry and the final give-up are logged on headwater.retry."""
    caplog.set_level(logging.INFO, logger="headwater.retry")
    with pytest.raises(ConnectionError):
        make_policy(attempts=3, initial=1.0).call(Flaky(ConnectionRefusedError("refused")))
    messages = [r.getMessage() for r in caplog.records if r.name == "headwater.retry"]
    assert [
        "attempt 1 of 3 failed (ConnectionRefusedError: refused); retrying in 1.00s",
        "attempt 2 of 3 failed (ConnectionRefusedError: refused); retrying in 2.00s",
        "giving up after 3 attempts; last failure: ConnectionRefusedError: refused",
    ] == messages


def test_call_logs_are_redacted(make_policy, caplog):
    """A secret echoed in a driver error never reaches the retry log."""
    secret = "hunter2-very-secret"
    register_secret(secret)
    try:
        caplog.set_level(logging.DEBUG, logger="headwater.retry")
        flaky = Flaky(ConnectionError(f"login with {secret} failed"), "ok")
        assert "ok" == make_policy().call(flaky)
        assert caplog.records
        assert secret not in caplog.text
        assert "***" in caplog.text
    finally:
        _forget_all()


def test_call_refused_loopback_port_is_retried_then_reraised(make_policy, sleeper):
    """A real refused TCP connection is retried and the ConnectionRefusedError re-raised."""
    port = refused_port()
    calls = []

    def connect() -> None:
        calls.append(1)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass

    with pytest.raises(ConnectionRefusedError):
        make_policy(attempts=3).call(connect)
    assert 3 == len(calls)
    assert 2 == len(sleeper.delays)


# --------------------------------------------------------------------------- acall (async)


async def test_acall_success_first_time(make_policy, sleeper):
    """An async call that works returns its value without sleeping."""
    flaky = Flaky("ok")
    assert "ok" == await make_policy().acall(flaky.async_call)
    assert (1, []) == (flaky.calls, sleeper.delays)


async def test_acall_accepts_a_lambda_returning_a_coroutine(make_policy):
    """The awaitable a plain callable returns is awaited, on every attempt."""
    flaky = Flaky(ConnectionError(), "ok")
    assert "ok" == await make_policy().acall(lambda: flaky.async_call())
    assert 2 == flaky.calls


@pytest.mark.parametrize("make_error", RETRYABLE_ERRORS)
async def test_acall_retries_retryable_errors(make_policy, sleeper, make_error):
    """The async twin retries the same errors."""
    flaky = Flaky(make_error(), make_error(), "ok")
    assert "ok" == await make_policy().acall(flaky.async_call)
    assert 3 == flaky.calls
    assert 2 == len(sleeper.delays)


@pytest.mark.parametrize("make_error", NON_RETRYABLE_ERRORS)
async def test_acall_never_retries_other_errors(make_policy, sleeper, make_error):
    """The async twin fails at once on the same errors."""
    error = make_error()
    flaky = Flaky(error, "ok")
    with pytest.raises(type(error)) as info:
        await make_policy().acall(flaky.async_call)
    assert error is info.value
    assert (1, []) == (flaky.calls, sleeper.delays)


async def test_acall_attempts_bound_and_last_exception(make_policy, sleeper):
    """The async twin stops after `attempts` and re-raises the last error."""
    errors = [TimeoutError(f"attempt {n}") for n in range(1, 5)]
    flaky = Flaky(*errors)
    with pytest.raises(TimeoutError) as info:
        await make_policy(attempts=4, initial=1.0).acall(flaky.async_call)
    assert errors[-1] is info.value
    assert 4 == flaky.calls
    assert [1.0, 2.0, 4.0] == sleeper.delays


async def test_acall_total_time_bound(make_policy, sleeper):
    """The async twin never sleeps past the budget."""
    flaky = Flaky(ConnectionError())
    with pytest.raises(ConnectionError):
        await make_policy(attempts=100, initial=10.0, maximum=10.0, timeout=35.0).acall(
            flaky.async_call
        )
    assert [10.0, 10.0, 10.0] == sleeper.delays


async def test_acall_honours_retry_after_and_budget(make_policy, sleeper):
    """The async twin waits Retry-After, and gives up when it would pass the budget."""
    flaky = Flaky(RateLimited("slow", retry_after=45.0), RateLimited("slower", retry_after=90.0))
    with pytest.raises(RateLimited) as info:
        await make_policy(timeout=120.0).acall(flaky.async_call)
    assert "slower" == str(info.value)
    assert [45.0] == sleeper.delays
    assert 2 == flaky.calls


async def test_acall_default_asleep_really_sleeps():
    """Without an injected asleep the policy awaits asyncio.sleep (tiny waits here)."""
    flaky = Flaky(ConnectionError(), "ok")
    assert "ok" == await RetryPolicy(initial=0.001, jitter=0.0).acall(flaky.async_call)
    assert 2 == flaky.calls


async def test_acall_none_policy(make_policy):
    """RetryPolicy.NONE awaits once."""
    flaky = Flaky(ConnectionError(), "ok")
    with pytest.raises(ConnectionError):
        await RetryPolicy.NONE.acall(flaky.async_call)
    assert 1 == flaky.calls


async def test_acall_refused_loopback_port_is_retried_then_reraised(make_policy, sleeper):
    """A real refused asyncio connection is retried and the ConnectionRefusedError re-raised."""
    port = refused_port()
    calls = []

    async def connect() -> None:
        calls.append(1)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()

    with pytest.raises(ConnectionRefusedError):
        await make_policy(attempts=3).acall(connect)
    assert 3 == len(calls)
    assert 2 == len(sleeper.delays)


# --------------------------------------------------------------------------- circuit breaker


def trip(breaker: CircuitBreaker, n: int, error: BaseException | None = None) -> None:
    for _ in range(n):
        breaker.record_failure(error or ConnectionRefusedError("refused"))


def test_breaker_starts_closed(clock):
    """A new breaker lets calls through."""
    breaker = CircuitBreaker("https://api.example.com", clock=clock)
    assert "closed" == breaker.state
    breaker.before_call()
    assert 0 == breaker.failures


def test_breaker_opens_at_the_threshold(clock):
    """Consecutive retryable failures below the threshold keep it closed; the threshold opens it."""
    breaker = CircuitBreaker("https://api.example.com", failure_threshold=3, clock=clock)
    trip(breaker, 2)
    assert ("closed", 2) == (breaker.state, breaker.failures)
    trip(breaker, 1)
    assert "open" == breaker.state


def test_breaker_open_refuses_with_one_clear_error(clock):
    """An open breaker raises CircuitOpen naming the endpoint, last failure and wait."""
    breaker = CircuitBreaker("https://api.example.com", failure_threshold=2, clock=clock)
    trip(breaker, 2, ConnectionFailed("connection refused by api.example.com:443"))
    with pytest.raises(CircuitOpen) as info:
        breaker.before_call()
    assert (
        "https://api.example.com is not being called: it failed 2 times in a row "
        "(last: ConnectionFailed: connection refused by api.example.com:443); "
        "next attempt allowed in 30s"
    ) == str(info.value)
    assert "\n" not in str(info.value)
    assert Category.NETWORK == info.value.category
    assert info.value.hint
    assert not is_retryable(info.value)


def test_breaker_open_message_counts_down(clock):
    """The seconds until the next attempt shrink as time passes, rounded up."""
    breaker = CircuitBreaker("db:5432", failure_threshold=1, reset_timeout=30.0, clock=clock)
    trip(breaker, 1)
    clock.advance(10.5)
    with pytest.raises(CircuitOpen, match=r"next attempt allowed in 20s$"):
        breaker.before_call()
    clock.advance(19.0)
    with pytest.raises(CircuitOpen, match=r"next attempt allowed in 1s$"):
        breaker.before_call()


def test_breaker_half_open_after_reset_timeout(clock):
    """Once reset_timeout has passed the breaker is half-open and admits a trial."""
    breaker = CircuitBreaker("db:5432", failure_threshold=1, reset_timeout=30.0, clock=clock)
    trip(breaker, 1)
    clock.advance(29.0)
    assert "open" == breaker.state
    clock.advance(1.0)
    assert "half_open" == breaker.state
    breaker.before_call()


def test_breaker_half_open_admits_one_trial_at_a_time(clock):
    """While the trial call runs, other calls are refused."""
    breaker = CircuitBreaker("db:5432", failure_threshold=1, reset_timeout=30.0, clock=clock)
    trip(breaker, 1)
    clock.advance(30.0)
    breaker.before_call()
    with pytest.raises(CircuitOpen, match="a trial call is checking"):
        breaker.before_call()


def test_breaker_half_open_success_closes(clock):
    """A successful trial closes the breaker and resets the count."""
    breaker = CircuitBreaker("db:5432", failure_threshold=2, reset_timeout=30.0, clock=clock)
    trip(breaker, 2)
    clock.advance(30.0)
    breaker.before_call()
    breaker.record_success()
    assert ("closed", 0) == (breaker.state, breaker.failures)
    breaker.before_call()
    breaker.before_call()


def test_breaker_half_open_failure_reopens_for_a_full_timeout(clock):
    """A failed trial opens the breaker again and restarts the cool-down."""
    breaker = CircuitBreaker("db:5432", failure_threshold=2, reset_timeout=30.0, clock=clock)
    trip(breaker, 2)
    clock.advance(30.0)
    breaker.before_call()
    breaker.record_failure(TimeoutError("timed out"))
    assert "open" == breaker.state
    clock.advance(29.0)
    with pytest.raises(CircuitOpen, match=r"last: TimeoutError: timed out"):
        breaker.before_call()
    clock.advance(1.0)
    assert "half_open" == breaker.state


def test_breaker_non_retryable_errors_do_not_trip_it(clock):
    """404s, 401s and bugs are not evidence the service is dead."""
    breaker = CircuitBreaker("api", failure_threshold=2, clock=clock)
    for error in [NotFound("no"), AuthFailed("no"), error_for_status(400, "bad"), ValueError()]:
        trip(breaker, 3, error)
    assert ("closed", 0) == (breaker.state, breaker.failures)


def test_breaker_counts_consecutive_failures_only(clock):
    """A success or an answered request in between restarts the count."""
    breaker = CircuitBreaker("api", failure_threshold=3, clock=clock)
    trip(breaker, 2)
    breaker.record_success()
    trip(breaker, 2)
    breaker.record_failure(NotFound("no such table"))
    trip(breaker, 2)
    assert ("closed", 2) == (breaker.state, breaker.failures)


def test_breaker_half_open_answered_error_closes(clock):
    """A trial answered with a 404 proves the service is up, so the breaker closes."""
    breaker = CircuitBreaker("api", failure_threshold=1, reset_timeout=5.0, clock=clock)
    trip(breaker, 1)
    clock.advance(5.0)
    breaker.before_call()
    breaker.record_failure(NotFound("missing"))
    assert "closed" == breaker.state


def test_breaker_cancellation_frees_the_trial_without_counting(clock):
    """A cancelled trial says nothing about the service: the next call becomes the trial."""
    breaker = CircuitBreaker("api", failure_threshold=1, reset_timeout=5.0, clock=clock)
    trip(breaker, 1)
    clock.advance(5.0)
    breaker.before_call()
    breaker.record_failure(KeyboardInterrupt())
    assert ("half_open", 1) == (breaker.state, breaker.failures)
    breaker.before_call()


def test_breaker_abandoned_trial_expires(clock):
    """A trial that never reports back stops blocking after reset_timeout."""
    breaker = CircuitBreaker("api", failure_threshold=1, reset_timeout=5.0, clock=clock)
    trip(breaker, 1)
    clock.advance(5.0)
    breaker.before_call()
    clock.advance(4.0)
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    clock.advance(1.0)
    breaker.before_call()


def test_breaker_call_runs_and_records(clock):
    """call() records outcomes and, once open, refuses without calling fn."""
    breaker = CircuitBreaker("api", failure_threshold=2, clock=clock)
    flaky = Flaky(ConnectionRefusedError("refused"))
    for _ in range(2):
        with pytest.raises(ConnectionRefusedError):
            breaker.call(flaky)
    with pytest.raises(CircuitOpen):
        breaker.call(flaky)
    assert 2 == flaky.calls
    assert "ok" == CircuitBreaker("other", clock=clock).call(lambda: "ok")


async def test_breaker_acall_runs_and_records(clock):
    """The async twin records the same way."""
    breaker = CircuitBreaker("api", failure_threshold=2, reset_timeout=10.0, clock=clock)
    flaky = Flaky(TimeoutError(), TimeoutError(), "ok")
    for _ in range(2):
        with pytest.raises(TimeoutError):
            await breaker.acall(flaky.async_call)
    with pytest.raises(CircuitOpen):
        await breaker.acall(flaky.async_call)
    clock.advance(10.0)
    assert "ok" == await breaker.acall(flaky.async_call)
    assert ("closed", 3) == (breaker.state, flaky.calls)


def test_breaker_rejects_nonsense():
    """Impossible settings fail at construction."""
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker("api", failure_threshold=0)
    with pytest.raises(ValueError, match="reset_timeout"):
        CircuitBreaker("api", reset_timeout=-1.0)


def test_breaker_repr_is_redacted():
    """An endpoint written with a password never shows it."""
    breaker = CircuitBreaker("postgresql://app:s3cretpw@db:5432")
    assert "s3cretpw" not in repr(breaker)
    assert "closed" in repr(breaker)


def test_breaker_refusal_is_redacted(clock):
    """A secret in the last failure's text does not reach the CircuitOpen message."""
    secret = "tok-abcdef-123456"
    register_secret(secret)
    try:
        breaker = CircuitBreaker("api", failure_threshold=1, clock=clock)
        breaker.record_failure(ConnectionError(f"auth {secret} refused"))
        with pytest.raises(CircuitOpen) as info:
            breaker.before_call()
        assert secret not in str(info.value)
    finally:
        _forget_all()


def test_policy_and_breaker_turn_a_dead_service_into_one_error(make_policy, sleeper, clock):
    """policy.call(breaker.call(...)): once open, CircuitOpen ends the retries at once."""
    breaker = CircuitBreaker("https://dead.example", failure_threshold=3, clock=clock)
    flaky = Flaky(ConnectionRefusedError("refused"))
    policy = make_policy(attempts=5, initial=1.0, timeout=None)
    with pytest.raises(CircuitOpen):
        policy.call(lambda: breaker.call(flaky))
    assert 3 == flaky.calls
    assert [1.0, 2.0, 4.0] == sleeper.delays
    with pytest.raises(CircuitOpen, match=re.escape("https://dead.example")):
        policy.call(lambda: breaker.call(flaky))
    assert 3 == flaky.calls
    assert 3 == len(sleeper.delays)


def test_breaker_with_refused_loopback_port(make_policy, clock):
    """Real refused connections open the breaker, which then refuses without connecting."""
    port = refused_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    breaker = breaker_for(endpoint, failure_threshold=2, clock=clock)
    calls = []

    def connect() -> None:
        calls.append(1)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass

    with pytest.raises(CircuitOpen, match=re.escape(endpoint)):
        make_policy(attempts=5).call(lambda: breaker.call(connect))
    assert 2 == len(calls)


def test_breaker_thread_safety_counts_every_failure():
    """Concurrent failures are all counted."""
    breaker = CircuitBreaker("api", failure_threshold=10_000)
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait(timeout=10)
        trip(breaker, 500)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert ("closed", 4000) == (breaker.state, breaker.failures)


def test_breaker_thread_safety_half_open_admits_exactly_one(clock):
    """Of many threads racing into a half-open breaker, exactly one gets the trial."""
    breaker = CircuitBreaker("api", failure_threshold=1, reset_timeout=5.0, clock=clock)
    trip(breaker, 1)
    clock.advance(5.0)
    start = threading.Barrier(16)
    admitted: list[int] = []
    refused: list[int] = []

    def worker() -> None:
        start.wait(timeout=10)
        try:
            breaker.before_call()
        except CircuitOpen:
            refused.append(1)
        else:
            admitted.append(1)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert (1, 15) == (len(admitted), len(refused))


# --------------------------------------------------------------------------- breaker_for


def test_breaker_for_returns_one_breaker_per_endpoint():
    """The same endpoint gives the same object; another endpoint another one."""
    first = breaker_for("https://a.example")
    assert first is breaker_for("https://a.example")
    assert first is not breaker_for("https://b.example")
    assert "https://a.example" == first.name


def test_breaker_for_settings_apply_on_creation_only():
    """Later calls get the existing breaker unchanged."""
    created = breaker_for("https://c.example", failure_threshold=2, reset_timeout=7.0)
    again = breaker_for("https://c.example", failure_threshold=9, reset_timeout=99.0)
    assert created is again
    assert (2, 7.0) == (again.failure_threshold, again.reset_timeout)


def test_breaker_for_is_thread_safe():
    """Threads racing to create one endpoint's breaker all get the same object."""
    start = threading.Barrier(16)
    seen: list[CircuitBreaker] = []
    lock = threading.Lock()

    def worker() -> None:
        start.wait(timeout=10)
        breaker = breaker_for("https://race.example")
        with lock:
            seen.append(breaker)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert 16 == len(seen)
    assert 1 == len({id(b) for b in seen})


def test_breaker_pickles_as_the_process_breaker_for_its_endpoint():
    """An unpickled breaker is this process's breaker for the same endpoint."""
    original = CircuitBreaker("https://p.example", failure_threshold=4, reset_timeout=12.0)
    restored = pickle.loads(pickle.dumps(original))
    assert restored is breaker_for("https://p.example")
    assert (4, 12.0) == (restored.failure_threshold, restored.reset_timeout)


def test_next_wait_is_the_whole_decision_without_io():
    """The wait a sans-I/O flow yields, or None: not retryable, attempts used, budget exceeded."""
    from headwater.errors import ConnectionFailed, PermissionDenied, RateLimited

    now = [100.0]
    policy = RetryPolicy(
        attempts=3, initial=0.5, maximum=4.0, jitter=0.0, timeout=10.0, clock=lambda: now[0]
    )
    transient = ConnectionFailed("connection reset")
    assert 0.5 == policy.next_wait(1, transient, started=100.0)
    assert 1.0 == policy.next_wait(2, transient, started=100.0)
    assert policy.next_wait(3, transient, started=100.0) is None  # the third call was the last
    assert policy.next_wait(1, PermissionDenied("forbidden"), started=100.0) is None
    assert policy.next_wait(1, transient, started=100.0, retry_on=lambda exc: False) is None
    now[0] = 109.8  # 9.8 s of the 10 s budget used: a 0.5 s wait would end past it
    assert policy.next_wait(1, transient, started=100.0) is None
    now[0] = 100.0
    assert 7.0 == policy.next_wait(1, RateLimited("slow down", retry_after=7.0), started=100.0)
    assert policy.next_wait(1, RateLimited("slow down", retry_after=11.0), started=100.0) is None
