"""TLS against a real HTTPS server: a private CA, the wrong CA, the wrong name, verify: false."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from typing import Any

import pytest

from headwater import Category, CheckResult, ConfigError, Registry, TLSFailure
from headwater_rest import RestConnector
from tests.fix_http import API_KEY, HttpsApi

#: 47 records over 5 pages: enough requests to show the connection really carries a read.
CURSOR = {
    "s": {
        "path": "/cursor",
        "params": {"n": 47, "limit": 10},
        "records": "data",
        "pagination": {"type": "cursor", "cursor_path": "meta.next_cursor"},
    }
}


def check(config: dict[str, Any], registry: Registry, mode: str) -> CheckResult:
    """check() or acheck() with a fresh connector."""

    async def acheck() -> CheckResult:
        async with RestConnector(config, registry=registry) as connector:
            return await connector.acheck()

    if mode == "async":
        return asyncio.run(acheck())
    with RestConnector(config, registry=registry) as connector:
        return connector.check()


def assert_tls_failure(result: CheckResult, host: str) -> None:
    """A tls check failure: the verify field, one line naming the host, no secret."""
    assert (False, Category.TLS, "verify") == (result.ok, result.category, result.field)
    assert "\n" not in result.message
    assert host in result.message
    assert API_KEY not in json.dumps(result.to_dict())


def test_default_verification_refuses_a_private_ca(
    https_api: HttpsApi, make_config, registry, mode, read
):
    """Without a CA bundle the private CA is unknown: check says tls, a read sends nothing."""
    server = https_api.server
    config = make_config(base_url=server.url, streams=CURSOR)
    assert_tls_failure(check(config, registry, mode), f"{server.host}:{server.port}")
    outcome = read(config, "s")
    assert isinstance(outcome.error, TLSFailure)
    assert "verify" == outcome.error.field
    assert [] == outcome.ids
    # The handshake failed before any HTTP request, so the API key never left.
    assert [] == server.log


def test_ca_bundle_verifies_the_server(https_api: HttpsApi, make_config, registry, mode, read):
    """``verify: <ca.crt>`` trusts the private CA: check passes and every record arrives."""
    server = https_api.server
    config = make_config(base_url=server.url, streams=CURSOR, verify=str(https_api.ca))
    result = check(config, registry, mode)
    assert (True, None) == (result.ok, result.category), result.message
    outcome = read(config, "s")
    assert outcome.error is None
    assert list(range(1, 48)) == outcome.ids
    assert {API_KEY} == {seen.headers["x-api-key"] for seen in server.log}


def test_another_ca_is_refused(https_api: HttpsApi, make_config, registry, mode, read):
    """A CA bundle that did not sign the server's certificate is a tls failure."""
    server = https_api.server
    config = make_config(base_url=server.url, streams=CURSOR, verify=str(https_api.other_ca))
    assert_tls_failure(check(config, registry, mode), f"{server.host}:{server.port}")
    outcome = read(config, "s")
    assert isinstance(outcome.error, TLSFailure)
    assert [] == server.log


def test_host_name_mismatch_is_refused(https_api: HttpsApi, make_config, registry, mode, read):
    """A certificate naming only localhost, reached by address with the right CA: tls."""
    server = https_api.localhost_only
    # The certificate itself is good: for the name it carries, the same CA accepts it.
    context = ssl.create_default_context(cafile=str(https_api.ca))
    with (
        socket.create_connection((server.host, server.port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="localhost"),
    ):
        pass
    config = make_config(base_url=server.url, streams=CURSOR, verify=str(https_api.ca))
    result = check(config, registry, mode)
    assert_tls_failure(result, f"{server.host}:{server.port}")
    assert "mismatch" in result.message
    outcome = read(config, "s")
    assert isinstance(outcome.error, TLSFailure)
    assert [] == server.log


def test_verify_false_needs_allow_insecure(https_api: HttpsApi, make_config):
    """``verify: false`` alone is refused when the connector is built, naming allow_insecure."""
    config = make_config(base_url=https_api.server.url, streams=CURSOR, verify=False)
    with pytest.raises(ConfigError, match="allow_insecure"):
        RestConnector(config)


def test_verify_false_with_credentials_to_a_remote_host_is_refused():
    """Even with allow_insecure, credentials never go unverified to a non-loopback host."""
    config = {
        "base_url": "https://api.example.com",
        "auth": {"type": "bearer", "token": "x"},
        "verify": False,
        "allow_insecure": True,
    }
    with pytest.raises(ConfigError) as info:
        RestConnector(config)
    assert "verify" == info.value.field


def test_verify_false_with_allow_insecure_reads_and_warns(
    https_api: HttpsApi, make_config, registry, mode, read, caplog
):
    """Both flags to a loopback server: the unverifiable certificate is accepted, loudly."""
    server = https_api.server
    config = make_config(base_url=server.url, streams=CURSOR, verify=False, allow_insecure=True)
    assert check(config, registry, mode).ok
    outcome = read(config, "s")
    assert outcome.error is None
    assert list(range(1, 48)) == outcome.ids
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name.startswith("headwater_rest")
    ]
    assert warnings
    assert all("not verified" in w and server.url in w for w in warnings)
