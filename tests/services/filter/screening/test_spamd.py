"""aiospamc against a real spamd (local rules only)."""

from __future__ import annotations

import pytest

from services.ctl.daemons import free_port
from services.filter.screening.spamd import SpamdClient, SpamdError
from tests.services.filter.samples import CLEAN, gtube_message
from tests.support.daemons import Spamd


async def test_gtube_scores_as_spam(spamd: Spamd) -> None:
    report = await SpamdClient(host=spamd.host, port=spamd.port).check(gtube_message(), 60)
    assert report.score >= 100
    assert "GTUBE" in report.rules


async def test_clean_message_scores_low(spamd: Spamd) -> None:
    report = await SpamdClient(host=spamd.host, port=spamd.port).check(CLEAN, 60)
    assert report.score < 5


async def test_nothing_listening_is_an_error() -> None:
    with pytest.raises(SpamdError):
        await SpamdClient(host="127.0.0.1", port=free_port()).check(CLEAN, 5)
