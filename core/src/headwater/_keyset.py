"""
The checks of a keyset-paged read's state, for connectors that resume after the last key
read (a table's primary key, a cursor field): shared so each one refuses the same bad
states with the same messages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from headwater.errors import ConfigError


def check_keyset_state(
    state: Any,
    stream: str,
    key_names: Sequence[str],
    *,
    connector: str,
    value_ok: Callable[[Any], bool] | None = None,
) -> int:
    """
    Check that ``state`` resumes this keyset read of ``stream`` (ordered by the columns
    ``key_names``) and return how many rows it had read. The state is a dict with
    ``stream``, ``key`` (the key's column names), ``last`` (the last row's key values,
    one per column) and ``rows``; ``unordered: true`` marks a read that cannot resume.
    ``value_ok`` checks each non-NULL value of ``last`` (its form in the state).

    Raises:
        ConfigError: a state of another connector, stream or key, of an unordered or
            keyless read, malformed, or stopped at a row whose key is NULL (rows sharing
            a NULL key cannot be told apart, so how many of them were read is unknown).
    """
    if not isinstance(state, dict) or state.get("stream") != stream:
        raise ConfigError(
            f"the state is not a {connector} state for stream {stream!r}", field="state"
        )
    if state.get("unordered"):
        raise ConfigError(
            f"the state of {stream!r} comes from an unordered read (ordered=False), which "
            "cannot be resumed",
            field="state",
            hint="read with ordered=True (the default) when you keep the states",
        )
    if state.get("last") is None:
        raise ConfigError(
            f"the state of {stream!r} cannot be resumed: the read had no key",
            field="state",
            hint="read a table with a primary key, or pass key=[...] / cursor_field=...",
        )
    names = list(key_names)
    if list(state.get("key") or []) != names:
        raise ConfigError(
            f"the state's key {state.get('key')} is not this read's key {names}",
            field="state",
        )
    last = state["last"]
    if (
        not isinstance(last, list)
        or len(last) != len(names)
        or (value_ok is not None and not all(v is None or value_ok(v) for v in last))
    ):
        raise ConfigError("the state's last key is malformed", field="state")
    nulls = [name for name, value in zip(names, last, strict=True) if value is None]
    if nulls:
        raise ConfigError(
            f"the state of {stream!r} cannot be resumed: the read stopped at a row whose key "
            f"column {nulls[0]!r} is NULL, and rows sharing a NULL key cannot be told apart",
            field="key",
            hint="page on a NOT NULL column (a primary key), or read the stream again "
            "from the start without the state",
        )
    rows = state.get("rows", 0)
    return rows if isinstance(rows, int) else 0
