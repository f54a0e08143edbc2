"""
Reading a plugin's requirement on headwater without packaging, for the forms plugins
write; packaging still reads the rest. Both readings must agree.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet

from headwater._plugins import _accepts, _core_requirement, _core_requirement_by_packaging

SPECS = [
    ">=1.0,<2",
    ">=1.0, <2",
    " >= 1.0 , < 2 ",
    ">=1",
    "<1",
    "<=1.0",
    ">1.0",
    ">1",
    "==1.0",
    "==1.0.0",
    "==1",
    "!=1.0",
    "!=1.0.1",
    ">=1.0.1",
    "<1.0.1",
    ">=2.0",
    "==1.*",  # a wildcard: packaging's
    "~=1.0",  # compatible release: packaging's
    ">=1.0rc1",  # a pre-release bound: packaging's
]


@pytest.mark.parametrize("version", ["1.0.0", "1.0", "1", "0.9", "1.0.1", "2.0", "1.0.0rc1"])
@pytest.mark.parametrize("spec", SPECS)
def test_accepts_agrees_with_packaging(spec: str, version: str) -> None:
    assert SpecifierSet(spec).contains(version, prereleases=True) == _accepts(spec, version)


class _Dist:
    def __init__(self, requires: list[str] | None) -> None:
        self.requires = requires


REQUIRES: list[list[str] | None] = [
    None,
    [],
    ["headwater>=1.0,<2"],
    ["httpx>=0.27", "headwater<2,>=1.0", "orjson"],
    ["Headwater >= 1.0, < 2"],
    ["headwater (>=1.0,<2)"],
    ["headwater[dask]>=1.0,<2"],
    ["headwater"],
    ["headwater-extra>=3", "headwater_plus"],
    ['headwater>=1.0; extra == "test"', "headwater>=1.0,<2"],
    ['headwater>=1.0; python_version >= "3"'],
    ["headwater @ https://example.com/headwater-1.0-py3-none-any.whl"],
    ["headwater==1.*"],
    ["headwater>=1.0,<2)"],
    ['pytest>=8; extra == "test"'],
]


@pytest.mark.parametrize("requires", REQUIRES)
def test_core_requirement_agrees_with_packaging(requires: list[str] | None) -> None:
    dist: Any = _Dist(requires)
    assert _core_requirement_by_packaging(requires or ()) == _core_requirement(dist)


def test_listing_connectors_does_not_import_packaging() -> None:
    """The first-party plugins pin headwater plainly: listing them leaves packaging alone."""
    code = (
        "import sys, headwater; headwater.get_registry().connectors(); "
        "print('packaging' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "False" == out.strip()


def test_metadata_headers_read_as_the_email_parser_reads_them() -> None:
    """Name, Version and Requires-Dist of every installed distribution, both ways alike."""
    import importlib.metadata

    from headwater._plugins import _headers

    checked = 0
    for dist in importlib.metadata.distributions():
        fast, slow = _headers(dist), dist.metadata
        for name in ("Name", "Version", "Summary"):
            assert slow[name] == fast[name], (slow["Name"], name)
        assert slow.get_all("Requires-Dist") == fast.get_all("Requires-Dist"), slow["Name"]
        checked += 1
    assert checked > 50


class _TextDist:
    def __init__(self, text: str | None) -> None:
        self._text = text

    def read_text(self, filename: str) -> str | None:
        return self._text if filename == "METADATA" else None

    @property
    def metadata(self) -> Any:
        import email

        return email.message_from_string(self._text or "Name: from-the-parser\n")


@pytest.mark.parametrize(
    "text",
    [
        "Name: a\nVersion: 1.0\nSummary: one\n  folded  \n\tand again\nRequires-Dist: x\n\nBody: no",
        "Name:  spaced  \nVersion: 2\nrequires-dist: headwater>=1.0,<2\nRequires-Dist: y\n",
        "Name: a\nnot a header\nVersion: 1\n",  # not headers: the parser's reading
        " Name: a\n",
        None,  # no metadata file
    ],
)
def test_metadata_headers_of_odd_files_agree_with_the_email_parser(text: str | None) -> None:
    from headwater._plugins import _headers

    dist: Any = _TextDist(text)
    fast, slow = _headers(dist), dist.metadata
    for name in ("Name", "Version", "Summary", "Body"):
        assert slow[name] == fast[name], name
    assert slow.get_all("Requires-Dist") == fast.get_all("Requires-Dist")
