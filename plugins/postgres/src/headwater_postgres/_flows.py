"""
The control flow of every postgres operation, written once for psycopg's two APIs.

A *flow* is a generator that never touches the network itself: it yields *steps* and
receives their outcomes. The driver — `drive` / `drive_items` with psycopg's blocking
objects, `adrive` / `adrive_items` with its async ones — performs each step and sends
its result back in, or throws its exception in at the ``yield``, where the flow's own
``try`` blocks see it (error translation, the diagnosis of a pool timeout, a write's
failure said in terms of its records). So connecting, retrying, planning a read, the
COPY of a write with its staging table, upsert and state, and every catalog call exist
once; each side only says how a step is performed. The steps:

* `Call` — method calls on a psycopg object (a connection, cursor, COPY or pool), each
  on the result of the one before (``conn.execute(...)`` then ``fetchone()``); the async
  driver awaits each one. Calls that do no I/O (``conn.cursor()``, ``cur.rowcount``)
  the flow makes itself: they are the same on both sides.
* `Within` — a context (a pooled or direct connection, a transaction, a cursor, a COPY)
  entered with ``with`` or ``async with``, and a body flow run inside it. It ends as a
  ``with`` block does: the body's exception goes through the context's exit (a rollback,
  a broken connection discarded), and what comes out — the body's result, its exception,
  a failed commit — comes back to the flow at the ``yield``.
* `Retried` — a flow made and run again while it fails transiently, as the retry policy
  says and through the server's breaker (`RetryPolicy.call` / ``acall``: the decisions
  are the policy's, the flow says what an attempt is and translates its errors).
* `CopyRows` — one batch of rows into a COPY: one step per batch, never per row (the
  sync driver's loop runs in C).
* `Blocking` — a call that blocks (the COPY-text and Arrow reads, which only the sync
  connection runs: the async twin reads those formats in a worker thread); the async
  driver runs it in a worker thread.
* `DIRECT`, `POOL`, `PULL` — a new connection outside the pool; the connector's pool for
  this side; the next batch of a write's source (`END` after the last).

Anything else a flow yields is an item (a `Batch`, or the connection a `lend` body hands
out): the driver passes it on to its consumer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

if TYPE_CHECKING:
    from headwater.toolkit import CircuitBreaker, RetryPolicy

R = TypeVar("R")

#: A flow returning an ``R``.
Flow: TypeAlias = Generator[Any, Any, R]


# --- steps ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """Calls on ``target``, each on the result of the one before; the last one's result."""

    target: Any
    calls: tuple[tuple[str, tuple[Any, ...], dict[str, Any]], ...]

    def then(self, method: str, *args: Any, **kwargs: Any) -> Call:
        """This step, then ``method`` called on its result."""
        return Call(self.target, (*self.calls, (method, args, kwargs)))


def call(target: Any, method: str, *args: Any, **kwargs: Any) -> Call:
    """The step calling ``target.method(*args, **kwargs)``."""
    return Call(target, ((method, args, kwargs),))


@dataclasses.dataclass(frozen=True, slots=True)
class Within:
    """``body(value)`` run inside ``scope`` (``with scope as value`` / ``async with``)."""

    scope: Any
    body: Callable[[Any], Flow[Any]]


@dataclasses.dataclass(frozen=True, slots=True)
class Retried:
    """``attempt()`` run again while ``policy`` says so, through ``breaker``."""

    attempt: Callable[[], Flow[Any]]
    policy: RetryPolicy
    breaker: CircuitBreaker


