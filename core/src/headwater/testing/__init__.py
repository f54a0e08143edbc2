"""
Test helpers for connector authors: the contract suite and an offline HTTP fault server.

pytest loads this module through the ``pytest11`` entry point of the ``headwater``
distribution, so every pytest run in an environment with headwater installed imports
it. It therefore imports nothing but pytest: `ConnectorContract` and `FaultServer` are
loaded from private modules on first access.

The package's modules, one job each (all private; import from `headwater.testing`):

``_suite``
    `ConnectorContract`, the contract as a pytest test class.
``_leaks``
    the leak scanner: a connector's resolved secrets, and where in reprs, errors and
    logs any of them shows.
``_broken``
    copies of a connector that cannot work (wrong secrets, a closed port, missing
    paths), for the check that check() can fail.
``_probes``
    what importing an entry point and its connector module imports, in a subprocess.
``_faults``
    `FaultServer`, the loopback HTTP API with switchable faults.

The contract suite
    Subclass `ConnectorContract` in your tests and give it a configured connector::

        import pytest
        from headwater.testing import ConnectorContract
        from headwater_acme import AcmeConnector

        class TestAcmeContract(ConnectorContract):
            connector_id = "acme"          # the released id, pinned: a rename fails
            stream = "customers"           # a stream with a few records

            @pytest.fixture
            def connector(self):
                return AcmeConnector({"token": "env:ACME_TOKEN"})

            @pytest.fixture
            def bad_credentials_connector(self):
                return AcmeConnector({"token": "not-a-valid-token"})

    Each ``test_contract_*`` method checks one invariant of the connector contract and
    fails with ``contract violated [<invariant>]: <what broke>``. Checks that do not
    apply (no credentials, a capability not declared, no large stream) are skipped with
    the reason.

The fault server
    `FaultServer` is a small JSON API on a loopback port (standard library only, so it
    works offline and adds no dependency) whose faults you switch on per test: 429 with
    ``Retry-After``, bursts of 5xx, dropped connections, expired OAuth2 tokens and a last
    page that links to itself. The ``fault_server`` fixture starts one per test.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from headwater._naming import looks_like_secret as looks_like_secret
    from headwater.testing._faults import FaultServer as FaultServer
    from headwater.testing._faults import RecordedRequest as RecordedRequest
    from headwater.testing._probes import DEFAULT_HEAVY_MODULES as DEFAULT_HEAVY_MODULES
    from headwater.testing._suite import ConnectorContract as ConnectorContract

__all__ = [
    "DEFAULT_HEAVY_MODULES",
    "ConnectorContract",
    "FaultServer",
    "RecordedRequest",
    "fault_server",
    "looks_like_secret",
]

#: public name -> private module defining it (imported on first access)
_LAZY: dict[str, str] = {
    "DEFAULT_HEAVY_MODULES": "headwater.testing._probes",
    "ConnectorContract": "headwater.testing._suite",
    "looks_like_secret": "headwater._naming",
    "FaultServer": "headwater.testing._faults",
    "RecordedRequest": "headwater.testing._faults",
}


def __getattr__(name: str) -> Any:
    # No __dir__: pytest walks dir(plugin) for hooks and fixtures, and listing the lazy
    # names there would import them in every pytest run.
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    if isinstance(value, type):
        value.__module__ = __name__
    globals()[name] = value
    return value


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A started `FaultServer` (25 records, pages of 10, no auth), stopped after the test."""
    from headwater.testing._faults import FaultServer

    with FaultServer() as server:
        yield server
