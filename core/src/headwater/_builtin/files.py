"""
Hooks of the ``files`` reference connector.

This module is what an entry point would name: it holds only hook implementations and
names the connector class by import path, so listing connectors imports nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence

from headwater._plugins import ConnectorRef
from headwater.hookspecs import hookimpl


@hookimpl
def register_connectors() -> Sequence[ConnectorRef]:
    return [
        ConnectorRef(
            "files",
            "headwater._builtin.files_connector:FilesConnector",
            summary="CSV and JSON Lines files in a local directory (the embedded default)",
        )
    ]


@hookimpl
def connector_for_url(url: str) -> str | None:
    return "files" if url.lower().startswith("file://") else None
