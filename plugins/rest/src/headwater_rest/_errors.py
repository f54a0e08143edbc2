"""Errors of the ``rest`` connector; each subclasses the core error it semantically is."""

from __future__ import annotations

from headwater import AuthFailed, Category, ConnectorError


class PaginationError(ConnectorError):
    """
    The API's pagination misbehaved in a way that would repeat or lose records: a cursor
    or next URL seen before (a cycle), or a page shorter than planned.
    """

    category = Category.SERVER


class OriginRefused(ConnectorError):
    """
    A next-page URL or redirect points to another scheme, host or port than ``base_url``
    and that host is not in ``allowed_hosts``; nothing was sent to it.
    """

    category = Category.CONFIG


class TokenEndpointError(AuthFailed):
    """
    The OAuth2 authorization server (token endpoint or its metadata) refused us or could
    not be reached. It is an auth failure of its own, kept apart from the API's: retries
    and the circuit breaker of the token endpoint already ran, so it is not retried again
    and does not count against the API origin's breaker.
    """

    category = Category.AUTH
    retryable = False
