"""
headwater-rest: read REST/JSON APIs described in YAML or Python.

``RestConnector`` (connector id ``rest``) and its config model ``RestConfig`` are the
public API; everything in underscored modules is private. Names are imported on first
access, so the entry point (``headwater_rest.hooks``) stays cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from headwater.toolkit import lazy_exports
from headwater_rest.__about__ import __version__ as __version__

if TYPE_CHECKING:
    from headwater_rest._config import RestConfig as RestConfig
    from headwater_rest._connector import RestConnector as RestConnector
    from headwater_rest._errors import OriginRefused as OriginRefused
    from headwater_rest._errors import PaginationError as PaginationError
    from headwater_rest._write import RestWriteResult as RestWriteResult
    from headwater_rest._write import WriteFailed as WriteFailed
    from headwater_rest._write import WriteFailure as WriteFailure

#: public name -> the module that defines it (imported on first access)
_HOMES = {
    "OriginRefused": "headwater_rest._errors",
    "PaginationError": "headwater_rest._errors",
    "RestConfig": "headwater_rest._config",
    "RestConnector": "headwater_rest._connector",
    "RestWriteResult": "headwater_rest._write",
    "WriteFailed": "headwater_rest._write",
    "WriteFailure": "headwater_rest._write",
    "__version__": "headwater_rest.__about__",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
