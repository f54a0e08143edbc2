"""
HTTP control flows written once: sans-I/O generators, a short driver per side.

A *flow* yields the steps of its I/O and receives their outcomes: the result sent back
in, or the exception thrown in at the ``yield``, where the flow's own ``try`` and
``with`` blocks handle it (error translation, retries, the breaker, the rate budget).
`run` performs the steps with a blocking ``httpx.Client``, `arun` with an
``httpx.AsyncClient``; neither decides anything. The steps:

* `Send` — ``client.send(request, auth=..., stream=...)``, answered with the response;
* an ``httpx.Response`` — read its body (a streamed response the flow must judge);
* `Pause` — sleep that long (a retry's back-off, the rate limit's pace or reset).

`retried` is the retry loop of a `RetryPolicy` around a circuit breaker as a flow: the
semantics of ``policy.call(lambda: breaker.call(attempt))`` (the same waits, budget and
``headwater.retry`` log lines), with the waits yielded as `Pause` steps.

Nothing here imports httpx: the pagination flows use the same stepping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

if TYPE_CHECKING:
    import httpx

    from headwater.toolkit import CircuitBreaker, RetryPolicy

T = TypeVar("T")


class Send:
    """Send ``request`` (with ``auth``; ``stream``: leave the body unread); answer the response."""

    __slots__ = ("auth", "request", "stream")

    def __init__(
        self, request: httpx.Request, auth: httpx.Auth | None, stream: bool = False
    ) -> None:
        self.request = request
        self.auth = auth
        self.stream = stream


class Pause:
    """Sleep ``seconds``; answered with ``None``."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


Step: TypeAlias = "Send | Pause | httpx.Response"
#: A flow of HTTP steps returning ``T``.
Flow: TypeAlias = Generator[Any, Any, T]


class Steps:
    """A flow run one step at a time: each outcome goes back in, a value or an exception."""

    __slots__ = ("_flow", "error", "reply", "value")

    def __init__(self, flow: Generator[Any, Any, Any]) -> None:
        self._flow = flow
        #: What the last step gave, or the exception it raised (thrown in next).
        self.reply: Any = None
        self.error: BaseException | None = None
        #: What the flow returned, once it has.
        self.value: Any = None

    def __iter__(self) -> Steps:
        return self

    def __next__(self) -> Any:
        error = self.error
        try:
            if error is None:
                return self._flow.send(self.reply)
            self.error = None
            return self._flow.throw(error)
        except StopIteration as stop:
            self.value = stop.value
            raise StopIteration from None

    def settle(self, perform: Callable[[Any, Any], Any], client: Any, step: Any) -> None:
        """Perform ``step`` with the blocking ``perform``; keep its outcome for the flow."""
        try:
            self.reply = perform(client, step)
        except BaseException as exc:  # thrown into the flow, which decides
            self.error = exc

    def close(self) -> None:
        self._flow.close()


def _perform(client: httpx.Client, step: Step) -> Any:
    if step.__class__ is Send:
        return client.send(step.request, auth=step.auth, stream=step.stream)
    if step.__class__ is Pause:
        return time.sleep(step.seconds)
    return step.read()  # type: ignore[union-attr]  # the one step left: a response


async def _await_other(step: Pause | httpx.Response) -> Any:
    if step.__class__ is Pause:
        # Imported here: a sync read never needs asyncio (~20 ms of a first request).
        import asyncio

        return await asyncio.sleep(step.seconds)
    return await step.aread()  # type: ignore[union-attr]  # a response


def run(flow: Flow[T], client: httpx.Client) -> T:
    """Run ``flow`` with blocking I/O on ``client``; what it returns."""
    steps = Steps(flow)
    for step in steps:
        steps.settle(_perform, client, step)
    return steps.value  # type: ignore[no-any-return]


async def arun(flow: Flow[T], client: httpx.AsyncClient) -> T:
    """Run ``flow`` with async I/O on ``client``; what it returns."""
    steps = Steps(flow)
    for step in steps:
        try:
            # A request is awaited right here: no coroutine of its own on the hot path.
            if step.__class__ is Send:
                steps.reply = await client.send(step.request, auth=step.auth, stream=step.stream)
            else:
                steps.reply = await _await_other(step)
        except BaseException as exc:  # thrown into the flow, which decides
            steps.error = exc
    return steps.value  # type: ignore[no-any-return]


# --- retries --------------------------------------------------------------------------------


def retried(
    policy: RetryPolicy,
    breaker: CircuitBreaker,
    attempt: Callable[[], Flow[T]],
    retry_on: Callable[[BaseException], bool] | None = None,
) -> Flow[T]:
    """
    ``attempt()``'s flow through ``breaker``, tried again as ``policy`` says (``retry_on``
    replaces its ``retry_on``): what the last try returned, or the last exception it
    raised, unchanged. `CircuitOpen` is not retryable: an open breaker ends it at once.
    """
    start = policy.clock() if policy.attempts > 1 else 0.0
    number = 0
    while True:
        number += 1
        try:
            breaker.before_call()
            try:
                result = yield from attempt()
            except BaseException as exc:
                breaker.record_failure(exc)
                raise
            breaker.record_success()
            return result
        except Exception as exc:
            delay = policy.next_wait(number, exc, start, retry_on)
            if delay is None:
                raise
        yield Pause(delay)
