"""The benchmark harness's arithmetic (pure logic; the benchmarks themselves run in nox)."""

from __future__ import annotations

from bench._harness import Case, Measurement, Scenario, format_table, paired_median


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
