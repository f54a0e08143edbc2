"""Tests of the named-sources registry (`headwater.SourceRegistry`)."""

from __future__ import annotations

import logging
import os
import stat
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import Field, SecretStr

import headwater
from headwater import (
    AuthFailed,
    Capability,
    ConfigError,
    Connector,
    ConnectorConfig,
    Registry,
    Secret,
    SourceError,
    SourceRegistry,
    hookimpl,
)
from headwater._sources import Source, default_sources_path

#: Never resolved or registered for redaction in these tests, so the redactor cannot hide a leak.
LITERAL = "s3cr3t-literal-Q7x9"
#: The value the test connector's endpoint accepts; given only through env:.
TOKEN_VALUE = "env-token-value-Z4k2"


class TokenConfig(ConnectorConfig):
    """Config of the throwaway connector: one secret field."""

    endpoint: str = Field(description="Where to connect.")
    token: Secret = Field(description="The access token.")
    retries: int = Field(default=3, ge=0, description="Attempts.")


class TokenConnector(Connector[TokenConfig]):
    """A connector with a Secret field that records what happens to it."""

    id = "token-test"
    Config = TokenConfig
    capabilities = frozenset({Capability.CHECK, Capability.METADATA})
    built: ClassVar[list[TokenConnector]] = []
    metadata_calls: ClassVar[list[str]] = []
    build_delay: ClassVar[float] = 0.0
    _events_lock = threading.Lock()

    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        # A slow construction widens the window in which a racy cache builds twice.
        time.sleep(self.build_delay)
        with self._events_lock:
            self.built.append(self)

    def check_connection(self) -> str:
        if self.secret("token") != TOKEN_VALUE:
            raise AuthFailed("the endpoint rejected the token", field="token")
        return "token accepted"

    def metadata(self, item: str) -> dict[str, Any]:
        with self._events_lock:
            self.metadata_calls.append(item)
            return {"item": item, "call": len(self.metadata_calls)}


class TokenPlugin:
    """Plugin object registering the throwaway connector."""

    @hookimpl
    def register_connectors(self) -> list[type[Connector[Any]]]:
        return [TokenConnector]


@pytest.fixture
def plugin_registry() -> Registry:
    """A private registry: core built-ins (files, env/file/keyring) plus the token connector."""
    TokenConnector.built.clear()
    TokenConnector.metadata_calls.clear()
    TokenConnector.build_delay = 0.0
    return Registry(autoload=False, plugins=[TokenPlugin()])


@pytest.fixture
def sources_file(tmp_path: Path) -> Path:
    """Path of a sources file in a directory that does not exist yet."""
    return tmp_path / "config" / "headwater" / "sources.toml"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A directory with one CSV stream."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "people.csv").write_text("id,name\n1,ada\n2,grace\n", encoding="utf-8")
    return root


@pytest.fixture
def reg(sources_file: Path, plugin_registry: Registry) -> Iterator[SourceRegistry]:
    """A source registry on a fresh file, closed after the test."""
    with SourceRegistry(sources_file, registry=plugin_registry) as registry:
        yield registry


