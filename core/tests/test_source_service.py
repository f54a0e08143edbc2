"""
The source registry as a service component: stores, async twins, test(), the metadata
cache API and per-source descriptive metadata.

Behaviour every store must share is tested once, parametrized over the TOML file store
and the in-memory store.
"""

from __future__ import annotations

import asyncio
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import Field

from headwater import (
    Capability,
    CheckResult,
    ConfigError,
    Connector,
    ConnectorConfig,
    MemorySourceStore,
    Registry,
    Secret,
    SourceError,
    SourceRegistry,
    SourceStore,
    TomlSourceStore,
    hookimpl,
)


class CountConfig(ConnectorConfig):
    """Config of the counting connector."""

    root: str = Field(description="A directory that must exist.")
    token: Secret | None = Field(default=None, description="Never needed; saved as a reference.")


class CountingConnector(Connector[CountConfig]):
    """Counts constructions, checks and closes, so reuse of live connectors is visible."""

    id = "counting"
    Config = CountConfig
    capabilities = frozenset({Capability.CHECK, Capability.METADATA})
    built: ClassVar[int] = 0
    checks: ClassVar[int] = 0
    metadata_calls: ClassVar[int] = 0
    _counter_lock = threading.Lock()

    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        with self._counter_lock:
            type(self).built += 1

    def check_connection(self) -> str:
        with self._counter_lock:
            type(self).checks += 1
        if not Path(self.config.root).is_dir():
            raise SourceError(f"no directory {self.config.root}", field="root")
        return "directory present"

    def stats(self) -> dict[str, dict[str, int]]:
        return {"pool": {"size": 1, "in_use": 0}}

    def metadata(self, item: str) -> dict[str, Any]:
        with self._counter_lock:
            type(self).metadata_calls += 1
            return {"item": item, "call": type(self).metadata_calls}


class CountingPlugin:
    @hookimpl
    def register_connectors(self) -> list[type[Connector[Any]]]:
        return [CountingConnector]


@pytest.fixture
def plugin_registry() -> Registry:
    CountingConnector.built = CountingConnector.checks = CountingConnector.metadata_calls = 0
    return Registry(autoload=False, plugins=[CountingPlugin()])


