"""What a connector's first request sets up: only what its config needs (issue 19)."""

from __future__ import annotations

import ssl
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from headwater import Registry
from headwater.toolkit import BreakerSettings
from headwater_rest import RestConnector, hooks
from headwater_rest._config import NoAuth, RetrySettings, StreamConfig, Timeouts


class CountingRegistry(Registry):
    """A registry that counts how often the connector asks for credential resolvers."""

    def __init__(self) -> None:
        super().__init__(autoload=False, plugins=[hooks])
        self.asked = 0

    def credential_resolvers(self) -> dict[str, Any]:
        self.asked += 1
        return super().credential_resolvers()


def _config(url: str, **changes: Any) -> dict[str, Any]:
    single = {"path": "/single", "params": {"n": 3}, "records": "data"}
    return {"base_url": url, "streams": {"s": single}, **changes}


def _ids(connector: RestConnector) -> list[Any]:
    return [row["id"] for batch in connector.read("s") for row in batch.rows()]


def test_no_resolvers_are_loaded_without_a_secret_to_resolve(http_api):
    """Plugins are loaded for their resolvers only when a header or param names a secret."""
    http_api.state.require_auth = False  # a public API: no auth, no secret
    registry = CountingRegistry()
    with RestConnector(_config(http_api.url), registry=registry) as connector:
        assert [1, 2, 3] == _ids(connector)
    assert 0 == registry.asked

    registry = CountingRegistry()
    config = _config(http_api.url, headers={"X-Api-Key": "env:HW_TEST_API_KEY"})
    with RestConnector(config, registry=registry) as connector:
        assert [1, 2, 3] == _ids(connector)
    assert registry.asked >= 1


def _trusted_cas(context: Any) -> int:
    assert isinstance(context, ssl.SSLContext)
    assert ssl.CERT_REQUIRED == context.verify_mode
    assert context.check_hostname
    return int(context.cert_store_stats()["x509_ca"])


def test_a_plain_http_api_client_loads_no_ca_bundle_and_verifies(http_api):
    """
    Where the API's clients can only send plain http, their TLS context still verifies but
    trusts nothing (no CA bundle loaded); allowed hosts, https and the token endpoint's
    clients get the CA bundle.
    """
    http_api.state.require_auth = False
    with RestConnector(_config(http_api.url)) as connector:
        assert [1, 2, 3] == _ids(connector)
        assert 0 == _trusted_cas(connector.http.client_options(api=True)["verify"])
        assert _trusted_cas(connector.http.client_options()["verify"]) > 0  # token endpoint
    config = _config(http_api.url, allowed_hosts=["example.com"])
    with RestConnector(config) as connector:
        assert _trusted_cas(connector.http.client_options(api=True)["verify"]) > 0
    with RestConnector(_config("https://api.example.com")) as connector:
        assert _trusted_cas(connector.http.client_options(api=True)["verify"]) > 0


def test_a_sync_read_does_not_import_asyncio(http_api):
    """asyncio (~20 ms to import) is loaded by async use only, not by a script's sync read."""
    http_api.state.require_auth = False
    code = (
        "import sys\n"
        "from headwater_rest import RestConnector\n"
        f"config = {_config(http_api.url)!r}\n"
        "with RestConnector(config) as connector:\n"
        "    rows = [r for batch in connector.read('s') for r in batch.rows()]\n"
        "print(len(rows), 'asyncio' in sys.modules)\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "3 False" == ran.stdout.strip()


def test_a_plain_read_builds_one_validator_and_loads_no_plugin_machinery(http_api):
    """
    The config models are built when first used (defer_build): a read builds `RestConfig`'s
    validator, which covers every model it nests, and no nested model a second time on its
    own (not even the defaults: auth, timeouts, retry, breaker). Without a secret to resolve
    the plugin registry (pluggy, entry points) is never loaded.
    """
    http_api.state.require_auth = False
    code = (
        "import sys\n"
        "from pydantic import BaseModel\n"
        "from headwater_rest import RestConnector\n"
        f"config = {_config(http_api.url)!r}\n"
        "with RestConnector(config) as connector:\n"
        "    rows = [r for batch in connector.read('s') for r in batch.rows()]\n"
        "def models(cls):\n"
        "    for sub in cls.__subclasses__():\n"
        "        yield sub\n"
        "        yield from models(sub)\n"
        "built = {m.__name__ for m in models(BaseModel) if m.__pydantic_complete__}\n"
        "print(len(rows), sorted(built))\n"
        "print(sorted(m for m in sys.modules if m == 'pluggy' or m == 'headwater._plugins'))\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rows_and_built, loaded = ran.stdout.strip().splitlines()
    assert "3 ['ConnectorConfig', 'RestConfig']" == rows_and_built
    assert "[]" == loaded


def test_nested_models_validate_on_their_own_and_defaults_equal_validated_ones():
    """A deferred nested model still validates alone; a default equals its validated twin."""
    with pytest.raises(ValidationError, match=r"pagination\.offset\.limit"):
        StreamConfig.model_validate({"path": "/x", "pagination": {"type": "offset", "limit": 0}})
    config = RestConnector({"base_url": "https://api.example.com"}).config
    assert NoAuth() == config.auth
    assert Timeouts() == config.timeouts
    assert RetrySettings() == config.retry
    assert BreakerSettings() == config.breaker
    assert set() == config.auth.model_fields_set == config.retry.model_fields_set
    assert {"type": "none"} == config.auth.model_dump()
