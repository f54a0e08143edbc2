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

    def next_wait(
        self,
        attempt: int,
        exc: BaseException,
        started: float,
        retry_on: Callable[[BaseException], bool] | None = None,
    ) -> float | None:
        """
        The decision after failed call number ``attempt`` (1-based) raised ``exc``: the
        seconds to wait before the next call, or ``None`` to give up and raise ``exc``.
        ``started`` is `clock`'s reading at the first call (the budget's start);
        ``retry_on`` replaces the policy's own. Logged on ``headwater.retry`` either way.

        This is the whole policy, without I/O: `call` and `acall` run it through
        tenacity, and a sans-I/O flow (one that yields its waits to a sync or an async
        driver) calls it directly.
        """
        if self.attempts == 1 or not (retry_on or self.retry_on)(exc):
            return None
        if attempt >= self.attempts:
            _log.info(
                "giving up after %d attempts; last failure: %s", attempt, describe_failure(exc)
            )
            return None
        delay = self.wait_for(attempt, exc)
        if self.timeout is None:
            asked = retry_after_of(exc)
            if asked is not None and asked > self.maximum:
                _log.info(
                    "giving up after attempt %d: the service asks to wait %.1fs, more than "
                    "the %.1fs maximum; last failure: %s",
                    attempt,
                    asked,
                    self.maximum,
                    describe_failure(exc),
                )
                return None
        else:
            elapsed = self.clock() - started
            if elapsed + delay > self.timeout:
                _log.info(
                    "giving up after attempt %d: waiting %.1fs more would exceed the %.1fs "
                    "retry budget (%.1fs used); last failure: %s",
                    attempt,
                    delay,
                    self.timeout,
                    elapsed,
                    describe_failure(exc),
                )
                return None
        _log.info(
            "attempt %d of %d failed (%s); retrying in %.2fs",
            attempt,
            self.attempts,
            describe_failure(exc),
            delay,
        )
        return delay

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
    One `RetryPolicy.call` through tenacity: `RetryPolicy.next_wait` decides once per
    failed call, and tenacity's separate stop and wait questions (asked in an order that
    changed between versions: 8.x stops first, 9.x waits first) read that one decision.
    """

    __slots__ = ("_decisions", "_policy", "_start")

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._start = policy.clock()
        self._decisions: dict[int, float | None] = {}

    def _decision(self, state: RetryCallState) -> float | None:
        attempt = state.attempt_number
        if attempt not in self._decisions:
            self._decisions[attempt] = self._policy.next_wait(
                attempt, _exception(state), self._start
            )
        return self._decisions[attempt]

    def wait(self, state: RetryCallState) -> float:
        return self._decision(state) or 0.0

    def stop(self, state: RetryCallState) -> bool:
        return self._decision(state) is None


def _exception(state: RetryCallState) -> BaseException:
    # stop/wait/before_sleep only run after a failed call that retry_on accepted, so the
    # outcome is always an exception; the fallback keeps the types honest.
    exc = state.outcome.exception() if state.outcome is not None else None
    return exc if exc is not None else RuntimeError("no result")
