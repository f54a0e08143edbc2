"""
The shared resilience layer: one retry policy and one circuit breaker per endpoint.

Every network connector uses the same two pieces, so a flaky service behaves the same
whether it sits behind PostgreSQL, Azure Blob Storage or a REST API.

Retry policy (`RetryPolicy`, built on tenacity)
    - **What is retried** is decided by `is_retryable`: headwater errors say so through
      their ``retryable`` flag (`ConnectionFailed`, `RateLimited`, HTTP 502/503/504 as
      `ServerError`); builtin connect errors, timeouts and DNS failures are retried too.
      Nothing else is: a 400, 401, 403, 404 or any other 4xx fails at once, and so does a
      `CircuitOpen`. Plugins translate their driver's exceptions to headwater errors
      *inside* the retried function, so the policy sees ``RateLimited`` rather than an
      ``httpx.HTTPStatusError``.
    - **How long to wait** (`RetryPolicy.wait_for`): the service's own ``Retry-After``
      when the error carries one (``exc.retry_after``, seconds; `parse_retry_after` reads
      the header), otherwise exponential backoff ``initial * 2 ** (attempt - 1)`` capped at
      ``maximum``. A uniform random jitter of up to ``jitter`` seconds is added to either,
      so parallel workers throttled together do not come back together.
    - **When to stop**: after ``attempts`` calls, or when the next wait would end past the
      total budget ``timeout`` (measured from the first call). The policy never sleeps
      past its budget; in particular a ``Retry-After`` longer than the remaining budget
      ends the retries at once, because calling earlier than the service asked would only
      earn another refusal. Without a budget (``timeout=None``), a ``Retry-After`` longer
      than ``maximum`` ends the retries the same way.
    - **What the caller sees** when retries end is the *last original exception*, never
      tenacity's ``RetryError``. Each retry is logged at INFO on ``headwater.retry``
      through the redacting logger.

Circuit breaker (`CircuitBreaker`, `breaker_for`)
    One breaker per endpoint and process. *Closed*: calls go through; consecutive
    failures are counted, and only failures `is_retryable` accepts count (a 404 proves
    the service is alive). At ``failure_threshold`` the breaker *opens*: calls are refused
    at once with one `CircuitOpen` error naming the endpoint, the last failure and the
    seconds until the next attempt. After ``reset_timeout`` it is *half-open*: one trial
    call at a time is let through; success closes the breaker, a counted failure opens it
    again for another ``reset_timeout``.

Typical use in a connector::

    policy = RetryPolicy(attempts=config.retries)
    breaker = breaker_for(f"https://{host}:{port}")
    rows = policy.call(lambda: breaker.call(fetch_page))

`CircuitOpen` is not retryable, so once the service is declared dead the retry loop
stops immediately with that one clear error instead of burning its attempts.
"""

from __future__ import annotations

import errno
import math
import random
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, TypeVar

from headwater._redact import get_logger, redact
from headwater.errors import (
    AuthFailed,
    Category,
    CircuitOpen,
    ConnectionFailed,
    ConnectorError,
    HeadwaterError,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
)

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = [
    "NONE",
    "RETRYABLE_STATUS",
    "CircuitBreaker",
    "RetryPolicy",
    "breaker_for",
    "error_for_status",
    "is_retryable",
    "parse_retry_after",
]

T = TypeVar("T")

BreakerState = Literal["closed", "open", "half_open"]

#: HTTP statuses worth another try: throttled, bad gateway, unavailable, gateway timeout.
RETRYABLE_STATUS: Final = frozenset({429, 502, 503, 504})

_log = get_logger("headwater.retry")

# errno values that mean "the network path failed", which some platforms and libraries
# raise as a bare OSError rather than as a ConnectionError subclass. getattr: not every
# platform defines every name.
_NETWORK_ERRNOS: Final = frozenset(
    code
    for code in (
        getattr(errno, name, None)
        for name in (
            "ECONNREFUSED",
            "ECONNRESET",
            "ECONNABORTED",
            "EPIPE",
            "ETIMEDOUT",
            "ENETDOWN",
            "ENETUNREACH",
            "ENETRESET",
            "EHOSTDOWN",
            "EHOSTUNREACH",
        )
    )
    if code is not None
)

# Longest text of a failure quoted in a log line or a CircuitOpen message.
_DESCRIBE_LIMIT: Final = 200


