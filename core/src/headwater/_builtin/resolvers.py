"""The ``env:``, ``file:`` and ``keyring:`` secret-reference schemes."""

from __future__ import annotations

from collections.abc import Mapping

from headwater._secrets import CredentialResolver, resolve_env, resolve_file, resolve_keyring
from headwater.hookspecs import hookimpl


@hookimpl
def register_credential_resolvers() -> Mapping[str, CredentialResolver]:
    return {"env": resolve_env, "file": resolve_file, "keyring": resolve_keyring}
