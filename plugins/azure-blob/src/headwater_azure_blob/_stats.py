"""
``stats()``: what the SDK clients' HTTP connection pools expose, in the uniform shape of
headwater's connectors (``size``, ``in_use``, ``idle``, ``waiting``, ``opened``, ...).

The Azure SDK does not report on its connections; its transports hold them:

* sync: azure-core's ``RequestsTransport`` → a ``requests.Session`` → urllib3 pools (one
  per host). urllib3 counts connections made (``num_connections``) and requests
  (``num_requests``) and holds idle connections in a queue; it counts no closings and
  no errors, and never makes a request wait (the SDK's pools do not block: beyond
  ``max_size`` an extra connection is made and dropped after use).
* async: azure-core's ``AioHttpTransport`` → an ``aiohttp.ClientSession`` → its
  ``TCPConnector``, which knows the connections in use, the idle ones and the waiting
  requests (private attributes, read defensively), but counts none made, closed or
  failed.

What a library does not expose is left out of the dict rather than reported as 0.
Everything is read through ``getattr`` with defaults: an SDK release that moves these
attributes gives an empty reading, never an error in a health endpoint.
"""

from __future__ import annotations

from typing import Any


def _transport(client: Any) -> Any:
    pipeline = getattr(client, "_pipeline", None)
    transport = getattr(pipeline, "_transport", None)
    # Clients made from another share its transport through a wrapper.
    return getattr(transport, "_transport", transport)


def sync_stats(client: Any) -> dict[str, int]:
    """The urllib3 pools under a sync client (zeros before its first request)."""
    stats = {"size": 0, "in_use": 0, "idle": 0, "waiting": 0, "opened": 0, "requests": 0}
    session = getattr(_transport(client), "session", None)
    adapters = getattr(session, "adapters", None) or {}
    seen: set[int] = set()
    max_size = 0
    for adapter in adapters.values():
        # One adapter object serves both http:// and https://.
        if id(adapter) in seen:
            continue
        seen.add(id(adapter))
        max_size = max(max_size, int(getattr(adapter, "_pool_maxsize", 0) or 0))
        manager = getattr(adapter, "poolmanager", None)
        pools = getattr(manager, "pools", None)
        if pools is None:
            continue
        for key in list(pools.keys()):
            pool = pools.get(key) if hasattr(pools, "get") else None
            if pool is None:
                continue
            queue = getattr(pool, "pool", None)
            slots = list(getattr(queue, "queue", ()))
            idle = sum(1 for conn in slots if conn is not None)
            capacity = int(getattr(queue, "maxsize", 0) or 0)
            # A checkout takes a slot out of the queue (a connection or a placeholder).
            in_use = max(0, capacity - len(slots))
            stats["idle"] += idle
            stats["in_use"] += in_use
            stats["opened"] += int(getattr(pool, "num_connections", 0) or 0)
            stats["requests"] += int(getattr(pool, "num_requests", 0) or 0)
    stats["size"] = stats["idle"] + stats["in_use"]
    stats["max_size"] = max_size
    return stats


def async_stats(client: Any) -> dict[str, int]:
    """The aiohttp connector under an aio client (zeros before its first request)."""
    stats = {"size": 0, "in_use": 0, "idle": 0, "waiting": 0}
    session = getattr(_transport(client), "session", None)
    connector = getattr(session, "connector", None)
    if connector is None:
        return stats
    conns = getattr(connector, "_conns", None) or {}
    stats["idle"] = sum(len(held) for held in list(conns.values()))
    stats["in_use"] = len(getattr(connector, "_acquired", ()) or ())
    waiters = getattr(connector, "_waiters", None) or {}
    stats["waiting"] = sum(len(w) for w in list(waiters.values()))
    stats["size"] = stats["idle"] + stats["in_use"]
    stats["max_size"] = int(getattr(connector, "limit", 0) or 0)
    return stats