@pytest.fixture(params=["toml", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SourceStore:
    """Each store implementation in turn."""
    if request.param == "toml":
        return TomlSourceStore(tmp_path / "conf" / "sources.toml")
    return MemorySourceStore()


@pytest.fixture
def reg(store: SourceStore, plugin_registry: Registry) -> Iterator[SourceRegistry]:
    with SourceRegistry(store=store, registry=plugin_registry) as registry:
        yield registry


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- shared store behaviour -------------------------------------------------------------------


def test_store_round_trip(reg: SourceRegistry, store: SourceStore, tmp_path: Path) -> None:
    """add / get / list / remove behave the same whatever the store."""
    assert isinstance(store, SourceStore)
    saved = reg.add("a", "files", {"root": str(tmp_path)}, description="first")
    assert saved == reg.get("a")
    assert ["a"] == [s.name for s in reg.list()]
    assert "a" in reg
    # A second registry on the same store sees the source (the store is the truth).
    other = SourceRegistry(store=store, registry=reg.registry)
    assert str(tmp_path) == other.get("a").config["root"]
    reg.remove("a")
    assert [] == reg.list()
    assert "a" not in other
    with pytest.raises(SourceError, match="no source named 'a'"):
        reg.remove("a")


def test_store_refuses_duplicates_and_literal_secrets(
    reg: SourceRegistry, store: SourceStore, tmp_path: Path
) -> None:
    """The registry's checks apply to every store: nothing literal reaches it."""
    reg.add("a", "files", {"root": str(tmp_path)})
    with pytest.raises(SourceError, match="already exists"):
        reg.add("a", "files", {"root": str(tmp_path)})
    version = store.version()
    with pytest.raises(ConfigError, match="literal"):
        reg.add("b", "counting", {"root": str(tmp_path), "token": "hunter2"})
    assert "hunter2" not in repr(store.read())
    assert version == store.version()


def test_store_update_that_raises_saves_nothing(store: SourceStore) -> None:
    """A change that fails half-way leaves the store as it was."""
    store.update(lambda entries: entries.update({"a": {"connector": "files", "config": {}}}))

    def broken(entries: dict[str, Any]) -> None:
        entries["b"] = {"connector": "files", "config": {}}
        raise RuntimeError("half-way")

    with pytest.raises(RuntimeError):
        store.update(broken)
    assert ["a"] == sorted(store.read())


def test_descriptive_metadata_stored_shown_and_filtered(
    reg: SourceRegistry, store: SourceStore, tmp_path: Path
) -> None:
    """owner, environment and labels are saved with the source and filter list()."""
    reg.add(
        "billing-prod",
        "files",
        {"root": str(tmp_path)},
        owner="billing",
        environment="prod",
        labels={"team": "finance", "tier": "1"},
    )
    reg.add("billing-dev", "files", {"root": str(tmp_path)}, owner="billing", environment="dev")
    reg.add("scratch", "files", {"root": str(tmp_path)})
    shown = reg.show("billing-prod")
    assert "billing" == shown["owner"]
    assert "prod" == shown["environment"]
    assert {"team": "finance", "tier": "1"} == shown["labels"]
    assert {"team": "finance", "tier": "1"} == store.read()["billing-prod"]["labels"]
    assert ["billing-dev", "billing-prod"] == [s.name for s in reg.list(owner="billing")]
    assert ["billing-prod"] == [s.name for s in reg.list(environment="prod")]
    assert ["billing-prod"] == [s.name for s in reg.list(labels={"team": "finance"})]
    assert [] == reg.list(labels={"team": "finance", "tier": "2"})
    assert 3 == len(reg.list())


def test_bad_labels_are_refused(reg: SourceRegistry, tmp_path: Path) -> None:
    """A label must be a name mapped to a string; the error names the field."""
    with pytest.raises(ConfigError) as caught:
        reg.add("a", "files", {"root": str(tmp_path)}, labels={"tier": 1})  # type: ignore[dict-item]
    assert "labels.tier" == caught.value.field
    with pytest.raises(ConfigError, match="invalid label name"):
        reg.add("a", "files", {"root": str(tmp_path)}, labels={"no spaces": "x"})
    assert [] == reg.list()


def test_labels_in_the_toml_file(tmp_path: Path, plugin_registry: Registry) -> None:
    """The TOML store writes labels as a [sources.NAME.labels] table, readable by hand."""
    path = tmp_path / "sources.toml"
    with SourceRegistry(path, registry=plugin_registry) as reg:
        reg.add("a", "files", {"root": str(tmp_path)}, environment="prod", labels={"team": "x"})
    entry = tomllib.loads(path.read_text(encoding="utf-8"))["sources"]["a"]
    assert {"team": "x"} == entry["labels"]
    assert "prod" == entry["environment"]


def test_memory_store_needs_no_file(
    plugin_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry on the in-memory store writes nothing, not even the default file."""
    monkeypatch.setenv("HEADWATER_SOURCES_FILE", str(tmp_path / "never.toml"))
    with SourceRegistry(store=MemorySourceStore(), registry=plugin_registry) as reg:
        reg.add("a", "files", {"root": str(tmp_path)})
        assert reg.path is None
        assert "a" == reg.get("a").name
    assert not (tmp_path / "never.toml").exists()
    with pytest.raises(ValueError, match="not both"):
        SourceRegistry(tmp_path / "x.toml", store=MemorySourceStore())


# --- test(name) -----------------------------------------------------------------------------


def test_test_reuses_the_live_connector(reg: SourceRegistry, tmp_path: Path) -> None:
    """test() checks the live connector when there is one: no new connector is built."""
    reg.add("a", "counting", {"root": str(tmp_path)})
    live = reg.connector("a")
    assert 1 == CountingConnector.built
    result = reg.test("a")
    assert isinstance(result, CheckResult)
    assert result.ok
    assert 1 == CountingConnector.built
    assert live is reg.connector("a")


def test_test_without_live_connector_opens_and_closes_one(
    reg: SourceRegistry, tmp_path: Path
) -> None:
    """Without a live connector, test() opens one for the check and closes it again."""
    reg.add("a", "counting", {"root": str(tmp_path / "missing")})
    result = reg.test("a")
    assert not result.ok
    assert "missing" in result.message
    assert 1 == CountingConnector.built
    # Nothing was left live: the next connector() builds its own.
    reg.connector("a")
    assert 2 == CountingConnector.built
    with pytest.raises(SourceError, match="no source named 'nope'"):
        reg.test("nope")


# --- async twins ------------------------------------------------------------------------------


async def test_async_twins_do_not_block_the_loop(reg: SourceRegistry, tmp_path: Path) -> None:
    """aadd (tested) / aconnector / atest / ametadata / aremove / aclose_all from asyncio."""
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    saved = await reg.aadd("a", "counting", {"root": str(tmp_path)}, test=True)
    assert "a" == saved.name
    with pytest.raises(SourceError, match="connection test"):
        await reg.aadd("b", "counting", {"root": str(tmp_path / "missing")}, test=True)
    assert "b" not in reg
    first, second = await asyncio.gather(reg.aconnector("a"), reg.aconnector("a"))
    assert first is second
    built = CountingConnector.built
    assert (await reg.atest("a")).ok
    assert built == CountingConnector.built
    assert {"item": "x", "call": 1} == await reg.ametadata("a", "x")
    assert {"item": "x", "call": 1} == await reg.ametadata("a", "x")
    await reg.aremove("a")
    assert first.closed
    await reg.aadd("c", "counting", {"root": str(tmp_path)})
    other = await reg.aconnector("c")
    await reg.aclose_all()
    assert other.closed
    stop.set()
    await task
    assert ticks > 0  # the loop kept running while the registry worked in threads


async def test_async_context_manager_closes_all(
    store: SourceStore, plugin_registry: Registry, tmp_path: Path
) -> None:
    """`async with SourceRegistry(...)` closes every live connector on exit."""
    async with SourceRegistry(store=store, registry=plugin_registry) as reg:
        await reg.aadd("a", "counting", {"root": str(tmp_path)})
        live = await reg.aconnector("a")
    assert live.closed


# --- explicit metadata cache ------------------------------------------------------------------


def test_explicit_cache_store_get_expire_clear(
    store: SourceStore, plugin_registry: Registry, tmp_path: Path
) -> None:
    """cache_metadata / cached_metadata (None when expired) / clear_metadata, TTLs per entry."""
    clock = FakeClock()
    reg = SourceRegistry(store=store, registry=plugin_registry, metadata_ttl=60, clock=clock)
    reg.add("a", "counting", {"root": str(tmp_path)})
    reg.add("b", "counting", {"root": str(tmp_path)})
    assert reg.cached_metadata("a", "t") is None
    reg.cache_metadata("a", "t", {"rows": 1})
    reg.cache_metadata("a", "short", {"rows": 2}, ttl=5)
    reg.cache_metadata("b", "t", {"rows": 3})
    assert {"rows": 1} == reg.cached_metadata("a", "t")
    # The read-through call answers from the explicit cache: the connector is not asked.
    assert {"rows": 1} == reg.metadata("a", "t")
    assert 0 == CountingConnector.metadata_calls
    clock.now += 10
    assert reg.cached_metadata("a", "short") is None  # its own 5 s TTL
    assert {"rows": 1} == reg.cached_metadata("a", "t")  # the registry's 60 s
    clock.now += 60
    assert reg.cached_metadata("a", "t") is None
    reg.cache_metadata("a", "t", {"rows": 4})
    assert 1 == reg.clear_metadata("a", "t")
    assert reg.cached_metadata("a", "t") is None
    reg.cache_metadata("a", "t", {"rows": 5})
    reg.cache_metadata("b", "t", {"rows": 6})
    assert 1 == reg.clear_metadata("a")
    assert {"rows": 6} == reg.cached_metadata("b", "t")
    assert 1 == reg.clear_metadata()
    assert reg.cached_metadata("b", "t") is None
    with pytest.raises(SourceError):
        reg.cache_metadata("nope", "t", {})
    assert reg.cached_metadata("nope", "t") is None


def test_cache_is_a_copy_and_dropped_on_replace(
    store: SourceStore, plugin_registry: Registry, tmp_path: Path
) -> None:
    """The cache keeps a copy; replacing the source drops what was cached for it."""
    reg = SourceRegistry(store=store, registry=plugin_registry)
    reg.add("a", "counting", {"root": str(tmp_path)})
    value = {"rows": [1]}
    reg.cache_metadata("a", "t", value)
    value["rows"].append(2)
    got = reg.cached_metadata("a", "t")
    assert {"rows": [1]} == got
    assert got is not None
    got["rows"].append(3)
    assert {"rows": [1]} == reg.cached_metadata("a", "t")
    reg.add("a", "counting", {"root": str(tmp_path)}, replace=True, owner="x")
    assert reg.cached_metadata("a", "t") is None


def test_per_call_ttl_of_the_read_through_cache(
    store: SourceStore, plugin_registry: Registry, tmp_path: Path
) -> None:
    """metadata(..., ttl=) overrides the registry's TTL for that entry; ttl=0 does not cache."""
    clock = FakeClock()
    reg = SourceRegistry(store=store, registry=plugin_registry, metadata_ttl=600, clock=clock)
    reg.add("a", "counting", {"root": str(tmp_path)})
    assert 1 == reg.metadata("a", "x", ttl=1)["call"]
    assert 1 == reg.metadata("a", "x")["call"]
    clock.now += 2
    assert 2 == reg.metadata("a", "x")["call"]
    assert 3 == reg.metadata("a", "y", ttl=0)["call"]
    assert reg.cached_metadata("a", "y") is None
    with pytest.raises(ValueError, match="ttl"):
        reg.cache_metadata("a", "x", {}, ttl=-1)
    reg.close_all()


# --- stats ------------------------------------------------------------------------------------


async def test_stats_per_live_source(reg: SourceRegistry, tmp_path: Path) -> None:
    """stats() aggregates the live connectors that count their pools; opens nothing."""
    reg.add("a", "counting", {"root": str(tmp_path)})
    reg.add("b", "counting", {"root": str(tmp_path)})
    reg.add("plain", "files", {"root": str(tmp_path)})
    assert {} == reg.stats()
    assert 0 == CountingConnector.built
    reg.connector("a")
    reg.connector("plain")  # no stats(): absent
    assert {"a": {"pool": {"size": 1, "in_use": 0}}} == await reg.astats()
    reg.remove("a")
    assert {} == reg.stats()


async def test_atest_without_live_connector_closes_its_probe(
    reg: SourceRegistry, tmp_path: Path
) -> None:
    """atest opens a connector only when none is live, and closes it (async) afterwards."""
    await reg.aadd("a", "counting", {"root": str(tmp_path)})
    result = await reg.atest("a")
    assert result.ok
    assert "directory present" == result.message
    assert 1 == CountingConnector.built
    assert {} == reg.stats()  # nothing left live
    reg.add("gone", "counting", {"root": str(tmp_path / "missing")})
    assert not (await reg.atest("gone")).ok
