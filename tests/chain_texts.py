"""Every text a library user can get from a headwater error and the exceptions chained to it."""

from __future__ import annotations

import io
import logging
import traceback


def chain_texts(error: BaseException) -> str:
    """
    The full traceback (`traceback.format_exception`), what ``logging.exception`` writes,
    and for every exception of the chain (``__cause__`` and ``__context__``, as a program
    walks them) its str, repr and every string reachable from its attributes (a driver
    error's response, its request, that request's URL): a secret in any of them is a leak.
    """
    parts = ["".join(traceback.format_exception(error))]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger(f"headwater-test-chain-{id(error)}")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.error("failed", exc_info=error)  # what logging.exception() writes
    finally:
        logger.removeHandler(handler)
    parts.append(stream.getvalue())
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        parts += [str(current), repr(current), *_reachable_strings(vars(current))]
        pending += [current.__cause__, current.__context__]
    return "\n".join(parts)


def _reachable_strings(root: object, depth: int = 6) -> list[str]:
    """Strings (and decoded bytes) reachable from ``root`` through attributes and containers."""
    found: list[str] = []
    seen: set[int] = set()
    pending = [(root, 0)]
    while pending and len(seen) < 20_000:
        obj, level = pending.pop()
        if id(obj) in seen or level > depth:
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            found.append(obj)
        elif isinstance(obj, bytes | bytearray):
            found.append(bytes(obj).decode("utf-8", "replace"))
        elif isinstance(obj, dict):
            pending += [(item, level + 1) for pair in obj.items() for item in pair]
        elif isinstance(obj, list | tuple | set | frozenset):
            pending += [(item, level + 1) for item in obj]
        elif (
            hasattr(obj, "__dict__")
            and not isinstance(obj, type)
            # Objects only, not modules or classes: their globals are not the error's.
            and type(obj).__module__ != "builtins"
            and not hasattr(obj, "__loader__")
        ):
            pending += [(value, level + 1) for value in vars(obj).values()]
    return found
