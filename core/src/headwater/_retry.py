"""
The retry policy every network connector uses (`RetryPolicy`, built on tenacity).

- **What is retried** is decided by `is_retryable` (`headwater._status`): errors whose
  ``retryable`` flag says so, connect errors, timeouts and DNS failures; never a 4xx
  other than 429, nor a `CircuitOpen`.
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

What is worth another try, and how an HTTP status reads, is `headwater._status`; the
circuit breaker that stops calling a dead endpoint is `headwater._breaker`.

Typical use in a connector::

    policy = RetryPolicy(attempts=config.retries)
    breaker = breaker_for(f"https://{host}:{port}")
    rows = policy.call(lambda: breaker.call(fetch_page))

`CircuitOpen` is not retryable, so once the service is declared dead the retry loop
stops immediately with that one clear error instead of burning its attempts.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

from headwater._redact import get_logger
from headwater._status import describe_failure, is_retryable, retry_after_of

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = ["NONE", "RetryPolicy"]

T = TypeVar("T")

_log = get_logger("headwater.retry")


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
        asked = retry_after_of(exc)
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
            _log.info(
                "giving up after %d attempts; last failure: %s", attempt, describe_failure(exc)
            )
            return True
        delay = self._delay(state)
        if policy.timeout is None:
            asked = retry_after_of(exc)
            if asked is not None and asked > policy.maximum:
                _log.info(
                    "giving up after attempt %d: the service asks to wait %.1fs, more than "
                    "the %.1fs maximum; last failure: %s",
                    attempt,
                    asked,
                    policy.maximum,
                    describe_failure(exc),
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
                describe_failure(exc),
            )
            return True
        return False

    def before_sleep(self, state: RetryCallState) -> None:
        _log.info(
            "attempt %d of %d failed (%s); retrying in %.2fs",
            state.attempt_number,
            self._policy.attempts,
            describe_failure(_exception(state)),
            self._delay(state),
        )


def _exception(state: RetryCallState) -> BaseException:
    # stop/wait/before_sleep only run after a failed call that retry_on accepted, so the
    # outcome is always an exception; the fallback keeps the types honest.
    exc = state.outcome.exception() if state.outcome is not None else None
    return exc if exc is not None else RuntimeError("no result")
