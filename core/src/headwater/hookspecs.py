"""
The plugin contract: every hook headwater calls, with what it must return.

A plugin is a module (named by an entry point in the group ``headwater``) holding
functions decorated with `headwater.hookimpl` whose names match the specs below. Keep
that module cheap to import: import your driver (psycopg, azure, httpx, ...) inside the
hook or, better, inside the connector's methods. Core calls every hook lazily, once
per registry, and isolates failures: a hook that raises marks its plugin as failed and
the other plugins keep working.

A plugin may define hooks of its own for *its* plugins (the REST connector's pagination
styles, say) with ``registry.pm.add_hookspecs(its_hookspecs_module)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

import pluggy

if TYPE_CHECKING:
    from headwater._connector import Connector
    from headwater._plugins import ConnectorRef
    from headwater._secrets import CredentialResolver

#: The pluggy project name, also the entry-point group plugins register under.
PROJECT_NAME: Final = "headwater"

F = TypeVar("F", bound=Callable[..., Any])

_spec = pluggy.HookspecMarker(PROJECT_NAME)
_impl = pluggy.HookimplMarker(PROJECT_NAME)


def hookspec(function: F) -> F:
    """Mark a function as a hook specification (for plugins that add hooks of their own)."""
    marked: F = _spec(function)
    return marked


class _TypedHookimpl:
    """`pluggy.HookimplMarker` typed so decorated functions keep their signatures."""

    @overload
    def __call__(self, function: F) -> F: ...

    @overload
    def __call__(
        self,
        function: None = None,
        *,
        tryfirst: bool = False,
        trylast: bool = False,
        specname: str | None = None,
        optionalhook: bool = False,
        hookwrapper: bool = False,
        wrapper: bool = False,
    ) -> Callable[[F], F]: ...

    def __call__(
        self,
        function: F | None = None,
        *,
        tryfirst: bool = False,
        trylast: bool = False,
        specname: str | None = None,
        optionalhook: bool = False,
        hookwrapper: bool = False,
        wrapper: bool = False,
    ) -> F | Callable[[F], F]:
        # Every pluggy option is accepted, so a plugin using one imports cleanly; the
        # registry then refuses wrappers with a message naming the plugin and the hook.
        return _impl(
            function,
            tryfirst=tryfirst,
            trylast=trylast,
            specname=specname,
            optionalhook=optionalhook,
            hookwrapper=hookwrapper,
            wrapper=wrapper,
        )


#: Decorate a plugin's hook implementations: ``@headwater.hookimpl``.
hookimpl: Final = _TypedHookimpl()


@_spec
def register_connectors() -> Sequence[type[Connector[Any]] | ConnectorRef]:  # type: ignore[empty-body]
    """
    Return the connectors this plugin provides.

    Each item is a `Connector` subclass or, to keep listing free of imports, a
    `headwater.ConnectorRef` naming the class by import path (``"pkg.mod:Class"``) with
    its id and summary; core imports it on first use. Ids are immutable once released.
    Two plugins returning one id make that id unusable (with an error naming both
    distributions) while every other id keeps working. Called once per registry.
    """


@_spec
def register_credential_resolvers() -> Mapping[str, CredentialResolver]:  # type: ignore[empty-body]
    """
    Return secret-reference schemes this plugin resolves: ``{"vault": resolve_vault}``.

    A resolver receives the text after ``scheme:`` and returns the secret, raising
    `headwater.CredentialError` (naming where it looked, never the value) when there is
    none. It is called at connect time, never at import or config parse. Core provides
    ``env``, ``file`` and ``keyring``; a plugin may not replace them.
    """


@_spec
def register_auth_schemes() -> Mapping[str, Callable[..., Any]]:  # type: ignore[empty-body]
    """
    Return named ``httpx.Auth`` factories any HTTP connector can use.

    ``{"oauth2_client_credentials": make_auth}``: a REST config with
    ``auth: {type: oauth2_client_credentials, ...}`` calls ``make_auth(config, secret)``
    where ``config`` is the auth mapping minus ``type`` and ``secret(field)`` resolves a
    secret reference in it. Import httpx inside the factory, not at module level.
    """


@_spec(firstresult=True)
def connector_for_url(url: str) -> str | None:
    """
    Return the id of the connector that handles ``url``, or ``None``.

    Lets ``headwater.connect(url)`` and the CLI work from a URL alone
    (``postgresql://...``, ``az://...``, ``https://...``). The first non-``None`` answer
    wins; the connector then builds its config with ``Connector.from_url``. Must be
    cheap: look at the scheme and host, import nothing heavy.
    """
