"""Errors of the ``rest`` connector; each subclasses the core error it semantically is."""

from __future__ import annotations

from headwater import Category, ConnectorError


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
