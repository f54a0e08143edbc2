"""
The benchmark harness: scenarios compare cases against a baseline in the same run.

A scenario's cases each run in a fresh subprocess (``python -m bench._worker``), so a
case's peak RSS is its own and no case warms caches for the next. The table reports
throughput (units per second, the fastest round), the ratio of the fastest rounds to the
scenario's baseline, the median of the ratios taken within each round (`paired_median`),
and peak RSS. Ratios are what to read: absolute figures depend on the machine and its load.

How a case starts (`Start`): *cold* is the first use in a fresh process, as a user's script
or a short job sees it: the import of the case's module, of the libraries the case uses
(``import headwater`` and what follows, or ``import httpx``) and every one-time set-up are
inside the clock (case modules import their libraries inside each case, so a cold figure
holds each side's own imports); the worker refuses a cold case whose declared `imports`
were loaded before the clock by the worker itself. *warm* has
the case's `imports` loaded and the case run once, untimed, before the clock: the figure of
a long-running process. Without either, the imports are loaded and nothing else is run
first. ``python -m bench --cold`` runs every scenario that does not choose cold or warm.
"""

from __future__ import annotations

import compileall
import contextlib
import dataclasses
import importlib
import json
import os
import pathlib
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: How a case starts: see the module's docstring.
Start = Literal["cold", "warm"]


@dataclasses.dataclass(frozen=True)
class Case:
    """
    One way of doing the scenario's work: ``target`` is ``"bench.module:function"``.

    ``versus`` names another case of the scenario to take this case's ratio against
    instead of the scenario's baseline (an async twin against the raw async client).
    ``start`` overrides the scenario's (a cold case in a warm scenario, say).
    """

    label: str
    target: str
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    versus: str | None = None
    start: Start | None = None


@dataclasses.dataclass(frozen=True)
class Scenario:
    """
    Cases compared against the case labelled ``baseline``; ``goal`` is the ratio aimed for;
    ``start`` is how its cases start (`Start`; ``None``: imports loaded, no warm-up).
    """

    name: str
    cases: list[Case]
    baseline: str
    setup: str | None = None
    teardown: str | None = None
    goal: float | None = None
    unit: str = "records"
    repeat: int = 1
    start: Start | None = None


def cold_and_warm(scenario: Scenario, cold_goal: float | None = None) -> list[Scenario]:
    """
    The scenario twice, its name suffixed ``(cold)`` and ``(warm)``: the same cases, started
    each way (`Start`), each compared with its own start's baseline. ``cold_goal`` is the
    cold table's goal when it differs from the warm one's.
    """
    cold = dataclasses.replace(
        scenario,
        name=f"{scenario.name} (cold)",
        start="cold",
        goal=cold_goal if cold_goal is not None else scenario.goal,
    )
    warm = dataclasses.replace(scenario, name=f"{scenario.name} (warm)", start="warm")
    return [cold, warm]


def as_cold(scenario: Scenario) -> Scenario:
    """The scenario with every case cold (``python -m bench --cold``) unless it chose a start."""
    if scenario.start is not None:
        return scenario
    return dataclasses.replace(scenario, name=f"{scenario.name} (cold)", start="cold")


@dataclasses.dataclass(frozen=True)
class Done:
    """
    What a case returns when it leaves something to undo that is not part of its work:
    the worker stops the clock, then calls ``cleanup`` (deleting a downloaded file, say,
    costs more for a file already written to disk than for one still in the page cache,
    which would penalise the side that fsyncs).

    ``peak_rss`` (bytes), when given, is reported instead of the worker's own: a case that
    times a command measures the command's processes, not the worker that waits for them.
    """

    units: int
    cleanup: Callable[[], None] = lambda: None
    peak_rss: int | None = None


@dataclasses.dataclass
class Measurement:
    """What one case measured (or why it could not run)."""

    label: str
    seconds: float | None = None
    units: int | None = None
    peak_rss: int | None = None
    error: str | None = None
    #: CPU seconds (user + system) the case's process spent inside the clock.
    cpu_seconds: float | None = None
    #: The rate of every round, by round number (a full run keeps the fastest above).
    round_rates: list[float] = dataclasses.field(default_factory=list)
    #: The CPU seconds of every round, by round number.
    round_cpu: list[float] = dataclasses.field(default_factory=list)

    @property
    def median_cpu(self) -> float | None:
        """The median over rounds of the CPU seconds (the fastest round's when single)."""
        if self.round_cpu:
            return statistics.median(self.round_cpu)
        return self.cpu_seconds

    @property
    def rate(self) -> float | None:
        if self.seconds is None or self.units is None or self.seconds <= 0:
            return None
        return self.units / self.seconds


def imports(*modules: str) -> Callable[[F], F]:
    """
    Mark a case function with the modules the worker imports before starting its clock.

    Cases are timed from "libraries loaded" to "work done" on every side alike, so a
    driver's import time (a one-time cost of a process) does not blur throughput.
    """

    def mark(func: F) -> F:
        func.imports = modules  # type: ignore[attr-defined]
        return func

    return mark


