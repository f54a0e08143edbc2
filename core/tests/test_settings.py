"""Connector configs from prefixed environment variables and .env (pydantic-settings)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from headwater import ConfigError, Connector, ConnectorConfig, Registry, Secret, hookimpl

TOKEN = "env-token-Vb7q-never-shown"


class Auth(BaseModel):
    kind: str = Field(default="bearer", description="Auth kind.")
    token: Secret = Field(description="The token.")


class ApiConfig(ConnectorConfig):
    base_url: str = Field(description="Where the API lives.")
    timeout: float = Field(default=30.0, gt=0, description="Seconds.")
    auth: Auth | None = Field(default=None, description="Credentials.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers.")


class ApiConnector(Connector[ApiConfig]):
    id = "env-api"
    Config = ApiConfig


class ApiPlugin:
    @hookimpl
    def register_connectors(self) -> list[type[Connector[Any]]]:
        return [ApiConnector]


def token_of(connector: Connector[Any]) -> str:
    """Resolve auth.token as the connector would when connecting."""
    auth = connector.config.auth
    assert auth is not None
    token: str = auth.token.resolve("auth.token", connector.registry.credential_resolvers())
    return token


@pytest.fixture
def registry() -> Registry:
    return Registry(autoload=False, plugins=[ApiPlugin()])


@pytest.fixture
def billing_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_BASE_URL", "https://billing.example.invalid")
    monkeypatch.setenv("BILLING_AUTH__TOKEN", TOKEN)
    monkeypatch.setenv("BILLING_TIMEOUT", "5")
    monkeypatch.setenv("BILLING_HEADERS", '{"X-Team": "billing"}')
    monkeypatch.setenv("OTHER_BASE_URL", "https://other.example.invalid")


def test_config_from_prefixed_environment(
    registry: Registry, billing_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    """BILLING_* fills the config, __ nests, JSON tables parse, types are validated."""
    caplog.set_level(logging.DEBUG)
    connector = registry.connect("env-api", env_prefix="BILLING_")
    config = connector.config
    assert "https://billing.example.invalid" == config.base_url
    assert 5.0 == config.timeout
    assert {"X-Team": "billing"} == config.headers
    assert config.auth is not None
    assert isinstance(config.auth.token, Secret)
    # Read from the environment, still a secret: never shown, resolved only when asked.
    assert config.auth.token.is_literal
    assert TOKEN not in repr(config)
    assert TOKEN not in str(config.model_dump())
    assert TOKEN not in caplog.text
    assert TOKEN == token_of(connector)


def test_explicit_config_wins_and_nested_tables_merge(
    registry: Registry, billing_env: None
) -> None:
    """A config given in code overrides the environment, key by key inside tables."""
    connector = registry.connect(
        "env-api", {"auth": {"kind": "token"}}, env_prefix="BILLING_", timeout=9
    )
    assert 9.0 == connector.config.timeout
    assert connector.config.auth is not None
    assert "token" == connector.config.auth.kind
    assert TOKEN == token_of(connector)


def test_env_file(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .env file supplies what the environment lacks; the environment wins over it."""
    env_file = tmp_path / ".env"
    env_file.write_text(
        "APP_BASE_URL=https://from-file.example.invalid\nAPP_TIMEOUT=7\nAPP_AUTH__TOKEN=file-token\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("APP_TIMEOUT", "3")
    connector = registry.connect("env-api", env_prefix="APP_", env_file=env_file)
    assert "https://from-file.example.invalid" == connector.config.base_url
    assert 3.0 == connector.config.timeout
    assert "file-token" == token_of(connector)
    with pytest.raises(ConfigError, match="does not exist"):
        registry.connect("env-api", env_prefix="APP_", env_file=tmp_path / "missing.env")


def test_invalid_values_name_the_field_not_the_value(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation is the config's own: errors name the field; a bad JSON value is not echoed."""
    monkeypatch.setenv("BAD_BASE_URL", "https://x.example.invalid")
    monkeypatch.setenv("BAD_TIMEOUT", "-1")
    with pytest.raises(ConfigError) as caught:
        registry.connect("env-api", env_prefix="BAD_")
    assert "timeout" == caught.value.field
    monkeypatch.setenv("BAD_TIMEOUT", "1")
    monkeypatch.setenv("BAD_HEADERS", "{not json s3cr3t")
    with pytest.raises(ConfigError, match="BAD_HEADERS is not valid JSON") as caught:
        registry.connect("env-api", env_prefix="BAD_")
    assert "s3cr3t" not in str(caught.value)
    monkeypatch.delenv("BAD_HEADERS")
    monkeypatch.delenv("BAD_BASE_URL")
    with pytest.raises(ConfigError) as caught:
        registry.connect("env-api", env_prefix="BAD_")
    assert "base_url" == caught.value.field


def test_env_prefix_only_for_connector_ids(registry: Registry) -> None:
    """A URL target or env_file= without env_prefix= is refused with a clear error."""
    with pytest.raises(ConfigError, match="not a URL"):
        registry.connect("https://example.invalid/x", env_prefix="X_")
    with pytest.raises(ConfigError, match="needs env_prefix"):
        registry.connect("env-api", env_file=".env")
