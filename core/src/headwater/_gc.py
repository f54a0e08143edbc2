"""
The cyclic garbage collector paused while a block makes values: `gc_paused`.

The collector is process-wide, so the pause is counted process-wide: the collector is off
while any thread is inside a `gc_paused` block and is turned back on (if it was on when
the first of them entered) only when the last one leaves. A fork's child keeps the
blocks of the thread that forked and forgets those of threads it does not have.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections.abc import Iterator

_lock = threading.Lock()
#: How many blocks are open, in every thread.
_open = 0
#: Whether the collector was on when the first open block entered.
_was_enabled = False


class _Local(threading.local):
    open = 0  # the blocks open in this thread


_local = _Local()


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """
    The cyclic garbage collector paused while the block runs, then turned back on if it
    was on before.

    Right for a block that only *makes values* — parses records, loads a batch's rows —
    whose results hold no reference cycles and which calls no code of the caller's. Each
    new container (a dict, a list) is tracked by the collector, and its passes (one every
    700 allocations, and full passes as survivors pile up in the oldest generation) walk
    every live tracked container: building many records that all stay alive, as a batch's
    do, costs extra time growing faster than the count of records (close to O(n^2) over a
    long read), a third of a dict read's time in measurements. Paused, nothing is
    collected that would have been, since nothing made here is garbage in a cycle;
    reference counting frees everything else as usual.

    Not right around anything else: never around a ``yield`` to the caller, a user
    callback, a hook, or I/O that waits — code that may make cycles, or run for long,
    would do so with the collector off, and memory held by cycles would grow unbounded.
    Keep the block to the value-making call itself::

        with gc_paused():
            records = list(map(orjson.loads, lines))
        yield records  # outside: the caller's code runs with the collector on

    Blocks nest, in one thread or across threads: the collector stays off until the last
    open block leaves, and is turned on then only if it was on when the first one entered
    (a caller that turned it off keeps it off). The block's exceptions pass through.
    """
    _enter()
    try:
        yield
    finally:
        _leave()


def _enter() -> None:
    global _open, _was_enabled
    with _lock:
        if _open == 0:
            _was_enabled = gc.isenabled()
        gc.disable()
        _open += 1
        _local.open += 1


def _leave() -> None:
    global _open
    with _lock:
        _local.open -= 1
        _open -= 1
        if _open == 0 and _was_enabled:
            gc.enable()


def _after_fork_in_child() -> None:
    """Only the thread that forked runs in the child: only its blocks are still open."""
    global _lock, _open
    _lock = threading.Lock()  # held by the forking thread through the fork (_before_fork)
    paused = _open > 0
    _open = _local.open
    if paused and _open == 0 and _was_enabled:
        gc.enable()


def _before_fork() -> None:
    _lock.acquire()  # the counts are not mid-update while the child is made


def _after_fork_in_parent() -> None:
    _lock.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
