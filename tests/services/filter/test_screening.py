"""Screening through SMTP with the real daemons: GTUBE refused, EICAR refused, tagging,
scanners down or hung (451 at the scan timeout), fail-open with its header."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import REGISTRY

from mailcore.bus.connect import Bus
from services.ctl.daemons import free_port
from services.filter.app import FilterNode
from services.filter.smtp import replies
from tests.services.filter.conftest import (
    ALICE,
    BOB,
    PASSWORD,
    Accounts,
    RawClient,
    StartFilter,
    client_tls,
    stream_messages,
)
from tests.services.filter.samples import CLEAN, EICAR, gtube_message, with_attachment
from tests.support.daemons import Clamd, Spamd


def scanners(spamd: Spamd | None = None, clamd: Clamd | None = None, **extra: Any) -> dict:
    settings: dict[str, Any] = dict(extra)
    if spamd is not None:
        settings |= {"spamd_enabled": True, "spamd_host": spamd.host, "spamd_port": spamd.port}
    if clamd is not None:
        settings |= {"clamd_enabled": True, "clamd_host": clamd.host, "clamd_port": clamd.port}
    return settings


async def deliver(node: FilterNode, message: bytes, rcpt: str = ALICE) -> str:
    client = await RawClient.connect(node.settings.smtp_port)
    await client.expect("EHLO client.test", 250)
    await client.expect("MAIL FROM:<carol@remote.test>", 250)
    await client.expect(f"RCPT TO:<{rcpt}>", 250)
    return await client.send_message(message)


def count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_clean_mail_passes_both_scanners(
    start_filter: StartFilter, accounts: Accounts, bus: Bus, spamd: Spamd, clamd: Clamd
) -> None:
    spam_scans = count("postern_scan_seconds_count", scanner="spamd")
    clam_scans = count("postern_scan_seconds_count", scanner="clamd")
    node = await start_filter(**scanners(spamd, clamd))
    assert (await deliver(node, CLEAN)).startswith("250 2.0.0")
    [msg] = await stream_messages(bus)
    assert msg.scan.virus_scanned and msg.scan.spam_scanned
    assert not msg.scan.spam_tagged and msg.scan.spam_score is not None
    head = msg.body[: -len(CLEAN)]
    assert b"\r\nX-Spam-Status: No, score=" in head and b"X-Spam-Flag" not in head
    assert b"X-Postern-Unscanned" not in head
    assert count("postern_scan_seconds_count", scanner="spamd") == spam_scans + 1
    assert count("postern_scan_seconds_count", scanner="clamd") == clam_scans + 1


async def test_gtube_is_rejected(
    start_filter: StartFilter, accounts: Accounts, bus: Bus, spamd: Spamd, clamd: Clamd
) -> None:
    rejected = count("postern_smtp_rejected_total", reason="spam")
    node = await start_filter(**scanners(spamd, clamd))
    assert await deliver(node, gtube_message()) == str(replies.SPAM)
    assert await stream_messages(bus) == []
    assert count("postern_smtp_rejected_total", reason="spam") == rejected + 1


async def test_eicar_attachment_is_554(
    start_filter: StartFilter, accounts: Accounts, bus: Bus, spamd: Spamd, clamd: Clamd
) -> None:
    node = await start_filter(**scanners(spamd, clamd))
    final = await deliver(node, with_attachment(EICAR))
    assert final.startswith("554 5.7.1 Message rejected: virus found (Eicar-Test-Signature")
    assert await stream_messages(bus) == []


async def test_eicar_over_clamd_unix_socket(
    start_filter: StartFilter, accounts: Accounts, bus: Bus, clamd: Clamd
) -> None:
    node = await start_filter(clamd_enabled=True, clamd_socket=clamd.socket_path)
    assert (await deliver(node, with_attachment(EICAR))).startswith("554 5.7.1")
    assert (await deliver(node, CLEAN)).startswith("250 ")


async def test_spam_at_the_tag_score_is_tagged_for_junk(
    start_filter: StartFilter, accounts: Accounts, bus: Bus, spamd: Spamd
) -> None:
    # Local rules score this ordinary message near 0: thresholds below it tag it.
    node = await start_filter(**scanners(spamd, spam_tag_score=-50.0, spam_reject_score=500.0))
    assert (await deliver(node, CLEAN)).startswith("250 ")
    [msg] = await stream_messages(bus)
    assert msg.scan.spam_tagged  # the store files it in Junk
    head = msg.body[: -len(CLEAN)]
    assert b"\r\nX-Spam-Flag: YES\r\n" in head
    assert b"X-Spam-Status: Yes, score=" in head


async def test_forged_screening_headers_are_removed(
    start_filter: StartFilter, accounts: Accounts, bus: Bus, spamd: Spamd
) -> None:
    node = await start_filter(**scanners(spamd))
    forged = b"X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-100\r\n" + CLEAN
    assert (await deliver(node, forged)).startswith("250 ")
    [msg] = await stream_messages(bus)
    assert msg.body.count(b"X-Spam-Status:") == 1  # ours only
    assert b"score=-100" not in msg.body
    assert msg.body.endswith(CLEAN)


@dataclass
class HungScanner:
    port: int
    held: list[asyncio.StreamWriter] = field(default_factory=list)  # connections it took


@pytest.fixture
async def hung_scanner() -> AsyncIterator[HungScanner]:
    """A TCP server that accepts and never answers: a scanner that hangs."""
    scanner = HungScanner(free_port())

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        scanner.held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", scanner.port)
    yield scanner
    server.close()
    for writer in scanner.held:
        writer.close()


async def test_clamd_down_is_451(start_filter: StartFilter, accounts: Accounts, bus: Bus) -> None:
    node = await start_filter(clamd_enabled=True, clamd_port=free_port())
    assert await deliver(node, CLEAN) == str(replies.SCANNER_UNAVAILABLE)
    assert await stream_messages(bus) == []


async def test_hung_scanner_is_451_by_the_scan_timeout(
    start_filter: StartFilter, accounts: Accounts, bus: Bus, hung_scanner: HungScanner
) -> None:
    """The scanner takes the connection and never answers: only the filter's own scan
    timeout can end the wait (the client would wait 30 s for its reply), and it is counted
    as a timeout, not an error."""
    timeouts = count("postern_scan_verdicts_total", scanner="spamd", verdict="timeout")
    failures = count("postern_scan_verdicts_total", scanner="spamd", verdict="error")
    node = await start_filter(spamd_enabled=True, spamd_port=hung_scanner.port, scan_timeout=1.0)
    assert await deliver(node, CLEAN) == "451 4.7.1 Content scanning unavailable; try again later"
    assert hung_scanner.held  # the filter reached the scanner, which never said a word
    assert count("postern_scan_verdicts_total", scanner="spamd", verdict="timeout") == timeouts + 1
    assert count("postern_scan_verdicts_total", scanner="spamd", verdict="error") == failures
    assert await stream_messages(bus) == []


async def test_fail_open_accepts_with_a_header(
    start_filter: StartFilter, accounts: Accounts, bus: Bus, hung_scanner: HungScanner, clamd: Clamd
) -> None:
    node = await start_filter(
        **scanners(clamd=clamd),
        spamd_enabled=True,
        spamd_port=hung_scanner.port,
        spamd_fail_open=True,
        scan_timeout=1.0,
    )
    assert (await deliver(node, CLEAN)).startswith("250 ")
    [msg] = await stream_messages(bus)
    assert b"\r\nX-Postern-Unscanned: spamd (scanner unavailable" in msg.body
    assert not msg.scan.spam_scanned and msg.scan.virus_scanned
    # a virus is still refused while spamd is away
    assert (await deliver(node, with_attachment(EICAR))).startswith("554 5.7.1")


async def test_large_messages_skip_spamd_with_a_header(
    start_filter: StartFilter, accounts: Accounts, bus: Bus, spamd: Spamd
) -> None:
    node = await start_filter(**scanners(spamd), spamd_max_size=1000)
    big = gtube_message() + (b"y" * 70 + b"\r\n") * 20
    assert (await deliver(node, big)).startswith("250 ")  # GTUBE, but never shown to spamd
    [msg] = await stream_messages(bus)
    assert b"X-Postern-Unscanned: spamd (message larger than 1000 bytes)" in msg.body


async def test_submissions_are_virus_scanned_but_not_spam_scanned(
    start_filter: StartFilter, accounts: Accounts, bus: Bus, spamd: Spamd, clamd: Clamd
) -> None:
    node = await start_filter(**scanners(spamd, clamd))
    client = await RawClient.connect(node.settings.submissions_port, tls=client_tls(node))
    await client.expect("EHLO client.test", 250)
    await client.login(ALICE, PASSWORD)
    await client.expect(f"MAIL FROM:<{ALICE}>", 250)
    await client.expect(f"RCPT TO:<{BOB}>", 250)
    assert (await client.send_message(gtube_message())).startswith("250 ")
    [msg] = await stream_messages(bus)
    assert msg.scan.virus_scanned and not msg.scan.spam_scanned
    await client.expect(f"MAIL FROM:<{ALICE}>", 250)
    await client.expect(f"RCPT TO:<{BOB}>", 250)
    assert (await client.send_message(with_attachment(EICAR))).startswith("554 5.7.1")
