"""
Run the benchmarks: ``python -m bench [--quick] [--only AREA ...] [--separate-cores]``
``[--scenario TEXT ...] [--rounds N] [--cold]``.

Every ``bench/bench_<area>.py`` module provides ``scenarios(quick) -> list[Scenario]``.
``--quick`` uses tiny sizes so CI can prove the benchmarks still run; its figures mean
nothing. Results are printed as tables and written to ``bench/results/``: ``latest.txt``
for a full run, ``quick.txt`` for ``--quick``, with ``-separate-cores``, ``-AREA`` and
``-selected`` (``--scenario``, ``--rounds``) and ``-cold`` added to the name for those
options, so a partial run never overwrites a full one. ``--cold`` runs every case as the
first use in a fresh process (imports inside the clock; see `bench._harness`), except in
the scenarios that say how their cases start.

Two runs on one machine never overlap: a run waits for the one before it (an exclusive
lock on a file in the temporary directory). They would share the services' tables and
containers (one run's tear-down dropping what the other reads) and each other's CPUs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pathlib
import sys
import tempfile
from collections.abc import Iterator

from bench._harness import (
    SEPARATE_CORES_ENV,
    as_cold,
    format_table,
    precompile,
    run_scenario,
    separate_cores,
)

HERE = pathlib.Path(__file__).parent
#: Held for a whole run (see the module's docstring).
LOCK = pathlib.Path(tempfile.gettempdir(), "headwater-bench-run.lock")


@contextlib.contextmanager
def one_run_at_a_time() -> Iterator[None]:
    """Hold `LOCK` (waiting, and saying so, while another run holds it); POSIX only."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; runs there are not serialized
        yield
        return
    with LOCK.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another benchmark run to end ({LOCK})", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run the benchmarks; tables go to stdout and bench/results/.",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    parser.add_argument("--only", nargs="*", default=None, help="areas to run (e.g. files core)")
    parser.add_argument(
        "--separate-cores",
        action="store_true",
        help="pin the services the benchmarks start (Azurite) to the first CPU and the cases "
        "to the others, as a client and a remote service would run (Linux)",
    )
    parser.add_argument(
        "--scenario",
        nargs="*",
        default=None,
        metavar="TEXT",
        help="run only the scenarios whose name contains one of these (e.g. 'upload')",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        metavar="N",
        help="rounds per scenario instead of each scenario's own (more narrow the median)",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="run every case as the first use in a fresh process: its imports inside the "
        "clock, no warm-up (scenarios that choose cold or warm keep their choice)",
    )
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds must be 1 or more, not {args.rounds}")
    if args.separate_cores:
        os.environ[SEPARATE_CORES_ENV] = "1"
        separate_cores()  # fails early on a machine with one CPU
    areas = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    if args.only:
        unknown = set(args.only) - set(areas)
        if unknown:
            parser.error(f"unknown area(s) {sorted(unknown)}; known: {areas}")
        areas = [a for a in areas if a in args.only]
    with one_run_at_a_time():
        return _run(args, areas)


def _run(args: argparse.Namespace, areas: list[str]) -> int:
    if not args.quick:
        precompile()
    out: list[str] = []
    failed = False
    for area in areas:
        module = importlib.import_module(f"bench.bench_{area}")
        for declared in module.scenarios(args.quick):
            scenario = as_cold(declared) if args.cold else declared
            if args.scenario and not any(text in scenario.name for text in args.scenario):
                continue
            results = run_scenario(scenario, args.quick, args.rounds)
            table = format_table(scenario, results)
            print(table + "\n", flush=True)
            out.append(table)
            failed |= any(m.error and not m.error.startswith("unavailable") for m in results)
    results_dir = HERE / "results"
    results_dir.mkdir(exist_ok=True)
    # A partial run (--only) must not overwrite the full run's results.
    stem = "quick" if args.quick else "latest"
    if args.separate_cores:
        stem += "-separate-cores"
    if args.only:
        stem += "-" + "-".join(areas)
    if args.scenario or args.rounds:
        stem += "-selected"
    if args.cold:
        stem += "-cold"
    (results_dir / f"{stem}.txt").write_text("\n\n".join(out) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
