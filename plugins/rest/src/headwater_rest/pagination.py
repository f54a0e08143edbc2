"""
What a pagination-style plugin needs (see `headwater_rest.hookspecs`).

Subclass `Strategy`: ``first()`` gives the first page's token (a JSON-able dict kept in
resumable states), ``request(token)`` the `PageRequest` for it, and
``next_token(token, response, records)`` the next token or ``None`` at the end.
Optionally ``plan`` (the remaining tokens, for concurrent fetching), ``expected`` and
``key``. `value_at` reads a dotted path out of a JSON body.
"""

from __future__ import annotations

from headwater_rest._paginate import (
    PageRequest,
    PageResponse,
    Strategy,
    Token,
    parse_link_header,
    value_at,
)

__all__ = ["PageRequest", "PageResponse", "Strategy", "Token", "parse_link_header", "value_at"]
