"""
The benchmark harness: scenarios compare cases against a baseline in the same run.

A scenario's cases each run in a fresh subprocess (``python -m bench._worker``), so a
case's peak RSS is its own and no case warms caches for the next. The table reports
throughput (units per second), the ratio to the scenario's baseline, and peak RSS.
Ratios are what to read: absolute figures depend on the machine and its load.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
from typing import Any


@dataclasses.dataclass(frozen=True)
class Case:
    """One way of doing the scenario's work: ``target`` is ``"bench.module:function"``."""

    label: str
    target: str
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Scenario:
    """Cases compared against the case labelled ``baseline``; ``goal`` is the ratio aimed for."""

    name: str
    cases: list[Case]
    baseline: str
    setup: str | None = None
    teardown: str | None = None
    goal: float | None = None
    unit: str = "records"
    repeat: int = 1


@dataclasses.dataclass
class Measurement:
    """What one case measured (or why it could not run)."""

    label: str
    seconds: float | None = None
    units: int | None = None
    peak_rss: int | None = None
    error: str | None = None

    @property
    def rate(self) -> float | None:
        if self.seconds is None or self.units is None or self.seconds <= 0:
            return None
        return self.units / self.seconds


def resolve(target: str) -> Any:
    """Import ``module:attr``."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def run_case(case: Case, setup_result: dict[str, Any], repeat: int) -> Measurement:
    """Run a case in a fresh interpreter; keep the fastest of ``repeat`` runs."""
    best: Measurement | None = None
    for _ in range(max(1, repeat)):
        payload = json.dumps({"target": case.target, "kwargs": {**setup_result, **case.kwargs}})
        proc = subprocess.run(
            [sys.executable, "-m", "bench._worker"],
            input=payload,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
            check=False,
        )
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            return Measurement(case.label, error=tail[:200])
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        if "unavailable" in data:
            return Measurement(case.label, error=f"unavailable: {data['unavailable']}")
        m = Measurement(case.label, data["seconds"], data["units"], data["peak_rss"])
        if best is None or (m.seconds or 0) < (best.seconds or 0):
            best = m
    assert best is not None
    return best


def run_scenario(scenario: Scenario, quick: bool) -> list[Measurement]:
    """Set up, run every case, tear down."""
    setup_result: dict[str, Any] = resolve(scenario.setup)(quick) if scenario.setup else {}
    try:
        # Full runs keep the best of at least three fresh processes per case: one sample
        # on a shared 2-core machine swings by a third.
        repeat = scenario.repeat if quick else max(scenario.repeat, 3)
        return [run_case(case, setup_result, repeat) for case in scenario.cases]
    finally:
        if scenario.teardown:
            resolve(scenario.teardown)(**setup_result)


def format_table(scenario: Scenario, results: list[Measurement]) -> str:
    """A plain-text table of one scenario's results."""
    base = next((m for m in results if m.label == scenario.baseline), None)
    base_rate = base.rate if base else None
    goal = f"  (goal: >= {scenario.goal:g}x {scenario.baseline})" if scenario.goal else ""
    lines = [
        f"## {scenario.name}{goal}",
        f"{'case':<34} {scenario.unit + '/s':>14} {'ratio':>8} {'peak RSS MB':>12}",
    ]
    for m in results:
        if m.error:
            lines.append(f"{m.label:<34} {m.error}")
            continue
        rate = m.rate or 0.0
        ratio = f"{rate / base_rate:.2f}x" if base_rate else "-"
        rss = f"{(m.peak_rss or 0) / 1e6:.1f}"
        lines.append(f"{m.label:<34} {rate:>14,.0f} {ratio:>8} {rss:>12}")
    return "\n".join(lines)
