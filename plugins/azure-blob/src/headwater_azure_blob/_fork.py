"""
Fork safety: connectors made before ``os.fork()`` drop their clients in the child, which
makes its own on first use. A pooled HTTP connection shared by two processes would carry
both processes' requests on one socket, and their responses to whichever reads first.
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headwater_azure_blob._connector import AzureBlobConnector

#: Every live connector; the child of a fork walks it (weak: it keeps none alive).
_LIVE: weakref.WeakSet[AzureBlobConnector] = weakref.WeakSet()

#: The parent's clients, as the child inherited them: kept referenced and never closed
#: in the child (their sockets are the parent's too), nor finalized while it runs.
_INHERITED: list[Any] = []

_registered = False


def track(connector: AzureBlobConnector) -> None:
    """Make ``connector`` forget its clients in the child of a fork."""
    global _registered
    if not _registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _registered = True
    _LIVE.add(connector)


def _after_fork_in_child() -> None:
    for connector in list(_LIVE):
        _INHERITED.extend(connector._forget_clients_after_fork())
