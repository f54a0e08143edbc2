"""The rate-limit header parsing and the shared budget (pure logic, a fake clock)."""

from __future__ import annotations

import pytest

from headwater.toolkit import (
    RateBudget,
    RateLimitInfo,
    is_rate_limited,
    parse_rate_limit,
)

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, RateLimitInfo()),
        ({"retry-after": "7"}, RateLimitInfo(retry_after=7.0)),
        (  # GitHub: epoch reset
            {
                "x-ratelimit-limit": "60",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(int(NOW) + 3),
            },
            RateLimitInfo(limit=60, remaining=0, reset=3.0),
        ),
        (  # IETF draft, separate fields: delta seconds
            {"ratelimit-limit": "10", "ratelimit-remaining": "0", "ratelimit-reset": "3"},
            RateLimitInfo(limit=10, remaining=0, reset=3.0),
        ),
        (  # IETF draft, combined dictionary
            {"ratelimit": "limit=10, remaining=2, reset=5"},
            RateLimitInfo(limit=10, remaining=2, reset=5.0),
        ),
        (  # IETF draft, newer structured form with its policy
            {"ratelimit": '"default";r=0;t=4', "ratelimit-policy": '"default";q=100;w=60'},
            RateLimitInfo(limit=100, remaining=0, reset=4.0),
        ),
        (
            {"ratelimit-policy": "5;w=1", "ratelimit-remaining": "1"},
            RateLimitInfo(limit=5, remaining=1),
        ),
        (  # epoch milliseconds
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW * 1000) + 2000)},
            RateLimitInfo(remaining=0, reset=2.0),
        ),
        ({"x-ratelimit-remaining": "abc", "ratelimit-reset": "-3"}, RateLimitInfo()),
    ],
)
def test_parse(headers, expected):
    assert expected == parse_rate_limit(headers, now=NOW)


def test_reset_style_decides_delta_or_epoch():
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "30"}
    assert 30.0 == parse_rate_limit(headers, now=NOW).reset
    assert 30.0 == parse_rate_limit(headers, reset_style="delta", now=NOW).reset
    # An epoch reading of 30 lies in the past: no wait.
    assert 0.0 == parse_rate_limit(headers, reset_style="epoch", now=NOW).reset


def test_403_is_a_limit_only_when_it_says_so():
    assert is_rate_limited(403, RateLimitInfo(remaining=0, reset=3))
    assert is_rate_limited(403, RateLimitInfo(retry_after=60))
    assert not is_rate_limited(403, RateLimitInfo(remaining=12, reset=3))
    assert not is_rate_limited(403, RateLimitInfo())
    assert is_rate_limited(429, RateLimitInfo())


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_api_without_headers_is_not_held_back():
    clock = Clock()
    budget = RateBudget(clock=clock)
    first = budget.reserve()
    assert first.go
    assert first.probe
    # Until the probe is back, nobody else goes.
    assert not budget.reserve().go
    budget.done(first, RateLimitInfo())
    slots = [budget.reserve() for _ in range(20)]
    assert all(s.go for s in slots)


def test_zero_remaining_pauses_until_the_reset():
    clock = Clock()
    budget = RateBudget(clock=clock)
    slot = budget.reserve()
    budget.done(slot, RateLimitInfo(limit=3, remaining=0, reset=2.0))
    held = budget.reserve()
    assert not held.go
    assert held.wait == pytest.approx(2.0)
    clock.now += 2.0
    # A new window: the whole limit, and no more.
    slots = [budget.reserve() for _ in range(4)]
    assert [True, True, True, False] == [s.go for s in slots]


def test_concurrent_requests_never_overrun_the_remaining_count():
    clock = Clock()
    budget = RateBudget(clock=clock)
    probe = budget.reserve()
    budget.done(probe, RateLimitInfo(limit=10, remaining=4, reset=5.0))
    slots = [budget.reserve() for _ in range(6)]
    assert 4 == sum(s.go for s in slots)


def test_out_of_order_responses_do_not_raise_the_count():
    clock = Clock()
    budget = RateBudget(clock=clock)
    probe = budget.reserve()
    budget.done(probe, RateLimitInfo(limit=3, remaining=2, reset=5.0))
    a, b = budget.reserve(), budget.reserve()
    budget.done(b, RateLimitInfo(limit=3, remaining=0, reset=5.0))
    budget.done(a, RateLimitInfo(limit=3, remaining=1, reset=5.0))  # older, arrives later
    assert not budget.reserve().go


def test_a_refusal_holds_everyone_until_retry_after():
    clock = Clock()
    budget = RateBudget(clock=clock)
    probe = budget.reserve()
    budget.done(probe, RateLimitInfo(retry_after=3.0), limited=True)
    held = budget.reserve()
    assert not held.go
    assert held.wait == pytest.approx(3.0)
    clock.now += 3.0
    assert budget.reserve().go
