"""The scenario registry, the ledger file and the report tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.checker import Report
from reliability.ledger import Entry, Ledger, Outcome, outcome_for
from reliability.report import Probe, probe_table, scenario_table
from reliability.scenarios import load_all, scenario, select


def test_registry_covers_what_exists_on_main() -> None:
    families = {s.family for s in load_all().values()}
    assert {"intake", "store", "bus", "scanners"} <= families
    names = set(load_all())
    for point in ("after-scan", "during-publish", "after-puback", "after-250", "mid-data"):
        assert f"filter-kill-{point}" in names
    for point in ("before-commit", "after-commit", "after-ack"):
        assert f"store-kill-{point}" in names
    assert {"relay", "webmail"} <= families
    assert {"relay-kill-mid-transaction", "webmail-kill-mid-request"} <= names


def test_select_by_family_prefix_and_skip() -> None:
    assert {s.family for s in select(["scanners"])} == {"scanners"}
    assert all(s.name.startswith("filter-kill") for s in select(["filter-kill"]))
    assert not any(s.family == "bus" for s in select(None, ["bus"]))


def test_a_name_registers_once() -> None:
    with pytest.raises(ValueError, match="twice"):
        scenario("baseline", "intake", "again")(load_all()["baseline"].run)


def test_outcomes() -> None:
    assert outcome_for("END", 250) is Outcome.ACKED
    assert outcome_for("END", 451) is Outcome.REFUSED
    assert outcome_for("END", None) is Outcome.UNKNOWN
    assert outcome_for("DATA", None) is Outcome.REFUSED  # no data sent: nothing promised


def test_ledger_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    ledger.record(Entry("m1", ("a@t",), Outcome.ACKED, 250, "END", "ok"))
    ledger.record(Entry("m2", ("a@t",), Outcome.UNKNOWN, None, "END"))
    again = Ledger.load(path)
    assert [e.rid for e in again] == ["m1", "m2"]
    assert again.count(Outcome.UNKNOWN) == 1


def test_tables_show_failures_and_explained_duplicates() -> None:
    good = Report("a", acked=10, duplicated=1, explained_duplicates=1, answers={"250": 10})
    bad = Report("b", acked=5, lost=2)
    text = scenario_table([good, bad])
    assert "| a | 10 | 0 | 1 (1 explained) | 0 | 0 | ok | 250×10 |" in text
    assert "| b | 5 | 2 | 0 | 0 | 0 | FAIL |  |" in text
    probes = probe_table([Probe("SMTP", "a|b", "5xx", "250", False)])
    assert "a\\|b" in probes and "FAIL" in probes
