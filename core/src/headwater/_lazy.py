"""
Lazy exports (PEP 562), written once for every public module of headwater and its
first-party plugins: a table of public name -> defining module, from which the module's
``__all__``, ``__getattr__`` and ``__dir__`` are derived.

A name is imported on first access, so importing the package stays cheap (plugin
discovery imports every plugin's package; ``headwater --help`` must not pay for pydantic
or any SDK). A class defined in a private module is shown under the public module
(``headwater.Connector``, not ``headwater._connector.Connector``) in reprs and tracebacks.
Names that moved keep working for a while, with a `DeprecationWarning` naming the new home.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    module: str,
    homes: Mapping[str, str],
    namespace: dict[str, Any],
    *,
    moved: Mapping[str, str] | None = None,
    rename: bool = True,
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """
    ``(__all__, __getattr__, __dir__)`` for ``module``, whose globals are ``namespace``.

    Args:
        homes: public name -> the module that defines it (a submodule name maps to its
            own import path, e.g. ``"errors": "headwater.errors"``).
        moved: old public name -> the module it is public in now; still importable from
            ``module`` with a `DeprecationWarning`, and not in ``__all__``.
        rename: show classes of ``module``'s private submodules as ``module``'s own (a
            module re-exporting another package's names, as `headwater.toolkit` does
            the core's, leaves that to the package).
    """
    moved = dict(moved or {})
    public = sorted(homes)

    def __getattr__(name: str) -> Any:
        if name in moved:
            warnings.warn(
                f"{module}.{name} moved to {moved[name]}.{name}; import it from there",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(importlib.import_module(moved[name]), name)
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        if home == f"{module}.{name}":
            value: Any = importlib.import_module(home)
        else:
            value = getattr(importlib.import_module(home), name)
            if rename and isinstance(value, type) and value.__module__.startswith(f"{module}._"):
                # Tracebacks and reprs read `headwater.Connector`, not `headwater._connector…`.
                value.__module__ = module
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *public})

    return public, __getattr__, __dir__
