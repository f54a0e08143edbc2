"""
Secrets that a review found slipping through: URL passwords holding ``/ ? #``, a plugin
auth scheme's settings replaced by ``***`` when saved, credential names the guess missed,
and validation errors that quoted what they were given.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import ValidationError

import headwater
from headwater import ConfigError, Registry, SourceRegistry, hookimpl
from headwater.toolkit import redact
from headwater_postgres._config import PostgresConfig, split_url_password
from headwater_rest import hooks as rest_hooks
from headwater_rest._config import RestConfig

pytestmark = pytest.mark.timeout(120)


def run(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    return subprocess.run(
        [sys.executable, "-m", "headwater", *args],
        env={**environ, "HEADWATER_PLUGINS": "postgres,rest", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- item 2: URL passwords holding "/", "?" or "#" ------------------------------------------


@pytest.mark.parametrize(
    ("url", "clean", "password"),
    [
        ("postgresql://u:Zq9?LEAK@h/db", "postgresql://u@h/db", "Zq9?LEAK"),
        ("postgresql://u:Zq9#LEAK@h:5433/db?sslmode=disable", "postgresql://u@h:5433/db?sslmode=disable", "Zq9#LEAK"),
        ("postgresql://u:a%2Fb@h/db", "postgresql://u@h/db", "a/b"),
        ("postgresql://u:env:PGPASSWORD@h/db", "postgresql://u@h/db", "env:PGPASSWORD"),
        ("postgresql://h:5432/db?sslrootcert=/a@b", "postgresql://h:5432/db?sslrootcert=/a@b", None),
    ],
)  # fmt: skip
def test_url_password_is_split_as_libpq_reads_it(url: str, clean: str, password: str | None):
    """The userinfo ends at the first '@' before any '/', whatever urllib thinks."""
    assert (clean, password) == split_url_password(url)


def test_url_password_with_slash_is_refused_without_echo():
    """libpq would take 'u:Zq9' for host and port: refused, with a hint, the URL not quoted."""
    with pytest.raises(ValidationError) as info:
        PostgresConfig(url="postgresql://u:Zq9/LEAK@h/db")
    assert "percent-encode" in str(info.value)
    assert "LEAK" not in repr(info.value.errors()) + str(info.value) + info.value.json()


@pytest.mark.parametrize("char", ["/", "?", "#"])
def test_redactor_masks_url_passwords_holding_any_character(char: str):
    """Every password a URL can hold is masked in text, even ones urllib would cut short."""
    text = f"failed: postgresql://u:Zq9{char}LEAK@h/db and more"
    cleaned = redact(text)
    assert "LEAK" not in cleaned
    assert "Zq9" not in cleaned
    assert cleaned.startswith("failed: postgresql://u:***@")


@pytest.mark.parametrize("char", ["/", "?", "#"])
def test_cli_never_saves_or_shows_a_url_password(tmp_path: Path, char: str):
    """sources add with such a URL is refused (literal password) and shows nothing of it."""
    sources = tmp_path / "sources.toml"
    env = {"HEADWATER_SOURCES_FILE": str(sources)}
    url = f"url=postgresql://u:Zq9{char}LEAK@127.0.0.1/test"
    proc = run("sources", "add", "pg", "postgres", "-c", url, env=env)
    assert 1 == proc.returncode
    assert "LEAK" not in proc.stdout + proc.stderr
    assert not sources.exists() or "LEAK" not in sources.read_text()


def test_url_password_with_query_characters_connects(pg_dsn: str):
    """A password with '?' and '#' is taken out of the URL and sent as the password."""
    parts = urlsplit(pg_dsn)
    url = f"postgresql://{parts.username}:Zq9?x#y@{parts.hostname}:{parts.port}{parts.path}"
    proc = run("check", url, env={})
    assert 0 == proc.returncode, proc.stderr
    assert "x#y" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "url", ["postgresql://u:p@127.0.0.1:99999/test", "https://127.0.0.1:99999/x"]
)
def test_port_out_of_range_is_a_clear_config_error(url: str):
    """Not urllib's `ValueError: Port out of range`: a config error naming the field."""
    proc = run("check", url, env={})
    assert 1 == proc.returncode
    assert "ValueError" not in proc.stderr
    assert "port must be a number" in proc.stderr


# --- item 3: a plugin auth scheme's settings, saved ---------------------------------------


class _OrgScheme:
    """A third-party scheme; its factory records what it was given."""

    seen: dict[str, Any] = {}

    @hookimpl
    def register_auth_schemes(self) -> dict[str, Callable[..., httpx.Auth]]:
        def make(config: Mapping[str, Any], secret: Callable[[str], str]) -> httpx.Auth:
            _OrgScheme.seen = {"org": config["org"], "key": secret("key")}
            return httpx.BasicAuth(config["org"], secret("key"))

        return {"org_key": make}


