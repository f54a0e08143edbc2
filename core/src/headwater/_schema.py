"""
Walking a config model's JSON Schema (as pydantic writes it), in one place.

A property's schema is rarely the whole story: it may be a ``$ref`` into ``$defs``, a
union (``anyOf``/``oneOf``), an ``allOf`` wrapper, or a list or map of models. Two views
cover what headwater needs:

* `alternatives`: the values a property may take, one concrete schema each (``$ref``
  resolved with its siblings merged in, unions flattened) — what the README config
  tables show (`headwater._docs`);
* `fields` and `applicable`: every property, nested ones included, with every schema
  node that applies to it — what the contract suite checks annotations on (a
  description, the secret marker), wherever in the union or reference they sit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

Schema = Mapping[str, Any]


class SchemaError(ValueError):
    """A schema reference that does not point into the schema itself."""


def resolve(root: Schema, ref: str) -> Schema:
    """The schema a local ``$ref`` (``#/$defs/Name``) points to."""
    target = _target(root, ref)
    if target is None:
        raise SchemaError(f"cannot resolve schema reference {ref!r}")
    return target


def _target(root: Schema, ref: str) -> Schema | None:
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, Mapping) else None


def alternatives(root: Schema, node: Schema) -> list[Schema]:
    """
    The alternatives a property allows, each one concrete schema.

    A ``$ref`` is resolved and the keys beside it (a description, a default) are merged
    into its target; ``anyOf``/``oneOf`` branches are flattened; an ``allOf`` of one
    schema (pydantic's way of describing a referenced model) is merged likewise.

    Raises:
        SchemaError: a ``$ref`` that is not local.
    """
    ref = node.get("$ref")
    if isinstance(ref, str):
        merged = {**resolve(root, ref), **{k: v for k, v in node.items() if k != "$ref"}}
        return alternatives(root, merged)
    for key in ("anyOf", "oneOf"):
        if key in node:
            return [found for branch in node[key] for found in alternatives(root, branch)]
    if "allOf" in node and len(node["allOf"]) == 1:
        rest = {k: v for k, v in node.items() if k != "allOf"}
        return alternatives(root, {**node["allOf"][0], **rest})
    return [node]


def applicable(root: Schema, node: Schema, seen: frozenset[str] = frozenset()) -> list[Schema]:
    """
    Every schema node that applies to a property, unmerged: the node itself, the target
    of its ``$ref``, each ``anyOf``/``oneOf``/``allOf`` branch, and for a list or a map
    the schema of its items or values — so ``Secret | None`` gives the wrapper, the
    secret branch and the null branch. A reference in ``seen`` is not followed again.
    """
    out: list[Schema] = [node]
    ref = node.get("$ref")
    if isinstance(ref, str) and ref not in seen:
        target = _target(root, ref)
        if target is not None:
            out.extend(applicable(root, target, seen | {ref}))
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in node.get(key, ()):
            out.extend(applicable(root, branch, seen))
    for key in ("items", "additionalProperties"):
        inner = node.get(key)
        if isinstance(inner, Mapping):
            out.extend(applicable(root, inner, seen))
    return out


def fields(schema: Schema) -> Iterator[tuple[str, list[Schema]]]:
    """
    ``(dotted field path, the schema nodes that apply to it)`` for every property, nested
    included (``auth.client_secret``; a list of models gives its models' fields).

    The alternatives of a union may share field names (``auth.type``): their nodes are
    merged under the one path. A model that contains itself is expanded once.
    """

    def walk(
        found: list[Schema], prefix: str, seen: frozenset[str]
    ) -> Iterator[tuple[str, list[Schema]]]:
        for variant in found:
            for name, prop in variant.get("properties", {}).items():
                path = f"{prefix}{name}"
                sub = applicable(schema, prop, seen)
                yield path, sub
                refs = frozenset(v["$ref"] for v in sub if isinstance(v.get("$ref"), str))
                yield from walk(sub, f"{path}.", seen | refs)

    merged: dict[str, list[Schema]] = {}
    for path, found in walk(applicable(schema, schema), "", frozenset()):
        merged.setdefault(path, []).extend(found)
    yield from merged.items()
