"""Secrets: parsing without resolving, late resolution, rotation, provenance, redaction."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

import headwater
from headwater import _redact, _resolvers
from headwater._secrets import Secret
from tests.fix_services import run_with_secret_service, service_unavailable

SECRET = "s3cr3t-Value-9f8e7d"


@pytest.fixture(autouse=True)
def _forget_secrets():
    """Each test starts with an empty redaction set."""
    _redact._forget_all()
    yield
    _redact._forget_all()


class VaultConfig(headwater.ConnectorConfig):
    host: str = Field(description="where")
    password: Secret = Field(description="the password")
    token: Secret | None = Field(default=None, description="optional token")


class Vault(headwater.Connector[VaultConfig]):
    id = "vault-test"
    Config = VaultConfig
    capabilities = frozenset({headwater.Capability.CHECK})

    def check_connection(self) -> str:
        password = self.secret("password")
        if password != "right":
            # Drivers echo credentials back surprisingly often; ours must not.
            raise headwater.AuthFailed(f"login failed for password {password}", field="password")
        return "ok"


def registry() -> headwater.Registry:
    return headwater.Registry(autoload=False)


def test_parse_does_not_resolve(monkeypatch):
    """Building a config with references reads nothing: no env lookup, no file, no callable call."""
    calls = []
    monkeypatch.delenv("HW_TEST_MISSING", raising=False)
    config = VaultConfig(
        host="h", password="env:HW_TEST_MISSING", token=lambda: calls.append(1) or "t"
    )
    assert calls == []
    assert config.password.reference == "env:HW_TEST_MISSING"
    assert config.token is not None
    assert config.token.is_callable


def test_env_reference_resolves_at_connect_and_rotates(monkeypatch):
    """env: is read on every new connection, so a rotated value is picked up."""
    monkeypatch.setenv("HW_TEST_PW", "right")
    connector = Vault({"host": "h", "password": "env:HW_TEST_PW"}, registry=registry())
    assert connector.check().ok
    monkeypatch.setenv("HW_TEST_PW", "rotated-wrong")
    result = connector.check()
    assert not result.ok
    assert result.category == "auth"
    assert "rotated-wrong" not in result.message


def test_callable_called_per_connection():
    """A callable secret is called again for each connection."""
    values = iter(["right", "wrong-one"])
    connector = Vault({"host": "h", "password": lambda: next(values)}, registry=registry())
    assert connector.check().ok
    assert not connector.check().ok


def test_literal_and_callable_do_not_discover_plugins(monkeypatch):
    """Only a reference needs the resolvers: a literal or a callable never loads the registry."""
    monkeypatch.delenv("HW_TEST_UNSET_FOR_REGISTRY", raising=False)
    for password in ("right", lambda: "right"):
        connector = Vault({"host": "h", "password": password})
        assert connector.check().ok
        assert connector._registry is None
    connector = Vault({"host": "h", "password": "env:HW_TEST_UNSET_FOR_REGISTRY"})
    assert not connector.check().ok
    assert connector._registry is not None


def test_file_reference_strips_newline(tmp_path):
    """file: reads the file and drops one trailing newline."""
    path = tmp_path / "pw"
    path.write_text("right\n")
    connector = Vault({"host": "h", "password": f"file:{path}"}, registry=registry())
    assert connector.check().ok


def test_missing_secret_names_field_and_provenance(monkeypatch):
    """A missing env var error names the field and where it looked, as a typed auth result."""
    monkeypatch.delenv("HW_TEST_ABSENT", raising=False)
    result = Vault({"host": "h", "password": "env:HW_TEST_ABSENT"}, registry=registry()).check()
    assert not result.ok
    assert result.category == "auth"
    assert result.field == "password"
    assert "'password'" in result.message
    assert "env:HW_TEST_ABSENT" in result.message


def test_missing_file_provenance(tmp_path):
    """A missing secret file names the path it looked at."""
    missing = tmp_path / "nope"
    with pytest.raises(headwater.CredentialError) as info:
        Secret.parse(f"file:{missing}").resolve("password", registry().credential_resolvers())
    assert f"file:{missing}" in str(info.value)


def test_unknown_scheme_refused():
    """An unknown reference scheme is a config error listing the known schemes."""
    with pytest.raises(headwater.ConfigError) as info:
        Secret.parse("vault:kv/db").resolve("password", registry().credential_resolvers())
    assert "vault:" in str(info.value)
    assert "env:" in str(info.value)


def test_plugin_resolver_scheme():
    """A plugin's register_credential_resolvers adds a scheme; core schemes cannot be shadowed."""

    class Plugin:
        @headwater.hookimpl
        def register_credential_resolvers(self) -> dict[str, Any]:
            return {
                "vault": lambda ref: "right" if ref == "kv/db" else "x",
                "env": lambda ref: "evil",
            }

    reg = headwater.Registry(autoload=False, plugins=[Plugin()])
    resolvers = reg.credential_resolvers()
    assert Secret.parse("vault:kv/db").resolve("password", resolvers) == "right"
    os.environ["HW_TEST_SHADOW"] = "from-env"
    try:
        assert Secret.parse("env:HW_TEST_SHADOW").resolve("password", resolvers) == "from-env"
    finally:
        del os.environ["HW_TEST_SHADOW"]