@pytest.fixture
def rest_sources(tmp_path: Path) -> SourceRegistry:
    registry = Registry(autoload=False, plugins=[rest_hooks, _OrgScheme()], environ={})
    return SourceRegistry(tmp_path / "sources.toml", registry=registry)


def _rest(auth: dict[str, Any]) -> dict[str, Any]:
    return {"base_url": "https://api.example.com", "auth": auth}


def test_plugin_auth_settings_are_saved_as_given(
    rest_sources: SourceRegistry, monkeypatch: pytest.MonkeyPatch
):
    """A plain setting is stored as written (never ***), a secret as its reference."""
    monkeypatch.setenv("HW_ORG_KEY", "k-from-env")
    auth = {"type": "org_key", "org": {"plain": "acme-corp"}, "key": "env:HW_ORG_KEY"}
    rest_sources.add("api", "rest", _rest(auth))
    saved = tomllib.loads(rest_sources.path.read_text())["sources"]["api"]["config"]["auth"]
    assert {"type": "org_key", "org": {"plain": "acme-corp"}, "key": "env:HW_ORG_KEY"} == saved
    rest_sources.connector("api").http  # noqa: B018  (builds the auth)
    assert {"org": "acme-corp", "key": "k-from-env"} == _OrgScheme.seen


@pytest.mark.parametrize(
    "auth",
    [
        {"type": "org_key", "org": {"plain": "acme"}, "key": "Lit3ral-Secret"},
        {"type": "org_key", "org": "Lit3ral-Secret", "key": "env:X"},
        {"type": "org_key", "org_id": {"secret": "Lit3ral-Secret"}, "key": "env:X"},
    ],
)
def test_plugin_auth_literal_secret_is_refused(rest_sources: SourceRegistry, auth: dict[str, Any]):
    """A literal in a setting that may be secret is refused by name, as for built-in schemes."""
    with pytest.raises(ConfigError, match="literal") as info:
        rest_sources.add("api", "rest", _rest(auth))
    assert "auth." in (info.value.field or "")
    assert "Lit3ral-Secret" not in str(info.value)
    assert not rest_sources.path.exists()


# --- item 8: credential names, guessed and marked ----------------------------------------


@pytest.mark.parametrize(
    "name",
    ["appid", "code", "DD-APPLICATION-KEY", "DD-API-KEY", "X-Master-Key", "sslpassword",
     "x-functions-key", "AccessKey", "Authorization", "sig", "api_key"],
)  # fmt: skip
def test_credential_names_are_guessed(name: str):
    """The names a review found missing are credentials; the redactor masks them in URLs."""
    assert headwater.toolkit.is_credential_name(name)
    assert "S3cretValue" not in redact(f"https://h/x?{name}=S3cretValue&q=1")


@pytest.mark.parametrize(
    "name",
    ["sort_key", "primary_key", "page", "limit", "publicKey", "pageToken", "next_page_token",
     "pagination_token", "continuation-token", "syncToken", "author", "authors"],
)  # fmt: skip
def test_plain_names_are_not_guessed(name: str):
    assert not headwater.toolkit.is_credential_name(name)


def test_rest_values_can_be_marked_secret_or_plain():
    """{secret: ...} makes any header or parameter a secret; {plain: ...} the reverse."""
    config = RestConfig.model_validate(
        {
            "base_url": "https://api.example.com",
            "headers": {"X-Tenant-Pin": {"secret": "Pin-Lit3ral"}, "X-Api-Key": "env:K"},
            "params": {"code": {"plain": "sales"}, "region": "eu"},
        }
    )
    assert isinstance(config.headers["X-Tenant-Pin"], headwater.Secret)
    assert "sales" == config.params["code"]
    assert "Pin-Lit3ral" not in repr(config) + config.model_dump_json()
    # The dump keeps the marks, so it reads back as the same config (what sources store).
    dumped = config.model_dump(mode="json")
    assert {"X-Tenant-Pin": {"secret": "***"}, "X-Api-Key": "env:K"} == dumped["headers"]
    assert {"code": {"plain": "sales"}, "region": "eu"} == dumped["params"]


def test_marked_secret_header_is_saved_as_reference(rest_sources: SourceRegistry):
    """A header marked secret is refused as a literal and saved (marked) as a reference."""
    config = {"base_url": "https://api.example.com", "headers": {"X-Pin": {"secret": "Lit3ral"}}}
    with pytest.raises(ConfigError, match="literal"):
        rest_sources.add("api", "rest", config)
    config["headers"] = {"X-Pin": {"secret": "env:PIN"}}
    rest_sources.add("api", "rest", config)
    saved = tomllib.loads(rest_sources.path.read_text())["sources"]["api"]["config"]
    assert {"X-Pin": {"secret": "env:PIN"}} == saved["headers"]


