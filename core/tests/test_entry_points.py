"""headwater._entry_points: the entry points importlib.metadata finds, read without it."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from headwater import _entry_points
from headwater._entry_points import entry_points

GROUP = "hwtest.group"


def _described(eps: Any) -> list[tuple[str, str, str, str]]:
    """(name, value, group, metadata directory) of each entry point, in order."""
    return [
        (ep.name, ep.value, ep.group, Path(str(getattr(ep.dist, "_path", ""))).name) for ep in eps
    ]


def _standard(group: str = GROUP) -> list[tuple[str, str, str, str]]:
    return _described(importlib.metadata.entry_points(group=group))


def _dist(site: Path, stem: str, entry_points: str | None, *, suffix: str = ".dist-info") -> Path:
    """A metadata directory ``stem + suffix`` in ``site`` holding ``entry_points.txt``."""
    info = site / f"{stem}{suffix}"
    info.mkdir(parents=True)
    name = stem.partition("-")[0]
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    if entry_points is not None:
        (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")
    return info


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Path]]:
    """``site(name)``: a new directory put first on sys.path (later ones go before it)."""

    def _site(name: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        monkeypatch.syspath_prepend(str(path))
        importlib.invalidate_caches()
        return path

    yield _site
    importlib.invalidate_caches()


def test_this_environment_reads_as_importlib_metadata_reads_it() -> None:
    """The installed distributions: headwater's group, read here, equals importlib.metadata's."""
    assert _entry_points._scan("headwater") is not None  # no fallback in a plain venv
    assert _standard("headwater") == _described(entry_points("headwater"))
    assert _standard("console_scripts") == _described(entry_points("console_scripts"))


def test_names_order_duplicates_and_file_syntax_as_importlib_metadata(
    site: Callable[[str], Path],
) -> None:
    """First of a normalized name wins across and within sys.path entries; comments, spaces."""
    later = site("later")
    first = site("first")
    _dist(first, "Hw.Test_Pkg-1.0", f"# comment\n[{GROUP}]\n  alpha =  pkg.a:obj  \n; x = y\n")
    _dist(later, "hw_test_pkg-2.0", f"[{GROUP}]\nshadowed = pkg.b\n")  # same name: not read
    _dist(first, "other-0.1", f"[console_scripts]\nx = y:z\n[{GROUP}]\nbeta=pkg.c [extra]\n")
    _dist(first, "legacy-0.3", f"[[{GROUP}]]\ngamma = pkg.d\n", suffix=".egg-info")
    (first / "nometa-1.0.dist-info").mkdir()  # no entry_points.txt at all
    (first / "flat-1.0.egg-info").write_text("Name: flat\n")  # an egg-info file
    ours = _described(entry_points(GROUP))
    assert _standard() == ours
    # "; x" is an entry point to importlib.metadata too: only "#" starts a comment.
    assert {"alpha", "; x", "beta", "gamma"} == {name for name, *_ in ours}
    assert ("pkg.a:obj", "Hw.Test_Pkg-1.0.dist-info") in {(v, d) for _, v, _, d in ours}


def test_unusual_layouts_go_to_importlib_metadata(
    site: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zip on sys.path, an upper-case suffix, a finder of its own: importlib.metadata reads."""
    plain = site("plain")
    _dist(plain, "one-1.0", f"[{GROUP}]\none = m.one\n")
    assert _entry_points._scan(GROUP) is not None

    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("two-1.0.dist-info/METADATA", "Name: two\nVersion: 1.0\n")
        zf.writestr("two-1.0.dist-info/entry_points.txt", f"[{GROUP}]\ntwo = m.two\n")
    monkeypatch.syspath_prepend(str(archive))
    assert _entry_points._scan(GROUP) is None
    assert {"one", "two"} == {ep.name for ep in entry_points(GROUP)}
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(archive)])

    _dist(plain, "three-1.0", f"[{GROUP}]\nthree = m.three\n", suffix=".DIST-INFO")
    assert _entry_points._scan(GROUP) is None
    assert _standard() == _described(entry_points(GROUP))


def test_a_finder_that_finds_distributions_is_asked(
    site: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sys.meta_path finder with find_distributions: its distributions count, as they do."""
    elsewhere = site("elsewhere")
    _dist(elsewhere, "four-1.0", f"[{GROUP}]\nfour = m.four\n")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(elsewhere)])
    importlib.invalidate_caches()

    class Finder:
        @staticmethod
        def find_spec(*_: Any) -> None:
            return None

        @staticmethod
        def find_distributions(context: Any = None) -> list[importlib.metadata.Distribution]:
            return [importlib.metadata.PathDistribution(elsewhere / "four-1.0.dist-info")]

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, Finder])
    assert _entry_points._scan(GROUP) is None
    assert ["four"] == [ep.name for ep in entry_points(GROUP)]


def test_a_line_importlib_metadata_refuses_is_refused_alike(site: Callable[[str], Path]) -> None:
    """A line without "=" in any section: importlib.metadata's error, not a silent skip."""
    bad = site("bad")
    _dist(bad, "five-1.0", f"[{GROUP}]\nfive = m.five\n[other]\nno equals sign\n")
    with pytest.raises(TypeError) as standard:  # Pair.parse finds no value
        importlib.metadata.entry_points(group=GROUP)
    with pytest.raises(TypeError) as ours:
        entry_points(GROUP)
    assert (type(standard.value), str(standard.value)) == (type(ours.value), str(ours.value))


def test_load_imports_the_module_and_attribute(site: Callable[[str], Path]) -> None:
    """load(): "module", "module:attr.attr" and a value with extras, as importlib.metadata."""
    pkg = site("pkg")
    _dist(
        pkg,
        "six-1.0",
        f"[{GROUP}]\nmod = hwtest_ep_six\nattr = hwtest_ep_six : Thing.inner\n"
        f"extra = hwtest_ep_six:Thing [fast]\n",
    )
    (pkg / "hwtest_ep_six.py").write_text("class Thing:\n    inner = 42\n")
    try:
        loaded = {ep.name: ep.load() for ep in entry_points(GROUP)}
        standard = {ep.name: ep.load() for ep in importlib.metadata.entry_points(group=GROUP)}
    finally:
        sys.modules.pop("hwtest_ep_six", None)
    assert standard == loaded
    assert 42 == loaded["attr"]
    assert "hwtest_ep_six" == loaded["mod"].__name__


def test_distribution_reads_metadata_files(site: Callable[[str], Path]) -> None:
    """dist.read_text / metadata / requires give what importlib.metadata's give."""
    pkg = site("meta")
    info = _dist(pkg, "seven-1.0", f"[{GROUP}]\nseven = m.seven\n")
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: seven\nVersion: 1.0\nRequires-Dist: headwater>=1.0,<2\n"
    )
    (ep,) = entry_points(GROUP)
    standard = importlib.metadata.PathDistribution(info)
    assert ep.dist is not None
    assert standard.read_text("METADATA") == ep.dist.read_text("METADATA")
    assert None is ep.dist.read_text("RECORD")
    assert "seven" == ep.dist.metadata["Name"]
    assert (standard.metadata["Name"], standard.requires) == (
        ep.dist.metadata["Name"],
        ep.dist.requires,
    )
