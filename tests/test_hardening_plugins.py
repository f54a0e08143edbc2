"""
Plugins that misbehave in ways a review found: they exit or interrupt while imported, use
pluggy options headwater does not support, misspell a hook, claim URLs for a connector
nobody provides. Each is isolated and named; the other plugins keep working.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from headwater._plugins import Registry
from tests._dists import PluginDist, good_dist, hooks_source
from tests.test_discovery import Install, by_name, install

__all__ = ["install"]  # the fixture, imported for this module's tests


def _plugin(name: str, source: str) -> PluginDist:
    package = "hwtest_" + name.replace("-", "_")
    return PluginDist(f"hwtest-{name}", {f"{package}.hooks": source}, {name: f"{package}.hooks"})


@pytest.mark.parametrize(
    ("name", "statement", "kind"),
    [
        ("exits", "import sys\nsys.exit(2)\n", "SystemExit"),
        ("ctrlc", "raise KeyboardInterrupt\n", "KeyboardInterrupt"),
        ("baseexc", "class Odd(BaseException):\n    pass\nraise Odd('odd')\n", "Odd"),
    ],
)
def test_plugin_exiting_at_import_fails_only_itself(
    install: Install, name: str, statement: str, kind: str
) -> None:
    """sys.exit / a raised KeyboardInterrupt while a plugin imports: that plugin fails, named."""
    install("hwtest-good", _plugin(name, statement))
    registry = Registry(environ={})
    info = by_name(registry)[name]
    assert "failed" == info.status
    assert f"failed to import hwtest_{name}.hooks" in (info.error or "")
    assert kind in (info.error or "")
    assert "good" == registry.connector_class("good").id


def test_plugin_exiting_in_a_hook_fails_only_itself(install: Install) -> None:
    """A hook calling sys.exit() is that plugin's failure, not the end of the process."""
    install(
        "hwtest-good",
        _plugin(
            "hookexit",
            "import sys\nfrom headwater import hookimpl\n\n"
            "@hookimpl\ndef register_connectors():\n    sys.exit(3)\n",
        ),
    )
    registry = Registry(environ={})
    info = by_name(registry)["hookexit"]
    assert "failed" == info.status
    assert "hook register_connectors raised" in (info.error or "")
    assert "SystemExit" in (info.error or "")
    assert "good" in registry.connectors()


def test_real_ctrl_c_during_plugin_import_still_interrupts(install: Install) -> None:
    """A SIGINT that really arrives while a plugin imports interrupts the host, as ever."""
    install(
        _plugin(
            "slow",
            "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(5)\n",
        )
    )
    with pytest.raises(KeyboardInterrupt):
        Registry(environ={}).plugins()


def test_wrong_hook_signature_error_gives_the_whole_reason(install: Install) -> None:
    """The error names the argument the spec lacks, not only the hook."""
    install(
        _plugin(
            "badsig2",
            "from headwater import hookimpl\n\n"
            "@hookimpl\ndef connector_for_url(url, surprise):\n    return None\n",
        )
    )
    info = by_name(Registry(environ={}))["badsig2"]
    assert "failed" == info.status
    assert "surprise" in (info.error or "")
    assert "\n" not in (info.error or "")


def test_misspelt_hook_name_is_a_warning(install: Install) -> None:
    """A hook headwater never calls because its name is misspelt is reported, not 'ok'."""
    install(
        _plugin(
            "typo",
            "from headwater import hookimpl\n\n"
            "@hookimpl\ndef register_conectors():\n    return []\n",
        )
    )
    info = by_name(Registry(environ={}))["typo"]
    assert "warning" == info.status
    assert [
        "unknown hook 'register_conectors' is never called (did you mean 'register_connectors'?)"
    ] == info.warnings


def test_hook_wrapper_imports_and_is_refused_by_name(install: Install) -> None:
    """@hookimpl(wrapper=True) no longer breaks the import; the plugin is refused clearly."""
    install(
        "hwtest-good",
        _plugin(
            "wrapper",
            "from headwater import hookimpl\n\n"
            "@hookimpl(wrapper=True)\ndef register_connectors():\n    return (yield)\n",
        ),
    )
    registry = Registry(environ={})
    info = by_name(registry)["wrapper"]
    assert "failed" == info.status
    assert "hook register_connectors is declared with wrapper=True" in (info.error or "")
    assert "good" == registry.connector_class("good").id