def read_toml(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def token_config(token: Any) -> dict[str, Any]:
    return {"endpoint": "https://api.example.invalid", "token": token}


# --- round trip ---------------------------------------------------------------------------


def test_add_list_show_get_remove_round_trip(
    reg: SourceRegistry, sources_file: Path, data_dir: Path, plugin_registry: Registry
) -> None:
    """A source survives a round trip through a real file and disappears on remove."""
    added = reg.add("local", "files", {"root": str(data_dir)}, description="demo data")

    assert Source("local", "files", {"root": str(data_dir)}, "demo data") == added
    assert {
        "sources": {
            "local": {
                "connector": "files",
                "description": "demo data",
                "config": {"root": str(data_dir)},
            }
        }
    } == read_toml(sources_file)
    if sys.platform != "win32":
        assert 0o600 == stat.S_IMODE(sources_file.stat().st_mode)

    again = SourceRegistry(sources_file, registry=plugin_registry)
    assert [added] == again.list()
    assert added == again.get("local")
    assert {
        "name": "local",
        "connector": "files",
        "description": "demo data",
        "config": {"root": str(data_dir)},
    } == again.show("local")

    reg.add("another", "files", {"root": str(data_dir), "delimiter": ";"})
    assert ["another", "local"] == [s.name for s in again.list()]

    reg.remove("local")
    assert ["another"] == [s.name for s in again.list()]
    assert {"another"} == set(read_toml(sources_file)["sources"])
    with pytest.raises(SourceError) as info:
        again.get("local")
    assert "no source named 'local' (known: another)" == info.value.message


def test_get_unknown_with_no_sources_hints_at_add(reg: SourceRegistry) -> None:
    """Asking for a source when none are saved says so and how to add one."""
    with pytest.raises(SourceError) as info:
        reg.get("nope")
    assert "no sources are saved" in info.value.message
    assert "headwater sources add" in (info.value.hint or "")
    assert [] == reg.list()


def test_remove_unknown_fails(reg: SourceRegistry, data_dir: Path) -> None:
    """Removing a name that is not saved is an error naming the known ones."""
    reg.add("one", "files", {"root": str(data_dir)})
    with pytest.raises(SourceError) as info:
        reg.remove("two")
    assert "no source named 'two' (known: one)" == info.value.message


def test_defaults_are_not_stored(reg: SourceRegistry, sources_file: Path, data_dir: Path) -> None:
    """Only values differing from the model's defaults are written."""
    reg.add("csv", "files", {"root": str(data_dir), "batch_size": 1000, "delimiter": "|"})
    assert {"root": str(data_dir), "delimiter": "|"} == read_toml(sources_file)["sources"]["csv"][
        "config"
    ]


def test_name_with_dots_round_trips(reg: SourceRegistry, data_dir: Path) -> None:
    """Dotted names are quoted TOML keys, not nested tables."""
    reg.add("team.sales-2024_v1", "files", {"root": str(data_dir)})
    assert ["team.sales-2024_v1"] == [s.name for s in reg.list()]


@pytest.mark.parametrize("name", ["", "-x", ".hidden", "has space", "a/b", "ü", "a\nb"])
def test_invalid_name_is_refused(reg: SourceRegistry, sources_file: Path, name: str) -> None:
    """Names outside [A-Za-z0-9][A-Za-z0-9_.-]* are a ConfigError on field name."""
    with pytest.raises(ConfigError) as info:
        reg.add(name, "files", {"root": "."})
    assert "name" == info.value.field
    assert not sources_file.exists()


def test_invalid_config_is_one_line_config_error(reg: SourceRegistry, sources_file: Path) -> None:
    """A config the connector's model rejects names the field and saves nothing."""
    with pytest.raises(ConfigError) as info:
        reg.add("bad", "files", {"root": ".", "batch_size": 0})
    assert "batch_size" == info.value.field
    assert "\n" not in info.value.message
    assert not sources_file.exists()


def test_unknown_connector_is_refused(reg: SourceRegistry, sources_file: Path) -> None:
    """Adding a source for a connector nobody provides fails and saves nothing."""
    with pytest.raises(headwater.UnknownConnector):
        reg.add("x", "no-such-connector", {})
    assert not sources_file.exists()


def test_existing_name_needs_replace(reg: SourceRegistry, data_dir: Path, tmp_path: Path) -> None:
    """Adding an existing name fails unless replace=True, which overwrites it."""
    reg.add("src", "files", {"root": str(data_dir)})
    with pytest.raises(SourceError) as info:
        reg.add("src", "files", {"root": str(tmp_path)})
    assert "already exists" in info.value.message
    assert {"root": str(data_dir)} == reg.get("src").config

    reg.add("src", "files", {"root": str(tmp_path)}, replace=True)
    assert {"root": str(tmp_path)} == reg.get("src").config


def test_returned_sources_are_copies(reg: SourceRegistry, data_dir: Path) -> None:
    """Mutating a returned Source's config does not change the registry's view."""
    reg.add("src", "files", {"root": str(data_dir)})
    reg.get("src").config["root"] = "/elsewhere"
    reg.list()[0].config["root"] = "/elsewhere"
    assert {"root": str(data_dir)} == reg.get("src").config


# --- connection test -------------------------------------------------------------------------


def test_add_with_test_and_bad_root_saves_nothing(
    reg: SourceRegistry, sources_file: Path, data_dir: Path, tmp_path: Path
) -> None:
    """add(test=True) with a missing root raises the check's message and writes nothing."""
    reg.add("keep", "files", {"root": str(data_dir)})
    before = sources_file.read_bytes()
    missing = tmp_path / "missing"

    with pytest.raises(SourceError) as info:
        reg.add("broken", "files", {"root": str(missing)}, test=True)

    assert "does not exist" in info.value.message
    assert "root" == info.value.field
    assert before == sources_file.read_bytes()
    assert ["keep"] == [s.name for s in reg.list()]


def test_add_with_test_on_empty_registry_creates_no_file(
    reg: SourceRegistry, sources_file: Path, tmp_path: Path
) -> None:
    """A failed connection test on a new registry leaves no file behind."""
    with pytest.raises(SourceError):
        reg.add("broken", "files", {"root": str(tmp_path / "missing")}, test=True)
    assert not sources_file.exists()


def test_add_with_test_passing_saves(reg: SourceRegistry, data_dir: Path) -> None:
    """A passing connection test saves the source."""
    reg.add("ok", "files", {"root": str(data_dir)}, test=True)
    assert ["ok"] == [s.name for s in reg.list()]


def test_add_with_test_resolves_reference_and_writes_only_the_reference(
    reg: SourceRegistry,
    sources_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The check resolves env: at connect time; the file holds only the reference."""
    monkeypatch.setenv("HW_SOURCES_TEST_TOKEN", TOKEN_VALUE)
    caplog.set_level(logging.DEBUG)

    reg.add("api", "token-test", token_config("env:HW_SOURCES_TEST_TOKEN"), test=True)

    text = sources_file.read_text(encoding="utf-8")
    assert 'token = "env:HW_SOURCES_TEST_TOKEN"' in text
    assert TOKEN_VALUE not in text
    assert TOKEN_VALUE not in repr(reg.get("api"))
    assert TOKEN_VALUE not in caplog.text
    # The probe built for the test is closed, not kept as the live connector.
    assert [True] == [c.closed for c in TokenConnector.built]


def test_add_with_test_failing_auth_saves_nothing(
    reg: SourceRegistry, sources_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rejected credential fails add(test=True) with the auth category and field."""
    monkeypatch.setenv("HW_SOURCES_TEST_TOKEN", "wrong-value-123")
    with pytest.raises(SourceError) as info:
        reg.add("api", "token-test", token_config("env:HW_SOURCES_TEST_TOKEN"), test=True)
    assert "(auth)" in info.value.message
    assert "the endpoint rejected the token" in info.value.message
    assert "token" == info.value.field
    assert not sources_file.exists()


# --- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        pytest.param(LITERAL, "literal", id="plain-literal"),
        pytest.param(SecretStr(LITERAL), "literal", id="secretstr"),
        pytest.param(Secret.literal_value(LITERAL), "literal", id="secret-literal"),
        pytest.param(f"https://{LITERAL}", "literal", id="url-literal"),
        pytest.param(f"abc:{LITERAL}", "known scheme", id="unknown-scheme"),
        pytest.param(lambda: LITERAL, "callable", id="callable"),
    ],
)
def test_literal_secret_is_refused_and_never_shown(
    reg: SourceRegistry,
    sources_file: Path,
    data_dir: Path,
    caplog: pytest.LogCaptureFixture,
    token: Any,
    expected: str,
) -> None:
    """A literal (or callable) secret is refused; its value reaches no file, error or log."""
    caplog.set_level(logging.DEBUG)
    reg.add("other", "files", {"root": str(data_dir)})

    with pytest.raises(ConfigError) as info:
        reg.add("api", "token-test", token_config(token))

    error = info.value
    assert "token" == error.field
    assert expected in error.message
    assert "headwater secrets set SERVICE USER" in (error.hint or "")
    assert "keyring:SERVICE/USER" in (error.hint or "")
    for text in (error.message, error.hint or "", str(error), repr(error), caplog.text):
        assert LITERAL not in text
    assert LITERAL not in sources_file.read_text(encoding="utf-8")
    assert ["other"] == [s.name for s in reg.list()]


