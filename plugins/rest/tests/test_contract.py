"""headwater's connector contract suite, run over the REST connector and the loopback API."""

from __future__ import annotations

import pytest

from headwater.testing import ConnectorContract
from headwater_rest import RestConnector
from tests.fix_http import API_KEY, CLIENT_ID, CLIENT_SECRET


def _config(api, client_secret: str, n: int = 23) -> dict:
    return {
        "base_url": api.url,
        "auth": {
            "type": "oauth2_client_credentials",
            "token_url": api.url + "/oauth/token",
            "client_id": CLIENT_ID,
            "client_secret": client_secret,
        },
        "retry": {"attempts": 3, "initial": 0, "maximum": 0.01, "jitter": 0, "timeout": 10},
        "streams": {
            "items": {
                "path": "/cursor",
                "params": {"n": n, "limit": 5},
                "records": "data",
                "primary_key": "id",
                "pagination": {"type": "cursor", "cursor_path": "meta.next_cursor"},
            },
            "big": {
                "path": "/offset",
                "params": {"n": n, "total": 1},
                "records": "items",
                "pagination": {"type": "offset", "limit": 1000, "total_path": "total"},
            },
            # Written by the write checks (the loopback API's /sink stores and lists them).
            **{f"sink{i}": {"path": f"/sink/contract{i}", "write": {}} for i in range(4)},
        },
    }


class TestRestContract(ConnectorContract):
    connector_id = "rest"
    stream = "items"
    large_stream = "big"
    url_example = "https://api.example.com/v1/items"

    def new_write_stream(self, connector):
        """The next unused sink stream of the config (the API's sinks are reset per test)."""
        used = getattr(self, "_sinks_used", 0)
        self._sinks_used = used + 1
        return f"sink{used}"

    @pytest.fixture
    def connector(self, http_api, registry):
        with RestConnector(_config(http_api, CLIENT_SECRET), registry=registry) as connector:
            yield connector

    @pytest.fixture
    def bad_credentials_connector(self, http_api, registry):
        with RestConnector(_config(http_api, CLIENT_SECRET + "-wrong"), registry=registry) as c:
            yield c

    @pytest.fixture
    def large_stream_connector(self, http_api, registry):
        with RestConnector(_config(http_api, CLIENT_SECRET, n=50_000), registry=registry) as c:
            yield c

    @pytest.fixture
    def secret_values(self, http_api):
        return [API_KEY, CLIENT_SECRET, *http_api.state.tokens]
