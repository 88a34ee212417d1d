"""The verdict from both scanners' answers (pure)."""

from __future__ import annotations

import pytest

from services.filter import errors
from services.filter.screening.clamd import ClamdResult
from services.filter.screening.spamd import SpamReport
from services.filter.screening.verdict import UNSCANNED_HEADER, Outcome, Thresholds, decide

LIMITS = Thresholds(
    tag=5.0, reject=10.0, clamd_fail_open=False, spamd_fail_open=False, spamd_max_size=1000
)
OPEN = Thresholds(
    tag=5.0, reject=10.0, clamd_fail_open=True, spamd_fail_open=True, spamd_max_size=1000
)
CLEAN = ClamdResult(None)


def test_clean_ham() -> None:
    verdict = decide(CLEAN, SpamReport(1.0, ("A",)), LIMITS)
    assert verdict.scan.virus_scanned and verdict.scan.spam_scanned
    assert not verdict.scan.spam_tagged
    names = [n for n, _ in verdict.headers]
    assert "X-Spam-Flag" not in names and "X-Spam-Status" in names
    assert dict(verdict.headers)["X-Spam-Status"] == "No, score=1.0 required=5.0 tests=A"


def test_tag_threshold_is_inclusive() -> None:
    verdict = decide(CLEAN, SpamReport(5.0, ("X", "Y")), LIMITS)
    assert verdict.scan.spam_tagged
    assert dict(verdict.headers)["X-Spam-Flag"] == "YES"
    assert dict(verdict.headers)["X-Spam-Level"] == "*****"


def test_reject_threshold_is_inclusive() -> None:
    with pytest.raises(errors.SpamRejected):
        decide(CLEAN, SpamReport(10.0, ()), LIMITS)


def test_virus_wins_over_everything() -> None:
    with pytest.raises(errors.VirusFound) as info:
        decide(ClamdResult("Eicar-Test-Signature"), Outcome.FAILED, LIMITS)
    assert info.value.signature == "Eicar-Test-Signature"


@pytest.mark.parametrize(
    ("virus", "spam"), [(Outcome.FAILED, SpamReport(0, ())), (CLEAN, Outcome.FAILED)]
)
def test_a_failed_scanner_tempfails_unless_fail_open(
    virus: ClamdResult | Outcome, spam: SpamReport | Outcome
) -> None:
    with pytest.raises(errors.ScannerUnavailable):
        decide(virus, spam, LIMITS)
    verdict = decide(virus, spam, OPEN)
    assert any(name == UNSCANNED_HEADER for name, _ in verdict.headers)


def test_skipped_and_off() -> None:
    verdict = decide(Outcome.OFF, Outcome.SKIPPED, LIMITS)
    assert dict(verdict.headers)[UNSCANNED_HEADER].startswith("spamd (message larger than")
    assert not verdict.scan.virus_scanned
    assert decide(Outcome.OFF, Outcome.OFF, LIMITS).headers == []
