"""
Core's own secret-reference resolvers: ``env:``, ``file:``, ``keyring:`` and ``encrypted:``.

Kept apart from `headwater._secrets` (which needs pydantic) so registering them costs
nothing; ``keyring`` itself is imported only when a keyring reference is resolved, and
every keyring call runs under a timeout because keyring can block forever on a headless
machine waiting for an unlock prompt nobody will answer. ``encrypted:`` needs no keyring:
its store (and the optional ``cryptography`` package) is imported only when one is resolved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from headwater.errors import CredentialError, KeyringUnavailable

KEYRING_TIMEOUT: Final = 10.0


def resolve_env(name: str) -> str:
    """``env:NAME`` — the environment variable NAME."""
    import os

    value = os.environ.get(name)
    if value is None:
        raise CredentialError(
            f"environment variable {name} is not set (looked in env:{name})",
            hint=f"export {name}=... or use another reference",
        )
    return value


def resolve_file(path: str) -> str:
    """``file:PATH`` — the file's contents, without a trailing newline."""
    from pathlib import Path

    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CredentialError(f"no such file (looked in file:{path})") from None
    except OSError as exc:
        raise CredentialError(
            f"cannot read file:{path} ({exc.strerror or type(exc).__name__})"
        ) from None
    return text.rstrip("\r\n")


def _call_with_timeout(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    # keyring can block forever on a headless machine (a D-Bus prompt nobody answers).
    # A daemon thread lets us give up without keeping the interpreter alive at exit.
    import threading

    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, name="headwater-keyring", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise KeyringUnavailable(
            f"the OS keyring did not answer within {timeout:g}s while {what}",
            hint="use env:NAME, file:PATH or a callable instead, or unlock the keyring",
        )
    if "error" in result:
        raise result["error"]
    return result.get("value")


def _keyring_errors(exc: Exception, what: str) -> CredentialError:
    name = type(exc).__name__
    if name in {"NoKeyringError", "InitError"} or "backend" in str(exc).lower():
        return KeyringUnavailable(
            f"no usable OS keyring backend while {what}",
            hint="install and unlock a keyring backend (Secret Service, macOS Keychain, "
            "Windows Credential Locker, keyrings.alt), or use env:NAME, file:PATH or a callable",
        )
    return KeyringUnavailable(f"the OS keyring failed while {what} ({name})")


def split_keyring_reference(reference: str) -> tuple[str, str]:
    """``SERVICE/USERNAME`` → (service, username); the service may not contain ``/``."""
    service, sep, username = reference.partition("/")
    if not sep or not service or not username:
        raise CredentialError(
            f"keyring reference must be keyring:SERVICE/USERNAME, got keyring:{reference}"
        )
    return service, username


def resolve_keyring(reference: str) -> str:
    """``keyring:SERVICE/USERNAME`` — a password stored in the OS keyring."""
    service, username = split_keyring_reference(reference)
    what = f"reading keyring:{reference}"
    try:
        import keyring
    except ImportError:
        raise KeyringUnavailable(
            "the keyring package is not installed", hint="pip install keyring"
        ) from None
    try:
        value = _call_with_timeout(
            lambda: keyring.get_password(service, username), KEYRING_TIMEOUT, what
        )
    except CredentialError:
        raise
    except Exception as exc:
        raise _keyring_errors(exc, what) from None
    if value is None:
        raise CredentialError(
            f"no password stored for service {service!r}, user {username!r} "
            f"(looked in keyring:{reference})",
            hint=f"store one with: headwater secrets set {service} {username}",
        )
    return str(value)


def keyring_set(service: str, username: str, value: str) -> None:
    """Store a password in the OS keyring (used by ``headwater secrets set``)."""
    import keyring

    what = f"storing keyring:{service}/{username}"
    try:
        _call_with_timeout(
            lambda: keyring.set_password(service, username, value), KEYRING_TIMEOUT, what
        )
    except CredentialError:
        raise
    except Exception as exc:
        raise _keyring_errors(exc, what) from None


def keyring_delete(service: str, username: str) -> None:
    """Delete a password from the OS keyring (used by ``headwater secrets delete``)."""
    import keyring
    import keyring.errors

    what = f"deleting keyring:{service}/{username}"
    try:
        _call_with_timeout(
            lambda: keyring.delete_password(service, username), KEYRING_TIMEOUT, what
        )
    except keyring.errors.PasswordDeleteError:
        raise CredentialError(
            f"no password stored for service {service!r}, user {username!r}"
        ) from None
    except CredentialError:
        raise
    except Exception as exc:
        raise _keyring_errors(exc, what) from None


def resolve_encrypted(name: str) -> str:
    """``encrypted:NAME`` — a value in the encrypted secret store (`headwater._encrypted`)."""
    # Imported here: the store needs the optional cryptography package only when used.
    from headwater._encrypted import EncryptedSecrets

    return EncryptedSecrets().get(name)