@dataclasses.dataclass(frozen=True, slots=True)
class CopyRows:
    """Write ``rows`` (value sequences) into the COPY ``copy``."""

    copy: Any
    rows: Iterable[Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Blocking:
    """``function(*args)``, which blocks: in a worker thread on the async side."""

    function: Callable[..., Any]
    args: tuple[Any, ...] = ()


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: A new connection outside the pool (the caller closes it, or enters it with `Within`).
DIRECT: Final = _Marker("DIRECT")
#: The connector's pool for the driver's side (opened on first use).
POOL: Final = _Marker("POOL")
#: The next batch of the driver's source (a write's batches); `END` after the last.
PULL: Final = _Marker("PULL")
#: What `PULL` gives once the source is exhausted (and `next_of` at an iterator's end).
END: Final = _Marker("END")

_STEPS: Final = (Call, Within, Retried, CopyRows, Blocking, _Marker)


# --- small flows ------------------------------------------------------------------------


def within(scope: Any, body: Callable[[Any], Flow[R]]) -> Flow[R]:
    """``body`` inside ``scope``: its result, or its exception after the scope's exit."""
    result: R = yield Within(scope, body)
    return result


def one(step: Call) -> Flow[Any]:
    """The flow of the one step ``step``: its result."""
    return (yield step)


def execute(conn: Any, statement: Any, params: Any = None) -> Call:
    """The step running ``statement`` on ``conn`` (its cursor as the result)."""
    return call(conn, "execute", statement, params)


def fetchone(conn: Any, statement: Any, params: Any = None) -> Call:
    """The step running ``statement`` on ``conn``: its first row, or None."""
    return execute(conn, statement, params).then("fetchone")


def fetchall(conn: Any, statement: Any, params: Any = None) -> Call:
    """The step running ``statement`` on ``conn``: every row of its result."""
    return execute(conn, statement, params).then("fetchall")


def direct(body: Callable[[Any], Flow[R]]) -> Flow[R]:
    """``body`` on a new connection outside the pool, closed at the end."""
    conn = yield DIRECT
    return (yield from within(conn, body))


def items_of(iterator: Iterator[Any]) -> Flow[None]:
    """Yield what a blocking iterator gives, one `Blocking` step each; close it at the end."""
    try:
        while (item := (yield Blocking(next, (iterator, END)))) is not END:
            yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def lend(value: Any) -> Flow[None]:
    """A body handing ``value`` out as an item: `lent` gives it to a ``with`` block."""
    yield value


# --- drivers ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Client:
    """
    What a driver performs `DIRECT`, `POOL` and `PULL` with: the connector's functions
    for its side (sync functions for `drive`, coroutine functions for `adrive`), and the
    source of a write (an iterator; for `adrive`, an async or a sync one).
    """

    direct: Callable[[], Any] | None = None
    pool: Callable[[], Any] | None = None
    source: Iterator[Any] | AsyncIterator[Any] | None = None


def _call(step: Call) -> Any:
    result = step.target
    for method, args, kwargs in step.calls:
        result = getattr(result, method)(*args, **kwargs)
    return result


def _marked(step: _Marker, client: Client) -> Any:
    """`DIRECT`, `POOL` or `PULL` by the sync driver."""
    if step is PULL:
        source = client.source
        if source is None:
            return END
        assert isinstance(source, Iterator), "the sync driver pulls from a sync iterator"
        return next(source, END)
    perform = client.direct if step is DIRECT else client.pool
    if perform is None:
        raise TypeError(f"this driver has nothing to perform {step!r} with")
    return perform()


def _retried(step: Retried, client: Client) -> Any:
    breaker = step.breaker
    return step.policy.call(lambda: breaker.call(lambda: drive(step.attempt(), client)))


class _Steps:
    """
    The flow's side of a driver, the same for both: iterating gives the next step to
    perform, given the outcome of the last — its result in `reply`, or the exception
    that escaped the ``with steps:`` block performing it, thrown into the flow at its
    ``yield`` (the flow decides). The flow's return value ends up in `result`.
    """

    __slots__ = ("error", "flow", "reply", "result")

    def __init__(self, flow: Flow[Any]) -> None:
        self.flow = flow
        self.reply: Any = None
        self.error: Exception | None = None
        self.result: Any = None

    def __iter__(self) -> _Steps:
        return self

    def __next__(self) -> Any:
        try:
            step = self.flow.send(self.reply) if self.error is None else self.flow.throw(self.error)
        except StopIteration as stop:
            self.result = stop.value
            raise StopIteration from None
        self.reply = self.error = None
        return step

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> bool:
        if isinstance(error, Exception):
            self.error = error
            return True
        return False  # GeneratorExit, KeyboardInterrupt: not the flow's to decide


def _copy_rows(step: CopyRows, client: Client) -> None:
    # deque(map(...), 0): the per-row loop runs in C.
    collections.deque(map(step.copy.write_row, step.rows), 0)


def _blocking(step: Blocking, client: Client) -> Any:
    return step.function(*step.args)


#: How the sync driver performs each kind of step but `Within` and items.
_PERFORM: Final[dict[type, Callable[[Any, Client], Any]]] = {
    Call: lambda step, client: _call(step),
    CopyRows: _copy_rows,
    Blocking: _blocking,
    Retried: _retried,
    _Marker: _marked,
}


def _run(flow: Flow[R], client: Client) -> Generator[Any, Any, R]:
    """Run ``flow`` with psycopg's blocking API; yield its items, return its result."""
    steps = _Steps(flow)
    with contextlib.closing(flow):
        for step in steps:
            with steps:
                perform = _PERFORM.get(type(step))
                if perform is not None:
                    steps.reply = perform(step, client)
                elif type(step) is Within:
                    with step.scope as value:
                        steps.reply = yield from _run(step.body(value), client)
                else:
                    # An item; an exception thrown in here (a `lent` block's) goes to the flow.
                    yield step
        result: R = steps.result
        return result


def drive(flow: Flow[R], client: Client) -> R:
    """Run ``flow`` (one that yields no item) with psycopg's blocking API; its result."""
    steps = _run(flow, client)
    try:
        item = next(steps)
    except StopIteration as stop:
        result: R = stop.value
        return result
    steps.close()
    raise TypeError(f"a flow of items run for its result: {type(item).__name__}")


def drive_items(flow: Flow[Any], client: Client) -> Generator[Any, Any, Any]:
    """Run ``flow`` with psycopg's blocking API; yield the items it yields."""
    return _run(flow, client)


@contextlib.contextmanager
def lent(flow: Flow[Any], client: Client) -> Iterator[Any]:
    """
    The one item ``flow`` yields (the value its `lend` body hands out), lent to a sync
    ``with`` block: the block runs inside the flow's scopes, and its exception goes
    through them as a body's would.
    """
    yield from _run(flow, client)


class _Result:
    """The value a flow returned, where an async generator cannot return one."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: Any = None


async def _acall(step: Call) -> Any:
    result = step.target
    for method, args, kwargs in step.calls:
        result = await getattr(result, method)(*args, **kwargs)
    return result


async def _amarked(step: _Marker, client: Client) -> Any:
    """`DIRECT`, `POOL` or `PULL` by the async driver."""
    if step is PULL:
        source = client.source
        if source is None:
            return END
        if isinstance(source, AsyncIterator):
            return await anext(source, END)
        return next(source, END)
    perform = client.direct if step is DIRECT else client.pool
    if perform is None:
        raise TypeError(f"this driver has nothing to perform {step!r} with")
    return await perform()


async def _aretried(step: Retried, client: Client) -> Any:
    breaker = step.breaker
    return await step.policy.acall(lambda: breaker.acall(lambda: adrive(step.attempt(), client)))


async def _acopy_rows(step: CopyRows, client: Client) -> None:
    for row in step.rows:
        await step.copy.write_row(row)


async def _ablocking(step: Blocking, client: Client) -> Any:
    return await asyncio.to_thread(step.function, *step.args)


#: How the async driver performs each kind of step but `Within` and items.
_APERFORM: Final[dict[type, Callable[[Any, Client], Awaitable[Any]]]] = {
    Call: lambda step, client: _acall(step),
    CopyRows: _acopy_rows,
    Blocking: _ablocking,
    Retried: _aretried,
    _Marker: _amarked,
}


async def _arun(flow: Flow[Any], client: Client, out: _Result) -> AsyncGenerator[Any, None]:
    """Run ``flow`` with psycopg's async API; yield its items, its result into ``out``."""
    steps = _Steps(flow)
    with contextlib.closing(flow):
        for step in steps:
            with steps:
                if type(step) is Within:
                    async with step.scope as value:
                        inner = _Result()
                        body = _arun(step.body(value), client, inner)
                        async with contextlib.aclosing(body) as items:
                            async for item in items:
                                yield item
                        steps.reply = inner.value
                elif (perform := _APERFORM.get(type(step))) is not None:
                    steps.reply = await perform(step, client)
                else:
                    yield step
        out.value = steps.result


async def adrive(flow: Flow[R], client: Client) -> R:
    """Run ``flow`` (one that yields no item) with psycopg's async API; its result."""
    out = _Result()
    async with contextlib.aclosing(_arun(flow, client, out)) as items:
        async for item in items:
            raise TypeError(f"a flow of items run for its result: {type(item).__name__}")
    result: R = out.value
    return result


def adrive_items(flow: Flow[Any], client: Client) -> AsyncGenerator[Any, None]:
    """Run ``flow`` with psycopg's async API; yield the items it yields."""
    return _arun(flow, client, _Result())


def source_of(batches: Iterable[Any] | AsyncIterable[Any]) -> Iterator[Any] | AsyncIterator[Any]:
    """The iterator a driver `PULL` s from: an async one for an async iterable."""
    if isinstance(batches, AsyncIterable):
        return aiter(batches)
    return iter(batches)
