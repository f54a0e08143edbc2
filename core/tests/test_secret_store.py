"""`headwater.store_secret` / `delete_secret`: a value stored where its reference points."""

from __future__ import annotations

from pathlib import Path

import pytest

import headwater
from headwater._encrypted import generate_key

VALUE = "Vb7-store-secret-plaintext"


@pytest.fixture
def encrypted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An encrypted store of its own: file and key from the environment, as the CLI has it."""
    path = tmp_path / "secrets.json"
    monkeypatch.setenv("HEADWATER_SECRETS_FILE", str(path))
    monkeypatch.setenv("HEADWATER_SECRETS_KEY", generate_key())
    monkeypatch.delenv("HEADWATER_SECRETS_KEY_FILE", raising=False)
    return path


@pytest.fixture
def plaintext_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The keyrings.alt file backend in tmp_path, restored afterwards."""
    keyring = pytest.importorskip("keyring")
    alt = pytest.importorskip("keyrings.alt.file")
    backend = alt.PlaintextKeyring()
    monkeypatch.setattr(type(backend), "file_path", str(tmp_path / "keyring.cfg"))
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_encrypted_reference_round_trip(encrypted):
    """encrypted:NAME is stored encrypted, resolves to the value, and is gone after delete."""
    headwater.store_secret("encrypted:db/etl", VALUE)
    assert VALUE.encode() not in encrypted.read_bytes()
    assert VALUE == headwater.EncryptedSecrets().get("db/etl")
    headwater.delete_secret("encrypted:db/etl")
    assert [] == list(headwater.EncryptedSecrets().names())
    with pytest.raises(headwater.CredentialError):
        headwater.delete_secret("encrypted:db/etl")


def test_keyring_reference_round_trip(plaintext_keyring):
    """keyring:SERVICE/USERNAME goes to the OS keyring; delete twice is a CredentialError."""
    headwater.store_secret("keyring:hw-store-test/alice", VALUE)
    assert VALUE == plaintext_keyring.get_password("hw-store-test", "alice")
    headwater.delete_secret("keyring:hw-store-test/alice")
    assert None is plaintext_keyring.get_password("hw-store-test", "alice")
    with pytest.raises(headwater.CredentialError):
        headwater.delete_secret("keyring:hw-store-test/alice")


def test_empty_value_is_refused(encrypted):
    """An empty secret is refused before anything is written."""
    with pytest.raises(headwater.ConfigError) as caught:
        headwater.store_secret("encrypted:db", "")
    assert ("value", False) == (caught.value.field, encrypted.exists())


@pytest.mark.parametrize(
    "reference", ["env:DB_PASSWORD", "file:/run/secret", "plain-value", "keyring:"]
)
def test_other_references_are_refused_without_echo(reference, encrypted):
    """Only keyring: and encrypted: can be stored to; the error never repeats the value."""
    with pytest.raises(headwater.ConfigError) as caught:
        headwater.store_secret(reference, VALUE)
    assert "reference" == caught.value.field
    assert VALUE not in str(caught.value)
    assert "plain-value" not in str(caught.value)