# --------------------------------------------------------------------------- errors


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """
    Read an HTTP ``Retry-After`` header value as a number of seconds to wait.

    Args:
        value: the header value: delta-seconds (``"120"``) or an HTTP-date
            (``"Wed, 21 Oct 2015 07:28:00 GMT"``; the obsolete RFC 850 and asctime forms
            are accepted too, as RFC 9110 asks of recipients).
        now: the current time, for the HTTP-date form; defaults to the system clock (UTC).

    Returns:
        The delay in seconds, never negative (a date in the past means "now", ``0.0``),
        or ``None`` when the value is missing or unparsable (including negative,
        infinite or NaN numbers), in which case the caller falls back to backoff.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        # RFC 9110 allows only non-negative integers; fractions are accepted because
        # some services send them, but nothing negative or non-finite.
        if not math.isfinite(seconds) or seconds < 0:
            return None
        return seconds
    from email.utils import parsedate_to_datetime  # only the date form needs it

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # HTTP dates are always GMT; the asctime form and "-0000" parse as naive.
        when = when.replace(tzinfo=UTC)
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


_HINTS: Final[dict[int, str]] = {
    401: "check the credentials (token, key or password) configured for this source",
    403: "the credentials were accepted but do not allow this operation",
    404: "check the name, path or URL",
    408: "the service timed out waiting for the request; try again",
    410: "the resource was removed; check the name, path or URL",
    429: "the service is throttling requests; lower the request rate or try again later",
}


def error_for_status(
    status: int,
    message: str,
    *,
    retry_after: float | None = None,
    field: str | None = None,
) -> HeadwaterError:
    """
    The headwater error for an HTTP error status (the caller raises it).

    ===========================  ===========================================  =========
    status                       error                                        retryable
    ===========================  ===========================================  =========
    401                          `AuthFailed`                                 no
    403                          `PermissionDenied`                           no
    404, 410                     `NotFound`                                   no
    408                          `ConnectionFailed` (the request timed out)   yes
    429                          `RateLimited` with ``retry_after``           yes
    502, 503, 504                `ServerError` with ``retry_after``           yes
    other 5xx                    `ServerError`                                no
    other 4xx                    `ConnectorError`, category ``config``        no
    anything else                `ConnectorError`, category ``server``        no
    ===========================  ===========================================  =========

    Args:
        status: the HTTP status code.
        message: one line for the user, e.g. ``"GET /v1/items returned 503"``.
        retry_after: the parsed ``Retry-After`` header (see `parse_retry_after`).
        field: the config field at fault, where known.
    """
    hint = _HINTS.get(status)
    if status == 401:
        return AuthFailed(message, field=field, hint=hint)
    if status == 403:
        return PermissionDenied(message, field=field, hint=hint)
    if status in (404, 410):
        return NotFound(message, field=field, hint=hint)
    if status == 408:
        return ConnectionFailed(message, field=field, hint=hint)
    if status == 429:
        return RateLimited(message, retry_after=retry_after, field=field, hint=hint)
    if 500 <= status <= 599:
        return ServerError(
            message,
            retry_after=retry_after,
            retryable=status in RETRYABLE_STATUS,
            field=field,
            hint="the service failed on its side; try again later",
        )
    err = ConnectorError(message, field=field, hint=hint)
    if 400 <= status <= 499:
        # A 4xx we have no class for is a request the service will never accept as
        # sent: a configuration problem on our side, not a server failure.
        err.category = Category.CONFIG  # type: ignore[misc]
        err.hint = "the service rejected the request; check the source's configuration"
    return err


def is_retryable(exc: BaseException) -> bool:
    """
    Whether calling again may succeed; the default ``retry_on`` of `RetryPolicy`.

    - A `HeadwaterError` answers with its ``retryable`` flag (an instance may override
      its class, e.g. ``ServerError(retryable=False)`` for HTTP 500). `CircuitOpen` is
      never retryable: the breaker has already decided.
    - ``TimeoutError`` (which ``socket.timeout`` and ``asyncio.TimeoutError`` are),
      ``ConnectionError`` (refused, reset, aborted, broken pipe) and
      ``socket.gaierror`` (DNS) are retryable.
    - Any other ``OSError`` is retryable only when its ``errno`` names a network failure
      (unreachable host or network, network down, connection reset, ...), which some
      platforms raise as a bare ``OSError``. File-system errors and TLS failures
      (``ssl.SSLError``, a certificate problem will not fix itself) are not.
    - Everything else is not: plugins map their driver's exceptions to headwater errors
      first, and an unknown exception is more likely a bug than a blip.
    """
    if isinstance(exc, CircuitOpen):
        return False
    if isinstance(exc, HeadwaterError):
        return bool(exc.retryable)
    # ssl is costly to import; if nothing imported it, no SSLError can exist.
    ssl = sys.modules.get("ssl")
    if ssl is not None and isinstance(exc, ssl.SSLError):
        return False
    if isinstance(exc, TimeoutError | ConnectionError | socket.gaierror):
        return True
    if isinstance(exc, OSError):
        return exc.errno in _NETWORK_ERRNOS
    return False


def _retry_after(exc: BaseException) -> float | None:
    # RateLimited and ServerError carry the parsed Retry-After; other errors may too.
    value = getattr(exc, "retry_after", None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > _DESCRIBE_LIMIT:
        text = text[: _DESCRIBE_LIMIT - 3] + "..."
    name = type(exc).__name__
    return redact(f"{name}: {text}" if text else name)


# --------------------------------------------------------------------------- retry policy


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """
    How often and how patiently to call a network operation again (immutable, picklable).

    Args:
        attempts: most calls in total, the first included (``1`` means no retries).
        initial: backoff before the second call, in seconds; doubled for each later one.
        maximum: longest backoff (before jitter). Without a total budget it also limits a
            ``Retry-After`` wait: a longer one ends the retries.
        jitter: up to this many random seconds added to every wait.
        timeout: total budget in seconds from the first call; no wait may end past it.
            ``None`` for no budget (attempts still bound the work).
        retry_on: which exceptions are worth another call; `is_retryable` by default.
        sleep: replaces ``time.sleep`` (tests inject a recorder).
        asleep: replaces the async sleep used by `acall` (``asyncio.sleep`` or trio's).
        clock: monotonic seconds, for the total budget (tests inject a fake clock).

    Use ``RetryPolicy.NONE`` (or the module constant ``NONE``) for "call once".
    """

    #: A policy that calls once and never retries.
    NONE: ClassVar[RetryPolicy]

    attempts: int = 5
    initial: float = 0.5
    maximum: float = 30.0
    jitter: float = 1.0
    timeout: float | None = 120.0
    retry_on: Callable[[BaseException], bool] = field(default=is_retryable, repr=False)
    sleep: Callable[[float], None] | None = field(default=None, repr=False, compare=False)
    asleep: Callable[[float], Awaitable[None]] | None = field(
        default=None, repr=False, compare=False
    )
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"attempts must be an int, not {type(self.attempts).__name__}")
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts}")
        for name in ("initial", "maximum", "jitter"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 or None, not {self.timeout!r}")

    def backoff(self, attempt: int) -> float:
        """
        The exponential backoff after failed call number ``attempt`` (1-based), jitter included.

        ``min(initial * 2 ** (attempt - 1), maximum) + uniform(0, jitter)``.
        """
        # Past 2**62 the cap has long won; the bound keeps the float from overflowing.
        exponent = min(max(attempt, 1) - 1, 62)
        return min(self.initial * 2.0**exponent, self.maximum) + self._jitter()

    def wait_for(self, attempt: int, exc: BaseException) -> float:
        """
        Seconds to wait after failed call number ``attempt`` (1-based) raised ``exc``.

        The error's ``retry_after`` (the service's ``Retry-After``) when it has one, plus
        jitter; otherwise `backoff`. Whether that wait still fits the budget is decided
        separately: a wait that does not fit ends the retries rather than being shortened.
        """
        asked = _retry_after(exc)
        if asked is not None:
            return asked + self._jitter()
        return self.backoff(attempt)

    def _jitter(self) -> float:
        if self.jitter <= 0:
            return 0.0
        return random.uniform(0.0, self.jitter)  # noqa: S311  spreads load; not cryptographic

    def call(self, fn: Callable[[], T]) -> T:
        """
        Call ``fn()`` until it returns, retrying as the policy says.

        Returns:
            What ``fn`` returned.

        Raises:
            The last exception ``fn`` raised, unchanged, once it is not retryable, the
            attempts are used up or the budget would be exceeded.
        """
        if self.attempts == 1:
            return fn()
        from tenacity import Retrying, retry_if_exception

        run = _Run(self)
        options: dict[str, Any] = {}
        if self.sleep is not None:
            options["sleep"] = self.sleep
        retrying = Retrying(
            stop=run.stop,
            wait=run.wait,
            retry=retry_if_exception(self.retry_on),
            before_sleep=run.before_sleep,
            reraise=True,
            **options,
        )
        return retrying(fn)

    async def acall(self, fn: Callable[[], Awaitable[T]]) -> T:
        """
        The async twin of `call`: awaits ``fn()`` until it returns, sleeping without blocking.

        Raises:
            The last exception ``fn`` raised, unchanged (see `call`).
        """
        if self.attempts == 1:
            return await fn()
        from tenacity import AsyncRetrying, retry_if_exception

        # tenacity awaits only what it recognises as a coroutine function; a lambda
        # returning an awaitable would be "called" without being awaited.
        async def attempt() -> T:
            return await fn()

        run = _Run(self)
        options: dict[str, Any] = {}
        if self.asleep is not None:
            options["sleep"] = self.asleep
        retrying = AsyncRetrying(
            stop=run.stop,
            wait=run.wait,
            retry=retry_if_exception(self.retry_on),
            before_sleep=run.before_sleep,
            reraise=True,
            **options,
        )
        result: T = await retrying(attempt)
        return result


RetryPolicy.NONE = RetryPolicy(attempts=1)

#: A policy that calls once and never retries (same object as ``RetryPolicy.NONE``).
NONE: Final = RetryPolicy.NONE


class _Run:
    """
    The mutable state of one `RetryPolicy.call`: when it started and the wait chosen after
    each failed call.

    tenacity asks for the wait and for the stop decision separately, in an order that
    changed between versions (8.x stops first, 9.x waits first); both need the same
    jittered delay, so it is computed once per attempt and remembered here.
    """

    __slots__ = ("_delays", "_out_of_attempts", "_policy", "_start")

    def __init__(self, policy: RetryPolicy) -> None:
        from tenacity import stop_after_attempt

        self._policy = policy
        self._out_of_attempts = stop_after_attempt(policy.attempts)
        self._start = policy.clock()
        self._delays: dict[int, float] = {}

    def _delay(self, state: RetryCallState) -> float:
        attempt = state.attempt_number
        delay = self._delays.get(attempt)
        if delay is None:
            delay = self._policy.wait_for(attempt, _exception(state))
            self._delays[attempt] = delay
        return delay

    def wait(self, state: RetryCallState) -> float:
        return self._delay(state)

    def stop(self, state: RetryCallState) -> bool:
        policy = self._policy
        attempt = state.attempt_number
        exc = _exception(state)
        if self._out_of_attempts(state):
            _log.info("giving up after %d attempts; last failure: %s", attempt, _describe(exc))
            return True
        delay = self._delay(state)
        if policy.timeout is None:
            asked = _retry_after(exc)
            if asked is not None and asked > policy.maximum:
                _log.info(
                    "giving up after attempt %d: the service asks to wait %.1fs, more than "
                    "the %.1fs maximum; last failure: %s",
                    attempt,
                    asked,
                    policy.maximum,
                    _describe(exc),
                )
                return True
            return False
        elapsed = policy.clock() - self._start
        if elapsed + delay > policy.timeout:
            _log.info(
                "giving up after attempt %d: waiting %.1fs more would exceed the %.1fs "
                "retry budget (%.1fs used); last failure: %s",
                attempt,
                delay,
                policy.timeout,
                elapsed,
                _describe(exc),
            )
            return True
        return False

    def before_sleep(self, state: RetryCallState) -> None:
        _log.info(
            "attempt %d of %d failed (%s); retrying in %.2fs",
            state.attempt_number,
            self._policy.attempts,
            _describe(_exception(state)),
            self._delay(state),
        )


def _exception(state: RetryCallState) -> BaseException:
    # stop/wait/before_sleep only run after a failed call that retry_on accepted, so the
    # outcome is always an exception; the fallback keeps the types honest.
    exc = state.outcome.exception() if state.outcome is not None else None
    return exc if exc is not None else RuntimeError("no result")


# --------------------------------------------------------------------------- circuit breaker


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
            self._last_failure = _describe(exc)
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


def _forget_breakers() -> None:
    """Drop every process-wide breaker (tests only)."""
    with _breakers_lock:
        _breakers.clear()
