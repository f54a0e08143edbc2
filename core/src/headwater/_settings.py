"""
Connector configs from the environment and a ``.env`` file, through ``pydantic-settings``.

``headwater.connect("rest", env_prefix="BILLING_")`` reads ``BILLING_BASE_URL`` into
``base_url`` and ``BILLING_AUTH__TOKEN`` into ``auth.token`` (``__`` nests), with
``env_file=".env"`` also from that file (the environment wins over the file, an explicit
config or keyword over both). Complex fields (lists, tables) take JSON:
``BILLING_HEADERS='{"X-Team": "billing"}'``.

pydantic-settings only *finds* the values here: its sources are asked for the raw data,
which is then validated by the connector's own config model exactly like any config,
so a secret read from the environment is a `Secret` like any other, shown as ``***`` and
never logged. Needs ``pip install 'headwater[settings]'``; imported only when used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from headwater.errors import ConfigError

__all__ = ["config_from_env", "merge_config"]


def _settings_class(model: type[BaseModel], prefix: str, env_file: Path | None) -> type[Any]:
    try:
        from pydantic import create_model
        from pydantic_settings import BaseSettings, SettingsConfigDict
    except ImportError:
        raise ConfigError(
            "env_prefix= and env_file= need the pydantic-settings package, which is not installed",
            hint="pip install 'headwater[settings]'",
        ) from None
    # Same field names and annotations as the config, so pydantic-settings decides as it
    # would for the model itself which values are JSON and how `__` nests; the class is
    # never instantiated (that would validate, and dump secrets masked).
    fields: dict[str, Any] = {
        name: (info.annotation, None) for name, info in model.model_fields.items()
    }
    base = create_model(f"{model.__name__}FromEnv", __base__=BaseSettings, **fields)
    config = SettingsConfigDict(
        env_prefix=prefix,
        env_nested_delimiter="__",
        env_file=env_file,
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
    )
    return type(base.__name__, (base,), {"model_config": config})


def config_from_env(
    model: type[BaseModel],
    *,
    prefix: str,
    env_file: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """
    The raw config data for ``model`` found in the environment (and ``env_file``).

    Only variables named ``PREFIX`` + a field name (``__`` for nested fields) are read;
    the result is not validated yet (`headwater.connect` validates it as any config).

    Raises:
        ConfigError: pydantic-settings is missing, the ``.env`` file cannot be read, or a
            JSON value does not parse (the variable is named, its value never shown).
    """
    if not isinstance(prefix, str) or not prefix:
        raise ConfigError("env_prefix must be a non-empty string", field="env_prefix")
    path = Path(env_file).expanduser() if env_file is not None else None
    if path is not None and not path.is_file():
        raise ConfigError(
            f"env_file {path} does not exist", field="env_file", hint="create it or drop env_file="
        )
    settings = _settings_class(model, prefix, path)
    from pydantic_settings import DotEnvSettingsSource, EnvSettingsSource, SettingsError

    data: dict[str, Any] = {}
    try:
        # Lowest precedence first: the .env file, then the process environment.
        if path is not None:
            _deep_update(data, DotEnvSettingsSource(settings, env_file=path)())
        _deep_update(data, EnvSettingsSource(settings)())
    except SettingsError as exc:
        # Its message names the field ("error parsing value for field "headers" ...");
        # the value itself is never part of it.
        field = str(exc).split('"')[1] if str(exc).count('"') >= 2 else None
        variable = f"{prefix}{field.upper()}" if field else f"a {prefix}* variable"
        raise ConfigError(
            f"environment variable {variable} is not valid JSON (field {field!r} needs "
            "a JSON list or object)",
            field=field,
            hint='write lists and tables as JSON, e.g. {"key": "value"}',
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read env_file {path}: {exc.strerror or type(exc).__name__}",
            field="env_file",
        ) from None
    return {key: value for key, value in data.items() if value is not None}


def merge_config(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` on top; tables are merged key by key."""
    merged = dict(base)
    _deep_update(merged, override)
    return merged


def _deep_update(target: dict[str, Any], source: Mapping[str, Any]) -> None:
    for key, value in source.items():
        current = target.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            merged = dict(current)
            _deep_update(merged, value)
            target[key] = merged
        else:
            target[key] = value
