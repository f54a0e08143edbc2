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
NAMES = sorted(p.name for p in EXAMPLES.glob("*.yaml"))


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
    kinds = {RestConfig.from_yaml(EXAMPLES / name).auth.type for name in NAMES}
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