@pytest.mark.parametrize(
    "reference",
    ["env:HW_SOURCES_TEST_TOKEN", "keyring:warehouse/reporter", "file:/run/secrets/api-token"],
)
def test_references_are_saved_as_written(
    reg: SourceRegistry, sources_file: Path, plugin_registry: Registry, reference: str
) -> None:
    """env:, keyring: and file: references are stored verbatim and shown verbatim."""
    reg.add("api", "token-test", token_config(reference), description="api")

    stored = read_toml(sources_file)["sources"]["api"]
    assert {"endpoint": "https://api.example.invalid", "token": reference} == stored["config"]
    assert "token-test" == stored["connector"]
    fresh = SourceRegistry(sources_file, registry=plugin_registry)
    assert reference == fresh.show("api")["config"]["token"]
    assert reference == fresh.get("api").config["token"]


def test_hand_edited_literal_is_masked_and_refused(
    sources_file: Path, plugin_registry: Registry
) -> None:
    """A literal written into the file by hand is masked when shown and refused when used."""
    sources_file.parent.mkdir(parents=True)
    sources_file.write_text(
        "[sources.api]\n"
        'connector = "token-test"\n'
        "[sources.api.config]\n"
        'endpoint = "https://api.example.invalid"\n'
        f'token = "{LITERAL}"\n',
        encoding="utf-8",
    )
    reg = SourceRegistry(sources_file, registry=plugin_registry)

    assert "***" == reg.show("api")["config"]["token"]
    assert LITERAL not in repr(reg.get("api"))
    assert LITERAL not in repr(reg.list())
    with pytest.raises(ConfigError) as info:
        reg.connector("api")
    assert "source 'api'" in info.value.message
    assert LITERAL not in str(info.value)
    assert [] == TokenConnector.built


