"""SMTP smuggling (CVE-2023-51764 and kin) against a live filter: whatever ending a sender
hides a second message behind, no second message ever reaches the bus, and the session
stays in step afterwards."""

from __future__ import annotations

import pytest

from mailcore.bus.connect import Bus
from services.filter.app import FilterNode
from services.filter.smtp import replies
from tests.services.filter.conftest import ALICE, BOB, RawClient, stream_messages

ENDINGS = [
    b"\n.\n",
    b"\r.\r",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r\n.\r",
    b"\r.\r\n",
    b"\r.\n",
    b"\n.\r",
    b"\n..\n",
    b"\r\n.\r\r\n",
]

SMUGGLED = (
    b"MAIL FROM:<ceo@example.test>\r\n"
    b"RCPT TO:<" + BOB.encode() + b">\r\n"
    b"DATA\r\n"
    b"From: ceo@example.test\r\n"
    b"Subject: smuggled\r\n"
    b"\r\n"
    b"wire the money\r\n"
)


@pytest.mark.parametrize("ending", ENDINGS, ids=lambda e: repr(e).replace("\\", "/"))
async def test_smuggling_ending_never_makes_a_second_message(
    mx: FilterNode, bus: Bus, ending: bytes
) -> None:
    client = await RawClient.connect(mx.settings.smtp_port)
    await client.expect("EHLO attacker.test", 250)
    await client.expect("MAIL FROM:<sender@remote.test>", 250)
    await client.expect(f"RCPT TO:<{ALICE}>", 250)
    await client.expect("DATA", 354)
    # What a vulnerable relay forwards: the body verbatim, then its own <CRLF>.<CRLF>.
    client.send(b"Subject: first\r\n\r\nhello" + ending + SMUGGLED + b"\r\n.\r\n")
    assert await client.reply() == [str(replies.BARE_LINE_ENDING_DATA)]
    # In step: the next command is a command, and nothing was published.
    await client.expect("NOOP", 250)
    await client.expect("QUIT", 221)
    assert await stream_messages(bus) == []


async def test_smuggling_with_pipelined_commands_after_the_real_end(
    mx: FilterNode, bus: Bus
) -> None:
    client = await RawClient.connect(mx.settings.smtp_port)
    await client.expect("EHLO attacker.test", 250)
    client.send(b"MAIL FROM:<sender@remote.test>\r\nRCPT TO:<" + ALICE.encode() + b">\r\nDATA\r\n")
    assert [(await client.reply())[0][:3] for _ in range(3)] == ["250", "250", "354"]
    client.send(b"Subject: x\r\n\r\nbody\n.\n" + SMUGGLED + b".\r\nNOOP\r\n")
    assert await client.reply() == [str(replies.BARE_LINE_ENDING_DATA)]
    assert (await client.reply())[0].startswith("250 2.0.0 Ok")  # the NOOP, as a command
    assert await stream_messages(bus) == []


async def test_a_clean_message_after_a_refused_one_is_accepted_once(
    mx: FilterNode, bus: Bus
) -> None:
    client = await RawClient.connect(mx.settings.smtp_port)
    await client.expect("EHLO client.test", 250)
    await client.expect("MAIL FROM:<sender@remote.test>", 250)
    await client.expect(f"RCPT TO:<{ALICE}>", 250)
    await client.expect("DATA", 354)
    client.send(b"Subject: one\r\n\r\nbare\rCR\r\n.\r\n")
    assert await client.reply() == [str(replies.BARE_LINE_ENDING_DATA)]
    await client.expect("MAIL FROM:<sender@remote.test>", 250)
    await client.expect(f"RCPT TO:<{ALICE}>", 250)
    assert (await client.send_message(b"Subject: two\r\n\r\nfine\r\n")).startswith("250 ")
    [msg] = await stream_messages(bus)
    assert msg.body.endswith(b"Subject: two\r\n\r\nfine\r\n")
