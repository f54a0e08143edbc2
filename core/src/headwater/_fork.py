"""
Fork safety for objects that hold connections: after ``os.fork()`` the child must not use
the parent's sockets (a pooled connection shared by two processes carries both one's
requests, and their answers go to whichever reads first). An owner registered here drops
what it holds in the child and makes its own on first use.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

Owner = TypeVar("Owner")

#: Every live owner and how it forgets (weak: this keeps none alive).
_LIVE: weakref.WeakKeyDictionary[Any, Callable[[Any], Iterable[Any]]] = weakref.WeakKeyDictionary()

#: What the owners gave up in the child, as inherited from the parent: kept referenced and
#: never closed there (closing would end the parent's sessions; finalizers could wait for
#: threads the child does not have).
_INHERITED: list[Any] = []

_lock = threading.Lock()
_registered = False


def forget_after_fork(owner: Owner, forget: Callable[[Owner], Iterable[Any]]) -> None:
    """
    In the child of a fork, call ``forget(owner)``: it drops the owner's pools or clients
    (without closing them) and returns them, and they are kept for the child's lifetime.
    ``forget`` takes the owner as its argument, so it must not hold the owner itself
    (pass ``Type.method``, not ``owner.method``).
    """
    global _registered
    with _lock:
        if not _registered and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _registered = True
        _LIVE[owner] = forget


def _after_fork_in_child() -> None:
    for owner, forget in list(_LIVE.items()):
        _INHERITED.extend(forget(owner))