def test_unknown_connector_in_file_is_listed_and_masked_by_key(
    sources_file: Path, plugin_registry: Registry
) -> None:
    """A source whose plugin is missing still lists; secret-looking keys are masked."""
    sources_file.parent.mkdir(parents=True)
    sources_file.write_text(
        "[sources.gone]\n"
        'connector = "uninstalled"\n'
        "[sources.gone.config]\n"
        'host = "db.internal"\n'
        f'password = "{LITERAL}"\n'
        'api_key = "env:API_KEY"\n',
        encoding="utf-8",
    )
    reg = SourceRegistry(sources_file, registry=plugin_registry)

    assert {"host": "db.internal", "password": "***", "api_key": "env:API_KEY"} == reg.show("gone")[
        "config"
    ]
    with pytest.raises(headwater.UnknownConnector):
        reg.connector("gone")


# --- live connectors --------------------------------------------------------------------------


def test_connector_is_reused_and_closed_on_remove(reg: SourceRegistry, data_dir: Path) -> None:
    """connector() returns the same live object until the source is removed, which closes it."""
    reg.add("local", "files", {"root": str(data_dir)})
    first = reg.connector("local")

    assert first is reg.connector("local")
    assert ["people.csv"] == [item.name for item in first.list()]
    assert [False] == [first.closed]

    reg.remove("local")
    assert first.closed
    with pytest.raises(SourceError):
        reg.connector("local")


def test_closed_connector_is_rebuilt(reg: SourceRegistry, data_dir: Path) -> None:
    """A live connector closed by its user is replaced on the next call."""
    reg.add("local", "files", {"root": str(data_dir)})
    first = reg.connector("local")
    first.close()

    second = reg.connector("local")
    assert second is not first
    assert not second.closed


def test_replace_closes_the_old_connector(
    reg: SourceRegistry, data_dir: Path, tmp_path: Path
) -> None:
    """Replacing a source closes its live connector; the next one uses the new config."""
    reg.add("local", "files", {"root": str(data_dir)})
    old = reg.connector("local")

    reg.add("local", "files", {"root": str(tmp_path)}, replace=True)

    assert old.closed
    assert tmp_path == reg.connector("local").config.root


def test_edit_by_another_registry_is_picked_up(
    sources_file: Path, plugin_registry: Registry, data_dir: Path, tmp_path: Path
) -> None:
    """A change written by another registry (another process) is seen and rebuilds the connector."""
    with (
        SourceRegistry(sources_file, registry=plugin_registry) as first,
        SourceRegistry(sources_file, registry=plugin_registry) as second,
    ):
        first.add("local", "files", {"root": str(data_dir)})
        old = first.connector("local")

        second.add("local", "files", {"root": str(tmp_path)}, replace=True)
        second.add("extra", "files", {"root": str(tmp_path)})

        assert ["extra", "local"] == [s.name for s in first.list()]
        new = first.connector("local")
        assert new is not old
        assert old.closed
        assert tmp_path == new.config.root


