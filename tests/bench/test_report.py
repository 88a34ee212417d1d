"""latest.md: the main table, unavailable sides, the busy-machine warning, the plots."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.report import fmt_ratio, fmt_value, render_markdown, write_report
from bench.results import Machine, MetricDef, Report, SideRun, WorkloadResult


def machine() -> Machine:
    return Machine(
        cpu_model="AMD EPYC",
        cores=2,
        memory_bytes=24 << 30,
        kernel="6.1",
        python="3.11.7",
        load_start=[0.05, 0.1, 0.2],
        load_end=[0.3, 0.2, 0.2],
        versions={"postfix": "3.7.11", "dovecot": "2.3.19.1"},
        commit="abc1234",
    )


def w1(foreign: float = 0.02) -> WorkloadResult:
    w = WorkloadResult(
        id="W1",
        title="SMTP to IMAP",
        peer_name="Postfix → LMTP → Dovecot",
        metrics=[
            MetricDef("e2e", "throughput", "msg/s", True, 1.2),
            MetricDef("lat", "latency p95", "ms", False, main=False),
        ],
    )
    for run in range(3):
        w.runs.append(
            SideRun(
                "postern",
                run,
                {"e2e": 480.0 + run, "lat": 12.0},
                cpu_s=9.5,
                peak_rss=200 << 20,
                peak_pss=150 << 20,
                foreign_busy_cores=foreign,
            )
        )
        w.runs.append(
            SideRun(
                "peer",
                run,
                {"e2e": 400.0, "lat": 600.0},
                cpu_s=7.0,
                peak_rss=600 << 20,
                peak_pss=110 << 20,
                foreign_busy_cores=foreign,
            )
        )
    return w


def w3_unavailable() -> WorkloadResult:
    w = WorkloadResult(
        id="W3",
        title="drain",
        peer_name="Dovecot LMTP",
        metrics=[MetricDef("rate", "drain rate", "msg/s", True, 2.0)],
        unavailable={"postern": "not available yet: bench/store_drain.py is not there"},
    )
    w.runs = [SideRun("peer", r, {"rate": 360.0}, cpu_s=3.0) for r in range(3)]
    return w


def test_main_table_has_medians_ratio_target_and_resources() -> None:
    md = render_markdown(Report(machine(), {"W1": w1(), "W3": w3_unavailable()}), [])
    line = next(x for x in md.splitlines() if x.startswith("| **W1**"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == "481 msg/s"
    assert cells[2] == "400 msg/s"
    assert cells[3] == "1.20×"
    assert cells[4] == "≥ 1.2× ✅"
    assert cells[5] == "9.5 / 7.0"
    assert cells[6] == "200 MiB [150 MiB] / 600 MiB [110 MiB]"
    assert "latency p95" not in line  # a detail metric stays out of the main table
    assert "2 cores" in md and "3.7.11" in md and "Quiet machine" in md


def test_unavailable_side_says_why_never_a_number() -> None:
    md = render_markdown(Report(machine(), {"W3": w3_unavailable()}), [])
    line = next(x for x in md.splitlines() if x.startswith("| **W3**"))
    assert "not available yet: bench/store_drain.py is not there" in line
    assert "360 msg/s" in line
    assert "| — | ≥ 2× |" in line  # no ratio, target kept


def test_busy_machine_is_flagged() -> None:
    md = render_markdown(Report(machine(), {"W1": w1(foreign=0.9)}), [])
    assert "Busy machine" in md and "not final" in md


def test_detail_section_lists_each_run() -> None:
    md = render_markdown(Report(machine(), {"W1": w1()}), [])
    assert (
        "| throughput (msg/s) | 481 msg/s | 400 msg/s | 1.20× | ≥ 1.2× ✅ | 480, 481, 482 |" in md
    )
    assert "latency p95 (ms)" in md


def test_number_formatting() -> None:
    assert fmt_value(1234.5, "msg/s") == "1,234 msg/s"
    assert fmt_value(12.345, "msg/s") == "12.3 msg/s"
    assert fmt_value(1.234, "MB/s") == "1.23 MB/s"
    assert fmt_value(None, "ms") == "—"
    assert fmt_value(0.344, "ms") == "0.34 ms"  # sub-millisecond latencies keep two places
    assert fmt_value(3.44, "ms") == "3.4 ms"
    assert fmt_ratio(1.2345) == "1.23×"
    assert fmt_ratio(0.00466) == "0.0047×"


def test_write_report_makes_markdown_json_and_pngs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is in the bench extra, not the test extra")
    path = write_report(Report(machine(), {"W1": w1(), "W3": w3_unavailable()}), tmp_path)
    assert path == tmp_path / "latest.md"
    assert (tmp_path / "latest.json").exists()
    for png in ("ratios.png", "figures.png"):
        data = (tmp_path / png).read_bytes()
        assert data.startswith(b"\x89PNG")
        assert f"![{png}]({png})" in path.read_text()


def test_header_names_a_workload_with_more_runs() -> None:
    more = w1()
    more.id = "W2"
    for run in range(3, 5):
        more.runs.append(SideRun("postern", run, {"e2e": 480.0, "lat": 12.0}, cpu_s=9.5))
        more.runs.append(SideRun("peer", run, {"e2e": 400.0, "lat": 600.0}, cpu_s=7.0))
    md = render_markdown(Report(machine(), {"W1": w1(), "W2": more, "W4": w1()}), [])
    assert "the median of 3 runs (W2: 5);" in md
    assert "the median of 3 runs;" in render_markdown(Report(machine(), {"W1": w1()}), [])
