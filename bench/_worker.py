"""Runs one benchmark case in this (fresh) process and prints its measurement as JSON."""

from __future__ import annotations

import importlib
import json
import resource
import sys
import time
from collections.abc import Iterable

from bench._harness import Done, resolve


def _own_peak_kib() -> int:
    # VmHWM belongs to this process image; ru_maxrss would include the parent's peak
    # from before exec (the harness process that ran the setups).
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _cpu_seconds() -> float:
    # User and system time of every thread of this process and of the children it waited
    # for (cases that time a command): the client's share of a machine it shares with
    # the service it talks to.
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def case_peak(result: object, own_kib: int, children_kib: int) -> int:
    """
    A case's peak RSS in bytes: the one its `Done` measured, or else the largest of this
    process and its children (ru_maxrss is in KiB on Linux; cases that time a command run
    it as a child process).
    """
    if isinstance(result, Done) and result.peak_rss is not None:
        return result.peak_rss
    return max(own_kib, children_kib) * 1024


def preloaded(func: object, loaded: Iterable[str]) -> list[str]:
    """
    The modules a cold case declares (`imports`) that were loaded before its clock started
    (the worker and the harness import a few themselves): their cost would be missing
    from a cold figure.
    """
    declared = getattr(func, "imports", ())
    present = set(loaded)
    return [name for name in declared if name in present]


def main() -> None:
    spec = json.loads(sys.stdin.read())
    start = spec.get("start")
    try:
        if start == "cold":
            # The first use in a fresh process: the case's module, its libraries and every
            # one-time set-up are on the clock.
            loaded = set(sys.modules)
            cpu_before = _cpu_seconds()
            started = time.perf_counter()
            func = resolve(spec["target"])
            early = preloaded(func, loaded)
            if early:
                raise RuntimeError(
                    f"cold case {spec['target']} has {early} imported before its clock"
                )
        else:
            func = resolve(spec["target"])
            # Libraries a case needs are imported before the clock starts (see `imports`):
            # a one-time cost per process, not part of a reader's throughput.
            for module in getattr(func, "imports", ()):
                importlib.import_module(module)
            if start == "warm":
                warm_up = func(**spec["kwargs"])
                if isinstance(warm_up, Done):
                    warm_up.cleanup()
            cpu_before = _cpu_seconds()
            started = time.perf_counter()
        result = func(**spec["kwargs"])
        seconds = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu_before
        units = result
        if isinstance(result, Done):
            units = result.units
            result.cleanup()
    except ImportError as exc:
        print(json.dumps({"unavailable": str(exc)}))
        return
    own = _own_peak_kib()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    peak = case_peak(result, own, children)
    print(json.dumps({"seconds": seconds, "units": int(units), "peak_rss": peak, "cpu": cpu}))


if __name__ == "__main__":
    main()
