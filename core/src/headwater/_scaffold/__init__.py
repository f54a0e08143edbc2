"""
``headwater new-plugin NAME``: write a complete, working plugin project.

The project comes from the files under ``template/`` (each ending in ``.tmpl``; a
``__package__`` path segment becomes the package name, a ``_dot_`` prefix a leading dot)
with ``{{placeholders}}`` filled in. What it writes passes headwater's contract suite as
generated: a connector over a small demo service, lazy imports, a pyproject with the
entry point and a floor on headwater, a README whose config table is generated from the
connector's JSON Schema, tests, and a noxfile (``hatch test`` works too).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import re
import sys
from collections.abc import Iterator
from importlib.resources.abc import Traversable
from pathlib import Path

from headwater._naming import CONNECTOR_ID_RULE, is_connector_id
from headwater.errors import ConfigError

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
#: Connector ids core itself provides: a plugin claiming one could never be used.
_RESERVED = frozenset({"files"})
SUFFIX = ".tmpl"


def plugin_values(name: str) -> dict[str, str]:
    """The placeholder values for connector id ``name`` (validated)."""
    from headwater._version import API_VERSION

    if not is_connector_id(name):
        raise ConfigError(
            f"plugin name {name!r} is not a valid connector id",
            field="name",
            hint=f"use {CONNECTOR_ID_RULE}, e.g. acme-crm",
        )
    if name in _RESERVED:
        raise ConfigError(f"{name!r} is a connector id of headwater itself", field="name")
    if name.startswith("headwater"):
        raise ConfigError(
            f"name the connector, not the distribution: {name!r} would give headwater-{name}",
            field="name",
            hint=f"headwater new-plugin {name.removeprefix('headwater-') or 'acme'}",
        )
    parts = name.split("-")
    return {
        "name": name,
        "dist": f"headwater-{name}",
        "package": "headwater_" + name.replace("-", "_"),
        "class": "".join(part.capitalize() for part in parts),
        "title": " ".join(part.capitalize() for part in parts),
        "env_prefix": name.upper().replace("-", "_"),
        "core_requirement": f"headwater>={API_VERSION}.0,<{API_VERSION + 1}",
    }


def create_plugin(name: str, directory: str | Path | None = None) -> Path:
    """
    Write the plugin project for connector ``name`` into ``directory``.

    Args:
        name: the connector id (``acme-crm``): distribution ``headwater-acme-crm``,
            package ``headwater_acme_crm``.
        directory: where to write; default ``./headwater-NAME``. It must not exist or be
            empty.

    Returns:
        The project directory.
    """
    values = plugin_values(name)
    target = Path(directory) if directory is not None else Path.cwd() / values["dist"]
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(
            f"{target} exists and is not an empty directory",
            field="dir",
            hint="choose another --dir",
        )
    template = importlib.resources.files("headwater._scaffold") / "template"
    for relative, source in _walk(template, ()):
        path = target.joinpath(*(_rename(part, values) for part in relative))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_fill(source.read_text(encoding="utf-8"), values), encoding="utf-8")
    _render_readme(target, values["package"])
    return target


def _walk(
    node: Traversable, prefix: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], Traversable]]:
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.is_dir():
            if child.name != "__pycache__":
                yield from _walk(child, (*prefix, child.name))
        elif child.name.endswith(SUFFIX):
            yield (*prefix, child.name), child


def _rename(part: str, values: dict[str, str]) -> str:
    part = part.removesuffix(SUFFIX).replace("__package__", values["package"])
    return "." + part.removeprefix("_dot_") if part.startswith("_dot_") else part


def _fill(text: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template placeholder {{{{{key}}}}} has no value")
        return values[key]

    return _PLACEHOLDER.sub(value, text)


def _render_readme(target: Path, package: str) -> None:
    """Fill the README's config table from the new connector, leaving this process as it was."""
    from headwater._docs import update_readme

    with _isolated_imports(package):
        update_readme(target, check=False)


@contextlib.contextmanager
def _isolated_imports(package: str) -> Iterator[None]:
    # Importing the generated package (to read its config schema) must not leave it, or
    # its src directory, behind in a long-lived process such as a test session.
    path = list(sys.path)
    mine = {m: sys.modules.pop(m) for m in list(sys.modules) if m.split(".")[0] == package}
    try:
        yield
    finally:
        sys.path[:] = path
        for module in [m for m in sys.modules if m.split(".")[0] == package]:
            del sys.modules[module]
        sys.modules.update(mine)
