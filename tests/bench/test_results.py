"""Runs are summarised per side as medians; failed runs do not count; JSON round-trips."""

from __future__ import annotations

from pathlib import Path

from bench.results import Machine, MetricDef, Report, SideRun, WorkloadResult

THROUGHPUT = MetricDef("e2e", "throughput", "msg/s", True, 1.2)
LATENCY = MetricDef("lat", "latency", "ms", False)


def result() -> WorkloadResult:
    w = WorkloadResult(id="W1", title="t", peer_name="Postfix", metrics=[THROUGHPUT, LATENCY])
    for run, (p, q) in enumerate([(500.0, 400.0), (700.0, 380.0), (600.0, 9999.0)]):
        w.runs.append(SideRun("postern", run, {"e2e": p, "lat": 10.0 + run}, cpu_s=2.0 + run))
        w.runs.append(SideRun("peer", run, {"e2e": q, "lat": 30.0}, cpu_s=1.0, peak_rss=5))
    w.runs[-1].error = "smtp-source exited with 1"  # the 9999 run failed: not counted
    w.runs[-1].values = {}
    return w


def test_rows_are_medians_of_successful_runs() -> None:
    rows = {r.metric.key: r for r in result().rows()}
    assert rows["e2e"].postern == 600.0
    assert rows["e2e"].peer == 390.0  # two good runs: their mean
    assert rows["e2e"].ratio == 600.0 / 390.0
    assert rows["e2e"].met is True
    assert rows["lat"].postern == 11.0
    assert rows["lat"].ratio == 30.0 / 11.0  # lower latency is better


def test_target_missed_and_no_target() -> None:
    w = result()
    w.runs = [SideRun("postern", 0, {"e2e": 100.0}), SideRun("peer", 0, {"e2e": 100.0})]
    row = w.row(THROUGHPUT)
    assert row.ratio == 1.0 and row.met is False
    assert w.row(LATENCY).met is None


def test_resources_per_side() -> None:
    w = result()
    assert w.cpu("postern") == 3.0
    assert w.peak_rss("peer") == 5
    assert w.peak_rss("postern") is None
    assert [r.error for r in w.errors()] == ["smtp-source exited with 1"]


def test_report_json_round_trip(tmp_path: Path) -> None:
    report = Report(
        machine=Machine("cpu", 2, 1 << 30, "6.1", "3.11", [0.1, 0.2, 0.3]),
        workloads={"W1": result()},
    )
    report.save(tmp_path / "r.json")
    back = Report.load(tmp_path / "r.json")
    assert back.machine == report.machine
    assert back.workloads["W1"].rows()[0].postern == 600.0
    assert back.workloads["W1"].metrics == [THROUGHPUT, LATENCY]
