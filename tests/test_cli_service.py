"""The CLI side of issue 18: source metadata in `sources`, the encrypted `secrets` store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headwater", *args],
        # Only core's built-ins: these tests must not depend on what else is installed.
        env={**os.environ, "HEADWATER_DISABLE_PLUGIN_AUTOLOAD": "1", **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"HEADWATER_SOURCES_FILE": str(tmp_path / "sources.toml")}


def test_sources_owner_environment_labels(env: dict[str, str], tmp_path: Path) -> None:
    """`sources add --owner/--environment/--label`, shown by `show`, filtered by `list`."""
    for name, environment, team in [("a", "prod", "finance"), ("b", "dev", "finance")]:
        proc = run(
            "sources", "add", name, "files", "-c", f"root={tmp_path}",
            "--owner", "data-platform", "--environment", environment, "--label", f"team={team}",
            env=env,
        )  # fmt: skip
        assert 0 == proc.returncode, proc.stderr
    assert 0 == run("sources", "add", "c", "files", "-c", f"root={tmp_path}", env=env).returncode
    shown = json.loads(run("sources", "show", "a", env=env).stdout)
    assert ("data-platform", "prod", {"team": "finance"}) == (
        shown["owner"],
        shown["environment"],
        shown["labels"],
    )

    def names(*filters: str) -> list[str]:
        proc = run("sources", "list", "--json", *filters, env=env)
        assert 0 == proc.returncode, proc.stderr
        return [s["name"] for s in json.loads(proc.stdout)]

    assert ["a", "b", "c"] == names()
    assert ["a"] == names("--environment", "prod")
    assert ["a", "b"] == names("--label", "team=finance", "--owner", "data-platform")
    assert [] == names("--label", "team=finance", "--label", "tier=1")
    table = run("sources", "list", env=env).stdout.splitlines()
    assert ["name", "connector", "environment", "owner", "description"] == table[0].split()
    bad = run("sources", "list", "--label", "nokey", env=env)
    assert 2 == bad.returncode
    assert "KEY=VALUE" in bad.stderr


def test_doctor_masks_the_encrypted_store_key(env: dict[str, str]) -> None:
    """HEADWATER_SECRETS_KEY is a secret: `doctor` names it but never shows it."""
    key = "ZmFrZS1rZXktZm9yLWRvY3Rvci10ZXN0LW9ubHktMzI="
    proc = run("doctor", "--json", env={**env, "HEADWATER_SECRETS_KEY": key})
    assert key not in proc.stdout + proc.stderr
    assert "HEADWATER_SECRETS_KEY" in json.loads(proc.stdout)["environment"]


def test_doctor_shows_where_the_encrypted_store_and_its_key_file_are(env: dict[str, str]) -> None:
    """The two paths are settings a user checks with doctor; only the key itself is masked."""
    paths = {"HEADWATER_SECRETS_FILE": "store.json", "HEADWATER_SECRETS_KEY_FILE": "key.txt"}
    proc = run("doctor", "--json", env={**env, **paths})
    shown = json.loads(proc.stdout)["environment"]
    assert all(shown[name] == value for name, value in paths.items()), shown
