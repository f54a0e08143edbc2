"""
Core benchmarks: discovery/startup, hook-call overhead, the ``files`` connector's reads.

* **startup**: ``headwater connectors`` in a fresh venv holding core, the first-party
  plugins and 50 generated dummy plugin distributions (5 with ``--quick``), against the
  bare ``importlib.metadata.entry_points(group="headwater")`` scan in the same venv. Each
  run is a new process; units are runs. (Peak RSS is the measuring worker's, not the
  child processes'.) Goals (issue 19): ``headwater connectors`` at most 1.5x the scan's
  time (a ratio of at least 0.67x), ``headwater --help`` at most 0.15 s a run (at least
  6.7 runs/s).
* **hook calls**: ``pm.hook.register_connectors()``, ``Registry.connectors()`` and
  ``Registry.connector_class()`` against calling the hook function directly. Every case
  builds the same registry first, so only the calls differ.
* **files read**: ``headwater.connect("files", ...)`` reading a JSON Lines and a CSV file
  of 1,000,000 records (10,000 with ``--quick``) against ``json.loads`` per line and
  ``csv.DictReader`` on the same files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench._harness import Case, Scenario

ROOT = Path(__file__).resolve().parents[1]
HERE = "bench.bench_core"


# --- discovery / startup ---------------------------------------------------------------------


def setup_startup(quick: bool) -> dict[str, Any]:
    """A venv with core, the first-party plugins and N dummy plugin distributions."""
    from tests._dists import CORE, dummy_dist, make_venv

    base = Path(tempfile.mkdtemp(prefix="hw-bench-startup-"))
    dummies = 5 if quick else 50
    wheels = [dummy_dist(i).build_wheel(base / "wheels") for i in range(dummies)]
    plugins = sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))
    # A user's install: wheels with compiled bytecode, not editable source trees.
    make_venv(
        base / "venv",
        projects=[CORE, *plugins],
        editable=False,
        wheels=wheels,
        compile_bytecode=True,
    )
    return {"base": str(base), "runs": 3 if quick else 20}


def teardown_startup(base: str, **_: Any) -> None:
    shutil.rmtree(base, ignore_errors=True)


def _run_times(argv: list[str], runs: int, keep: bool = False) -> int:
    env = {k: v for k, v in os.environ.items() if keep or not k.startswith("HEADWATER_")}
    env.pop("PYTHONPATH", None)
    for _ in range(runs):
        subprocess.run(argv, check=True, env=env, capture_output=True)
    return runs


def _venv(base: str) -> Path:
    return Path(base) / "venv" / "bin"


def startup_entry_points(base: str, runs: int) -> int:
    code = "import importlib.metadata as m; m.entry_points(group='headwater')"
    return _run_times([str(_venv(base) / "python"), "-c", code], runs)


def startup_python(base: str, runs: int) -> int:
    return _run_times([str(_venv(base) / "python"), "-c", "pass"], runs)


def startup_connectors(base: str, runs: int) -> int:
    out = subprocess.run(
        [str(_venv(base) / "headwater"), "connectors", "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    if out.count('"id"') < 6:  # files + dummies: prove the plugins were really listed
        raise RuntimeError(f"headwater connectors listed too few connectors:\n{out[:500]}")
    return _run_times([str(_venv(base) / "headwater"), "connectors"], runs)


def startup_connectors_core(base: str, runs: int) -> int:
    # Core alone: what the installed plugins add is the difference to the case above.
    os.environ["HEADWATER_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        return _run_times([str(_venv(base) / "headwater"), "connectors"], runs, keep=True)
    finally:
        del os.environ["HEADWATER_DISABLE_PLUGIN_AUTOLOAD"]


def startup_help(base: str, runs: int) -> int:
    return _run_times([str(_venv(base) / "headwater"), "--help"], runs)


# --- hook-call overhead ----------------------------------------------------------------------


# The cases live in bench/_core_hooks.py: the worker imports a case's module before it
# starts the clock, and that module builds the registry at import, so the cases time the
# calls alone (not importing headwater) while other scenarios' workers stay lean.
HOOKS = "bench._core_hooks"


# --- files connector read throughput -------------------------------------------------------


def setup_files(quick: bool) -> dict[str, Any]:
    """A directory with data.jsonl and data.csv holding the same records."""
    import csv
    import json

    records = 10_000 if quick else 1_000_000
    root = Path(tempfile.mkdtemp(prefix="hw-bench-files-"))
    fields = ["id", "name", "amount", "active", "created"]
    with (
        (root / "data.jsonl").open("w", encoding="utf-8") as jl,
        (root / "data.csv").open("w", encoding="utf-8", newline="") as cf,
    ):
        writer = csv.writer(cf)
        writer.writerow(fields)
        for i in range(records):
            row = [i, f"name-{i}", i * 0.25, i % 3 == 0, f"2024-01-{i % 28 + 1:02d}T12:00:00Z"]
            jl.write(json.dumps(dict(zip(fields, row, strict=True))) + "\n")
            writer.writerow(row)
    return {"root": str(root), "records": records}


def teardown_files(root: str, **_: Any) -> None:
    shutil.rmtree(root, ignore_errors=True)


def _check(count: int, records: int) -> int:
    if count != records:
        raise AssertionError(f"read {count} records, expected {records}")
    return count


def stdlib_jsonl(root: str, records: int) -> int:
    import json

    count = 0
    with open(Path(root) / "data.jsonl", "rb") as handle:
        for line in handle:
            if json.loads(line):
                count += 1
    return _check(count, records)


def stdlib_csv(root: str, records: int) -> int:
    import csv

    count = 0
    with open(Path(root) / "data.csv", encoding="utf-8", newline="") as handle:
        for _row in csv.DictReader(handle):
            count += 1
    return _check(count, records)


def headwater_files(root: str, records: int, stream: str) -> int:
    import headwater

    count = 0
    with headwater.connect("files", {"root": root}) as files:
        for batch in files.read(stream):
            count += len(batch)
    return _check(count, records)


# --- scenarios ----------------------------------------------------------------------------


def scenarios(quick: bool) -> list[Scenario]:
    fast_calls = 10_000 if quick else 1_000_000
    slow_calls = 2_000 if quick else 200_000
    return [
        Scenario(
            name=f"startup: {5 if quick else 50} dummy plugins + first-party (runs)",
            cases=[
                Case("python -c pass", f"{HERE}:startup_python"),
                Case("entry_points(group='headwater')", f"{HERE}:startup_entry_points"),
                Case("headwater --help", f"{HERE}:startup_help"),
                Case("headwater connectors (autoload off)", f"{HERE}:startup_connectors_core"),
                Case("headwater connectors", f"{HERE}:startup_connectors"),
            ],
            baseline="entry_points(group='headwater')",
            goal=round(1 / 1.5, 2),  # headwater connectors: at most 1.5x the scan's time
            setup=f"{HERE}:setup_startup",
            teardown=f"{HERE}:teardown_startup",
            unit="runs",
        ),
        Scenario(
            name="hook-call overhead (calls)",
            cases=[
                Case("direct function call", f"{HOOKS}:hook_direct", {"calls": fast_calls}),
                Case("pm.hook.register_connectors()", f"{HOOKS}:hook_pm", {"calls": fast_calls}),
                Case(
                    "Registry.connectors()",
                    f"{HOOKS}:hook_registry_connectors",
                    {"calls": slow_calls},
                ),
                Case(
                    "Registry.connector_class(id)",
                    f"{HOOKS}:hook_connector_class",
                    {"calls": slow_calls},
                ),
            ],
            baseline="direct function call",
            unit="calls",
        ),
        Scenario(
            name="files connector read: JSON Lines",
            cases=[
                Case("stdlib json.loads per line", f"{HERE}:stdlib_jsonl"),
                Case("headwater files read()", f"{HERE}:headwater_files", {"stream": "data.jsonl"}),
            ],
            baseline="stdlib json.loads per line",
            setup=f"{HERE}:setup_files",
            teardown=f"{HERE}:teardown_files",
        ),
        Scenario(
            name="files connector read: CSV",
            cases=[
                Case("stdlib csv.DictReader", f"{HERE}:stdlib_csv"),
                Case("headwater files read()", f"{HERE}:headwater_files", {"stream": "data.csv"}),
            ],
            baseline="stdlib csv.DictReader",
            setup=f"{HERE}:setup_files",
            teardown=f"{HERE}:teardown_files",
        ),
    ]