def test_literal_never_in_repr_str_dump():
    """A literal secret is masked in repr, str, model_dump, JSON and sanitized views."""
    config = VaultConfig(host="h", password=SECRET)
    connector = Vault(config, registry=registry())
    texts = [
        repr(config),
        str(config),
        repr(connector),
        str(config.model_dump()),
        config.model_dump_json(),
        str(config.sanitized()),
        repr(config.password),
        str(config.password),
    ]
    for text in texts:
        assert SECRET not in text


def test_json_schema_marks_secret_fields():
    """Secret fields are write-only passwords in the JSON Schema and listed by secret_fields()."""
    schema = VaultConfig.model_json_schema()
    assert schema["properties"]["password"]["format"] == "password"
    assert schema["properties"]["password"]["x-headwater-secret"] is True
    assert VaultConfig.secret_fields() == ["password", "token"]


def test_resolved_secret_redacted_in_errors_and_logs(monkeypatch, caplog):
    """After resolution, the value is masked in our errors and in any headwater log record."""
    monkeypatch.setenv("HW_TEST_PW", SECRET)
    connector = Vault({"host": "h", "password": "env:HW_TEST_PW"}, registry=registry())
    result = connector.check()
    assert not result.ok
    assert SECRET not in result.message
    assert "***" in result.message
    logger = _redact.get_logger("headwater.test")
    with caplog.at_level(logging.DEBUG, logger="headwater"):
        logger.warning("driver said: password=%s", SECRET)
        try:
            raise RuntimeError(f"boom {SECRET}")
        except RuntimeError:
            logger.exception("failed")
    assert caplog.records
    assert SECRET not in caplog.text
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in (record.exc_text or "")
    error = headwater.ConnectionFailed(f"could not connect with {SECRET}")
    assert SECRET not in str(error)
    assert SECRET not in repr(error)
    assert SECRET not in str(pickle.loads(pickle.dumps(error)))


def test_url_password_and_sas_masked():
    """Passwords in URLs and credential query parameters are masked even if never resolved."""
    text = "postgresql://etl:hunter2pw@db:5432/x and https://a.blob.core.windows.net/c?sv=1&sig=abcDEF%2B123"
    masked = headwater.toolkit.redact(text)
    assert "hunter2pw" not in masked
    assert "abcDEF" not in masked
    assert "postgresql://etl:***@db:5432/x" in masked


def test_literal_escape_hatch():
    """Secret.literal_value keeps a value that looks like a reference as a literal."""
    secret = Secret.literal_value("env:NOT_A_REF")
    assert secret.is_literal
    assert secret.resolve("password", {}) == "env:NOT_A_REF"


def test_callable_failure_is_credential_error_without_text():
    """A callable that raises becomes a CredentialError naming the field, not its message."""

    def bad() -> str:
        raise RuntimeError(f"vault said {SECRET}")

    with pytest.raises(headwater.CredentialError) as info:
        Secret.parse(bad).resolve("password", {})
    assert "'password'" in str(info.value)
    assert SECRET not in str(info.value)


# --- keyring, against real backends ---------------------------------------------------------


