"""The public API is exactly `headwater.__all__`, importable, and cheap to import."""

from __future__ import annotations

import subprocess
import sys

import headwater


def test_all_names_resolve():
    """Every name in __all__ resolves, and public classes say `headwater.` in their module."""
    for name in headwater.__all__:
        value = getattr(headwater, name)
        if isinstance(value, type) and name not in {"State"}:
            assert value.__module__ in {"headwater", "headwater.errors"}, name


def test_all_is_sorted_and_matches_lazy_table():
    """__all__ is sorted and every lazily exported name is in it (and vice versa)."""
    assert sorted(headwater.__all__, key=str) == list(headwater.__all__)
    assert set(headwater._HOMES) == set(headwater.__all__)


def test_author_plumbing_lives_in_the_toolkit():
    """Moved names: in headwater.toolkit; from headwater only with a DeprecationWarning."""
    import warnings

    import headwater.toolkit

    for name in headwater._MOVED_TO_TOOLKIT:
        assert name not in headwater.__all__
        assert name in headwater.toolkit.__all__
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert getattr(headwater, name) is getattr(headwater.toolkit, name)
        assert any("headwater.toolkit" in str(w.message) for w in caught), name
    for name in headwater.toolkit.__all__:
        assert getattr(headwater.toolkit, name) is not None


def test_import_is_cheap():
    """`import headwater` imports neither pydantic nor any SDK (names load on first use)."""
    code = (
        "import sys, headwater; "
        "heavy = [m for m in ('pydantic', 'psycopg', 'azure', 'httpx', 'keyring', 'tqdm', 'pyarrow') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_version():
    """__version__ is the distribution's version."""
    from importlib.metadata import version

    assert version("headwater") == headwater.__version__