def resolve(target: str) -> Any:
    """Import ``module:attr``."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def precompile() -> None:
    """Compile every importable module to bytecode before any case runs.

    An install from a wheel with pip has bytecode already; ``uv sync`` and editable
    installs do not, so without this a fresh case process would compile every module it
    imports lazily inside its timed region, and the cases that import more (headwater
    on top of its driver) would pay for it. Cases run with PYTHONDONTWRITEBYTECODE so
    none of them warms the cache for the next.
    """
    # sys.path's "" (the checkout) would take .venv and .nox with it: bench/ is enough.
    # The standard library was compiled when Python was installed.
    stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
    roots = [pathlib.Path(__file__).parent, *(pathlib.Path(e) for e in sys.path if e)]
    for root in roots:
        if root.is_dir() and not (root == stdlib or root.parent == stdlib):
            with warnings.catch_warnings():  # SyntaxWarnings of third-party code
                warnings.simplefilter("ignore")
                compileall.compile_dir(root, quiet=2, workers=0)


#: Set by ``python -m bench --separate-cores`` (an environment variable, so the case
#: modules that start services see it too).
SEPARATE_CORES_ENV = "HEADWATER_BENCH_SEPARATE_CORES"


def separate_cores() -> tuple[set[int], set[int]] | None:
    """
    The CPUs for services the benchmarks start and for the cases, when
    ``--separate-cores`` asked to keep them apart (``None`` otherwise).

    On a machine where the storage emulator shares the client's cores, every CPU cycle
    the client spends (hashing, say) is taken from the server, which a client of a
    remote service never does. Pinning the service to the first CPU and the cases to
    the others models the remote service on one machine.
    """
    if os.environ.get(SEPARATE_CORES_ENV) != "1":
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--separate-cores needs at least two CPUs")
    return {cpus[0]}, set(cpus[1:])


@contextlib.contextmanager
def service_affinity() -> Iterator[None]:
    """
    Start a service inside this block: with ``--separate-cores`` it (and every thread and
    process it starts) inherits the service CPU; otherwise nothing changes.
    """
    cores = separate_cores()
    if cores is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores[0])
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _case_affinity() -> None:  # runs in the child between fork and exec
    cores = separate_cores()
    if cores is not None:
        os.sched_setaffinity(0, cores[1])


def run_once(case: Case, setup_result: dict[str, Any], start: Start | None = None) -> Measurement:
    """Run a case once in a fresh interpreter, started as ``case.start`` or else ``start``."""
    payload = json.dumps(
        {
            "target": case.target,
            "kwargs": {**setup_result, **case.kwargs},
            "start": case.start or start,
        }
    )
    # Start every case with nothing left to write back: the kernel flushing the previous
    # case's files (a 256 MiB upload lands on the server's disk too) would slow this one.
    os.sync()
    proc = subprocess.run(
        [sys.executable, "-m", "bench._worker"],
        input=payload,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        check=False,
        preexec_fn=_case_affinity if separate_cores() else None,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return Measurement(case.label, error=tail[:200])
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    if "unavailable" in data:
        return Measurement(case.label, error=f"unavailable: {data['unavailable']}")
    return Measurement(
        case.label, data["seconds"], data["units"], data["peak_rss"], cpu_seconds=data.get("cpu")
    )


def run_scenario(scenario: Scenario, quick: bool, rounds: int | None = None) -> list[Measurement]:
    """
    Set up, run every case, tear down; keep each case's fastest run. ``rounds`` overrides
    the scenario's own number of rounds (more rounds narrow the median ratio).
    """
    setup_result: dict[str, Any] = resolve(scenario.setup)(quick) if scenario.setup else {}
    try:
        # Full runs keep the best of at least three fresh processes per case: one sample
        # on a shared 2-core machine swings by a third. Rounds run every case in turn,
        # so a spell of load elsewhere on the machine hits all cases, not one, and each
        # round starts one case later: a service that slows down as a run goes on
        # (Azurite does) would otherwise favour whichever case always runs first.
        repeat = rounds or (scenario.repeat if quick else max(scenario.repeat, 3))
        best: dict[str, Measurement] = {}
        rates: dict[str, list[float]] = {case.label: [] for case in scenario.cases}
        cpu: dict[str, list[float]] = {case.label: [] for case in scenario.cases}
        cases = scenario.cases
        for round_number in range(max(1, repeat)):
            shift = round_number % len(cases)
            for case in cases[shift:] + cases[:shift]:
                if best.get(case.label, Measurement(case.label)).error:
                    continue  # failed or unavailable: once is enough
                m = run_once(case, setup_result, scenario.start)
                if m.rate is not None:
                    rates[case.label].append(m.rate)
                if m.cpu_seconds is not None:
                    cpu[case.label].append(m.cpu_seconds)
                kept = best.get(case.label)
                if kept is None or m.error or (m.seconds or 0) < (kept.seconds or 0):
                    best[case.label] = m
        for label, measurement in best.items():
            measurement.round_rates = rates[label]
            measurement.round_cpu = cpu[label]
        return [best[case.label] for case in scenario.cases]
    finally:
        if scenario.teardown:
            resolve(scenario.teardown)(**setup_result)


def paired_median(case: Measurement, reference: Measurement) -> float | None:
    """
    The median over rounds of the case's rate divided by the reference's in the same round.

    The fastest-of-N ratio compares two lucky moments that may lie minutes apart; a
    round runs every case within seconds, so a ratio taken inside one round cancels what
    drifts between rounds (the service slowing down, load elsewhere on the machine), and
    the median keeps one odd round from deciding.
    """
    pairs = [c / r for c, r in zip(case.round_rates, reference.round_rates, strict=False) if r]
    return statistics.median(pairs) if pairs else None


def format_table(scenario: Scenario, results: list[Measurement]) -> str:
    """
    A plain-text table of one scenario's results: each case's fastest rate, its ratio to
    the fastest reference, the median of its per-round ratios (`paired_median`), the
    median CPU seconds its process spent per round (where a service shares the machine,
    the client's CPU is taken from the service's), and its peak RSS.
    """
    by_label = {m.label: m for m in results if not m.error}
    versus = {c.label: c.versus or scenario.baseline for c in scenario.cases}
    goal = f"  (goal: >= {scenario.goal:g}x {scenario.baseline})" if scenario.goal else ""
    paired = any(c.versus for c in scenario.cases)
    lines = [
        f"## {scenario.name}{goal}",
        f"{'case':<34} {scenario.unit + '/s':>14} {'ratio':>8} {'median':>8} {'CPU s':>7}"
        f" {'peak RSS MB':>12}" + ("  ratio against" if paired else ""),
    ]
    for m in results:
        if m.error:
            lines.append(f"{m.label:<34} {m.error}")
            continue
        rate = m.rate or 0.0
        against = versus.get(m.label, scenario.baseline)
        reference = by_label.get(against)
        base_rate = reference.rate if reference else None
        ratio = f"{rate / base_rate:.2f}x" if base_rate else "-"
        median = paired_median(m, reference) if reference else None
        in_rounds = f"{median:.2f}x" if median is not None else "-"
        cpu = f"{m.median_cpu:.2f}" if m.median_cpu is not None else "-"
        rss = f"{(m.peak_rss or 0) / 1e6:.1f}"
        line = f"{m.label:<34} {rate:>14,.0f} {ratio:>8} {in_rounds:>8} {cpu:>7} {rss:>12}"
        lines.append(line + (f"  {against}" if paired else ""))
    return "\n".join(lines)


# --- commands as cases -------------------------------------------------------------------


def vm_hwm_kib(pid: int | str) -> int | None:
    """A process's peak RSS so far (``VmHWM``, KiB), or ``None`` once it has exited."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


