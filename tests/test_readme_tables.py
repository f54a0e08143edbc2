"""Every README with config-table markers holds the table generated from its connector's schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from headwater._docs import default_projects, has_markers, project_connectors, render_config_tables

ROOT = Path(__file__).resolve().parent.parent
MARKED = [
    p for p in default_projects(ROOT) if has_markers((p / "README.md").read_text(encoding="utf-8"))
]


def test_core_readme_documents_the_files_connector():
    """core's README carries the generated table of the files connector."""
    assert ROOT / "core" in MARKED


@pytest.mark.parametrize("project", MARKED, ids=[p.name for p in MARKED])
def test_readme_config_table_is_current(project: Path):
    """The README's table equals the one generated now (regenerate: nox -s docs -- --write)."""
    current = (project / "README.md").read_text(encoding="utf-8")
    assert render_config_tables(current, project_connectors(project)) == current
