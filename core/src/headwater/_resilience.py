"""
The resilience settings every network connector's config nests, under the same names.

``retry`` (`RetrySettings`: attempts, initial, maximum, jitter, timeout) and ``breaker``
(`BreakerSettings`: failure_threshold, reset_timeout) mean the same in the PostgreSQL,
Azure Blob and REST configs, appear in each one's JSON Schema and docs table alike, and
build the same two objects: a `headwater.toolkit.RetryPolicy` and the process-wide
`headwater.toolkit.CircuitBreaker` of an endpoint. A connector may subclass `RetrySettings` to
add what only it has (REST: the statuses to retry, rate-limit waits).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from headwater._breaker import CircuitBreaker, breaker_for
from headwater._retry import RetryPolicy

__all__ = ["BreakerSettings", "RetrySettings"]

# defer_build: built when first used on their own, not at import. A connector's config nests
# them, and its validator covers them (a connector that subclasses one, as REST does with
# RetrySettings, never builds this one at all).
_SETTINGS = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class RetrySettings(BaseModel):
    """Retries of a failed call: exponential back-off with jitter; Retry-After honoured."""

    model_config = _SETTINGS

    attempts: int = Field(default=5, ge=1, description="Tries per call, the first included.")
    initial: float = Field(default=0.5, ge=0, description="First back-off, seconds.")
    maximum: float = Field(default=30.0, ge=0, description="Longest back-off, seconds.")
    jitter: float = Field(
        default=1.0, ge=0, description="Random extra back-off, up to this many seconds."
    )
    timeout: float = Field(
        default=120.0, gt=0, description="Give up retrying one call after this long."
    )

    def policy(self, **overrides: Any) -> RetryPolicy:
        """The `RetryPolicy` of these settings (``overrides``: e.g. ``retry_on=``, ``sleep=``)."""
        values: dict[str, Any] = {
            "attempts": self.attempts,
            "initial": self.initial,
            "maximum": self.maximum,
            "jitter": self.jitter,
            "timeout": self.timeout,
        }
        return RetryPolicy(**{**values, **overrides})


class BreakerSettings(BaseModel):
    """The circuit breaker of the endpoint: a dead service is one clear error, not a hang."""

    model_config = _SETTINGS

    failure_threshold: int = Field(
        default=5, ge=1, description="Consecutive failures that open it."
    )
    reset_timeout: float = Field(
        default=30.0, gt=0, description="Seconds before it lets one call try again."
    )

    def breaker(self, endpoint: str) -> CircuitBreaker:
        """The process-wide breaker of ``endpoint`` (made with these settings if new)."""
        return breaker_for(
            endpoint, failure_threshold=self.failure_threshold, reset_timeout=self.reset_timeout
        )
