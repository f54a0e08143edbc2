"""
Throwaway plugin distributions for tests and benchmarks.

A `PluginDist` describes a tiny plugin project (modules, entry points, its requirement on
headwater) and becomes either a real wheel written by hand — a zip with ``METADATA``,
``WHEEL``, ``entry_points.txt`` and ``RECORD``, no build backend needed, so it works
offline in milliseconds — or an unpacked ``*.dist-info`` tree in a directory that a test
puts on ``sys.path`` (``importlib.metadata`` finds both the same way).

Every generated module starts by touching ``$HWTEST_MARKERS/<module name>`` when that
variable is set, so a test can prove a module was (or was never) imported.

`make_venv` builds one fresh virtual environment with headwater installed from this
repository and the given wheels installed with ``--no-deps`` (so a wheel that asks for
``headwater>=2`` is installed anyway, as a user forcing it would).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

#: The repository root (this file is ``tests/_dists.py``).
ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"

#: Directory in which generated modules record their import (see module docstring).
MARKER_ENV = "HWTEST_MARKERS"

_MARKER = textwrap.dedent(
    """\
    import os as _os
    import pathlib as _pathlib

    if _os.environ.get("HWTEST_MARKERS"):
        _pathlib.Path(_os.environ["HWTEST_MARKERS"], __name__).touch()
    """
)


def _norm(name: str) -> str:
    return name.replace("-", "_").replace(".", "_").lower()


@dataclasses.dataclass
class PluginDist:
    """
    One plugin distribution.

    Attributes:
        name: distribution name (``hwtest-good``).
        modules: dotted module name → source; package ``__init__`` modules are added.
        entry_points: entry-point name → ``module`` (group ``headwater``).
        requires: ``Requires-Dist`` lines (the plugin's declared core API).
        version: distribution version.
    """

    name: str
    modules: dict[str, str]
    entry_points: dict[str, str]
    requires: tuple[str, ...] = ("headwater>=1.0,<2",)
    version: str = "0.1.0"

    @property
    def dist_info(self) -> str:
        return f"{_norm(self.name)}-{self.version}.dist-info"

    def files(self) -> dict[str, bytes]:
        """Relative path → content of everything except ``RECORD``."""
        out: dict[str, bytes] = {}
        for module, source in self.modules.items():
            parts = module.split(".")
            for i in range(1, len(parts)):
                init = "/".join(parts[:i]) + "/__init__.py"
                out.setdefault(init, _MARKER.encode())
            is_package = any(other.startswith(module + ".") for other in self.modules)
            path = "/".join(parts) + ("/__init__.py" if is_package else ".py")
            out[path] = (_MARKER + "\n" + textwrap.dedent(source)).encode()
        meta = [
            "Metadata-Version: 2.1",
            f"Name: {self.name}",
            f"Version: {self.version}",
            "Summary: throwaway headwater plugin built by the tests",
            *(f"Requires-Dist: {req}" for req in self.requires),
        ]
        out[f"{self.dist_info}/METADATA"] = ("\n".join(meta) + "\n").encode()
        out[f"{self.dist_info}/WHEEL"] = (
            b"Wheel-Version: 1.0\nGenerator: tests._dists\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        )
        eps = "".join(f"{name} = {target}\n" for name, target in self.entry_points.items())
        out[f"{self.dist_info}/entry_points.txt"] = f"[headwater]\n{eps}".encode()
        return out

    def build_wheel(self, directory: Path) -> Path:
        """Write ``<name>-<version>-py3-none-any.whl`` into ``directory``; returns its path."""
        directory.mkdir(parents=True, exist_ok=True)
        wheel = directory / f"{_norm(self.name)}-{self.version}-py3-none-any.whl"
        files = self.files()
        record = []
        with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
            for path, data in files.items():
                zf.writestr(path, data)
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                record.append(f"{path},sha256={digest.decode()},{len(data)}")
            record.append(f"{self.dist_info}/RECORD,,")
            zf.writestr(f"{self.dist_info}/RECORD", "\n".join(record) + "\n")
        return wheel

    def install_unpacked(self, site_dir: Path) -> None:
        """Write the modules and the dist-info into ``site_dir`` (a ``sys.path`` entry)."""
        for path, data in self.files().items():
            target = site_dir / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

    @property
    def top_level(self) -> set[str]:
        """Top-level module names (to drop from ``sys.modules`` after a test)."""
        return {module.split(".")[0] for module in self.modules}


# --- source templates ----------------------------------------------------------------------


def hooks_source(
    connectors: Sequence[tuple[str, str, str]] = (),
    *,
    url_scheme: tuple[str, str] | None = None,
    raise_in_register: str | None = None,
    extra: str = "",
) -> str:
    """
    A hooks module returning `ConnectorRef` s.

    Args:
        connectors: ``(id, "module:Class", summary)`` for ``register_connectors``.
        url_scheme: ``(scheme, connector id)`` claimed through ``connector_for_url``.
        raise_in_register: ``register_connectors`` raises ``RuntimeError`` with this text.
        extra: more source appended verbatim.
    """
    refs = ", ".join(
        f"ConnectorRef({cid!r}, {target!r}, summary={summary!r})"
        for cid, target, summary in connectors
    )
    body = (
        f"raise RuntimeError({raise_in_register!r})"
        if raise_in_register is not None
        else f"return [{refs}]"
    )
    src = textwrap.dedent(
        f"""\
        from headwater import ConnectorRef, hookimpl


        @hookimpl
        def register_connectors():
            {body}
        """
    )
    if url_scheme is not None:
        scheme, cid = url_scheme
        src += textwrap.dedent(
            f"""

            @hookimpl
            def connector_for_url(url):
                return {cid!r} if url.startswith({scheme + "://"!r}) else None
            """
        )
    return src + textwrap.dedent(extra)


def connector_source(class_name: str, connector_id: str, summary: str = "") -> str:
    """A minimal, working `Connector` subclass (check only)."""
    return textwrap.dedent(
        f"""\
        from headwater import Connector, ConnectorConfig


        class _Config(ConnectorConfig):
            name: str = "x"


        class {class_name}(Connector[_Config]):
            id = {connector_id!r}
            Config = _Config
            summary = {summary!r}

            def check_connection(self):
                return "ok " + self.config.name
        """
    )


# --- the distributions the discovery tests install ------------------------------------------


def good_dist(
    name: str = "hwtest-good", ep: str = "good", package: str = "hwtest_good"
) -> PluginDist:
    """A well-behaved plugin: connectors ``good`` and ``shared``, claims ``good://`` URLs."""
    return PluginDist(
        name=name,
        modules={
            f"{package}.hooks": hooks_source(
                [
                    ("good", f"{package}._connector:GoodConnector", "a good connector"),
                    ("shared", f"{package}._connector:SharedConnector", "shared (good)"),
                ],
                url_scheme=("good", "good"),
            ),
            # Two classes, each with its own imports and config: repetition is harmless.
            f"{package}._connector": connector_source("GoodConnector", "good", "a good connector")
            + "\n\n"
            + connector_source("SharedConnector", "shared", "shared (good)"),
        },
        entry_points={ep: f"{package}.hooks"},
    )


def scenario_dists() -> list[PluginDist]:
    """
    One of each kind of plugin the isolation tests need.

    ============================  =========  ===================================================
    distribution                  entry pt.  behaviour
    ============================  =========  ===================================================
    hwtest-good                   good       connectors ``good`` and ``shared``
    hwtest-broken                 broken     fails to import (missing module)
    hwtest-raises                 raises     ``register_connectors`` raises
    hwtest-dup                    dup        provides ``shared`` too (duplicate id) and ``dup-own``
    hwtest-blocked-ep             blockme    blocked by entry-point name
    hwtest-blocked-dist           other      blocked by distribution name
    hwtest-allowed                allowed    the one named in HEADWATER_PLUGINS
    hwtest-future                 future     requires ``headwater>=2,<3``: refused, never imported
    ============================  =========  ===================================================
    """
    simple = lambda pkg, cid: hooks_source([(cid, f"{pkg}._connector:C", cid)])  # noqa: E731
    conn = lambda cid: connector_source("C", cid, cid)  # noqa: E731
    return [
        good_dist(),
        PluginDist(
            "hwtest-broken",
            {"hwtest_broken.hooks": "import hwtest_no_such_module_anywhere\n"},
            {"broken": "hwtest_broken.hooks"},
            version="0.3.0",
        ),
        PluginDist(
            "hwtest-raises",
            {"hwtest_raises.hooks": hooks_source(raise_in_register="boom from hwtest-raises")},
            {"raises": "hwtest_raises.hooks"},
        ),
        PluginDist(
            "hwtest-dup",
            {
                "hwtest_dup.hooks": hooks_source(
                    [
                        ("shared", "hwtest_dup._connector:C", "shared (dup)"),
                        ("dup-own", "hwtest_dup._connector:Own", "dup's own"),
                    ]
                ),
                "hwtest_dup._connector": conn("shared") + "\n\nclass Own(C):\n    id = 'dup-own'\n",
            },
            {"dup": "hwtest_dup.hooks"},
            version="0.2.0",
        ),
        PluginDist(
            "hwtest-blocked-ep",
            {
                "hwtest_blocked_ep.hooks": simple("hwtest_blocked_ep", "blocked-ep"),
                "hwtest_blocked_ep._connector": conn("blocked-ep"),
            },
            {"blockme": "hwtest_blocked_ep.hooks"},
        ),
        PluginDist(
            "hwtest-blocked-dist",
            {
                "hwtest_blocked_dist.hooks": simple("hwtest_blocked_dist", "blocked-dist"),
                "hwtest_blocked_dist._connector": conn("blocked-dist"),
            },
            {"other": "hwtest_blocked_dist.hooks"},
        ),
        PluginDist(
            "hwtest-allowed",
            {
                "hwtest_allowed.hooks": simple("hwtest_allowed", "allowed"),
                "hwtest_allowed._connector": conn("allowed"),
            },
            {"allowed": "hwtest_allowed.hooks"},
        ),
        PluginDist(
            "hwtest-future",
            {
                "hwtest_future.hooks": simple("hwtest_future", "future"),
                "hwtest_future._connector": conn("future"),
            },
            {"future": "hwtest_future.hooks"},
            requires=("headwater>=2,<3",),
        ),
    ]


def dummy_dist(index: int) -> PluginDist:
    """A cheap, well-behaved plugin ``hwdummy-<index>`` with connector ``dummy-<index>``."""
    pkg = f"hwdummy_{index}"
    return PluginDist(
        f"hwdummy-{index}",
        {
            f"{pkg}.hooks": hooks_source([(f"dummy-{index}", f"{pkg}._connector:C", "dummy")]),
            f"{pkg}._connector": connector_source("C", f"dummy-{index}", "dummy"),
        },
        {f"dummy-{index}": f"{pkg}.hooks"},
    )


# --- virtual environments -------------------------------------------------------------------


def find_uv() -> str | None:
    """The ``uv`` executable: on PATH, or from the ``uv`` package in this environment."""
    found = shutil.which("uv")
    if found:
        return found
    if importlib.util.find_spec("uv") is not None:
        from uv import find_uv_bin  # type: ignore[import-not-found,unused-ignore]

        return str(find_uv_bin())
    return None


def _run(cmd: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    proc = subprocess.run(
        cmd, capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def venv_python(venv: Path) -> Path:
    """The interpreter of ``venv``."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_script(venv: Path, name: str) -> Path:
    """A console script installed in ``venv``."""
    return (
        venv
        / ("Scripts" if os.name == "nt" else "bin")
        / (name + (".exe" if os.name == "nt" else ""))
    )


def make_venv(
    venv: Path,
    *,
    projects: Iterable[Path] = (CORE,),
    editable: bool = True,
    wheels: Iterable[Path] = (),
    compile_bytecode: bool = False,
) -> Path:
    """
    Create ``venv`` with ``projects`` (with dependencies) and ``wheels`` (without); returns it.

    Uses uv when available (seconds, from its cache) and ``venv`` + pip otherwise.
    """
    wheel_args = [str(w) for w in wheels]
    python = venv_python(venv)
    project_args = [arg for p in projects for arg in ((["-e"] if editable else []) + [str(p)])]
    uv = find_uv()
    if uv is not None:
        _run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)])
        base = [uv, "pip", "install", "--quiet", "--python", str(python)]
        if compile_bytecode:
            base.append("--compile-bytecode")
        if not editable:
            # The workspace's `tool.uv.sources` makes uv install core editable whenever a
            # plugin asks for it, even beside a plain `core` argument; a user's install
            # is the wheels, so take what is listed here.
            base.append("--no-sources")
        try:
            # The cache nearly always has everything; offline first is much faster.
            _run([*base, "--offline", *project_args])
        except RuntimeError:
            _run([*base, *project_args])
        if wheel_args:
            _run([*base, "--offline", "--no-deps", *wheel_args])
        return venv
    _run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if not compile_bytecode:
        pip.append("--no-compile")
    _run([*pip, *project_args])
    if wheel_args:
        _run([*pip, "--no-deps", *wheel_args])
    return venv
