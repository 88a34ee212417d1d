"""Screening: clamd and spamd side by side on one message, and the verdict.

Both scanners run concurrently, each under ``scan_timeout``. A virus is refused, spam at or
above the reject score is refused, spam at or above the tag score is marked (``X-Spam-*``
headers and ``scan.spam_tagged``, which the store files in Junk). A scanner that is down,
slow or confused makes the message wait (451 4.7.1) unless that check fails open; mail
let through unscanned says so in an ``X-Postern-Unscanned`` header.
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field

from mailcore import metrics
from mailcore.bus.schemas import ScanResult
from mailcore.config import FilterSettings
from mailcore.logging import get_logger
from services.filter import errors
from services.filter.screening.clamd import ClamdClient, ClamdError, ClamdResult
from services.filter.screening.spamd import SpamdClient, SpamdError, SpamReport

log = get_logger("filter.screening")

UNSCANNED_HEADER = "X-Postern-Unscanned"


class Outcome(enum.Enum):
    OFF = "off"  # scanner switched off, or not asked (policy)
    SKIPPED = "skipped"  # too large for the scanner: passed unscanned, with a header
    FAILED = "failed"  # down, slow or an error


@dataclass(frozen=True, slots=True)
class Thresholds:
    tag: float
    reject: float
    clamd_fail_open: bool
    spamd_fail_open: bool
    spamd_max_size: int


@dataclass(slots=True)
class Verdict:
    """An accepted message's screening: what goes in the bus header, and the headers to add."""

    scan: ScanResult = field(default_factory=ScanResult)
    headers: list[tuple[str, str]] = field(default_factory=list)


def decide(virus: ClamdResult | Outcome, spam: SpamReport | Outcome, limits: Thresholds) -> Verdict:
    """Combine both scanners' answers (pure; raises the refusal)."""
    if isinstance(virus, ClamdResult) and virus.infected:
        raise errors.VirusFound(virus.signature or "unknown")
    if virus is Outcome.FAILED and not limits.clamd_fail_open:
        raise errors.ScannerUnavailable("clamd")
    if isinstance(spam, SpamReport) and spam.score >= limits.reject:
        raise errors.SpamRejected(spam.score)
    if spam is Outcome.FAILED and not limits.spamd_fail_open:
        raise errors.ScannerUnavailable("spamd")

    verdict = Verdict()
    verdict.scan.virus_scanned = isinstance(virus, ClamdResult)
    unscanned: list[str] = []
    if virus is Outcome.FAILED:
        unscanned.append("clamd (scanner unavailable; accepted by fail-open policy)")
    if isinstance(spam, SpamReport):
        tagged = spam.score >= limits.tag
        verdict.scan.spam_scanned = True
        verdict.scan.spam_score = round(spam.score, 1)
        verdict.scan.spam_tagged = tagged
        verdict.headers += spam_headers(spam, limits.tag, tagged)
    elif spam is Outcome.FAILED:
        unscanned.append("spamd (scanner unavailable; accepted by fail-open policy)")
    elif spam is Outcome.SKIPPED:
        unscanned.append(f"spamd (message larger than {limits.spamd_max_size} bytes)")
    verdict.headers += [(UNSCANNED_HEADER, text) for text in unscanned]
    return verdict


def spam_headers(report: SpamReport, required: float, tagged: bool) -> list[tuple[str, str]]:
    """SpamAssassin's customary header set."""
    tests = ",".join(report.rules) or "none"
    status = f"{'Yes' if tagged else 'No'}, score={report.score:.1f} required={required:.1f}"
    out = [("X-Spam-Status", f"{status} tests={tests}"), ("X-Spam-Score", f"{report.score:.1f}")]
    if tagged:
        out.insert(0, ("X-Spam-Flag", "YES"))
        out.append(("X-Spam-Level", "*" * max(0, min(50, int(report.score)))))
    return out


class Screening:
    def __init__(
        self,
        limits: Thresholds,
        timeout: float,
        clamd: ClamdClient | None,
        spamd: SpamdClient | None,
    ) -> None:
        self.limits = limits
        self.timeout = timeout
        self.clamd = clamd
        self.spamd = spamd

    @classmethod
    def from_settings(cls, s: FilterSettings) -> Screening:
        limits = Thresholds(
            tag=s.spam_tag_score,
            reject=s.spam_reject_score,
            clamd_fail_open=s.clamd_fail_open,
            spamd_fail_open=s.spamd_fail_open,
            spamd_max_size=s.spamd_max_size,
        )
        clamd = (
            ClamdClient(host=s.clamd_host, port=s.clamd_port, socket_path=s.clamd_socket)
            if s.clamd_enabled
            else None
        )
        spamd = (
            SpamdClient(host=s.spamd_host, port=s.spamd_port, socket_path=s.spamd_socket)
            if s.spamd_enabled
            else None
        )
        return cls(limits, s.scan_timeout, clamd, spamd)

    @property
    def active(self) -> bool:
        return self.clamd is not None or self.spamd is not None

    async def screen(self, message: bytes, *, spam_check: bool = True) -> Verdict:
        """Scan ``message``; return the verdict of an acceptable message or raise."""
        if not self.active:
            return Verdict()
        virus_task = self._virus(message)
        spam_task = self._spam(message, spam_check)
        virus, spam = await asyncio.gather(virus_task, spam_task)
        return decide(virus, spam, self.limits)

    async def _virus(self, message: bytes) -> ClamdResult | Outcome:
        if self.clamd is None:
            return Outcome.OFF
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                result = await self.clamd.scan(message)
        except (TimeoutError, ClamdError) as exc:
            return self._failed("clamd", exc, started)
        metrics.SCAN_SECONDS.labels("clamd").observe(time.perf_counter() - started)
        metrics.SCAN_VERDICTS.labels("clamd", "virus" if result.infected else "clean").inc()
        return result

    async def _spam(self, message: bytes, wanted: bool) -> SpamReport | Outcome:
        if self.spamd is None or not wanted:
            return Outcome.OFF
        if len(message) > self.limits.spamd_max_size:
            metrics.SCAN_VERDICTS.labels("spamd", "skipped").inc()
            return Outcome.SKIPPED
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                report = await self.spamd.check(message, self.timeout)
        except (TimeoutError, SpamdError) as exc:
            return self._failed("spamd", exc, started)
        metrics.SCAN_SECONDS.labels("spamd").observe(time.perf_counter() - started)
        if report.score >= self.limits.reject:
            label = "spam"
        elif report.score >= self.limits.tag:
            label = "tagged"
        else:
            label = "ham"
        metrics.SCAN_VERDICTS.labels("spamd", label).inc()
        return report

    def _failed(self, scanner: str, exc: Exception, started: float) -> Outcome:
        elapsed = time.perf_counter() - started
        metrics.SCAN_SECONDS.labels(scanner).observe(elapsed)
        kind = "timeout" if isinstance(exc, TimeoutError) else "error"
        metrics.SCAN_VERDICTS.labels(scanner, kind).inc()
        log.warning(
            "scanner failed", scanner=scanner, kind=kind, error=str(exc), seconds=round(elapsed, 3)
        )
        return Outcome.FAILED
