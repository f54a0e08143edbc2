"""
Hooks of the ``headwater-rest`` plugin (the ``headwater`` entry point names this module).

Only hook implementations live here, and they import nothing heavy: the connector is
named by import path, and each auth factory imports httpx only when it is called.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from headwater import ConnectorRef, hookimpl
from headwater_rest._schemes import AUTH_SCHEMES

if TYPE_CHECKING:
    import httpx


@hookimpl
def register_connectors() -> Sequence[ConnectorRef]:
    return [
        ConnectorRef(
            "rest",
            "headwater_rest._connector:RestConnector",
            summary="REST/JSON APIs in YAML or Python: pagination, OAuth2, retries, resume",
        )
    ]


def _lazy(name: str) -> Callable[..., httpx.Auth]:
    def factory(config: Mapping[str, Any], secret: Callable[[str], str]) -> httpx.Auth:
        from headwater_rest._auth import BUILTIN_SCHEMES

        return BUILTIN_SCHEMES[name](config, secret)

    factory.__name__ = f"make_{name}"
    factory.__qualname__ = factory.__name__
    factory.__doc__ = f"Build the ``{name}`` httpx.Auth (imports httpx on call)."
    return factory


@hookimpl
def register_auth_schemes() -> Mapping[str, Callable[..., httpx.Auth]]:
    return {name: _lazy(name) for name in AUTH_SCHEMES}


@hookimpl
def connector_for_url(url: str) -> str | None:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    return "rest" if scheme in ("http", "https") else None
