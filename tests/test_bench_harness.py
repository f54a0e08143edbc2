"""The benchmark harness's arithmetic (pure logic; the benchmarks themselves run in nox)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time

import pytest

from bench._harness import (
    Case,
    Measurement,
    Scenario,
    as_cold,
    cold_and_warm,
    format_table,
    imports,
    paired_median,
    run_once,
)
from bench._worker import preloaded


def _measured(label: str, *rates: float, cpu: tuple[float, ...] = ()) -> Measurement:
    fastest = max(rates)
    return Measurement(
        label, seconds=1.0, units=int(fastest), round_rates=list(rates), round_cpu=list(cpu)
    )


def test_paired_median_compares_within_rounds():
    """Each round's ratio is taken against the same round's reference; the median is kept."""
    # The reference is fastest in round 3, the case in round 1: the fastest-of ratio says
    # 0.5x, yet within every round the case runs at 0.9x to 1.1x of the reference.
    reference = _measured("raw", 100.0, 100.0, 200.0)
    case = _measured("headwater", 110.0, 90.0, 190.0)
    assert 0.95 == paired_median(case, reference)
    assert paired_median(case, _measured("none", 0.0)) is None


def test_format_table_shows_fastest_and_median_ratios():
    """The table lists the fastest-of ratio and the within-round median side by side."""
    scenario = Scenario("demo", [Case("raw", "m:f"), Case("hw", "m:g")], baseline="raw")
    table = format_table(scenario, [_measured("raw", 100.0, 200.0), _measured("hw", 90.0, 150.0)])
    row = next(line for line in table.splitlines() if line.startswith("hw "))
    assert ["150", "0.75x", "0.82x"] == row.split()[1:4]


def test_format_table_shows_median_cpu_per_round():
    """The CPU column is the median over rounds, not the fastest round's figure."""
    scenario = Scenario("demo", [Case("raw", "m:f")], baseline="raw")
    measured = _measured("raw", 100.0, 120.0, 110.0, cpu=(0.5, 2.0, 0.75))
    row = next(line for line in format_table(scenario, [measured]).splitlines()[2:])
    assert "0.75" == row.split()[4]
    alone = Measurement("raw", seconds=1.0, units=100, cpu_seconds=0.25)
    assert 0.25 == alone.median_cpu


def test_case_peak_prefers_what_the_case_measured():
    """A Done with peak_rss reports the command's peak; anything else the worker's or children's."""
    from bench._harness import Done
    from bench._worker import case_peak

    assert 7_000_000 == case_peak(Done(10, peak_rss=7_000_000), 50_000, 90_000)
    assert 90_000 * 1024 == case_peak(Done(10), 50_000, 90_000)
    assert 50_000 * 1024 == case_peak(10, 50_000, 20_000)


# --- how cases start (cold / warm) ---------------------------------------------------------

_calls = 0


def counting_case(**_: object) -> int:
    """A case whose units are how many times it ran in its process (the warm-up counts)."""
    global _calls
    _calls += 1
    return _calls


@imports("json")
def json_case(**_: object) -> int:
    """A case declaring a module the worker itself has loaded before any clock."""
    return 1


@imports("colorsys")  # a module that neither the worker nor the harness imports
def probe_case(**_: object) -> int:
    """Whether the declared module was loaded before the case ran, as units (1: yes)."""
    import sys

    loaded = "colorsys" in sys.modules
    return 1 if loaded else 0


def test_warm_runs_the_case_once_before_the_clock():
    """A warm case has run once in its process before the timed run; others have not."""
    case = Case("count", f"{__name__}:counting_case")
    assert 2 == run_once(case, {}, "warm").units
    assert 1 == run_once(case, {}, "cold").units
    assert 1 == run_once(case, {}).units


def test_cold_refuses_a_case_whose_imports_are_loaded_before_the_clock():
    """A cold figure must carry the case's imports: one loaded early fails the case."""
    measured = run_once(Case("json", f"{__name__}:json_case"), {}, "cold")
    assert measured.error is not None
    assert "['json'] imported before its clock" in measured.error
    assert 1 == run_once(Case("json", f"{__name__}:json_case"), {}, "warm").units


def test_cold_leaves_declared_imports_to_the_case():
    """Without a start the worker imports a case's modules first; cold leaves them to it."""
    probe = Case("probe", f"{__name__}:probe_case")
    assert 1 == run_once(probe, {}).units
    assert 0 == run_once(probe, {}, "cold").units
    # The case's own start wins over the scenario's.
    assert 1 == run_once(dataclasses.replace(probe, start="warm"), {}, "cold").units


def test_cold_and_warm_names_each_start_and_keeps_its_goal():
    """The two twins keep the cases; the cold one takes the cold goal."""
    scenario = Scenario("s", [Case("raw", "m:f")], baseline="raw", goal=1.0)
    cold, warm = cold_and_warm(scenario, cold_goal=0.9)
    assert ("s (cold)", "cold", 0.9) == (cold.name, cold.start, cold.goal)
    assert ("s (warm)", "warm", 1.0) == (warm.name, warm.start, warm.goal)
    assert scenario.cases == cold.cases == warm.cases
    assert ("s (cold)", "cold") == (as_cold(scenario).name, as_cold(scenario).start)
    assert warm is as_cold(warm)  # a scenario that chose its start keeps it under --cold


def test_preloaded_names_declared_modules_already_loaded():
    assert ["json"] == preloaded(json_case, {"json": None, "sys": None})
    assert [] == preloaded(counting_case, {"json": None})


@pytest.mark.skipif(sys.platform == "win32", reason="runs are serialized with flock (POSIX)")
def test_a_run_waits_for_the_run_before_it(tmp_path, monkeypatch):
    """Another process holding the run lock for a second: a run starts only once it lets go."""
    import bench.__main__ as runner

    lock = tmp_path / "run.lock"
    monkeypatch.setattr(runner, "LOCK", lock)
    script = (
        "import fcntl, time\n"
        f"f = open({str(lock)!r}, 'a'); fcntl.flock(f, fcntl.LOCK_EX)\n"
        "print('held', flush=True); time.sleep(1.0)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert "held" == holder.stdout.readline().strip()
        held = time.monotonic()
        with runner.one_run_at_a_time():
            waited = time.monotonic() - held
        assert waited > 0.8
        with runner.one_run_at_a_time():  # free again: entered at once
            assert time.monotonic() - held - waited < 0.5
    finally:
        holder.kill()
        holder.communicate()  # reaped, its pipe closed
