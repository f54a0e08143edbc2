"""
Rate limits as services announce them: header parsing and a shared per-origin budget.

Sans-I/O: nothing here sends or sleeps. A client asks its `RateBudget` for a `Slot`
before each request, sleeps ``slot.wait`` seconds (``time.sleep`` or ``asyncio.sleep``)
and asks again until the wait is zero, sends, and reports the response's
`RateLimitInfo` with `RateBudget.done`. So a sync client with threads and an async
client with tasks share one budget and one logic.

Headers read (`parse_rate_limit`):

- ``Retry-After`` (RFC 9110): seconds or an HTTP date;
- the IETF draft (draft-ietf-httpapi-ratelimit-headers): ``RateLimit-Limit``,
  ``RateLimit-Remaining``, ``RateLimit-Reset`` (delta seconds), the combined
  ``RateLimit: limit=10, remaining=0, reset=3`` and ``RateLimit: "default";r=0;t=3``
  forms, and ``RateLimit-Policy: 10;w=60`` / ``"default";q=10;w=60`` for the limit;
- the common ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``
  (GitHub, Twitter: epoch seconds; others: delta seconds; ``reset_style`` says which,
  ``auto`` takes values past 10**9 for epoch seconds and past 10**12 for epoch ms).

The budget (`RateBudget`) waits *until the announced reset* instead of guessing a
back-off: after a response saying 0 remain it holds every request until the reset
(plus jitter), so the limited response is the last one, not the first of several.
It counts the remaining requests down itself, so concurrent readers do not overrun a
window together: at most the announced remaining count goes out, and after a reset at
most the announced limit (or a single probe when the limit is unknown).
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from headwater._status import parse_retry_after

__all__ = [
    "RateBudget",
    "RateLimitInfo",
    "ResetStyle",
    "Slot",
    "is_rate_limited",
    "parse_rate_limit",
]

#: How ``X-RateLimit-Reset`` is read: ``auto`` guesses epoch or delta from the size.
ResetStyle = Literal["auto", "epoch", "delta"]

_EPOCH_SECONDS: Final = 1_000_000_000
_EPOCH_MILLIS: Final = 1_000_000_000_000
#: How long a request waits for the single probe of an unknown budget to come back.
_POLL: Final = 0.02


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """What one response said about the rate limit (``None``: it did not say)."""

    limit: int | None = None
    remaining: int | None = None
    #: Seconds from the response until the window resets.
    reset: float | None = None
    #: The parsed ``Retry-After``, seconds.
    retry_after: float | None = None

    @property
    def empty(self) -> bool:
        """True when the response carried no rate-limit header at all."""
        return (
            self.limit is None
            and self.remaining is None
            and self.reset is None
            and (self.retry_after is None)
        )

    @property
    def wait(self) -> float | None:
        """Seconds the service asks us to wait (``Retry-After``, else the reset), if it says."""
        return self.retry_after if self.retry_after is not None else self.reset


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip().split(",")[0].split(";")[0].strip()
    try:
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return int(number)


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    text = value.strip().split(",")[0].strip()
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _reset_seconds(value: float, style: ResetStyle, now: float) -> float:
    if style == "delta" or (style == "auto" and value < _EPOCH_SECONDS):
        return value
    if style == "auto" and value >= _EPOCH_MILLIS:
        value /= 1000.0
    return max(0.0, value - now)


_PARAM = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*\"?([^;,\"\s]*)\"?")


def _structured(value: str | None) -> dict[str, str]:
    """The ``key=value`` members and parameters of an IETF ``RateLimit`` header (first item)."""
    if not value:
        return {}
    found: dict[str, str] = {}
    for key, raw in _PARAM.findall(value):
        found.setdefault(key.lower(), raw)
    return found


def parse_rate_limit(
    headers: Mapping[str, str],
    *,
    reset_style: ResetStyle = "auto",
    now: float | None = None,
) -> RateLimitInfo:
    """
    Read the rate-limit headers of a response (``headers``: a case-insensitive mapping).

    Args:
        headers: the response headers (httpx's are case-insensitive; give lower-case
            names otherwise).
        reset_style: how ``X-RateLimit-Reset`` is read (``RateLimit-Reset`` is always
            delta seconds, as the IETF draft says).
        now: epoch seconds for epoch resets (tests); the system clock by default.
    """
    now = time.time() if now is None else now
    retry_after = parse_retry_after(headers.get("retry-after"))
    limit = _int(headers.get("ratelimit-limit"))
    remaining = _int(headers.get("ratelimit-remaining"))
    reset = _seconds(headers.get("ratelimit-reset"))
    combined = _structured(headers.get("ratelimit"))
    if combined:
        remaining = (
            remaining
            if remaining is not None
            else _int(combined.get("remaining", combined.get("r")))
        )
        reset = reset if reset is not None else _seconds(combined.get("reset", combined.get("t")))
        limit = limit if limit is not None else _int(combined.get("limit"))
    policy = _structured(headers.get("ratelimit-policy"))
    if limit is None:
        limit = _int(headers.get("ratelimit-policy")) if not policy.get("q") else _int(policy["q"])
    if remaining is None:
        remaining = _int(headers.get("x-ratelimit-remaining"))
    if limit is None:
        limit = _int(headers.get("x-ratelimit-limit"))
    if reset is None:
        raw = _seconds(headers.get("x-ratelimit-reset"))
        if raw is not None:
            reset = _reset_seconds(raw, reset_style, now)
    return RateLimitInfo(limit=limit, remaining=remaining, reset=reset, retry_after=retry_after)


def is_rate_limited(status: int, info: RateLimitInfo) -> bool:
    """
    Whether a response is a rate-limit refusal: a ``429``, or a ``403`` that says none
    remain or asks for a ``Retry-After`` (GitHub's primary and secondary limits), which
    is not a permission problem.
    """
    if status == 429:
        return True
    return status == 403 and (info.remaining == 0 or info.retry_after is not None)


@dataclass(frozen=True, slots=True)
class Slot:
    """The answer of `RateBudget.reserve`: wait this long and ask again, or go (``wait == 0``)."""

    wait: float
    #: The request is the one probe of a budget whose remaining count is unknown.
    probe: bool = False
    #: Monotonic time the wait ends (for messages: when the limit resets).
    until: float = 0.0

    @property
    def go(self) -> bool:
        """True when the request may be sent now (it must then be reported with `done`)."""
        return self.wait <= 0


class RateBudget:
    """
    The requests one origin still allows, shared by every reader of a connector.

    Until a first response shows whether the service announces a limit, one request at a
    time goes out (so concurrent readers cannot overrun a window they do not know yet); a
    service that announces nothing is then not held back at all.

    Args:
        jitter: up to this many random seconds added after a reset, so clients held
            together do not all return at the very same instant.
        clock: monotonic seconds (tests inject a fake one).
    """

    def __init__(
        self,
        *,
        jitter: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jitter = max(0.0, jitter)
        self._clock = clock
        self._lock = threading.Lock()
        #: ``None``: no response seen yet; False: the service announces nothing.
        self._managed: bool | None = None
        self._limit: int | None = None
        self._remaining: int | None = None
        self._reset_at: float | None = None
        #: The lowest remaining count the service reported in the current window.
        self._low: int | None = None
        self._blocked_until = 0.0
        self._in_flight = 0
        self._probing = False

    def _jitter(self) -> float:
        if self.jitter <= 0:
            return 0.0
        return random.uniform(0.0, self.jitter)  # noqa: S311  spreads load; not cryptographic

    def reserve(self) -> Slot:
        """Ask to send one request: go now, or wait ``slot.wait`` seconds and ask again."""
        with self._lock:
            now = self._clock()
            if now < self._blocked_until:
                return Slot(self._blocked_until - now, until=self._blocked_until)
            if self._reset_at is not None and now >= self._reset_at:
                # A new window: the whole limit again, when we know it.
                self._remaining = self._limit
                self._reset_at = None
                self._low = None
            if self._managed is False:
                self._in_flight += 1
                return Slot(0.0)
            if self._remaining is None:
                if self._probing or self._in_flight > 0:
                    return Slot(_POLL, until=now + _POLL)
                self._probing = True
                self._in_flight += 1
                return Slot(0.0, probe=True)
            if self._remaining > 0:
                self._remaining -= 1
                self._in_flight += 1
                return Slot(0.0)
            if self._reset_at is not None:
                self._blocked_until = self._reset_at + self._jitter()
                return Slot(self._blocked_until - now, until=self._blocked_until)
            if self._in_flight > 0:
                # Spent in a new window whose reset the responses in flight will tell.
                return Slot(_POLL, until=now + _POLL)
            # None remain and no reset announced: find out with one probe.
            self._remaining = None
            self._probing = True
            self._in_flight += 1
            return Slot(0.0, probe=True)

    def done(self, slot: Slot, info: RateLimitInfo | None, *, limited: bool = False) -> None:
        """
        Report the response to a request sent on ``slot`` (``info`` ``None``: no response,
        the request failed on the way). ``limited``: the service refused it for the rate
        limit; every reader then waits for the announced reset or ``Retry-After``.
        """
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            if slot.probe:
                self._probing = False
            if info is None:
                return
            if info.empty and not limited:
                if self._managed is None:
                    self._managed = False
                return
            self._managed = True
            now = self._clock()
            if info.limit is not None:
                self._limit = info.limit
            if info.remaining is not None and not (info.reset is not None and info.reset <= 0):
                # Responses of one window can come back in any order: the service's count
                # only goes down within a window, so the lowest it reported holds until a
                # later reset announces a new window.
                fresh = info.reset is not None and (
                    self._reset_at is None or now + info.reset > self._reset_at + 0.5
                )
                if fresh or self._low is None:
                    self._low = info.remaining
                else:
                    self._low = min(self._low, info.remaining)
                # The others in flight were counted down here but perhaps not yet by the
                # service: assume they were not, so we never overrun the window.
                estimate = self._low - self._in_flight
                if estimate > 0:
                    self._remaining = estimate
                elif self._low > 0:
                    # Some remain if the service counted those in flight already: ask
                    # once they are back rather than wait for a reset needlessly.
                    self._remaining = None
                else:
                    self._remaining = 0
                if info.reset is not None and (fresh or self._reset_at is None):
                    self._reset_at = now + info.reset
            if limited:
                wait = info.wait
                if wait is not None:
                    self._remaining = 0
                    self._low = 0
                    self._reset_at = now + wait
                else:
                    # Refused without saying until when: probe again after the caller's
                    # own back-off.
                    self._remaining = None
            if self._remaining == 0 and self._reset_at is not None:
                self._blocked_until = max(self._blocked_until, self._reset_at + self._jitter())
            elif self._remaining == 0:
                self._remaining = None
