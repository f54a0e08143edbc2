"""The encrypted secret store (``encrypted:NAME``): Fernet at rest, key from the environment."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import Field

from headwater import (
    Connector,
    ConnectorConfig,
    CredentialError,
    EncryptedSecrets,
    Registry,
    Secret,
    SourceRegistry,
    hookimpl,
)
from headwater._encrypted import generate_key

VALUE = "pa55-Wq8#encrypted-plaintext"
OTHER = "second-value-Jk3"


@pytest.fixture
def key() -> str:
    return generate_key()


@pytest.fixture
def store(tmp_path: Path, key: str) -> EncryptedSecrets:
    return EncryptedSecrets(tmp_path / "secrets.json", key=key)


def test_round_trip(store: EncryptedSecrets) -> None:
    """set then get returns the value; names are listed, values never shown in the repr."""
    store.set("db/password", VALUE)
    store.set("api", OTHER)
    assert VALUE == store.get("db/password")
    assert OTHER == store.get("api")
    assert ["api", "db/password"] == store.names()
    assert VALUE not in repr(store)
    store.delete("api")
    assert ["db/password"] == store.names()
    with pytest.raises(CredentialError, match="no secret named 'api'") as caught:
        store.get("api")
    assert "secrets set --store encrypted api" in (caught.value.hint or "")


def test_no_plaintext_on_disk_and_mode_0600(store: EncryptedSecrets, key: str) -> None:
    """The file holds neither the value (in any common encoding) nor the key; mode 0600."""
    store.set("db", VALUE)
    data = store.path.read_bytes()
    for needle in (VALUE, VALUE.encode().hex(), key):
        assert needle.encode() not in data
    import base64

    assert base64.b64encode(VALUE.encode()) not in data
    if sys.platform != "win32":
        assert 0o600 == stat.S_IMODE(store.path.stat().st_mode)
        # Still 0600 after a rewrite (a second set replaces the file atomically).
        store.set("db2", OTHER)
        assert 0o600 == stat.S_IMODE(store.path.stat().st_mode)


def test_wrong_key_is_a_clear_error_without_values(store: EncryptedSecrets) -> None:
    """Another key cannot decrypt; the error says so and shows neither value nor key."""
    store.set("db", VALUE)
    wrong = generate_key()
    other = EncryptedSecrets(store.path, key=wrong)
    with pytest.raises(CredentialError, match="not the key the value was stored with") as caught:
        other.get("db")
    text = str(caught.value) + (caught.value.hint or "")
    assert VALUE not in text
    assert wrong not in text


def test_set_with_another_key_is_refused(store: EncryptedSecrets) -> None:
    """Adding a value with a key that cannot read the store changes nothing."""
    store.set("a", VALUE)
    before = store.path.read_bytes()
    with pytest.raises(CredentialError, match="not the key"):
        EncryptedSecrets(store.path, key=generate_key()).set("b", OTHER)
    assert before == store.path.read_bytes()


def test_malformed_key_is_refused_without_echo(tmp_path: Path) -> None:
    """A key that is no Fernet key is named as such, not echoed."""
    bad = "not-a-fernet-key-but-a-secret-typo"
    store = EncryptedSecrets(tmp_path / "s.json", key=bad)
    with pytest.raises(CredentialError, match="not a Fernet key") as caught:
        store.set("x", VALUE)
    assert bad not in str(caught.value)
    assert not (tmp_path / "s.json").exists()


def test_missing_key_names_both_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a key, the error names HEADWATER_SECRETS_KEY and _KEY_FILE and how to make one."""
    monkeypatch.delenv("HEADWATER_SECRETS_KEY", raising=False)
    monkeypatch.delenv("HEADWATER_SECRETS_KEY_FILE", raising=False)
    store = EncryptedSecrets(tmp_path / "s.json")
    with pytest.raises(CredentialError) as caught:
        store.set("x", VALUE)
    assert "HEADWATER_SECRETS_KEY" in caught.value.message
    assert "HEADWATER_SECRETS_KEY_FILE" in caught.value.message
    assert "secrets new-key" in (caught.value.hint or "")


def test_key_from_environment_and_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """The key is read from HEADWATER_SECRETS_KEY, else from the file HEADWATER_SECRETS_KEY_FILE."""
    monkeypatch.delenv("HEADWATER_SECRETS_KEY_FILE", raising=False)
    monkeypatch.setenv("HEADWATER_SECRETS_KEY", key)
    EncryptedSecrets(tmp_path / "s.json").set("x", VALUE)
    monkeypatch.delenv("HEADWATER_SECRETS_KEY")
    key_file = tmp_path / "key"
    key_file.write_text(f"# the store's key\n{key}\n", encoding="utf-8")
    monkeypatch.setenv("HEADWATER_SECRETS_KEY_FILE", str(key_file))
    assert VALUE == EncryptedSecrets(tmp_path / "s.json").get("x")


def test_rotation(store: EncryptedSecrets, key: str) -> None:
    """rotate re-encrypts with the new key: the new key reads, the old one no longer does."""
    store.set("a", VALUE)
    store.set("b", OTHER)
    before = store.path.read_bytes()
    new = generate_key()
    assert 2 == store.rotate(new)
    assert before != store.path.read_bytes()
    rotated = EncryptedSecrets(store.path, key=new)
    assert (VALUE, OTHER) == (rotated.get("a"), rotated.get("b"))
    with pytest.raises(CredentialError, match="not the key"):
        EncryptedSecrets(store.path, key=key).get("a")
    # During a roll-out NEW,OLD reads everything.
    assert VALUE == EncryptedSecrets(store.path, key=[new, key]).get("a")
    assert VALUE.encode() not in store.path.read_bytes()


