"""
The toolkit for plugin authors: what a connector is built from, beyond the user API of
`headwater` itself.

``headwater`` is what people who *use* connectors import (``connect``, ``copy``,
``SourceRegistry``, the errors, the batch and result types). This module is what people
who *write* connectors import — the first-party plugins use nothing else of core:

* the contract: `Connector`, `ConnectorConfig`, `Capability`, `Batch`, `State` and the
  result types, `validate_config`, `hookimpl`;
* resilience: `RetrySettings` and `BreakerSettings` (the ``retry`` / ``breaker`` config
  every network connector nests), `RetryPolicy`, `CircuitBreaker`, `breaker_for`,
  `is_retryable`, `error_for_status`, `parse_retry_after`, and the rate-limit budget
  fed by response headers (`parse_rate_limit`, `RateBudget`, ...);
* secrets and logs: `Secret`, `CredentialResolver`, `register_secret`, `redact`,
  `RedactingFilter`, `get_logger`, `is_credential_name`, `keyring_set`,
  `split_keyring_reference`;
* files and state: `atomic_file`, `safe_destination`, `atomic_state_options`,
  `check_keyset_state`; `headwater.formats` for record formats; `check_part` (a part
  write's job id and index, before a staging target is named after them);
* concurrency: `iterate_in_thread`, `read_ahead`, `forget_after_fork`; `loads_json`,
  `is_loopback`;
* speed: `gc_paused`, the cyclic garbage collector paused while a block only makes values
  (a batch's parsed records: no cycles, no caller code);
* partitions that ship to engines' workers: `partitions` (a stream's partitions, each
  carrying the connector id and its config with secret references only),
  `read_partition` (read one on a worker), `shipping_config`;
* packaging: `lazy_exports`, the PEP 562 table a plugin's ``__init__`` exports through.

Test suites reset process-wide state with `reset_breakers`; `headwater.testing` holds the
contract test-suite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from headwater._lazy import lazy_exports as lazy_exports

if TYPE_CHECKING:
    from headwater._breaker import CircuitBreaker as CircuitBreaker
    from headwater._breaker import breaker_for as breaker_for
    from headwater._breaker import reset_breakers as reset_breakers
    from headwater._connector import Batch as Batch
    from headwater._connector import Capability as Capability
    from headwater._connector import CheckResult as CheckResult
    from headwater._connector import Connector as Connector
    from headwater._connector import ConnectorConfig as ConnectorConfig
    from headwater._connector import Estimate as Estimate
    from headwater._connector import FetchResult as FetchResult
    from headwater._connector import Item as Item
    from headwater._connector import Partition as Partition
    from headwater._connector import State as State
    from headwater._connector import WriteResult as WriteResult
    from headwater._connector import atomic_state_options as atomic_state_options
    from headwater._connector import check_part as check_part
    from headwater._connector import iterate_in_thread as iterate_in_thread
    from headwater._connector import read_ahead as read_ahead
    from headwater._connector import validate_config as validate_config
    from headwater._files import atomic_file as atomic_file
    from headwater._files import safe_destination as safe_destination
    from headwater._fork import forget_after_fork as forget_after_fork
    from headwater._gc import gc_paused as gc_paused
    from headwater._json import loads_json as loads_json
    from headwater._keyset import check_keyset_state as check_keyset_state
    from headwater._net import is_loopback as is_loopback
    from headwater._ratelimit import RateBudget as RateBudget
    from headwater._ratelimit import RateLimitInfo as RateLimitInfo
    from headwater._ratelimit import Slot as Slot
    from headwater._ratelimit import is_rate_limited as is_rate_limited
    from headwater._ratelimit import parse_rate_limit as parse_rate_limit
    from headwater._redact import RedactingFilter as RedactingFilter
    from headwater._redact import get_logger as get_logger
    from headwater._redact import is_credential_name as is_credential_name
    from headwater._redact import redact as redact
    from headwater._redact import register_secret as register_secret
    from headwater._resilience import BreakerSettings as BreakerSettings
    from headwater._resilience import RetrySettings as RetrySettings
    from headwater._resolvers import keyring_set as keyring_set
    from headwater._resolvers import split_keyring_reference as split_keyring_reference
    from headwater._retry import RetryPolicy as RetryPolicy
    from headwater._secrets import CredentialResolver as CredentialResolver
    from headwater._secrets import Secret as Secret
    from headwater._shipping import partitions as partitions
    from headwater._shipping import read_partition as read_partition
    from headwater._shipping import shipping_config as shipping_config
    from headwater._status import error_for_status as error_for_status
    from headwater._status import is_retryable as is_retryable
    from headwater._status import parse_retry_after as parse_retry_after
    from headwater.hookspecs import hookimpl as hookimpl

#: public name -> the module that defines it
_HOMES: dict[str, str] = {
    "CircuitBreaker": "headwater._breaker",
    "breaker_for": "headwater._breaker",
    "reset_breakers": "headwater._breaker",
    "Batch": "headwater._connector",
    "Capability": "headwater._connector",
    "CheckResult": "headwater._connector",
    "Connector": "headwater._connector",
    "ConnectorConfig": "headwater._connector",
    "Estimate": "headwater._connector",
    "FetchResult": "headwater._connector",
    "Item": "headwater._connector",
    "Partition": "headwater._connector",
    "State": "headwater._connector",
    "WriteResult": "headwater._connector",
    "atomic_state_options": "headwater._connector",
    "check_part": "headwater._connector",
    "iterate_in_thread": "headwater._connector",
    "read_ahead": "headwater._connector",
    "validate_config": "headwater._connector",
    "atomic_file": "headwater._files",
    "safe_destination": "headwater._files",
    "forget_after_fork": "headwater._fork",
    "gc_paused": "headwater._gc",
    "loads_json": "headwater._json",
    "check_keyset_state": "headwater._keyset",
    "lazy_exports": "headwater._lazy",
    "is_loopback": "headwater._net",
    "RateBudget": "headwater._ratelimit",
    "RateLimitInfo": "headwater._ratelimit",
    "Slot": "headwater._ratelimit",
    "is_rate_limited": "headwater._ratelimit",
    "parse_rate_limit": "headwater._ratelimit",
    "RedactingFilter": "headwater._redact",
    "get_logger": "headwater._redact",
    "is_credential_name": "headwater._redact",
    "redact": "headwater._redact",
    "register_secret": "headwater._redact",
    "BreakerSettings": "headwater._resilience",
    "RetrySettings": "headwater._resilience",
    "keyring_set": "headwater._resolvers",
    "split_keyring_reference": "headwater._resolvers",
    "RetryPolicy": "headwater._retry",
    "CredentialResolver": "headwater._secrets",
    "Secret": "headwater._secrets",
    "partitions": "headwater._shipping",
    "read_partition": "headwater._shipping",
    "shipping_config": "headwater._shipping",
    "error_for_status": "headwater._status",
    "is_retryable": "headwater._status",
    "parse_retry_after": "headwater._status",
    "hookimpl": "headwater.hookspecs",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals(), rename=False)
