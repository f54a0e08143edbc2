"""Every example config under plugins/rest/examples/ runs against the loopback API."""

from __future__ import annotations

from pathlib import Path

import pytest

from headwater_rest import RestConfig, RestConnector
from tests.fix_http import (
    API_KEY,
    BASIC_PASSWORD,
    BEARER,
    CLIENT_ID,
    CLIENT_SECRET,
    ORGS,
    REFRESH_TOKEN,
)

EXAMPLES = Path(__file__).parent.parent / "examples"
#: Examples that need a real authorization server (discovery, signed assertions).
OIDC_EXAMPLES = ["oauth2_private_key_jwt.yaml"]
#: Examples for an API with its own conventions, run by test_conventions.py against a
#: server that answers as that API does (GitHub's GraphQL).
CONVENTION_EXAMPLES = ["graphql.yaml"]
NAMES = sorted(
    p.name
    for p in EXAMPLES.glob("*.yaml")
    if p.name not in OIDC_EXAMPLES and p.name not in CONVENTION_EXAMPLES
)


@pytest.fixture
def example(http_api, monkeypatch, tmp_path):
    """Load an example with the imaginary API replaced by the loopback one."""
    monkeypatch.setenv("EXAMPLE_API_KEY", API_KEY)
    monkeypatch.setenv("EXAMPLE_TOKEN", BEARER)
    monkeypatch.setenv("EXAMPLE_PASSWORD", BASIC_PASSWORD)
    monkeypatch.setenv("EXAMPLE_CLIENT_SECRET", CLIENT_SECRET)
    token_file = tmp_path / "refresh-token"
    token_file.write_text(REFRESH_TOKEN)

    def load(name: str) -> RestConfig:
        text = (EXAMPLES / name).read_text()
        text = text.replace("https://api.example.com", http_api.url)
        text = text.replace("example-client-id", CLIENT_ID)
        text = text.replace("~/.config/example-api/refresh-token", str(token_file))
        config = RestConfig.from_yaml(text)
        # Examples are written for real APIs; tests must not wait on real back-off.
        return config.model_copy(update={"rate_limit": None})

    return load


def expected(stream: str) -> list[object]:
    if stream == "orgs":
        return list(ORGS)
    if stream == "repos":
        return [f"{org}-repo-{i}" for org, count in ORGS.items() for i in range(1, count + 1)]
    if stream == "me":
        return [1, 2, 3]
    return list(range(1, 26))


def test_there_is_an_example_per_auth_scheme():
    """API key, bearer, basic, OAuth2 client credentials and refresh token each have one."""
    kinds = {RestConfig.from_yaml(EXAMPLES / name).auth.type for name in NAMES + OIDC_EXAMPLES}
    assert {
        "api_key",
        "bearer",
        "basic",
        "oauth2_client_credentials",
        "oauth2_refresh_token",
    } == kinds


def test_examples_cover_every_pagination_style():
    """Between them the examples use every built-in pagination style."""
    styles = {
        stream.pagination.type
        for name in NAMES
        for stream in RestConfig.from_yaml(EXAMPLES / name).streams.values()
    }
    assert {"none", "cursor", "header_cursor", "offset", "page", "next_url", "link"} == styles


@pytest.mark.parametrize("name", NAMES)
def test_example_reads_every_stream(read, example, name):
    """Each stream of the example yields every record once, in order."""
    config = example(name)
    for stream in config.streams:
        outcome = read(config, stream)
        assert outcome.error is None, (stream, outcome.error)
        ids = [r.get("id", r.get("name")) for r in outcome.records]
        assert expected(stream) == ids


@pytest.mark.parametrize("name", NAMES)
def test_example_checks_ok(example, registry, name):
    """check() passes for every example."""
    with RestConnector(example(name), registry=registry) as connector:
        result = connector.check()
    assert (True, None) == (result.ok, result.category)


@pytest.fixture
def oidc_example(oidc_server, memory_keyring):
    """Load an example with the imaginary API and issuer replaced by oidc-provider."""
    from tests.fix_oidc import KEY_ID

    memory_keyring.set_password("example-api", "signing-key", oidc_server.keys.rsa_pem)

    def load(name: str) -> RestConfig:
        text = (EXAMPLES / name).read_text()
        text = text.replace("https://api.example.com/v1", oidc_server.api_url)
        text = text.replace("https://login.example.com", oidc_server.issuer)
        text = text.replace("example-key-client", KEY_ID).replace("example-key", "rsa")
        return RestConfig.from_yaml(text)

    return load


@pytest.mark.parametrize("name", OIDC_EXAMPLES)
def test_authorization_server_example_reads_and_checks(read, oidc_example, registry, name):
    """The examples for a real authorization server read every record and check ok."""
    config = oidc_example(name)
    for stream in config.streams:
        outcome = read(config, stream)
        assert outcome.error is None, (stream, outcome.error)
        assert list(range(1, 51)) == [r["id"] for r in outcome.records]
    with RestConnector(config, registry=registry) as connector:
        result = connector.check()
    assert (True, None) == (result.ok, result.category)
