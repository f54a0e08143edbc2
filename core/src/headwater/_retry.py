"""Placeholder; replaced by the resilience work."""

from __future__ import annotations


class RetryPolicy:
    pass


class CircuitBreaker:
    pass
