"""headwater.toolkit helpers with no other home in the tests: `gc_paused`."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
from collections.abc import Iterator

import pytest

from headwater.toolkit import gc_paused


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    """Every test starts with the collector on and leaves it on, whatever it did."""
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


@contextlib.contextmanager
def another_thread_inside() -> Iterator[None]:
    """Another thread inside a `gc_paused` block until the ``with`` ends (then joined)."""
    inside = threading.Event()
    leave = threading.Event()

    def other() -> None:
        with gc_paused():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert inside.wait(10)
        yield
    finally:
        leave.set()
        thread.join(10)


def test_exported_by_the_toolkit():
    import headwater.toolkit

    assert "gc_paused" in headwater.toolkit.__all__
    assert headwater.toolkit.gc_paused is gc_paused


def test_paused_inside_and_restored_after():
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_restored_after_an_exception():
    seen = []

    def fail() -> None:
        with gc_paused():
            seen.append(gc.isenabled())
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail()
    assert seen == [False]
    assert gc.isenabled()


def test_stays_off_when_it_was_off():
    gc.disable()
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()
    with pytest.raises(KeyError), gc_paused():
        raise KeyError("x")
    assert not gc.isenabled()


def test_nested_blocks_leave_it_off_until_the_outer_one_ends():
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled(), "the inner block turned on what the outer one paused"
        with pytest.raises(ValueError, match="inner"), gc_paused():
            raise ValueError("inner")
        assert not gc.isenabled()
    assert gc.isenabled()


def test_blocks_in_two_threads_overlapping():
    """The first thread leaving while another is still inside does not turn it back on."""
    outer = gc_paused()
    outer.__enter__()
    with another_thread_inside():
        outer.__exit__(None, None, None)  # this thread's block ends first
        assert not gc.isenabled(), "on again while the other thread's block is open"
    assert gc.isenabled()


def test_blocks_in_two_threads_the_first_entered_ends_last():
    inside = threading.Event()

    def other() -> None:
        with gc_paused():
            inside.set()

    with gc_paused():
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(10)
        assert inside.is_set()
        assert not gc.isenabled()
    assert gc.isenabled()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork with threads
@pytest.mark.parametrize("forker_inside", [False, True])
def test_fork_child_forgets_the_blocks_of_threads_it_does_not_have(forker_inside: bool):
    """
    A thread's block open at the fork does not leave the child's collector off for good;
    the forking thread's own open block still holds it until it ends, in the child too.
    """
    with another_thread_inside():
        outer = gc_paused()
        if forker_inside:
            outer.__enter__()
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            code = 0
            try:
                if forker_inside:
                    code = 1 if gc.isenabled() else 0
                    outer.__exit__(None, None, None)
                code = code or (0 if gc.isenabled() else 2)
                with gc_paused():  # usable: the lock is not held by a thread that is gone
                    code = code or (0 if not gc.isenabled() else 3)
                code = code or (0 if gc.isenabled() else 4)
            except BaseException:
                code = 5
            finally:
                sys.stdout.flush()
                os._exit(code)
        if forker_inside:
            outer.__exit__(None, None, None)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert not gc.isenabled(), "the parent's other thread is still inside"
    assert gc.isenabled()