def test_concurrent_connector_calls_build_exactly_one(reg: SourceRegistry) -> None:
    """Sixteen threads asking for one source's connector at once all get one object."""
    reg.add("api", "token-test", token_config("env:HW_SOURCES_TEST_TOKEN"))
    TokenConnector.build_delay = 0.05
    barrier = threading.Barrier(16)
    results: list[Connector[Any]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(reg.connector("api"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [] == errors
    assert 16 == len(results)
    assert 1 == len({id(c) for c in results})
    assert 1 == len(TokenConnector.built)
    assert results[0] is TokenConnector.built[0]


def test_concurrent_adds_lose_nothing(
    sources_file: Path, plugin_registry: Registry, data_dir: Path
) -> None:
    """Sixteen threads over two registries on one file each add a source; all are saved."""
    registries = [SourceRegistry(sources_file, registry=plugin_registry) for _ in range(2)]
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait()
            registries[index % 2].add(f"src{index:02d}", "files", {"root": str(data_dir)})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    expected = {f"src{i:02d}" for i in range(16)}
    assert [] == errors
    assert expected == set(read_toml(sources_file)["sources"])
    assert sorted(expected) == [s.name for s in registries[0].list()]
    assert sorted(expected) == [s.name for s in registries[1].list()]


def test_close_all_is_idempotent_and_registry_stays_usable(
    sources_file: Path, plugin_registry: Registry, data_dir: Path
) -> None:
    """close_all closes every live connector, twice is harmless, and connector() reopens."""
    reg = SourceRegistry(sources_file, registry=plugin_registry)
    reg.add("a", "files", {"root": str(data_dir)})
    reg.add("b", "token-test", token_config("env:HW_SOURCES_TEST_TOKEN"))
    live = [reg.connector("a"), reg.connector("b")]

    reg.close_all()
    assert [True, True] == [c.closed for c in live]
    reg.close_all()
    assert [True, True] == [c.closed for c in live]

    reopened = reg.connector("a")
    assert reopened is not live[0]
    assert not reopened.closed
    with reg:
        pass
    assert reopened.closed


# --- metadata cache ---------------------------------------------------------------------------


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_metadata_is_cached_for_ttl(sources_file: Path, plugin_registry: Registry) -> None:
    """metadata() answers from cache until the TTL passes, per (source, item)."""
    clock = FakeClock()
    reg = SourceRegistry(sources_file, registry=plugin_registry, metadata_ttl=60.0, clock=clock)
    reg.add("api", "token-test", token_config("env:HW_SOURCES_TEST_TOKEN"))

    assert {"item": "users", "call": 1} == reg.metadata("api", "users")
    clock.now += 59.9
    assert {"item": "users", "call": 1} == reg.metadata("api", "users")
    assert {"item": "orders", "call": 2} == reg.metadata("api", "orders")
    clock.now += 0.1
    assert {"item": "users", "call": 3} == reg.metadata("api", "users")
    assert ["users", "orders", "users"] == TokenConnector.metadata_calls


def test_metadata_cache_returns_copies(sources_file: Path, plugin_registry: Registry) -> None:
    """Mutating a returned metadata dict does not change the cached answer."""
    reg = SourceRegistry(sources_file, registry=plugin_registry, clock=FakeClock())
    reg.add("api", "token-test", token_config("env:HW_SOURCES_TEST_TOKEN"))
    reg.metadata("api", "users")["item"] = "changed"
    assert {"item": "users", "call": 1} == reg.metadata("api", "users")


def test_metadata_cache_dropped_on_replace_and_remove(
    sources_file: Path, plugin_registry: Registry
) -> None:
    """Replacing or removing a source invalidates its cached metadata."""
    reg = SourceRegistry(sources_file, registry=plugin_registry, clock=FakeClock())
    reg.add("api", "token-test", token_config("env:HW_SOURCES_TEST_TOKEN"))
    reg.metadata("api", "users")

    reg.add("api", "token-test", token_config("env:OTHER_TOKEN"), replace=True)
    assert {"item": "users", "call": 2} == reg.metadata("api", "users")

    reg.remove("api")
    reg.add("api", "token-test", token_config("env:HW_SOURCES_TEST_TOKEN"))
    assert {"item": "users", "call": 3} == reg.metadata("api", "users")


def test_metadata_with_real_files_connector(reg: SourceRegistry, data_dir: Path) -> None:
    """metadata() goes through the live connector (files: size and columns)."""
    reg.add("local", "files", {"root": str(data_dir)})
    meta = reg.metadata("local", "people.csv")
    assert ["id", "name"] == meta["columns"]
    assert (data_dir / "people.csv").stat().st_size == meta["size"]


def test_negative_ttl_is_refused(sources_file: Path) -> None:
    """A negative metadata TTL is a programming error."""
    with pytest.raises(ValueError, match="metadata_ttl"):
        SourceRegistry(sources_file, metadata_ttl=-1)


# --- the file -------------------------------------------------------------------------------


def test_corrupt_toml_names_file_and_line(sources_file: Path, plugin_registry: Registry) -> None:
    """An unparsable file is a SourceError naming the file and the line of the TOML error."""
    sources_file.parent.mkdir(parents=True)
    sources_file.write_text('[sources.a]\nconnector = "files"\nroot = [unclosed\n', "utf-8")
    reg = SourceRegistry(sources_file, registry=plugin_registry)

    with pytest.raises(SourceError) as info:
        reg.list()
    assert str(sources_file) in info.value.message
    assert "line 3" in info.value.message
    # A write must not clobber the corrupt file either.
    with pytest.raises(SourceError):
        reg.add("b", "files", {"root": "."})
    assert "root = [unclosed" in sources_file.read_text(encoding="utf-8")


def test_badly_shaped_entry_is_reported(sources_file: Path, plugin_registry: Registry) -> None:
    """A source without a connector id is a SourceError naming the source."""
    sources_file.parent.mkdir(parents=True)
    sources_file.write_text("[sources.a.config]\nroot = '.'\n", "utf-8")
    with pytest.raises(SourceError) as info:
        SourceRegistry(sources_file, registry=plugin_registry).get("a")
    assert "source 'a'" in info.value.message
    assert "connector" in info.value.message


def test_other_content_of_the_file_is_preserved(
    sources_file: Path, plugin_registry: Registry, data_dir: Path
) -> None:
    """Writes keep hand-written sources and unknown top-level tables."""
    sources_file.parent.mkdir(parents=True)
    sources_file.write_text(
        '[meta]\nowner = "ops"\n\n[sources.hand]\nconnector = "files"\n'
        f"[sources.hand.config]\nroot = {str(data_dir)!r}\n",
        "utf-8",
    )
    reg = SourceRegistry(sources_file, registry=plugin_registry)
    reg.add("new", "files", {"root": str(data_dir)})

    document = read_toml(sources_file)
    assert {"owner": "ops"} == document["meta"]
    assert {"hand", "new"} == set(document["sources"])


def test_default_sources_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """HEADWATER_SOURCES_FILE wins, then XDG_CONFIG_HOME, then ~/.config."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("USERPROFILE", str(tmp_path / "home"))
    monkeypatch.delenv("HEADWATER_SOURCES_FILE", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert tmp_path / "home" / ".config" / "headwater" / "sources.toml" == default_sources_path()

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert tmp_path / "xdg" / "headwater" / "sources.toml" == default_sources_path()
    assert default_sources_path() == SourceRegistry().path

    monkeypatch.setenv("HEADWATER_SOURCES_FILE", str(tmp_path / "mine.toml"))
    assert tmp_path / "mine.toml" == SourceRegistry().path


def test_repr_shows_no_config(reg: SourceRegistry, sources_file: Path) -> None:
    """The registry's repr names its file only."""
    assert f"<SourceRegistry path={str(sources_file)!r} live=0>" == repr(reg)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_new_config_directory_is_private(reg: SourceRegistry, sources_file: Path) -> None:
    """A config directory created by the registry is readable by its owner only."""
    reg.add("x", "files", {"root": "."})
    assert 0o700 == stat.S_IMODE(os.stat(sources_file.parent).st_mode) & ~_umask_bits()


def _umask_bits() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
