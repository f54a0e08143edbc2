"""safe_destination never maps a remote name outside dest; atomic_file never leaves partial files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import headwater
from headwater import UnsafePath
from headwater.toolkit import atomic_file, safe_destination

UNSAFE_NAMES = [
    "../../escape.txt",
    "..",
    "../",
    "/etc/x",
    "//server/share",
    "a/../../b",
    "a/../b",
    "a/..",
    "..\\x",
    "a\\b",
    "C:\\x",
    "C:x",
    "c:/x",
    "a/./b",
    "./a",
    ".",
    "",
    "/",
    "///",
    "a\x00b",
    "\x00",
]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_unsafe_names_refused(tmp_path, name):
    """Traversal, absolute, drive-letter, backslash, dot-segment, empty and NUL names are refused."""
    with pytest.raises(UnsafePath) as info:
        safe_destination(tmp_path, name)
    assert "\n" not in str(info.value)
    assert info.value.hint
    assert [] == list(tmp_path.iterdir())


def test_unsafe_path_is_a_config_category_connector_error():
    """UnsafePath is a ConnectorError in the config category, exported from headwater."""
    assert issubclass(UnsafePath, headwater.ConnectorError)
    assert headwater.Category.CONFIG == UnsafePath.category


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("file.csv", ("file.csv",)),
        ("a/b/c.jsonl", ("a", "b", "c.jsonl")),
        ("dir/", ("dir",)),
        ("..hidden", ("..hidden",)),
        ("a/...", ("a", "...")),
        ("sp ace/ü 😀.txt", ("sp ace", "ü 😀.txt")),
        ("~user", ("~user",)),
        ("ab:c", ("ab:c",)),
    ],
)
def test_normal_names_map_inside(tmp_path, name, parts):
    """Ordinary (nested) names map to the matching path under dest."""
    assert tmp_path.resolve().joinpath(*parts) == safe_destination(tmp_path, name)


def test_empty_segment_refused(tmp_path):
    """'a//b' is refused: it would collide with 'a/b' on disk."""
    with pytest.raises(UnsafePath, match="empty segment"):
        safe_destination(tmp_path, "a//b")


def test_relative_dest_resolves(tmp_path, monkeypatch):
    """A relative dest is resolved against the working directory."""
    monkeypatch.chdir(tmp_path)
    assert tmp_path.resolve() / "out" / "x" == safe_destination("out", "x")


def test_symlink_inside_dest_pointing_outside_refused(tmp_path):
    """A name that goes through a symlink leading outside dest is refused."""
    dest = tmp_path / "dest"
    outside = tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "link").symlink_to(outside, target_is_directory=True)
    (dest / "filelink").symlink_to(outside / "victim.txt")
    for name in ["link/x.txt", "link/deeper/x.txt", "filelink"]:
        with pytest.raises(UnsafePath, match="outside"):
            safe_destination(dest, name)
    assert [] == list(outside.iterdir())


def test_symlink_inside_dest_staying_inside_allowed(tmp_path):
    """A symlink that stays inside dest is followed."""
    dest = tmp_path / "dest"
    (dest / "real").mkdir(parents=True)
    (dest / "alias").symlink_to(dest / "real", target_is_directory=True)
    assert dest.resolve() / "real" / "x" == safe_destination(dest, "alias/x")


def test_symlinked_dest_itself_is_fine(tmp_path):
    """dest may itself be reached through a symlink; results lie inside its real path."""
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert real.resolve() / "a" / "b" == safe_destination(link, "a/b")


def inside(dest: Path, result: Path) -> bool:
    root = dest.resolve()
    return result == root or root in result.parents


SEGMENTS = st.sampled_from(
    [
        "..",
        ".",
        "",
        "a",
        "b.txt",
        "\\",
        "C:",
        "c:\\",
        "\x00",
        "~",
        "link",
        "inside",
        " ",
        "...",
        "ü",
    ]
)
PATHLIKE = st.lists(SEGMENTS, max_size=6).map("/".join) | st.lists(SEGMENTS, max_size=6).map(
    lambda parts: "/" + "/".join(parts)
)


@pytest.fixture(scope="module")
def property_dest(tmp_path_factory) -> Path:
    """A dest holding a symlink to outside ("link") and one that stays inside ("inside")."""
    base = tmp_path_factory.mktemp("prop")
    dest = base / "dest"
    (dest / "real").mkdir(parents=True)
    (base / "outside").mkdir()
    (dest / "link").symlink_to(base / "outside", target_is_directory=True)
    (dest / "inside").symlink_to(dest / "real", target_is_directory=True)
    return dest


@settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(name=st.text(max_size=40) | PATHLIKE)
def test_property_result_is_inside_dest_or_refused(property_dest, name):
    """For any text, safe_destination either raises UnsafePath or returns a path inside dest."""
    try:
        result = safe_destination(property_dest, name)
    except UnsafePath:
        return
    assert inside(property_dest, result)
    assert ".." not in result.parts


# --- atomic_file ----------------------------------------------------------------------------


def test_atomic_file_replaces_on_success(tmp_path):
    """On success the target holds exactly the new bytes; until then it holds the old ones."""
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with atomic_file(target) as handle:
        handle.write(b"new ")
        assert b"old" == target.read_bytes()
        handle.write(b"content")
    assert b"new content" == target.read_bytes()
    assert ["out.bin"] == [p.name for p in tmp_path.iterdir()]


def write_then_fail(target: Path, data: bytes, error: BaseException) -> None:
    with atomic_file(target) as handle:
        handle.write(data)
        raise error


def test_atomic_file_leaves_nothing_on_exception(tmp_path):
    """An exception in the body leaves no file (new target) and no temporary file."""
    target = tmp_path / "new.bin"
    with pytest.raises(RuntimeError, match="midway"):
        write_then_fail(target, b"partial" * 1000, RuntimeError("midway"))
    assert [] == list(tmp_path.iterdir())


def test_atomic_file_keeps_original_on_exception(tmp_path):
    """An exception in the body leaves an existing target untouched."""
    target = tmp_path / "keep.bin"
    target.write_bytes(b"original")
    with pytest.raises(KeyboardInterrupt):
        write_then_fail(target, b"partial", KeyboardInterrupt())
    assert b"original" == target.read_bytes()
    assert ["keep.bin"] == [p.name for p in tmp_path.iterdir()]


def test_atomic_file_temp_is_beside_target(tmp_path):
    """The temporary file lives in the target's directory (so the rename is atomic)."""
    target = tmp_path / "sub" / "x.bin"
    with atomic_file(target) as handle:
        handle.write(b"x")
        during = [p.name for p in target.parent.iterdir()]
    assert 1 == len(during)
    assert during[0].startswith(".x.bin.")
    assert during[0].endswith(".part")
    assert ["x.bin"] == [p.name for p in target.parent.iterdir()]


