"""Placeholder; replaced by the sources work."""

from __future__ import annotations


class SourceRegistry:
    pass