# --- low: validation errors never carry the input ------------------------------------------


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (RestConfig, {"base_url": "ftp://u:S3cretPw@h/x"}),
        (RestConfig, {"base_url": "https://h/x?sig=S3cretPw"}),
        (RestConfig, {"base_url": "https://h/x", "timeouts": {"connect": "S3cretPw"}}),
        (PostgresConfig, {"url": "postgresql://u:S3cretPw@h/db", "connect_timeout": "S3cretPw"}),
    ],
)
def test_validation_errors_carry_no_input(model: type[Any], data: dict[str, Any]):
    """Neither str(), errors(), json() nor the traceback of a config error quote the input."""
    with pytest.raises(ValidationError) as info:
        model(**data)
    exc = info.value
    texts = [str(exc), repr(exc.errors()), exc.json(), "".join(traceback.format_exception(exc))]
    assert [] == [t for t in texts if "S3cretPw" in t]
    with pytest.raises(ConfigError) as wrapped:
        headwater.connect("rest" if model is RestConfig else "postgres", data)
    error = wrapped.value
    chain = "".join(traceback.format_exception(error))
    assert "S3cretPw" not in str(error) + chain
    assert error.__context__ is None


def test_postgres_url_query_credentials_are_refused():
    """sslpassword in the URL query would be saved and shown with the URL: refused, unquoted."""
    with pytest.raises(ValidationError, match="sslpassword carries a credential") as info:
        PostgresConfig(url="postgresql://u@h/db?sslpassword=S3cretPw")
    assert "S3cretPw" not in str(info.value) + info.value.json()


def test_refusal_of_a_guessed_secret_says_how_to_mark_it_plain(rest_sources: SourceRegistry):
    """auth.org=acme-corp of a plugin scheme: refused, with the way to say it is no secret."""
    auth = {"type": "org_key", "org": "acme-corp", "key": "env:X"}
    with pytest.raises(ConfigError) as info:
        rest_sources.add("api", "rest", _rest(auth))
    assert "auth.org" == info.value.field
    assert "auth.org.plain=VALUE" in (info.value.hint or "")
    with pytest.raises(ConfigError) as declared:
        rest_sources.add("api", "rest", _rest({"type": "bearer", "token": "Lit3ral"}))
    assert "plain" not in (declared.value.hint or "")


def test_json_validation_errors_carry_no_input():
    """model_validate_json of a config: the error's input is masked too."""
    with pytest.raises(ValidationError) as info:
        PostgresConfig.model_validate_json(
            '{"url": "postgresql://h/db", "connect_timeout": "S3cretPw"}'
        )
    assert "S3cretPw" not in repr(info.value.errors()) + info.value.json()


@pytest.mark.parametrize(
    "values",
    [
        {"headers": {"X-Master-Key": "abcd1234"}},
        {"headers": {"DD-APPLICATION-KEY": "abcd1234"}},
        {"params": {"appid": "abcd1234"}},
        {"params": {"code": "abcd1234"}},
        {"headers": {"X-Tenant-Pin": {"secret": "abcd1234"}}},
    ],
)
def test_newly_guessed_or_marked_credentials_never_go_over_plain_http(values: dict[str, Any]):
    """Such values count as credentials: refused over plain http to a non-loopback host."""
    from headwater_rest._connector import RestConnector

    config = {"base_url": "http://api.example.com", "streams": {"s": {"path": "/x"}}, **values}
    with pytest.raises(ConfigError, match="plain http") as info:
        RestConnector(config)
    assert "abcd1234" not in str(info.value)


def test_marked_plain_value_may_go_over_plain_http():
    """{plain: ...} says the value is no credential: plain http is then allowed."""
    from headwater_rest._connector import RestConnector

    config = {"base_url": "http://api.example.com", "params": {"code": {"plain": "US"}}}
    with RestConnector(config) as connector:
        assert "US" == connector.config.params["code"]


def test_hand_written_url_password_is_masked_in_every_view(tmp_path: Path):
    """A password typed into a sources file by hand never shows in repr() or sanitized()."""
    sources = tmp_path / "sources.toml"
    sources.write_text(
        '[sources.pg]\nconnector = "nosuch"\n'
        '[sources.pg.config]\nurl = "postgresql://u:Zq9/LEAK@h/db"\n'
    )
    registry = SourceRegistry(sources, registry=Registry(autoload=False, environ={}))
    source = registry.get("pg")
    assert "LEAK" not in repr(source) + repr(source.sanitized()) + repr(registry.list())


def test_numeric_credentials_are_secrets():
    """appid: 12345 (a number in YAML) and {secret: 12345} are secrets, not plain numbers."""
    config = RestConfig.model_validate(
        {
            "base_url": "https://api.example.com",
            "params": {"appid": 98765432, "x": {"secret": 12345678}, "page": 2},
        }
    )
    assert isinstance(config.params["appid"], headwater.Secret)
    assert isinstance(config.params["x"], headwater.Secret)
    assert 2 == config.params["page"]
    assert "98765432" not in repr(config) + config.model_dump_json()
