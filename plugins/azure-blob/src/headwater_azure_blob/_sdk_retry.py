"""
The Azure SDK's retry policy, derived from the connector's ``retry`` settings.

The SDK retries each request itself (a refused or cut connection, a 5xx, a 408), in its
pipeline, where a connector cannot reach. `HeadwaterRetry` and `AsyncHeadwaterRetry` are
its ``ExponentialRetry`` (sync and aio) with headwater's rules instead of the SDK's (15 s,
then 15 + 3**n s): the wait before retry *n* is `headwater.toolkit.RetryPolicy.backoff` of
the same settings (``initial * 2 ** (n - 1)`` capped at ``maximum``, plus jitter), at most
``attempts`` tries per request, and no wait that would end past the ``timeout`` budget.

This module imports the SDK: it is imported only when a client is built.
"""

from __future__ import annotations

from typing import Any

from azure.storage.blob import ExponentialRetry
from azure.storage.blob._shared.policies import StorageRetryPolicy
from azure.storage.blob.aio import ExponentialRetry as AsyncExponentialRetry

from headwater.toolkit import RetryPolicy, get_logger

__all__ = ["AsyncHeadwaterRetry", "HeadwaterRetry", "sdk_retry_policy"]

logger = get_logger("headwater.azure_blob")


class _PolicyBackoff(StorageRetryPolicy):
    """
    What both SDK policies share (a mixin before the SDK's class): the retry decision
    and the wait come from ``self.policy``, a `RetryPolicy`.
    """

    policy: RetryPolicy

    def configure_retries(self, request: Any) -> dict[str, Any]:
        settings = super().configure_retries(request)
        settings["headwater_started"] = self.policy.clock()
        settings["headwater_backoff"] = 0.0
        return settings

    def increment(
        self,
        settings: dict[str, Any],
        request: Any,
        response: Any | None = None,
        error: Any | None = None,
    ) -> bool:
        """Whether to try again; the wait before it is chosen here, once, as core does."""
        if not super().increment(settings, request, response, error):
            return False
        retry = int(settings["count"])  # 1 before the first retry
        delay = self.policy.backoff(retry)
        budget = self.policy.timeout
        elapsed = self.policy.clock() - float(settings["headwater_started"])
        if budget is not None and elapsed + delay > budget:
            logger.info(
                "giving up after try %d: waiting %.1fs more would exceed the %.1fs retry "
                "budget (%.1fs used)",
                retry,
                delay,
                budget,
                elapsed,
            )
            return False
        logger.info(
            "try %d of %d failed (%s); retrying in %.2fs",
            retry,
            self.policy.attempts,
            _what_failed(response, error),
            delay,
        )
        settings["headwater_backoff"] = delay
        return True

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        """The wait `increment` chose (`RetryPolicy.backoff` of the retry's number)."""
        return float(settings.get("headwater_backoff", 0.0))


class HeadwaterRetry(_PolicyBackoff, ExponentialRetry):
    """The sync client's retry policy: ``ExponentialRetry`` with `RetryPolicy`'s rules."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        super().__init__(**_sdk_options(policy))


class AsyncHeadwaterRetry(_PolicyBackoff, AsyncExponentialRetry):
    """The aio client's retry policy: the aio ``ExponentialRetry`` with `RetryPolicy`'s rules."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        super().__init__(**_sdk_options(policy))


def _sdk_options(policy: RetryPolicy) -> dict[str, Any]:
    # Every kind of failure may use every retry: the SDK would otherwise also stop after
    # 3 connect, 3 read or 3 status retries whatever retry_total says.
    retries = policy.attempts - 1
    return {
        "retry_total": retries,
        "retry_connect": retries,
        "retry_read": retries,
        "retry_status": retries,
        "initial_backoff": 0,
        "random_jitter_range": 0,
    }


def sdk_retry_policy(policy: RetryPolicy, *, aio: bool) -> HeadwaterRetry | AsyncHeadwaterRetry:
    """The SDK retry policy (sync or aio) that follows ``policy``."""
    return AsyncHeadwaterRetry(policy) if aio else HeadwaterRetry(policy)


def _what_failed(response: Any | None, error: Any | None) -> str:
    if error is not None:
        return type(error).__name__
    status = getattr(response, "status_code", None)
    return f"HTTP {status}" if status is not None else "no response"
