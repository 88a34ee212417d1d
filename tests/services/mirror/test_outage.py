"""An outage is one warning line with the first pause, silent retries with backoff, and
one line when it is over; a quiet one (behind an outage already reported) logs neither."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs

from services.mirror import outage as outage_module
from services.mirror.outage import Outage


@pytest.fixture(autouse=True)
def fresh_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An earlier test may have configured logging at another level (mailctl's commands
    log errors only) and mailcore.logging caches a logger on its first use: this module
    logs through a fresh logger under structlog's defaults, restored afterwards."""
    saved = structlog.get_config()
    structlog.reset_defaults()
    monkeypatch.setattr(outage_module, "log", structlog.get_logger("mirror"))
    yield
    structlog.configure(**saved)


def test_one_line_down_backoff_one_line_back() -> None:
    outage = Outage("peer store-b unreachable", "peer store-b reachable again", cap=5, peer="b")
    with capture_logs() as logs:
        delays = [outage.failed(ConnectionRefusedError(111, "refused")) for _ in range(6)]
        assert outage.going_on and outage.failures == 6
        outage.ok()
        outage.ok()  # nothing more: the outage was over
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert [(e["log_level"], e["event"]) for e in logs] == [
        ("warning", "peer store-b unreachable, retrying in 0.5s"),
        ("info", "peer store-b reachable again"),
    ]
    assert logs[0]["error"] == "ConnectionRefusedError: [Errno 111] refused"
    assert logs[1]["tries"] == 6 and logs[1]["peer"] == "b"
    # the next outage starts over: first pause, one line
    with capture_logs() as logs:
        assert outage.failed("again") == 0.5
    assert [e["event"] for e in logs] == ["peer store-b unreachable, retrying in 0.5s"]


def test_quiet_behind_another_outage() -> None:
    link_down = True
    outage = Outage("queue not applied", "queue applied again", quiet=lambda: link_down)
    with capture_logs() as logs:
        outage.failed(TimeoutError())
        outage.failed(TimeoutError())
        outage.ok()
    assert logs == [] and not outage.going_on
