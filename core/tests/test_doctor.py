"""`headwater.diagnose`: the report behind `headwater doctor`, from a registry of its own."""

from __future__ import annotations

import json

import pytest

import headwater
from headwater import ConnectorRef, hookimpl


class _Claims:
    """A plugin registering connector id ``dup``."""

    def __init__(self, target: str) -> None:
        self.target = target

    @hookimpl
    def register_connectors(self) -> list[ConnectorRef]:
        return [ConnectorRef("dup", self.target, summary="claims dup")]


class _Broken:
    """A plugin whose hook raises."""

    @hookimpl
    def register_connectors(self) -> list[ConnectorRef]:
        raise RuntimeError("boom")


def test_healthy_registry_is_ok_and_lists_its_plugins():
    """Core's built-ins alone: ok, no conflict, versions filled in, JSON-serializable."""
    found = headwater.diagnose(headwater.Registry(autoload=False))
    assert (True, {}, headwater.API_VERSION) == (found.ok, found.conflicts, found.plugin_api)
    assert "headwater.files" in [info.name for info in found.plugins]
    doc = json.loads(json.dumps(found.to_dict()))
    assert ["headwater", "plugin_api", "python", "platform", "environment", "plugins",
            "conflicts"] == list(doc)  # fmt: skip


def test_an_id_claimed_twice_is_a_conflict_naming_both():
    """Two plugins registering one connector id: not ok, the conflict names both origins."""
    registry = headwater.Registry(autoload=False, plugins=[_Claims("a:A"), _Claims("b:B")])
    found = headwater.diagnose(registry)
    assert (False, ["dup"]) == (found.ok, list(found.conflicts))
    assert 2 == len(found.conflicts["dup"])


def test_a_failed_plugin_makes_it_unhealthy():
    """A plugin whose hook raises is listed as failed and the diagnosis is not ok."""
    found = headwater.diagnose(headwater.Registry(autoload=False, plugins=[_Broken()]))
    assert (False, []) == (found.ok, list(found.conflicts))
    assert ["failed"] == [info.status for info in found.failed]


def test_environment_shows_settings_and_masks_everything_else(monkeypatch):
    """headwater's own settings keep their values; other HEADWATER_* values are masked."""
    monkeypatch.setenv("HEADWATER_SOURCES_FILE", "sources.toml")
    monkeypatch.setenv("HEADWATER_PG_PASSWORD", "Zq9-diagnose-secret")
    found = headwater.diagnose(headwater.Registry(autoload=False))
    assert "sources.toml" == found.environment["HEADWATER_SOURCES_FILE"]
    assert "Zq9-diagnose-secret" != found.environment["HEADWATER_PG_PASSWORD"]
    assert "Zq9-diagnose-secret" not in json.dumps(found.to_dict()) + repr(found)


@pytest.mark.parametrize("name", ["diagnose", "Diagnosis"])
def test_exported_from_headwater(name):
    """diagnose and Diagnosis are part of the user API."""
    assert name in headwater.__all__