def _hanging_keyring() -> Any:
    """A keyring backend that never answers (like a locked keyring waiting on a prompt)."""
    from keyring.backend import KeyringBackend

    class HangingKeyring(KeyringBackend):
        priority = 1  # type: ignore[assignment]

        def get_password(self, service: str, username: str) -> str | None:
            time.sleep(30)
            return None

        def set_password(self, service: str, username: str, password: str) -> None:
            raise NotImplementedError

        def delete_password(self, service: str, username: str) -> None:
            raise NotImplementedError

    return HangingKeyring()


def test_keyring_timeout(monkeypatch):
    """A keyring that hangs gives KeyringUnavailable within the timeout, naming alternatives."""
    import keyring

    monkeypatch.setattr(_resolvers, "KEYRING_TIMEOUT", 0.3)
    previous = keyring.get_keyring()
    keyring.set_keyring(_hanging_keyring())
    try:
        started = time.monotonic()
        with pytest.raises(headwater.KeyringUnavailable) as info:
            Secret.parse("keyring:svc/user").resolve("password", registry().credential_resolvers())
        assert time.monotonic() - started < 5
    finally:
        keyring.set_keyring(previous)
    assert "env:" in (info.value.hint or "")


def _run(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _cli(
    args: list[str], env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headwater", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_no_keyring_backend(tmp_path):
    """With no usable backend, resolving says so and names env/file/callable instead."""
    env = {
        **os.environ,
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "HOME": str(tmp_path),
    }
    proc = _run(
        """
        import headwater
        from headwater._secrets import Secret
        try:
            Secret.parse("keyring:svc/user").resolve("password", headwater.Registry(autoload=False).credential_resolvers())
        except headwater.KeyringUnavailable as exc:
            print("ERR", exc, "|", exc.hint)
        """,
        env,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "no usable OS keyring backend" in proc.stdout
    assert "env:NAME" in proc.stdout


def test_keyring_file_backend_end_to_end(tmp_path):
    """secrets set --stdin / resolve keyring: / secrets delete through the keyrings.alt file backend."""
    env = {
        **os.environ,
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    stored = _cli(["secrets", "set", "hw-test", "alice", "--stdin"], env, stdin=SECRET + "\n")
    assert stored.returncode == 0, stored.stderr
    assert "keyring:hw-test/alice" in stored.stdout
    assert SECRET not in stored.stdout + stored.stderr
    resolved = _run(
        """
        import headwater
        from headwater._secrets import Secret
        value = Secret.parse("keyring:hw-test/alice").resolve("password", headwater.Registry(autoload=False).credential_resolvers())
        print("LEN", len(value), value == %r)
        """
        % SECRET,
        env,
        tmp_path,
    )
    assert "LEN %d True" % len(SECRET) in resolved.stdout, resolved.stderr
    deleted = _cli(["secrets", "delete", "hw-test", "alice"], env)
    assert deleted.returncode == 0, deleted.stderr
    again = _cli(["secrets", "delete", "hw-test", "alice"], env)
    assert again.returncode == 1
    assert again.stderr.startswith("error: ")
    assert len(again.stderr.strip().splitlines()) == 1


def test_keyring_secret_service_end_to_end(tmp_path):
    """The same round trip against a real Secret Service (gnome-keyring in a private D-Bus session)."""
    proc = run_with_secret_service(
        tmp_path,
        textwrap.dedent(
            f"""\
            printf '%s\\n' '{SECRET}' | "{sys.executable}" -m headwater secrets set hw-ss bob --stdin
            "{sys.executable}" -c 'import headwater; from headwater._secrets import Secret; v = Secret.parse("keyring:hw-ss/bob").resolve("password", headwater.Registry(autoload=False).credential_resolvers()); print("MATCH", v == "{SECRET}")'
            "{sys.executable}" -c 'import keyring; print("BACKEND", type(keyring.get_keyring()).__module__)'
            "{sys.executable}" -m headwater secrets delete hw-ss bob
            """
        ),
    )
    if (
        proc.returncode != 0
        and "secretstorage" in proc.stderr.lower()
        and "no module" in proc.stderr.lower()
    ):
        service_unavailable("the secretstorage package is missing")
    assert proc.returncode == 0, proc.stderr
    assert "MATCH True" in proc.stdout
    assert "BACKEND keyring.backends.SecretService" in proc.stdout
    assert SECRET not in proc.stdout.replace(f'"{SECRET}"', "")
