"""The page ``make reliability`` writes: the run's tables are rewritten, the hand-written
findings between the markers are kept, and the header says the time against the bound."""

from __future__ import annotations

from reliability.__main__ import KEEP_BEGIN, KEEP_END, budget, hand_written, render
from reliability.checker import Report

FINDINGS = f"{KEEP_BEGIN}\n## What these runs found\n\n* a note by hand, kept\n{KEEP_END}"


def test_render_keeps_the_hand_written_findings_run_after_run() -> None:
    first = render([Report("baseline")], [], [], 600.0, "abc1234", FINDINGS)
    assert FINDINGS in first
    assert first.index(FINDINGS) < first.index("## Faults under load")
    second = render([Report("baseline")], [], [], 700.0, "def5678", hand_written(first))
    assert FINDINGS in second
    assert second.count(KEEP_BEGIN) == 1 and "def5678" in second and "abc1234" not in second


def test_a_page_without_markers_keeps_nothing() -> None:
    assert hand_written("# Reliability\n\n## What these runs found\n\n* old\n") == ""
    assert KEEP_BEGIN not in render([], [], [], 60.0, "abc1234")


def test_budget_line() -> None:
    assert budget(21 * 60) == "budget: 21.0 of 30 minutes (70%, within the bound)"
    assert "OVER" in budget(31 * 60)
    assert "budget: 14.0 of 30 minutes" in render([], [], [], 14 * 60, "abc1234")
