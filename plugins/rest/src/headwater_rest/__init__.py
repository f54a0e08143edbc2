"""
headwater-rest: read REST/JSON APIs described in YAML or Python.

``RestConnector`` (connector id ``rest``) and its config model ``RestConfig`` are the
public API; everything in underscored modules is private. Names are imported on first
access, so the entry point (``headwater_rest.hooks``) stays cheap to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from headwater_rest.__about__ import __version__

if TYPE_CHECKING:
    from headwater_rest._config import RestConfig as RestConfig
    from headwater_rest._connector import RestConnector as RestConnector
    from headwater_rest._errors import OriginRefused as OriginRefused
    from headwater_rest._errors import PaginationError as PaginationError
    from headwater_rest._write import RestWriteResult as RestWriteResult
    from headwater_rest._write import WriteFailed as WriteFailed
    from headwater_rest._write import WriteFailure as WriteFailure

__all__ = [
    "OriginRefused",
    "PaginationError",
    "RestConfig",
    "RestConnector",
    "RestWriteResult",
    "WriteFailed",
    "WriteFailure",
    "__version__",
]

_LAZY = {
    "OriginRefused": "headwater_rest._errors",
    "PaginationError": "headwater_rest._errors",
    "RestConfig": "headwater_rest._config",
    "RestConnector": "headwater_rest._connector",
    "RestWriteResult": "headwater_rest._write",
    "WriteFailed": "headwater_rest._write",
    "WriteFailure": "headwater_rest._write",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    if isinstance(value, type) and value.__module__.startswith("headwater_rest._"):
        # Tracebacks and reprs read `headwater_rest.RestConnector`.
        value.__module__ = __name__
    globals()[name] = value
    return value
