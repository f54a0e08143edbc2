"""
One circuit breaker per endpoint and process (`CircuitBreaker`, `breaker_for`).

    One breaker per endpoint and process. *Closed*: calls go through; consecutive
failures are counted, and only failures `is_retryable` accepts count (a 404 proves
the service is alive). At ``failure_threshold`` the breaker *opens*: calls are refused
at once with one `CircuitOpen` error naming the endpoint, the last failure and the
seconds until the next attempt. After ``reset_timeout`` it is *half-open*: one trial
call at a time is let through; success closes the breaker, a counted failure opens it
again for another ``reset_timeout``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from headwater._redact import get_logger, redact
from headwater._status import describe_failure, is_retryable
from headwater.errors import CircuitOpen

__all__ = ["BreakerState", "CircuitBreaker", "breaker_for", "reset_breakers"]

T = TypeVar("T")

BreakerState = Literal["closed", "open", "half_open"]

_log = get_logger("headwater.retry")


class CircuitBreaker:
    """
    Stops calling an endpoint that keeps failing, so a dead service is one clear error.

    States: ``closed`` (calls pass; consecutive retryable failures are counted),
    ``open`` (calls are refused with `CircuitOpen` until ``reset_timeout`` has passed)
    and ``half_open`` (one trial call at a time passes; its success closes the breaker,
    its failure opens it again). Only failures that `is_retryable` accepts count; any
    other outcome, a 404 for instance, shows the service is answering and counts as a
    success. Thread-safe; share one per endpoint through `breaker_for`.

    Args:
        name: the endpoint, as shown in messages (``https://api.example.com``).
        failure_threshold: consecutive counted failures that open the breaker.
        reset_timeout: seconds the breaker stays open before letting a trial call through.
        clock: monotonic seconds (tests inject a fake clock).
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, not {failure_threshold}")
        if not math.isfinite(reset_timeout) or reset_timeout < 0:
            raise ValueError(f"reset_timeout must be a finite number >= 0, not {reset_timeout!r}")
        #: The endpoint this breaker guards.
        self.name = name
        #: Consecutive counted failures that open the breaker.
        self.failure_threshold = failure_threshold
        #: Seconds the breaker stays open before a trial call.
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        # When the half-open trial call was admitted; None while no trial is running.
        self._trial_since: float | None = None
        self._last_failure = ""

    def __repr__(self) -> str:
        return redact(f"CircuitBreaker({self.name!r}, state={self.state!r})")

    def __reduce__(self) -> tuple[Any, ...]:
        # A breaker crosses a process boundary (Dask, Ray) as its endpoint: the receiving
        # process guards that endpoint with its own breaker, since health is per process.
        return (_breaker_from_pickle, (self.name, self.failure_threshold, self.reset_timeout))

    @property
    def state(self) -> BreakerState:
        """
        ``"closed"``, ``"open"`` or ``"half_open"``; open reads as half-open once
        ``reset_timeout`` has passed.
        """
        with self._lock:
            return self._current_state(self._clock())

    @property
    def failures(self) -> int:
        """Consecutive counted failures so far (reset by a success)."""
        with self._lock:
            return self._failures

    def _current_state(self, now: float) -> BreakerState:
        # Caller holds the lock. The open -> half-open move happens lazily, on inspection.
        if self._state == "open" and now - self._opened_at >= self.reset_timeout:
            self._state = "half_open"
            self._trial_since = None
            _log.info("circuit half-open for %s: the next call is a trial", self.name)
        return self._state

    def before_call(self) -> None:
        """
        Admit a call or refuse it.

        Raises:
            CircuitOpen: the breaker is open, or half-open with its one trial call still
                running. The message names the endpoint, the last failure and when to retry.
        """
        with self._lock:
            now = self._clock()
            state = self._current_state(now)
            if state == "closed":
                return
            if state == "half_open":
                # A trial that never reported back (its caller died) must not block the
                # endpoint forever: after reset_timeout another trial is admitted.
                if self._trial_since is None or now - self._trial_since >= self.reset_timeout:
                    self._trial_since = now
                    return
                raise CircuitOpen(
                    f"{self.name} is not being called: it failed {self._failures} times in a "
                    f"row (last: {self._last_failure}) and a trial call is checking whether "
                    f"it has recovered; retry in about {self._seconds(self.reset_timeout)}s "
                    "at most",
                    hint=self._hint(),
                )
            remaining = self.reset_timeout - (now - self._opened_at)
            raise CircuitOpen(
                f"{self.name} is not being called: it failed {self._failures} times in a "
                f"row (last: {self._last_failure}); next attempt allowed in "
                f"{self._seconds(remaining)}s",
                hint=self._hint(),
            )

    @staticmethod
    def _seconds(value: float) -> int:
        # Rounded up, so a breaker that is still open never says "0s".
        return max(1, math.ceil(value))

    @staticmethod
    def _hint() -> str:
        return "check that the service is running and reachable, or wait and try again"

    def record_success(self) -> None:
        """Report that a call went through: the breaker closes and the count restarts."""
        with self._lock:
            previous = self._state
            self._state = "closed"
            self._failures = 0
            self._trial_since = None
            if previous != "closed":
                _log.info("circuit closed for %s: it answered again", self.name)

    def record_failure(self, exc: BaseException) -> None:
        """
        Report that a call raised ``exc``.

        Only failures `is_retryable` accepts count towards opening the breaker; any other
        error came from a service that answered, so it counts as a success. A
        cancellation (``KeyboardInterrupt``, ``asyncio.CancelledError``) says nothing
        about the service: it only frees the half-open trial slot.
        """
        if not isinstance(exc, Exception):
            with self._lock:
                self._trial_since = None
            return
        if not is_retryable(exc):
            self.record_success()
            return
        with self._lock:
            now = self._clock()
            state = self._current_state(now)
            self._failures += 1
            self._last_failure = describe_failure(exc)
            if state == "half_open" or (
                state == "closed" and self._failures >= self.failure_threshold
            ):
                self._state = "open"
                self._opened_at = now
                self._trial_since = None
                _log.warning(
                    "circuit open for %s after %d consecutive failures (last: %s); "
                    "refusing calls for %.1fs",
                    self.name,
                    self._failures,
                    self._last_failure,
                    self.reset_timeout,
                )
            # Already open: a late failure of a call admitted earlier; the cool-down stands.

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` through the breaker: admit (or raise `CircuitOpen`), call, record."""
        self.before_call()
        try:
            result = fn()
        except BaseException as exc:
            self.record_failure(exc)
            raise
        self.record_success()
        return result

    async def acall(self, fn: Callable[[], Awaitable[T]]) -> T:
        """The async twin of `call`."""
        self.before_call()
        try:
            result = await fn()
        except BaseException as exc:
            self.record_failure(exc)
            raise
        self.record_success()
        return result


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(
    endpoint: str,
    *,
    failure_threshold: int = 5,
    reset_timeout: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> CircuitBreaker:
    """
    The process-wide breaker for ``endpoint``, created on first use.

    Every caller naming the same endpoint (``scheme://host:port`` is a good key) gets the
    same object, so all connectors and threads talking to one service share its health.
    The keyword arguments apply only when the breaker is created; later calls get the
    existing breaker unchanged.
    """
    with _breakers_lock:
        breaker = _breakers.get(endpoint)
        if breaker is None:
            breaker = CircuitBreaker(
                endpoint,
                failure_threshold=failure_threshold,
                reset_timeout=reset_timeout,
                clock=clock,
            )
            _breakers[endpoint] = breaker
        return breaker


def _breaker_from_pickle(name: str, failure_threshold: int, reset_timeout: float) -> CircuitBreaker:
    return breaker_for(name, failure_threshold=failure_threshold, reset_timeout=reset_timeout)


def reset_breakers() -> None:
    """
    Drop every process-wide breaker, so the next `breaker_for` makes a new one: for test
    suites, which must not let one test's dead endpoint refuse the next test's calls.
    """
    with _breakers_lock:
        _breakers.clear()
