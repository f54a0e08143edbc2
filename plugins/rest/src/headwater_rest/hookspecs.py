"""
Hooks the REST plugin adds for *its* plugins: more pagination styles.

Implement them with ``headwater.hookimpl`` in any headwater plugin (the same entry-point
group); the REST connector adds these specs to the registry's plugin manager on first
use (``pm.add_hookspecs``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from headwater import hookspec

if TYPE_CHECKING:
    from headwater_rest.pagination import Strategy


@hookspec
def register_pagination_styles() -> Mapping[str, Callable[[Mapping[str, Any]], Strategy]]:  # type: ignore[empty-body]
    """
    Return pagination styles: ``{"style_name": make_strategy}``.

    A stream config with ``pagination: {type: style_name, ...}`` calls
    ``make_strategy(settings)`` (the mapping minus ``type``) and drives the returned
    `headwater_rest.pagination.Strategy`: a sans-I/O object that builds the request for a
    page token and reads the next token from a response. Loop detection, empty pages,
    limits, resuming and concurrency are the connector's, as for the built-in styles.
    Built-in names (``cursor``, ``offset``, ...) cannot be replaced.
    """
