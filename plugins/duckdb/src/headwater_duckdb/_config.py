"""
The ``duckdb`` connector's configuration, and how a ``duckdb://`` URL becomes one.

URLs follow the convention of SQLAlchemy's DuckDB dialect: what follows ``duckdb:///`` is
the path, so ``duckdb:///local.db`` is relative to the working directory,
``duckdb:////data/warehouse.db`` is absolute, and ``duckdb:///:memory:`` is an in-memory
database (private to the connector). Query parameters set config fields
(``duckdb:///local.db?access=read_only``).

Nothing here imports duckdb.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import Field, field_validator

from headwater import ConfigError, ConnectorConfig

#: The path of an in-memory database.
MEMORY = ":memory:"

Access = Literal["auto", "read_only", "read_write"]


class DuckDBConfig(ConnectorConfig):
    """
    Configuration of the ``duckdb`` connector. Examples::

        {"path": "warehouse.db"}
        {"path": "/data/warehouse.db", "access": "read_only"}
        {"path": ":memory:"}
    """

    path: Path = Field(
        description="The DuckDB database file (created by the first write when it does not "
        "exist), or ':memory:' for an in-memory database private to this connector.",
    )
    access: Access = Field(
        default="auto",
        description="How the file is opened. 'auto': read-only until the first write, so "
        "several processes can read the file at once, then read-write (DuckDB allows one "
        "read-write process per file, and no readers beside it). 'read_only' refuses "
        "writes; 'read_write' takes the file's lock from the start.",
    )
    batch_size: int = Field(
        default=65_536,
        ge=1,
        le=10_000_000,
        description="Rows per batch of a read (Arrow record batches).",
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="DuckDB worker threads; DuckDB's default (every core) when not set.",
    )
    external_access: bool = Field(
        default=False,
        description="Whether SQL this connector runs (query streams) may reach beyond the "
        "database file: read other files or URLs with DuckDB's table functions (read_csv, "
        "read_parquet, httpfs), attach databases, install or load extensions. Off by "
        "default, so a query stream reads this database and nothing else.",
    )
    memory_limit: str | None = Field(
        default=None,
        pattern=r"^\s*\d+(\.\d+)?\s*[KMGT]?i?B\s*$",
        description="DuckDB's memory limit, e.g. '2GB'; DuckDB's default (80% of RAM) when "
        "not set. Beyond it DuckDB spills to temporary files.",
    )

    @field_validator("path")
    @classmethod
    def _path(cls, value: Path) -> Path:
        if "\x00" in str(value) or not str(value).strip():
            raise ValueError("give a file path (no NUL character) or ':memory:'")
        return value

    @property
    def in_memory(self) -> bool:
        """Whether this is an in-memory database."""
        return str(self.path) == MEMORY

    def duckdb_settings(self) -> dict[str, Any]:
        """``duckdb.connect(config=...)``: only what was set, so equal configs share a database."""
        config: dict[str, Any] = {}
        if not self.external_access:
            config["enable_external_access"] = False
        if self.threads is not None:
            config["threads"] = self.threads
        if self.memory_limit is not None:
            config["memory_limit"] = self.memory_limit.strip()
        return config


def config_from_url(url: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The config mapping of ``duckdb:///path?field=value`` plus ``overrides``."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "duckdb":
        raise ConfigError(f"not a duckdb URL: {parts.scheme}://...", field="url")
    if parts.netloc:
        raise ConfigError(
            "a duckdb URL names a file, not a host: duckdb:///relative.db, "
            "duckdb:////absolute/path.db or duckdb:///:memory:",
            field="url",
        )
    # urlsplit keeps the slash that separates the (empty) host from the path.
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    if not path:
        raise ConfigError(
            "the duckdb URL names no file: duckdb:///local.db or duckdb:///:memory:",
            field="url",
        )
    config: dict[str, Any] = {"path": path}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        config[key] = value
    config.update(overrides)
    return config
