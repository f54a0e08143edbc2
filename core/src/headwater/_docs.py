"""
README config reference tables, generated from each connector's JSON Schema.

A README marks where a table goes::

    <!-- config-table:start -->
    (generated; do not edit)
    <!-- config-table:end -->

``<!-- config-table:start ID -->`` names the connector when a distribution provides more
than one. The connectors of a project directory are found the way core finds them:
through the hook modules its ``pyproject.toml`` names in ``[project.entry-points.headwater]``
(core's own built-ins for the ``headwater`` distribution itself).

Command line (``nox -s docs`` runs the check; ``nox -s docs -- --write`` updates)::

    python -m headwater._docs [--check | --write] [PROJECT_DIR ...]

Without directories it takes ``core`` and every ``plugins/*`` under the current
directory, or the current directory itself when it is a plugin project.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import re
import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headwater._schema import SchemaError, alternatives

if TYPE_CHECKING:
    from pydantic import BaseModel

    from headwater._connector import Connector

START = re.compile(r"<!--\s*config-table:start(?:\s+(?P<id>[a-z][a-z0-9-]*))?\s*-->")
END = "<!-- config-table:end -->"
NOTE = (
    "<!-- generated from the connector's config model (JSON Schema); edit the Field "
    "descriptions, not this table -->"
)
#: Nesting depth of sub-models shown as ``parent.child`` rows.
MAX_DEPTH = 3


class DocsError(Exception):
    """A README's markers or a project's connectors cannot be turned into tables."""


# --- one table --------------------------------------------------------------------------------


def config_table(model: type[BaseModel]) -> str:
    """The Markdown reference table of a config model: field, type, default, description."""
    schema = model.model_json_schema()
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, variant, type_text, default, description in _rows(schema, schema, "", "", 0):
        label = f" ({variant})" if variant else ""
        rows.append(f"| `{name}`{label} | {type_text} | {default} | {_cell(description)} |")
    return "\n".join(rows)


def _rows(
    root: Mapping[str, Any], node: Mapping[str, Any], prefix: str, variant: str, depth: int
) -> Iterator[tuple[str, str, str, str, str]]:
    """``(dotted name, union variant it belongs to, type, default, description)`` per field."""
    required = set(node.get("required", ()))
    for name, prop in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        variants = [v for v in alternatives(root, prop) if v.get("type") != "null"]
        nullable = len(variants) < len(alternatives(root, prop))
        if "default" in prop:
            default = f"`{json.dumps(prop['default'], ensure_ascii=False)}`"
        elif name in required:
            default = "**required**"
        else:
            default = ""
        description = prop.get("description") or next(
            (v.get("description", "") for v in variants if v.get("description")), ""
        )
        type_text = " or ".join(dict.fromkeys(_type(root, v) for v in variants)) or "any"
        if nullable and default == "":
            default = "`null`"
        yield path, variant, type_text, default, description
        if depth + 1 >= MAX_DEPTH:
            continue
        objects = [v for v in variants if v.get("properties")]
        for sub in objects:
            # Fields of one alternative of a union say which alternative they belong to.
            title = str(sub.get("title", "")) if len(objects) > 1 else ""
            label = " / ".join(part for part in (variant, title) if part)
            yield from _rows(root, sub, f"{path}.", label, depth + 1)


def _type(root: Mapping[str, Any], node: Mapping[str, Any]) -> str:
    if node.get("x-headwater-secret"):
        return "secret"
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    kind = node.get("type")
    if kind == "array":
        items = node.get("items")
        if isinstance(items, Mapping):
            inner = " or ".join(_type(root, v) for v in alternatives(root, items))
            return f"list of {inner}"
        return "list"
    if kind == "object" or "properties" in node:
        if node.get("properties"):
            return str(node.get("title", "object"))
        extra = node.get("additionalProperties")
        if isinstance(extra, Mapping) and extra:
            inner = " or ".join(_type(root, v) for v in alternatives(root, extra))
            return f"map of {inner}"
        return "map"
    if kind == "string":
        fmt = node.get("format")
        text = {"path": "path", "uri": "URL", "date-time": "datetime"}.get(fmt or "", "string")
        if fmt and text == "string":
            text = f"string ({fmt})"
        return text + _length(node)
    if kind in ("integer", "number"):
        return str(kind) + _bounds(node, "minimum", "maximum")
    if kind == "boolean":
        return "boolean"
    return str(kind) if kind else "any"


def _length(node: Mapping[str, Any]) -> str:
    low, high = node.get("minLength"), node.get("maxLength")

    def chars(n: int) -> str:
        return f"{n} char{'s' if n != 1 else ''}"

    if low is not None and low == high:
        return f", exactly {chars(low)}"
    if low == 1 and high is None:
        return ", non-empty"
    parts = [f"at least {chars(low)}" if low else "", f"at most {chars(high)}" if high else ""]
    shown = " and ".join(p for p in parts if p)
    return f", {shown}" if shown else ""


def _bounds(node: Mapping[str, Any], low: str, high: str) -> str:
    parts = []
    if low in node:
        parts.append(f">= {node[low]}")
    if f"exclusive{low[0].upper()}{low[1:]}" in node:
        parts.append(f"> {node['exclusive' + low[0].upper() + low[1:]]}")
    if high in node:
        parts.append(f"<= {node[high]}")
    if f"exclusive{high[0].upper()}{high[1:]}" in node:
        parts.append(f"< {node['exclusive' + high[0].upper() + high[1:]]}")
    return f", {', '.join(parts)}" if parts else ""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


# --- READMEs ----------------------------------------------------------------------------------


def render_config_tables(text: str, connectors: Sequence[type[Connector[Any]]]) -> str:
    """
    ``text`` with every marked block replaced by the table of its connector.

    Raises:
        DocsError: a start marker without its end, or an unmarked table when the project
            has several connectors (or an id none of them has).
    """
    by_id = {c.id: c for c in connectors}
    out: list[str] = []
    position = 0
    for match in START.finditer(text):
        if match.start() < position:
            raise DocsError("config-table markers are nested")
        end = text.find(END, match.end())
        if end < 0:
            raise DocsError(f"{match.group(0)} has no matching {END}")
        following = START.search(text, match.end())
        if following is not None and following.start() < end:
            raise DocsError(f"{match.group(0)} is followed by another start before {END}")
        wanted = match.group("id")
        if wanted is None:
            if len(by_id) != 1:
                raise DocsError(
                    "name the connector in the marker (<!-- config-table:start ID -->): this "
                    f"project provides {sorted(by_id) or 'no connectors'}"
                )
            connector = next(iter(by_id.values()))
        elif wanted in by_id:
            connector = by_id[wanted]
        else:
            raise DocsError(f"marker names connector {wanted!r}; this project has {sorted(by_id)}")
        out.append(text[position : match.end()])
        out.append(f"\n{NOTE}\n\n{config_table(connector.Config)}\n\n")
        position = end
    out.append(text[position:])
    return "".join(out)


def has_markers(text: str) -> bool:
    """Whether ``text`` holds a config-table start marker."""
    return START.search(text) is not None


def project_connectors(project: Path) -> list[type[Connector[Any]]]:
    """The connector classes a project directory (with a pyproject.toml) registers."""
    from packaging.utils import canonicalize_name

    from headwater._plugins import BUILTIN_PLUGINS, ConnectorRef

    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    name = canonicalize_name(meta["project"]["name"])
    if name == "headwater":
        modules = [module for _name, module in BUILTIN_PLUGINS]
    else:
        modules = list(meta["project"].get("entry-points", {}).get("headwater", {}).values())
    src = project / "src"
    if src.is_dir() and str(src) not in sys.path:
        # The source tree is what the README documents, installed or not.
        sys.path.insert(0, str(src))
    classes: list[type[Connector[Any]]] = []
    for module_name in modules:
        module = importlib.import_module(module_name.partition(":")[0])
        hook = getattr(module, "register_connectors", None)
        for item in (hook() or ()) if hook is not None else ():
            classes.append(item.load() if isinstance(item, ConnectorRef) else item)
    return classes


def update_readme(project: Path, *, check: bool) -> str | None:
    """
    Regenerate ``project/README.md``'s tables; returns a diff when it was (or, with
    ``check``, would be) changed, ``None`` when it is current or has no markers.
    """
    readme = project / "README.md"
    if not readme.is_file():
        return None
    current = readme.read_text(encoding="utf-8")
    if not has_markers(current):
        return None
    wanted = render_config_tables(current, project_connectors(project))
    if wanted == current:
        return None
    diff = "".join(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            wanted.splitlines(keepends=True),
            f"{readme} (current)",
            f"{readme} (generated)",
        )
    )
    if not check:
        readme.write_text(wanted, encoding="utf-8")
    return diff


def default_projects(cwd: Path) -> list[Path]:
    """``core`` and ``plugins/*`` of a workspace, or ``cwd`` when it is one project."""
    found = [p for p in [cwd / "core", *sorted(cwd.glob("plugins/*"))] if _is_project(p)]
    if found:
        return found
    return [cwd] if _is_project(cwd) else []


def _is_project(path: Path) -> bool:
    return (path / "pyproject.toml").is_file() and (path / "README.md").is_file()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: update (default) or ``--check`` README config tables; exit 1 when stale."""
    parser = argparse.ArgumentParser(
        prog="python -m headwater._docs", description=__doc__.split("\n\n")[1]
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail if a README is out of date")
    mode.add_argument("--write", action="store_true", help="update the READMEs (the default)")
    parser.add_argument("projects", nargs="*", type=Path, help="project directories")
    args = parser.parse_args(argv)
    projects = args.projects or default_projects(Path.cwd())
    stale = 0
    for project in projects:
        try:
            diff = update_readme(project, check=args.check)
        except (DocsError, SchemaError, ImportError, KeyError, OSError) as exc:
            sys.stderr.write(f"{project}: {type(exc).__name__}: {exc}\n")
            return 2
        if diff is None:
            continue
        stale += 1
        if args.check:
            sys.stdout.write(diff)
            sys.stderr.write(f"{project / 'README.md'}: config table out of date\n")
        else:
            sys.stdout.write(f"updated {project / 'README.md'}\n")
    if args.check and stale:
        sys.stderr.write("regenerate with `nox -s docs -- --write`\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