def test_rotation_with_a_wrong_current_key_changes_nothing(store: EncryptedSecrets) -> None:
    """A rotation that cannot decrypt a value leaves the file exactly as it was."""
    store.set("a", VALUE)
    before = store.path.read_bytes()
    wrong = EncryptedSecrets(store.path, key=generate_key())
    with pytest.raises(CredentialError, match="not the key"):
        wrong.rotate(generate_key())
    assert before == store.path.read_bytes()


def test_tampered_file_is_refused(store: EncryptedSecrets) -> None:
    """Fernet authenticates: a changed token is an error, never a wrong value."""
    store.set("a", VALUE)
    text = store.path.read_text(encoding="ascii")
    token = text.split('"a": "')[1].split('"')[0]
    # A valid token of another key in its place, then one with its signature changed.
    store.path.write_text(text.replace(token, Fernet(generate_key()).encrypt(b"x").decode()))
    with pytest.raises(CredentialError, match="altered"):
        store.get("a")
    store.path.write_text(
        text.replace(token, token[:-8] + ("A" * 8 if token[-8:] != "A" * 8 else "B" * 8))
    )
    with pytest.raises(CredentialError, match="altered"):
        store.get("a")


class TokenConfig(ConnectorConfig):
    token: Secret = Field(description="The token.")


class TokenConnector(Connector[TokenConfig]):
    id = "enc-token"
    Config = TokenConfig


class TokenPlugin:
    @hookimpl
    def register_connectors(self) -> list[type[Connector[Any]]]:
        return [TokenConnector]


def test_encrypted_reference_resolves_and_is_saved_as_a_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """A source saves encrypted:NAME (a known scheme); the connector gets the decrypted value."""
    monkeypatch.setenv("HEADWATER_SECRETS_KEY", key)
    monkeypatch.setenv("HEADWATER_SECRETS_FILE", str(tmp_path / "secrets.json"))
    EncryptedSecrets().set("billing/token", VALUE)
    registry = Registry(autoload=False, plugins=[TokenPlugin()])
    with SourceRegistry(tmp_path / "sources.toml", registry=registry) as sources:
        sources.add("billing", "enc-token", {"token": "encrypted:billing/token"})
        assert "encrypted:billing/token" == sources.show("billing")["config"]["token"]
        assert VALUE == sources.connector("billing").secret("token")
    assert VALUE not in (tmp_path / "sources.toml").read_text(encoding="utf-8")


def _cli(args: list[str], env: dict[str, str], stdin: str | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "headwater", *args],
        env={**os.environ, "HEADWATER_DISABLE_PLUGIN_AUTOLOAD": "1", **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_new_key_set_list_rotate_delete(tmp_path: Path) -> None:
    """`secrets new-key`, `set --store encrypted`, `list`, `rotate`, `delete`; no value printed."""
    secrets_file = tmp_path / "secrets.json"
    key_file = tmp_path / "key"
    env = {"HEADWATER_SECRETS_FILE": str(secrets_file), "HEADWATER_SECRETS_KEY_FILE": str(key_file)}
    env.pop("HEADWATER_SECRETS_KEY", None)
    os_env = {k: v for k, v in os.environ.items() if k != "HEADWATER_SECRETS_KEY"}
    made = _cli(["secrets", "new-key", "--key-file", str(key_file)], {**os_env, **env})
    assert 0 == made.returncode, made.stderr
    key = key_file.read_text(encoding="ascii").strip()
    assert key not in made.stdout
    if sys.platform != "win32":
        assert 0o600 == stat.S_IMODE(key_file.stat().st_mode)
    again = _cli(["secrets", "new-key", "--key-file", str(key_file)], env)
    assert 1 == again.returncode
    assert "never replaced" in again.stderr
    stored = _cli(
        ["secrets", "set", "--store", "encrypted", "db", "--stdin"], env, stdin=VALUE + "\n"
    )
    assert 0 == stored.returncode, stored.stderr
    assert "encrypted:db" in stored.stdout
    assert VALUE.encode() not in secrets_file.read_bytes()
    assert "encrypted:db" == _cli(["secrets", "list"], env).stdout.strip()
    new_key_file = tmp_path / "new-key"
    assert 0 == _cli(["secrets", "new-key", "--key-file", str(new_key_file)], env).returncode
    rotated = _cli(["secrets", "rotate", "--new-key-file", str(new_key_file)], env)
    assert 0 == rotated.returncode, rotated.stderr
    assert "re-encrypted 1" in rotated.stdout
    new_key = new_key_file.read_text(encoding="ascii").strip()
    assert VALUE == EncryptedSecrets(secrets_file, key=new_key).get("db")
    # The old key no longer reads: the error is clear and shows no value.
    third_key_file = tmp_path / "third-key"
    assert 0 == _cli(["secrets", "new-key", "--key-file", str(third_key_file)], env).returncode
    wrong = _cli(["secrets", "rotate", "--new-key-file", str(third_key_file)], env)
    assert 1 == wrong.returncode
    assert "not the key" in wrong.stderr
    assert VALUE not in wrong.stderr + wrong.stdout
    assert key not in wrong.stderr
    env["HEADWATER_SECRETS_KEY_FILE"] = str(new_key_file)
    assert 0 == _cli(["secrets", "delete", "--store", "encrypted", "db"], env).returncode
    assert "" == _cli(["secrets", "list"], env).stdout.strip()
    keyring_needs_user = _cli(["secrets", "set", "svc", "--stdin"], env, stdin="x\n")
    assert 2 == keyring_needs_user.returncode
    assert "SERVICE and USERNAME" in keyring_needs_user.stderr
