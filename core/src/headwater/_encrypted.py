"""
An encrypted secret store for servers without a desktop keyring: ``encrypted:NAME``.

Values are encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from the ``cryptography``
package: ``pip install 'headwater[encrypted]'``) and kept in a JSON file, one token per
name; only the names are readable. The key comes from

* ``HEADWATER_SECRETS_KEY``: a Fernet key, or several separated by commas, or
* ``HEADWATER_SECRETS_KEY_FILE``: a file holding one key per line (``#`` comments allowed),

or from ``key=`` in Python. With several keys the first encrypts and every one decrypts
(`cryptography.fernet.MultiFernet`), which is how a rotation is rolled out: `rotate`
re-encrypts every value with the new key, and until every process has the new key,
``NEW,OLD`` in the variable lets both read.

The file (``HEADWATER_SECRETS_FILE``, else ``encrypted-secrets.json`` in headwater's config
directory) is written atomically with mode 0600 under an advisory lock, so two
processes setting secrets at once keep both. A message never holds a value or a key.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from headwater._files import atomic_file
from headwater._redact import register_secret
from headwater._store import _interprocess_lock
from headwater.errors import ConfigError, CredentialError

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

__all__ = ["EncryptedSecrets", "default_secrets_path"]

FORMAT: Final = "headwater.encrypted-secrets/1"
KEY_VARIABLE: Final = "HEADWATER_SECRETS_KEY"
KEY_FILE_VARIABLE: Final = "HEADWATER_SECRETS_KEY_FILE"
FILE_VARIABLE: Final = "HEADWATER_SECRETS_FILE"
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]*")
_NEW_KEY_HINT: Final = (
    "make a key with `headwater secrets new-key --key-file PATH`, then set "
    f"{KEY_FILE_VARIABLE}=PATH (or {KEY_VARIABLE} to the key)"
)

Key = str | bytes


def default_secrets_path() -> Path:
    """
    ``$HEADWATER_SECRETS_FILE`` if set, else ``encrypted-secrets.json`` in headwater's
    config directory (``$XDG_CONFIG_HOME/headwater``, or ``~/.config/headwater``).
    """
    explicit = os.environ.get(FILE_VARIABLE, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME", "").strip()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"
    return base / "headwater" / "encrypted-secrets.json"


def _cryptography() -> Any:
    try:
        from cryptography import fernet
    except ImportError:
        raise CredentialError(
            "the encrypted secret store needs the cryptography package, which is not installed",
            hint="pip install 'headwater[encrypted]'",
        ) from None
    return fernet


def generate_key() -> str:
    """A new random Fernet key (url-safe base64 text)."""
    key: bytes = _cryptography().Fernet.generate_key()
    return key.decode("ascii")


class EncryptedSecrets:
    """
    Secrets encrypted at rest in a file, decrypted with a key from the environment.

    Args:
        path: the file; `default_secrets_path` when omitted.
        key: a Fernet key, or a list of them (the first encrypts, all decrypt); from
            ``HEADWATER_SECRETS_KEY`` / ``HEADWATER_SECRETS_KEY_FILE`` when omitted (read
            when first needed, so listing names needs no key).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        key: Key | Sequence[Key] | None = None,
    ) -> None:
        self._path = Path(path).expanduser() if path is not None else default_secrets_path()
        self._keys: list[Key] | None = None
        self._origin = "key="
        if key is not None:
            self._keys = [key] if isinstance(key, str | bytes) else list(key)
            if not self._keys:
                raise CredentialError("key= is an empty list", hint=_NEW_KEY_HINT)

    @property
    def path(self) -> Path:
        """The encrypted file."""
        return self._path

    def __repr__(self) -> str:
        return f"<EncryptedSecrets path={str(self._path)!r}>"

    # --- keys ---------------------------------------------------------------------------------

    def _key_texts(self) -> list[Key]:
        if self._keys is not None:
            return self._keys
        text = os.environ.get(KEY_VARIABLE, "").strip()
        if text:
            self._origin = KEY_VARIABLE
            return [part.strip() for part in text.split(",") if part.strip()]
        key_file = os.environ.get(KEY_FILE_VARIABLE, "").strip()
        if key_file:
            self._origin = f"{KEY_FILE_VARIABLE} ({key_file})"
            return read_key_file(Path(key_file).expanduser())
        raise CredentialError(
            f"no key for the encrypted secret store: neither {KEY_VARIABLE} nor "
            f"{KEY_FILE_VARIABLE} is set",
            hint=_NEW_KEY_HINT,
        )

    def _fernet(self) -> MultiFernet:
        fernet = _cryptography()
        return fernet.MultiFernet(self._fernets())  # type: ignore[no-any-return]

    def _fernets(self, keys: Sequence[Key] | None = None) -> list[Any]:
        """One `Fernet` per key, in order (the first is the one that encrypts)."""
        fernet = _cryptography()
        texts = list(keys) if keys is not None else self._key_texts()
        origin = "the new key" if keys is not None else self._origin
        if not texts:
            raise CredentialError(f"{origin} holds no key", hint=_NEW_KEY_HINT)
        built = []
        for index, text in enumerate(texts):
            raw = text.decode("ascii", "replace") if isinstance(text, bytes) else text
            register_secret(raw)  # a key is a secret: never shown, even by accident
            try:
                built.append(fernet.Fernet(text))
            except (ValueError, TypeError):
                # The key is not echoed: it may be a real key with a typo.
                which = f"key {index + 1} of {origin}" if len(texts) > 1 else origin
                raise CredentialError(
                    f"{which} is not a Fernet key (32 bytes in url-safe base64, 44 characters)",
                    hint=_NEW_KEY_HINT,
                ) from None
        return built

    # --- the file -------------------------------------------------------------------------------

    def _read(self) -> dict[str, str]:
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise CredentialError(
                f"cannot read the encrypted secret store {self._path}: "
                f"{exc.strerror or type(exc).__name__}"
            ) from None
        try:
            document = json.loads(raw)
        except ValueError:
            raise CredentialError(
                f"the encrypted secret store {self._path} is not valid JSON",
                hint="restore it from a backup; it cannot be repaired without the values",
            ) from None
        secrets = document.get("secrets") if isinstance(document, dict) else None
        if document.get("format") != FORMAT or not isinstance(secrets, dict):
            raise CredentialError(
                f"{self._path} is not a headwater encrypted secret store ({FORMAT})",
                hint=f"point {FILE_VARIABLE} at the right file",
            )
        return {str(k): str(v) for k, v in secrets.items()}

    def _write(self, secrets: dict[str, str]) -> None:
        document = {"format": FORMAT, "secrets": dict(sorted(secrets.items()))}
        data = (json.dumps(document, indent=2) + "\n").encode("ascii")
        try:
            # Mode 0600 from the start (private=True), then renamed over the old file.
            with atomic_file(os.path.realpath(self._path), private=True) as handle:
                handle.write(data)
        except OSError as exc:
            raise CredentialError(
                f"cannot write the encrypted secret store {self._path}: "
                f"{exc.strerror or type(exc).__name__}"
            ) from None

    def _locked(self) -> Any:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise CredentialError(
                f"cannot create {self._path.parent}: {exc.strerror or type(exc).__name__}"
            ) from None
        return _interprocess_lock(self._path.with_name(self._path.name + ".lock"))

    @staticmethod
    def _check_name(name: str) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(
                f"invalid secret name {name!r}: use letters, digits, '_', '.', '-' and '/', "
                "starting with a letter or digit",
                field="name",
            )

    # --- operations -----------------------------------------------------------------------------

    def names(self) -> list[str]:
        """The stored names, sorted (no key needed)."""
        return sorted(self._read())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._read()

    def set(self, name: str, value: str) -> None:
        """Encrypt ``value`` and store it as ``name`` (replacing an older value)."""
        self._check_name(name)
        if not isinstance(value, str) or not value:
            raise ConfigError("refusing to store an empty secret", field="value")
        fernet = self._fernet()
        register_secret(value)
        token = fernet.encrypt(value.encode("utf-8")).decode("ascii")
        with self._locked():
            secrets = self._read()
            # A store readable by one key only: a value added with another key would be
            # unreadable to every process holding the store's key.
            others = [t for n, t in secrets.items() if n != name]
            if others:
                try:
                    fernet.decrypt(others[0].encode("ascii"))
                except _cryptography().InvalidToken:
                    raise self._wrong_key(f"the store {self._path}") from None
            secrets[name] = token
            self._write(secrets)

    def get(self, name: str) -> str:
        """The decrypted value of ``name``; `CredentialError` if absent or the key is wrong."""
        token = self._read().get(name)
        if token is None:
            raise CredentialError(
                f"no secret named {name!r} in the encrypted store {self._path} "
                f"(looked in encrypted:{name})",
                hint=f"store one with: headwater secrets set --store encrypted {name}",
            )
        fernet = self._fernet()
        try:
            value = fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except _cryptography().InvalidToken:
            raise self._wrong_key(f"encrypted:{name}") from None
        register_secret(value)
        return value

    def _wrong_key(self, what: str) -> CredentialError:
        return CredentialError(
            f"cannot decrypt {what} with the key from {self._origin}: it is not the key the "
            "value was stored with, or the file was altered",
            hint=f"set {KEY_VARIABLE} (or {KEY_FILE_VARIABLE}) to the key the store was "
            "written with; during a rotation, give both as NEW,OLD",
        )

    def delete(self, name: str) -> None:
        """Remove ``name``; `CredentialError` if there is none."""
        with self._locked():
            secrets = self._read()
            if name not in secrets:
                raise CredentialError(f"no secret named {name!r} in the encrypted store")
            del secrets[name]
            self._write(secrets)

    def rotate(self, new_key: Key) -> int:
        """
        Re-encrypt every value with ``new_key``; returns how many were re-encrypted.

        Every value is decrypted with the current key(s) first: if one cannot be, nothing
        is changed. Afterwards only ``new_key`` (or ``NEW,OLD`` during the roll-out) reads
        the store.
        """
        current = self._fernets()
        new = self._fernets([new_key])
        fernet = _cryptography()
        combined = fernet.MultiFernet([*new, *current])
        with self._locked():
            secrets = self._read()
            rotated: dict[str, str] = {}
            for name, token in secrets.items():
                try:
                    rotated[name] = combined.rotate(token.encode("ascii")).decode("ascii")
                except fernet.InvalidToken:
                    raise self._wrong_key(f"encrypted:{name}") from None
            self._write(rotated)
        return len(rotated)


def read_key_file(path: Path) -> list[Key]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CredentialError(
            f"cannot read the key file {path} ({KEY_FILE_VARIABLE}): "
            f"{exc.strerror or type(exc).__name__}",
            hint=_NEW_KEY_HINT,
        ) from None
    keys: list[Key] = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    return keys


def write_key_file(path: str | os.PathLike[str]) -> Path:
    """Write a new random key to a new file (mode 0600); refuses to replace a file."""
    target = Path(path).expanduser()
    key = generate_key()
    register_secret(key)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"{target} exists; a key file is never replaced (its values would be lost)",
            field="key_file",
            hint="choose a new path",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot create {target}: {exc.strerror or type(exc).__name__}", field="key_file"
        ) from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return target