def test_url_hook_returning_unknown_id_fails_only_its_plugin(install: Install) -> None:
    """A tryfirst connector_for_url naming no installed connector is that plugin's failure."""
    install(
        "hwtest-good",
        _plugin(
            "greedy",
            "from headwater import hookimpl\n\n"
            "@hookimpl(tryfirst=True)\ndef connector_for_url(url):\n    return 'nosuch'\n",
        ),
    )
    registry = Registry(environ={})
    assert "good" == registry.connector_for_url("good://x")
    info = by_name(registry)["greedy"]
    assert "failed" == info.status
    assert "connector_for_url returned 'nosuch'" in (info.error or "")


# --- doctor, through the real CLI -------------------------------------------------------------


def _doctor(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    environ.update(env)
    environ["PYTHONPATH"] = os.pathsep.join([str(site), environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "headwater", "doctor", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    good_dist().install_unpacked(site)
    PluginDist(
        "hwtest-twin",
        {"hwtest_twin.hooks": hooks_source([("good", "hwtest_twin._c:C", "twin")])},
        {"twin": "hwtest_twin.hooks"},
    ).install_unpacked(site)
    return site


def test_doctor_masks_environment_values(site: Path) -> None:
    """doctor shows HEADWATER_* names; only headwater's own settings keep their value."""
    secret = "Zq9-doctor-secret-value"
    for args in ((), ("--json",)):
        proc = _doctor(site, *args, HEADWATER_PG_PASSWORD=secret, HEADWATER_PLUGINS="good", HWX="1")
        assert secret not in proc.stdout + proc.stderr
        assert "HEADWATER_PG_PASSWORD" in proc.stdout
        if args:
            env = json.loads(proc.stdout)["environment"]
            assert {"HEADWATER_PG_PASSWORD": "***", "HEADWATER_PLUGINS": "good"} == env


def test_doctor_exits_3_on_a_duplicated_connector_id(site: Path) -> None:
    """Two plugins claiming one id make doctor exit 3, naming both, as documented."""
    proc = _doctor(site, HEADWATER_PLUGINS="good,twin")
    assert 3 == proc.returncode, proc.stderr
    [line] = [line for line in proc.stdout.splitlines() if line.startswith("conflict:")]
    assert line.startswith("conflict: connector id 'good' is provided by ")
    assert "hwtest-good 0.1.0" in line
    assert "hwtest-twin 0.1.0" in line
    proc = _doctor(site, "--json", HEADWATER_PLUGINS="good,twin")
    assert 3 == proc.returncode
    conflicts = json.loads(proc.stdout)["conflicts"]
    assert {"good": ["hwtest-good 0.1.0", "hwtest-twin 0.1.0"]} == {
        cid: sorted(origins) for cid, origins in conflicts.items()
    }
    assert 0 == _doctor(site, HEADWATER_PLUGINS="good").returncode


def test_cli_survives_a_plugin_exiting_at_import(tmp_path: Path) -> None:
    """`headwater connectors` still works and `plugins` names the plugin that called exit."""
    site = tmp_path / "site"
    good_dist().install_unpacked(site)
    _plugin("exits", "import sys\nsys.exit(0)\n").install_unpacked(site)
    _plugin(
        "typo",
        "from headwater import hookimpl\n\n@hookimpl\ndef register_conectors():\n    return []\n",
    ).install_unpacked(site)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    environ.update(
        PYTHONPATH=os.pathsep.join([str(site), environ.get("PYTHONPATH", "")]),
        HEADWATER_PLUGINS="good,exits,typo",
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "headwater", *args],
            env=environ, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    listed = cli("connectors")
    assert 0 == listed.returncode, listed.stderr
    assert "good" in listed.stdout
    plugins = cli("plugins")
    assert 0 == plugins.returncode
    assert (
        "exits: failed to import hwtest_exits.hooks: SystemExit raised by plugin code"
        in plugins.stderr
    )
    assert "typo: warning: unknown hook 'register_conectors'" in plugins.stderr
