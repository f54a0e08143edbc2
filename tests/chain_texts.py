"""Every text a library user can get from a headwater error and the exceptions chained to it."""

from __future__ import annotations

import io
import logging
import traceback


def chain_texts(error: BaseException) -> str:
    """
    The full traceback (`traceback.format_exception`), what ``logging.exception`` writes,
    and for every exception of the chain (``__cause__`` and ``__context__``, as a program
    walks them) its str, repr and attributes' repr: a secret in any of them is a leak.
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
        parts += [str(current), repr(current), repr(getattr(current, "__dict__", {}))]
        pending += [current.__cause__, current.__context__]
    return "\n".join(parts)
