"""
The one entry point for tests, lint, typing, benchmarks and the demo.

    nox                      lint, typing, docs, tests, engines, plugin_dists, bench_quick (CI)
    nox -s demo              the end-to-end job on the embedded `files` connector
    nox -s tests -- -k secrets                    pytest arguments after --
    nox -s "tests_package(package='postgres')"    one distribution's tests
    nox -s bench             full benchmarks (ratios against raw drivers and peers)
    nox -s engines           headwater on Dask and Ray (the tests marked `engines`)
    nox -s plugin_dists      each plugin as published: its sdist's tests against its wheel

Sessions use uv when it is installed (``pip install 'nox[uv]'``) and plain venv + pip
otherwise. With uv, the locked workspace is synced into the session's venv, which is
much faster than re-installing editable packages.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import sys
import tarfile
import tempfile
import tomllib

import nox

ROOT = pathlib.Path(__file__).parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

#: Every distribution in the workspace: core first, then each plugin directory.
PACKAGES: dict[str, str] = {"core": "core"} | {
    path.parent.name: f"plugins/{path.parent.name}"
    for path in sorted(ROOT.glob("plugins/*/pyproject.toml"))
}

nox.options.default_venv_backend = "uv|venv"
nox.options.sessions = [
    "lint", "typing", "docs", "tests", "engines", "plugin_dists", "bench_quick",
]  # fmt: skip
nox.options.error_on_missing_interpreters = True
nox.needs_version = ">=2024.3.2"


def _group_requirements(group: str) -> list[str]:
    """Flatten a PEP 735 dependency group (for the pip fallback)."""
    out: list[str] = []
    for item in PYPROJECT["dependency-groups"][group]:
        if isinstance(item, dict):
            out.extend(_group_requirements(item["include-group"]))
        else:
            out.append(item)
    return out


def _install(session: nox.Session, *groups: str) -> None:
    """Install every workspace distribution (editable) and the given dependency groups."""
    if session.venv_backend == "uv":
        uv = shutil.which("uv") or "uv"
        session.run_install(
            uv,
            "sync",
            "--all-packages",
            *(f"--group={g}" for g in groups),
            "--no-default-groups",
            "--inexact",
            env={"UV_PROJECT_ENVIRONMENT": str(session.virtualenv.location)},
            external=True,
        )
        return
    requirements = [req for g in groups for req in _group_requirements(g)]
    editables = [arg for path in PACKAGES.values() for arg in ("-e", path)]
    session.install(*editables, *requirements)


#: Every test directory: each distribution's tests, then the cross-package ones.
TEST_PATHS = ["core/tests", *(f"{p}/tests" for p in PACKAGES.values() if p != "core"), "tests"]
#: The engine tests (Dask, Ray) run in the `engines` session, which installs the engines;
#: every other session leaves them out.
NOT_ENGINES = "not engines"


def _pytest(session: nox.Session, paths: list[str], marker: str = NOT_ENGINES) -> None:
    """pytest over ``paths`` (or the session's arguments), tests selected by ``marker``."""
    args = ["-m", marker, *(session.posargs or paths)]
    session.run("python", "-m", "pytest", *args, env={"PYTHONDONTWRITEBYTECODE": "1"})


@nox.session
def tests(session: nox.Session) -> None:
    """Every distribution's tests plus the cross-package tests, in one run (engines apart)."""
    _install(session, "test")
    _pytest(session, TEST_PATHS)


@nox.session
def engines(session: nox.Session) -> None:
    """The tests marked ``engines``: headwater on a real Dask LocalCluster and a local Ray."""
    _install(session, "test", "engines")
    _pytest(session, TEST_PATHS, marker="engines")


@nox.session
@nox.parametrize("package", list(PACKAGES))
def tests_package(session: nox.Session, package: str) -> None:
    """One distribution's own tests (engines apart)."""
    _install(session, "test")
    _pytest(session, [f"{PACKAGES[package]}/tests"])


#: The build front end when uv is missing (uv builds with ``uv build``).
BUILD = "build>=1.2"


def _build(session: nox.Session, project: str, out: pathlib.Path, *kinds: str) -> None:
    """Build ``project`` into ``out``: ``--wheel`` only, or by default the sdist then its wheel."""
    if session.venv_backend == "uv":
        uv = shutil.which("uv") or "uv"
        session.run(uv, "build", "-q", *kinds, "--out-dir", str(out), project, external=True)
    else:
        session.run("python", "-m", "build", *kinds, "--outdir", str(out), project)


def _workspace_names() -> dict[str, str]:
    """Distribution name -> directory, for every workspace distribution."""
    names = {}
    for directory in PACKAGES.values():
        meta = tomllib.loads((ROOT / directory / "pyproject.toml").read_text(encoding="utf-8"))
        names[meta["project"]["name"]] = directory
    return names


@nox.session
@nox.parametrize("package", [p for p in PACKAGES if p != "core"])
def plugin_dists(session: nox.Session, package: str) -> None:
    """
    A plugin as published: build its sdist and wheel (and core's wheel), install the wheels
    with the plugin's ``test`` extra into this fresh venv, unpack the sdist and run the
    tests it carries there, against the installed wheel, not the source tree.
    """
    directory = ROOT / PACKAGES[package]
    meta = tomllib.loads((directory / "pyproject.toml").read_text(encoding="utf-8"))
    dist, module = meta["project"]["name"], meta["project"]["name"].replace("-", "_")
    work = pathlib.Path(tempfile.mkdtemp(prefix=f"headwater-dist-{package}-"))
    wheels = work / "wheels"
    if session.venv_backend != "uv":
        session.install(BUILD)
    _build(session, str(directory), work / "dist")  # the sdist, then the wheel built from it
    # Workspace distributions the plugin needs: core, and any its test extra names.
    names = _workspace_names()
    needed = ["headwater"] + [
        name for req in meta["project"]["optional-dependencies"]["test"]
        if (name := _requirement_name(req)) in names and name not in (dist, "headwater")
    ]  # fmt: skip
    for name in needed:
        _build(session, str(ROOT / names[name]), wheels, "--wheel")
    [sdist] = (work / "dist").glob("*.tar.gz")
    [wheel] = (work / "dist").glob("*.whl")
    constraints: list[str] = []
    if session.venv_backend == "uv":  # third-party versions as locked in uv.lock
        lock = work / "constraints.txt"
        session.run_install(
            shutil.which("uv") or "uv", "export", "--frozen", "--quiet", "--no-hashes",
            "--all-packages", "--all-extras", "--no-emit-workspace", "--no-header",
            "--output-file", str(lock), external=True,
        )  # fmt: skip
        constraints = ["-c", str(lock)]
    session.install(*constraints, *map(str, sorted(wheels.glob("*.whl"))), f"{wheel}[test]")
    with tarfile.open(sdist) as archive:
        archive.extractall(work / "sdist", filter="data")
    [unpacked] = (work / "sdist").iterdir()
    session.chdir(unpacked)
    # The tests must import the installed wheel: nothing importable in the sdist shadows it.
    session.run("python", "-c", _CHECK_INSTALLED, module, str(unpacked))
    _pytest(session, [])
    session.chdir(ROOT)
    shutil.rmtree(work)


def _requirement_name(requirement: str) -> str:
    """``headwater-postgres[arrow]>=1`` -> ``headwater-postgres`` (PEP 503 normalised)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    return re.sub(r"[-_.]+", "-", name.group(0)).lower() if name else ""


_CHECK_INSTALLED = """
import importlib, pathlib, sys
module = importlib.import_module(sys.argv[1])
where = pathlib.Path(module.__file__).resolve()
assert pathlib.Path(sys.argv[2]).resolve() not in where.parents, f"imported from the sdist: {where}"
print(f"testing {sys.argv[1]} installed at {where.parent}")
"""


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install(*_group_requirements("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(tags=["typing"])
def typing(session: nox.Session) -> None:
    """mypy, strict, over every distribution's src (and this file)."""
    _install(session, "typing", "test")
    srcs = [f"{p}/src" for p in PACKAGES.values()]
    session.run("mypy", *srcs, "noxfile.py")


@nox.session
def docs(session: nox.Session) -> None:
    """
    README config tables, generated from each connector's JSON Schema: fails when one is
    out of date; ``nox -s docs -- --write`` regenerates them.
    """
    _install(session)
    session.run("python", "-m", "headwater._docs", *(session.posargs or ["--check"]))


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks at full size: ratios against raw drivers and peers in the same run."""
    # The engines too: bench_engines compares headwater on Dask and Ray with their own
    # readers (bench_quick leaves them out, and those cases say they are unavailable).
    _install(session, "test", "bench", "engines")
    session.run("python", "-m", "bench", *session.posargs)


@nox.session
def bench_quick(session: nox.Session) -> None:
    """Benchmarks at tiny sizes, so they never rot (figures are meaningless)."""
    _install(session, "test", "bench")
    session.run("python", "-m", "bench", "--quick", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """
    The main job, on the embedded `files` connector (no server needed): list plugins,
    save and check a source, read a stream with progress, stop half-way, resume from the
    saved state, and verify the output equals the source record for record.
    """
    _install(session)
    work = pathlib.Path(tempfile.mkdtemp(prefix="headwater-demo-"))
    data = work / "data"
    data.mkdir()
    env = {"HEADWATER_SOURCES_FILE": str(work / "sources.toml")}
    total = int(os.environ.get("HEADWATER_DEMO_RECORDS", "200000"))
    session.log(f"demo directory: {work}")
    session.run("python", "-c", _MAKE_DATA, str(work / "events.jsonl"), str(total))
    session.run("headwater", "plugins", env=env)
    session.run(
        "headwater", "sources", "add", "demo", "files", "-c", f"root={data}", "--test", env=env
    )
    session.run("headwater", "write", "demo", "events.jsonl", str(work / "events.jsonl"), env=env)
    session.run("headwater", "check", "demo", env=env)
    session.run("headwater", "ls", "demo", env=env)
    out, state = work / "out.jsonl", work / "state.json"
    common = ["--state", str(state), "-o", str(out), "--batch-size", "5000", "--progress"]
    half = str(total // 2)
    session.log(f"reading the first {half} records, saving state after each batch")
    session.run("headwater", "read", "demo", "events.jsonl", "--limit", half, *common, env=env)
    session.log(f"state after the interruption: {state.read_text()}")
    session.log("resuming from the saved state")
    session.run("headwater", "read", "demo", "events.jsonl", *common, env=env)
    session.run("python", "-c", _VERIFY, str(data / "events.jsonl"), str(out))
    if "--keep" not in session.posargs:
        shutil.rmtree(work)


_MAKE_DATA = """
import json, random, sys
from datetime import datetime, timedelta, timezone
path, total = sys.argv[1], int(sys.argv[2])
rng = random.Random(42)
start = datetime(2026, 1, 1, tzinfo=timezone.utc)
with open(path, "w", encoding="utf-8") as out:
    for i in range(total):
        out.write(json.dumps({
            "id": i,
            "at": (start + timedelta(seconds=i * 7)).isoformat(),
            "user": f"user-{rng.randrange(5000):04d}",
            "kind": rng.choice(["view", "click", "purchase"]),
            "amount": round(rng.uniform(0, 500), 2),
            "note": rng.choice(["", "ünïcødé ✓", "comma, inside", 'quote " inside']),
        }, ensure_ascii=False) + "\\n")
print(f"generated {total} events in {path}")
"""

_VERIFY = """
import json, sys
source = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
output = [json.loads(line) for line in open(sys.argv[2], encoding="utf-8")]
ids = [r["id"] for r in output]
assert len(ids) == len(set(ids)), "duplicates after resume"
assert source == output, "output differs from source"
print(f"verified: {len(output)} records read across an interruption, no duplicates, "
      "identical to the source")
"""


if __name__ == "__main__":  # pragma: no cover - convenience: python noxfile.py
    sys.exit("run nox instead: python3 -m nox")
