"""
The import probe of the contract suite: what importing a plugin's entry point (and then
its connector module) imports, seen from a fresh interpreter, against a list of heavy
modules that listing plugins must never pay for.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

#: Modules an entry-point module must not import (prefix match: ``azure`` covers
#: ``azure.storage.blob``). Listing plugins has to stay cheap whatever is installed.
DEFAULT_HEAVY_MODULES: tuple[str, ...] = (
    "adbc_driver_manager",
    "adbc_driver_postgresql",
    "aiohttp",
    "asyncpg",
    "authlib",
    "azure",
    "boto3",
    "botocore",
    "google.cloud",
    "grpc",
    "httpcore",
    "httpx",
    "numpy",
    "pandas",
    "polars",
    "psycopg",
    "psycopg2",
    "psycopg_pool",
    "pyarrow",
    "pydantic",
    "requests",
    "sqlalchemy",
    "urllib3",
)

#: Modules a connector module may import at module level even though the entry point
#: may not: the config model needs pydantic.
CONNECTOR_MODULE_ALLOWED: tuple[str, ...] = ("pydantic", "pydantic_core")

_PROBE = r"""
import importlib, json, sys
ep_module, connector_id, url = sys.argv[1], sys.argv[2], sys.argv[3] or None
out = {"error": None, "ids": [], "claimed": None, "target": None, "identity": None}
before = set(sys.modules)
try:
    module = importlib.import_module(ep_module)
    found = []
    hook = getattr(module, "register_connectors", None)
    if hook is not None:
        found = list(hook() or ())
    if url is not None and getattr(module, "connector_for_url", None) is not None:
        out["claimed"] = module.connector_for_url(url=url)
    after_ep = set(sys.modules)
    out["ids"] = [getattr(item, "id", None) for item in found]
    mine = [item for item in found if getattr(item, "id", None) == connector_id]
    out["ep_imports"] = sorted(after_ep - before)
    if mine:
        item = mine[0]
        if isinstance(item, type):
            cls = item
            out["target"] = f"{cls.__module__}:{cls.__qualname__}"
        else:
            out["target"] = item.target
            cls = item.load()
        out["identity"] = [getattr(cls, "id", None), cls.__qualname__]
    out["connector_imports"] = sorted(set(sys.modules) - after_ep)
except BaseException as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""

_cache: dict[tuple[str, str, str, str], dict[str, Any]] = {}


def probe(ep_module: str, connector_id: str, url: str | None) -> dict[str, Any]:
    """
    Import the entry-point module in a fresh interpreter and call its hooks; report what
    it registered and imported (cached per module, id, URL and import path).

    Raises:
        RuntimeError: the subprocess failed or printed no report.
    """
    import os
    import subprocess
    import sys

    # The child sees the same import path as this process (test-local modules too).
    path = os.pathsep.join(p for p in sys.path if p)
    key = (ep_module, connector_id, url or "", path)
    if key not in _cache:
        env = {**os.environ, "PYTHONPATH": path}
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, ep_module, connector_id, url or ""],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0 or not proc.stdout.strip():
            raise RuntimeError(
                f"probing {ep_module} in a subprocess failed: {proc.stderr.strip()[-500:]}"
            )
        _cache[key] = json.loads(proc.stdout.strip().splitlines()[-1])
    return _cache[key]


def heavy_imports(modules: Iterable[str], heavy: Iterable[str]) -> list[str]:
    """The modules of ``modules`` under a prefix of ``heavy``, the top of each tree only."""
    prefixes = tuple(heavy)
    hits = {
        name
        for name in modules
        for prefix in prefixes
        if name == prefix or name.startswith(prefix + ".")
    }
    # Report the top of each tree only: "azure" rather than 40 azure.* modules.
    return sorted(h for h in hits if not any(h.startswith(o + ".") for o in hits))
