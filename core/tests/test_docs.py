"""README config tables generated from a config model's JSON Schema (headwater._docs)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from headwater import Connector, ConnectorConfig, Secret
from headwater._docs import DocsError, config_table, main, render_config_tables


class Retry(BaseModel):
    """Retry settings."""

    attempts: int = Field(default=3, ge=1, description="Tries, the first included.")


class Sample(ConnectorConfig):
    url: str = Field(description="Where | the service lives.")
    password: Secret | None = Field(default=None, description="Password (a reference).")
    mode: Literal["fast", "safe"] = Field(default="safe", description="How to go.")
    tags: list[str] = Field(default_factory=list, description="Labels.")
    code: str = Field(default="x", min_length=1, max_length=1, description="One letter.")
    retry: Retry = Field(default_factory=Retry, description="Retry policy.")


class SampleConnector(Connector[Sample]):
    id = "sample"
    Config = Sample


class OtherConnector(Connector[Retry]):  # type: ignore[type-var]
    id = "other"
    Config = Retry  # type: ignore[assignment]


def rows() -> dict[str, str]:
    lines = config_table(Sample).splitlines()
    assert "| field | type | default | description |" == lines[0]
    return {line.split(" | ")[0].removeprefix("| "): line for line in lines[2:]}


def test_required_secret_enum_list_and_bounds():
    """Each field shows its type, default (or required) and description, pipes escaped."""
    table = rows()
    assert "| `url` | string | **required** | Where \\| the service lives. |" == table["`url`"]
    assert "| `password` | secret | `null` | Password (a reference). |" == table["`password`"]
    assert '| `mode` | `"fast"` \\| `"safe"` | `"safe"` | How to go. |' == table["`mode`"]
    assert "| `tags` | list of string |  | Labels. |" == table["`tags`"]
    assert '| `code` | string, exactly 1 char | `"x"` | One letter. |' == table["`code`"]


def test_nested_models_get_dotted_rows():
    """A sub-model is a row of its own type plus one row per nested field."""
    table = rows()
    assert "| `retry` | Retry |  | Retry policy. |" == table["`retry`"]
    assert (
        "| `retry.attempts` | integer, >= 1 | `3` | Tries, the first included. |"
        == table["`retry.attempts`"]
    )


def test_markers_are_filled_and_text_around_kept():
    """Only the text between the markers changes; rendering again changes nothing."""
    text = "# T\n\nbefore\n<!-- config-table:start -->\nstale\n<!-- config-table:end -->\nafter\n"
    out = render_config_tables(text, [SampleConnector])
    assert out.startswith("# T\n\nbefore\n<!-- config-table:start -->\n")
    assert out.endswith("<!-- config-table:end -->\nafter\n")
    assert "stale" not in out
    assert config_table(Sample) in out
    assert out == render_config_tables(out, [SampleConnector])


def test_marker_names_the_connector_when_there_are_several():
    """With two connectors the marker must name one; a named marker picks it."""
    text = "<!-- config-table:start -->\n<!-- config-table:end -->\n"
    with pytest.raises(DocsError, match="name the connector"):
        render_config_tables(text, [SampleConnector, OtherConnector])
    named = text.replace("start -->", "start other -->")
    assert "`attempts`" in render_config_tables(named, [SampleConnector, OtherConnector])
    with pytest.raises(DocsError, match="names connector 'missing'"):
        render_config_tables(text.replace("start -->", "start missing -->"), [SampleConnector])


def test_unterminated_marker_is_an_error():
    """A start marker without its end is reported, not silently ignored."""
    with pytest.raises(DocsError, match="no matching"):
        render_config_tables("<!-- config-table:start -->\n", [SampleConnector])


def test_check_fails_on_a_stale_readme_and_write_fixes_it(tmp_path: Path, capsys):
    """--check exits 1 with a diff; the default mode rewrites; then --check passes."""
    project = tmp_path / "core"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "headwater"\n', encoding="utf-8")
    readme = project / "README.md"
    readme.write_text(
        "x\n<!-- config-table:start -->\n<!-- config-table:end -->\n", encoding="utf-8"
    )
    assert 1 == main(["--check", str(project)])
    assert "+| `root` | path | **required**" in capsys.readouterr().out
    assert 0 == main([str(project)])
    assert "| `root` | path |" in readme.read_text(encoding="utf-8")
    assert 0 == main(["--check", str(project)])
