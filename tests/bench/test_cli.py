"""Command-line options and the W3 report contract."""

from __future__ import annotations

import pytest

from bench.cli import parse_args
from bench.workloads import WORKLOAD_IDS, all_workloads
from bench.workloads.base import Context
from bench.workloads.w3_drain import drain_rate


def test_only_and_quick() -> None:
    a = parse_args(["--only", "w4,W5", "--quick"])
    assert a.only == ["W4", "W5"] and a.runs == 1
    assert parse_args([]).runs == 3
    assert parse_args(["--runs", "5"]).runs == 5
    assert parse_args(["--only", "w4b"]).only == ["W4b"]
    assert parse_args(["--duration", "20"]).duration == 20.0
    assert parse_args([]).duration is None


def test_duration_sets_w4b_and_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    w4b = next(w for w in all_workloads() if w.id == "W4b")
    ctx = Context(workdir=None, rundir=None, duration=20.0)  # type: ignore[arg-type]
    assert w4b.params(ctx)["duration"] == 20.0
    assert w4b.params(Context(workdir=None, rundir=None))["duration"] == 60.0  # type: ignore[arg-type]
    assert w4b.params(ctx)["sessions"] == [10, 50]
    with pytest.raises(SystemExit):
        parse_args(["--duration", "0"])
    assert "--duration must be positive" in capsys.readouterr().err


def test_unknown_workload_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--only", "W99"])
    assert "unknown workload W99" in capsys.readouterr().err


def test_every_workload_is_listed_once_with_targets_from_the_issue(tmp_path: object) -> None:
    w6 = ["W6", "W6s", "W6f"]  # W6's lag in synchronous mode and with a follower: issue 13
    ids = ["W1", "W2", "W3", "W4", "W4b", "W4c", "W5", *w6, "W7", "W8", "W9"]
    assert ids == WORKLOAD_IDS
    ctx = Context(workdir=tmp_path, rundir=tmp_path)  # type: ignore[arg-type]
    targets = {
        w.id: [m.target for m in w.metric_defs(ctx) if m.target is not None]
        for w in all_workloads()
    }
    assert targets["W1"][0] == 1.2
    assert targets["W2"] == [0.9]
    assert targets["W3"] == [2.0]
    assert targets["W4"] == [0.5]
    # issue 20: ≥ 1.0× Dovecot's commands/s at 10 and 50 sessions, p99 ≤ 2× Dovecot's
    assert targets["W4b"][:2] == [1.0, 1.0]
    assert set(targets["W4b"][2:]) == {0.5}
    assert targets["W5"] == [0.5, 0.5]
    assert targets["W4c"] == [1.0]  # issue 15: p99 latency ≤ Dovecot's
    assert targets["W8"] == [1.5]
    assert targets["W9"] == [1.0]  # issue 15: SORT/THREAD ≥ 1.0× Dovecot


def test_quick_sizes_are_small() -> None:
    full = Context(workdir=None, rundir=None)  # type: ignore[arg-type]
    quick = Context(workdir=None, rundir=None, quick=True)  # type: ignore[arg-type]
    for w in all_workloads():
        a, b = w.mailbox_accounts(full), w.mailbox_accounts(quick)
        assert sum(b.values()) <= sum(a.values()) / 5 or not a
    pop3 = next(w for w in all_workloads() if w.id == "W5")
    assert sum(pop3.mailbox_accounts(full).values()) == 13_000


def test_drain_rate_from_store_drain_reports() -> None:
    assert drain_rate({"rate": 1234.5}) == 1234.5
    assert drain_rate({"messages": 10_000, "seconds": 8.0}) == 1250.0
    with pytest.raises(ValueError):
        drain_rate({"messages": 10})
