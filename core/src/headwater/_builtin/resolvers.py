"""The ``env:``, ``file:``, ``keyring:`` and ``encrypted:`` secret-reference schemes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from headwater._resolvers import resolve_encrypted, resolve_env, resolve_file, resolve_keyring

if TYPE_CHECKING:
    from headwater._secrets import CredentialResolver
from headwater.hookspecs import hookimpl


@hookimpl
def register_credential_resolvers() -> Mapping[str, CredentialResolver]:
    return {
        "env": resolve_env,
        "file": resolve_file,
        "keyring": resolve_keyring,
        "encrypted": resolve_encrypted,
    }