def test_atomic_file_creates_parents(tmp_path):
    """Missing parent directories are created."""
    target = tmp_path / "a" / "b" / "c.txt"
    with atomic_file(target) as handle:
        handle.write(b"x")
    assert b"x" == target.read_bytes()


def test_atomic_file_with_safe_destination_never_escapes(tmp_path):
    """Together they write only under dest."""
    dest = tmp_path / "dest"
    with atomic_file(safe_destination(dest, "deep/file.txt")) as handle:
        handle.write(b"ok")
    assert [dest / "deep" / "file.txt"] == [p for p in dest.rglob("*") if p.is_file()]
    assert {"dest"} == {p.name for p in tmp_path.iterdir()}
    assert b"ok" == (dest / "deep" / "file.txt").read_bytes()
    assert os.listdir(dest / "deep") == ["file.txt"]


def test_atomic_file_writes_a_name_of_255_bytes_in_four_byte_characters(tmp_path):
    """
    The temporary file's name keeps at most 64 bytes of the target's (whole characters):
    64 characters of four bytes each made it longer than the 255 bytes a name may have.
    """
    from headwater._files import temporary_prefix

    target = tmp_path / ("😀" * 63 + "abc")
    assert 255 == len(target.name.encode())
    assert ".😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀." == temporary_prefix(target)
    with atomic_file(target) as handle:
        handle.write(b"data")
    assert b"data" == target.read_bytes()
    assert [target.name] == [p.name for p in tmp_path.iterdir()]
