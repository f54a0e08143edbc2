"""
`store_secret` and `delete_secret`: put a value where a secret reference points, or take
it away — the OS keyring (``keyring:SERVICE/USERNAME``) or the encrypted store
(``encrypted:NAME``). What `headwater secrets set` and `delete` do, for programs too.
"""

from __future__ import annotations

from headwater.errors import ConfigError

#: The reference schemes a value can be stored under.
STORES = ("keyring", "encrypted")


def _split(reference: str) -> tuple[str, str]:
    scheme, sep, rest = reference.partition(":")
    if not sep or scheme not in STORES or not rest:
        raise ConfigError(
            "secrets are stored under keyring:SERVICE/USERNAME or encrypted:NAME, "
            f"not {scheme + ':' if sep else 'a literal'}...",
            field="reference",
        )
    return scheme, rest


def store_secret(reference: str, value: str) -> None:
    """
    Store ``value`` where ``reference`` points (replacing an older value), so a config
    holding ``reference`` resolves to it.

    ``keyring:SERVICE/USERNAME``: the OS keyring (calls time out instead of waiting on an
    unlock prompt). ``encrypted:NAME``: the Fernet-encrypted file of `EncryptedSecrets`,
    its key from ``HEADWATER_SECRETS_KEY`` or ``HEADWATER_SECRETS_KEY_FILE``.
    An empty value is refused.
    """
    scheme, rest = _split(reference)
    if not value:
        raise ConfigError("refusing to store an empty secret", field="value")
    if scheme == "encrypted":
        from headwater._encrypted import EncryptedSecrets

        EncryptedSecrets().set(rest, value)
        return
    from headwater._resolvers import keyring_set, split_keyring_reference

    keyring_set(*split_keyring_reference(rest), value)


def delete_secret(reference: str) -> None:
    """Delete the value stored under ``reference``; `CredentialError` when there is none."""
    scheme, rest = _split(reference)
    if scheme == "encrypted":
        from headwater._encrypted import EncryptedSecrets

        EncryptedSecrets().delete(rest)
        return
    from headwater._resolvers import keyring_delete, split_keyring_reference

    keyring_delete(*split_keyring_reference(rest))