@dataclasses.dataclass(frozen=True)
class Ran:
    out: str  # the last command's stdout
    err: str  # every command's stderr
    peak_rss: int  # bytes: the sum of each process's peak


def run_commands(*commands: list[str]) -> Ran:
    """
    Run a command, or several as a shell pipeline does; fail with the error's last line.

    The peak RSS is each process's own (``ru_maxrss``, or ``VmHWM`` sampled while it runs
    where ``ru_maxrss`` holds the high-water mark it inherited from this process), summed.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        procs: list[subprocess.Popen[bytes]] = []
        stdin: Any = subprocess.DEVNULL
        for position, argv in enumerate(commands):
            last = position == len(commands) - 1
            stdout = out if last else subprocess.PIPE
            procs.append(subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=err))
            if stdin is not subprocess.DEVNULL:
                stdin.close()  # the reader holds it now: the writer sees EPIPE if it exits
            stdin = procs[-1].stdout
        # A child starts with its spawner's high-water mark.
        floor = vm_hwm_kib("self") or 0
        polled = {proc.pid: 0 for proc in procs}
        running = set(polled)
        stop = threading.Event()

        def sample() -> None:
            while True:
                for pid in list(running):
                    kib = vm_hwm_kib(pid)
                    if kib is not None and pid in running:
                        polled[pid] = max(polled[pid], kib)
                if stop.wait(0.01):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        peaks = []
        try:
            for proc in procs:
                _, status, usage = os.wait4(proc.pid, 0)
                running.discard(proc.pid)
                proc.returncode = os.waitstatus_to_exitcode(status)
                maxrss = usage.ru_maxrss
                peaks.append(maxrss if maxrss > floor or not polled[proc.pid] else polled[proc.pid])
        finally:
            stop.set()
            sampler.join()
        out.seek(0)
        err.seek(0)
        ran = Ran(
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            sum(peaks) * 1024,
        )
    for argv, proc in zip(commands, procs, strict=True):
        if proc.returncode:
            lines = ran.err.strip().splitlines() or ["(no output)"]
            name = pathlib.Path(argv[0]).name
            raise RuntimeError(f"{name} exited {proc.returncode}: {lines[-1]}")
    return ran
