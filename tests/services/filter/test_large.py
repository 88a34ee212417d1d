"""A 25 MB message goes through the Object Store and arrives byte-identical."""

from __future__ import annotations

import hashlib
import os

from mailcore.bus.connect import Bus
from services.filter.headers import header_end
from tests.services.filter.conftest import (
    ALICE,
    Accounts,
    RawClient,
    StartFilter,
    message_body,
    stream_messages,
)
from tests.support.daemons import Clamd, Spamd

SIZE = 25 * 1024 * 1024


def big_message() -> bytes:
    """25 MiB: headers, then base64-like lines of random data (with a dot-led line or two,
    so transparency is exercised)."""
    head = b"From: carol@remote.test\r\nSubject: the archive\r\nMIME-Version: 1.0\r\n\r\n"
    line_count = (SIZE - len(head)) // 78
    raw = os.urandom(line_count * 57)
    import base64

    lines = [base64.b64encode(raw[i : i + 57]) for i in range(0, len(raw), 57)]
    lines[1000] = b"." + lines[1000][1:]
    lines[2000] = b".." + lines[2000][2:]
    return head + b"\r\n".join(lines) + b"\r\n"


async def test_25_mb_message_is_handed_off_byte_identical(
    start_filter: StartFilter, accounts: Accounts, bus: Bus, clamd: Clamd, spamd: Spamd
) -> None:
    node = await start_filter(
        clamd_enabled=True,
        clamd_host=clamd.host,
        clamd_port=clamd.port,
        spamd_enabled=True,
        spamd_host=spamd.host,
        spamd_port=spamd.port,
        handoff_timeout=60.0,
    )
    original = big_message()
    assert len(original) > 25_000_000
    client = await RawClient.connect(node.settings.smtp_port)
    await client.expect("EHLO client.test", 250)
    await client.expect(f"MAIL FROM:<carol@remote.test> SIZE={len(original)}", 250)
    await client.expect(f"RCPT TO:<{ALICE}>", 250)
    final = await client.send_message(original)
    assert final.startswith("250 2.0.0 Ok: queued as ")

    [msg] = await stream_messages(bus)
    assert msg.body_ref is not None and msg.body == b""  # claim check: the Object Store
    stored = await message_body(bus, msg)
    assert len(stored) == msg.size
    # Only our header fields come before the client's bytes, which are untouched.
    assert stored.endswith(original)
    added = stored[: len(stored) - len(original)]
    assert header_end(added + b"\r\n") == len(added)
    names = [line.split(b":", 1)[0] for line in added.split(b"\r\n") if line[:1] not in b" \t"]
    assert names == [b"Received", b"Authentication-Results", b"X-Postern-Unscanned"]
    assert hashlib.sha256(stored[len(added) :]).digest() == hashlib.sha256(original).digest()
    assert msg.scan.virus_scanned and not msg.scan.spam_scanned  # too big for spamd
