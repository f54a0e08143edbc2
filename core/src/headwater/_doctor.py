"""
`diagnose`: what `headwater doctor` reports, for programs too (a service's health page):
versions, the ``HEADWATER_*`` environment with values masked, the plugins with their
status, and connector ids that two plugins claim.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headwater._plugins import PluginInfo, Registry

#: The variables headwater reads itself: settings, never secrets, so their values show.
PLAIN_ENVIRONMENT = frozenset(
    {
        "HEADWATER_DISABLE_PLUGIN_AUTOLOAD",
        "HEADWATER_DISABLE_PLUGINS",
        "HEADWATER_PLUGINS",
        "HEADWATER_STRICT_PLUGINS",
        "HEADWATER_SOURCES_FILE",
        "HEADWATER_SECRETS_FILE",  # where the encrypted store is: a path, not its key
        "HEADWATER_SECRETS_KEY_FILE",
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class Diagnosis:
    """What `diagnose` found; `ok` is False when a plugin failed or an id is claimed twice."""

    #: headwater's version, and the plugin API it offers.
    version: str
    plugin_api: int
    python: str
    platform: str
    #: ``HEADWATER_*`` variables: headwater's own settings with their values, every
    #: other one (it may hold anything, a password for an ``env:`` reference) masked.
    environment: dict[str, str]
    plugins: list[PluginInfo]
    #: connector id -> the origins of the plugins that each register it.
    conflicts: dict[str, list[str]]

    @property
    def failed(self) -> list[PluginInfo]:
        """The plugins that failed to load or target another plugin API."""
        return [info for info in self.plugins if info.status in ("failed", "incompatible")]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.conflicts

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (what ``headwater doctor --json`` prints)."""
        return {
            "headwater": self.version,
            "plugin_api": self.plugin_api,
            "python": self.python,
            "platform": self.platform,
            "environment": dict(self.environment),
            "plugins": [info.to_dict() for info in self.plugins],
            "conflicts": {cid: list(origins) for cid, origins in self.conflicts.items()},
        }


def diagnose(registry: Registry | None = None) -> Diagnosis:
    """
    Plugins with their status, hooks and errors, plus versions and the environment, from
    ``registry`` (the process-wide one by default; its plugins are loaded).
    """
    from headwater._redact import MASK
    from headwater._version import API_VERSION, __version__

    if registry is None:
        from headwater._plugins import get_registry

        registry = get_registry()
    infos = registry.plugins()
    environment = {
        key: (value if key in PLAIN_ENVIRONMENT else MASK)
        for key, value in sorted(os.environ.items())
        if key.startswith("HEADWATER_")
    }
    conflicts = {
        cid: [entry.origin for entry in entries]
        for cid, entries in registry.connectors().items()
        if len(entries) > 1
    }
    return Diagnosis(
        version=__version__,
        plugin_api=API_VERSION,
        python=platform.python_version(),
        platform=platform.platform(),
        environment=environment,
        plugins=list(infos),
        conflicts=conflicts,
    )
