"""The MX listener against a live filter node and the real NATS: who may send what,
limits, framing errors, pipelining, and the hand-off's result on the bus."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP
from prometheus_client import REGISTRY

from mailcore.bus import names
from mailcore.bus.connect import Bus
from services.filter.app import FilterNode
from services.filter.listeners import listener_specs
from services.filter.smtp import replies
from services.filter.smtp.session import Session
from tests.services.filter.conftest import (
    ALIAS,
    ALICE,
    BOB,
    Accounts,
    RawClient,
    StartFilter,
    stream_messages,
)

MESSAGE = b"From: sender@remote.test\r\nSubject: hello\r\n\r\nHello Alice.\r\n"


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def session(node: FilterNode) -> RawClient:
    client = await RawClient.connect(node.settings.smtp_port)
    await client.expect("EHLO client.test", 250)
    return client


async def test_greeting_and_ehlo_features(mx: FilterNode) -> None:
    client = await RawClient.connect(mx.settings.smtp_port)
    assert client.greeting == ["220 mx.example.test ESMTP Postern"]
    reply = await client.command("EHLO client.test")
    assert reply[0] == "250-mx.example.test"
    features = {line[4:] for line in reply[1:]}
    assert features == {
        "PIPELINING",
        "SIZE 50000000",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
    }  # no AUTH on the MX port
    await client.expect("QUIT", 221)
    assert await client.closed()


async def test_clean_mail_is_handed_off_after_the_puback(mx: FilterNode, bus: Bus) -> None:
    accepted = metric("postern_smtp_accepted_total", listener="smtp")
    handoffs = metric("postern_handoff_seconds_count")
    client = await session(mx)
    await client.expect("MAIL FROM:<sender@remote.test>", 250)
    await client.expect("RCPT TO:<Alice@Example.TEST>", 250)
    await client.expect(f"RCPT TO:<{ALIAS}>", 250)  # the alias reaches Alice too: one copy
    await client.expect("RCPT TO:<bob+lists@example.test>", 250)  # plus-addressing
    final = await client.send_message(MESSAGE)
    assert final.startswith("250 2.0.0 Ok: queued as ")
    message_id = final.rsplit(" ", 1)[1]

    [msg] = await stream_messages(bus)  # already there: 250 came after the PubAck
    assert msg.id == message_id
    assert msg.recipients == [ALICE, BOB]
    assert msg.mail_from == "sender@remote.test"
    assert msg.client.ip == "127.0.0.1" and msg.client.helo == "client.test"
    assert msg.client.listener == "smtp" and msg.client.auth_user is None
    body = msg.body
    assert body.endswith(MESSAGE)
    head = body[: -len(MESSAGE)].decode()
    assert head.startswith("Received: from client.test ([127.0.0.1])\r\n\tby mx.example.test")
    assert f"with ESMTP id {message_id}" in head
    assert "for <" not in head  # three recipients: none is named
    assert "Authentication-Results: mx.example.test; none\r\n" in head
    assert metric("postern_smtp_accepted_total", listener="smtp") == accepted + 1
    assert metric("postern_handoff_seconds_count") == handoffs + 1
    assert (await stream_messages(bus, names.STREAM_OUTBOUND)) == []


async def test_unknown_local_user_is_550(mx: FilterNode, bus: Bus) -> None:
    before = metric("postern_smtp_rejected_total", reason="unknown_user")
    client = await session(mx)
    await client.expect("MAIL FROM:<sender@remote.test>", 250)
    line = await client.expect("RCPT TO:<nobody@example.test>", 550)
    assert line == str(replies.UNKNOWN_USER)
    await client.expect('RCPT TO:<"quoted local"@example.test>', 550)
    await client.expect("DATA", 503)  # no valid recipient
    assert metric("postern_smtp_rejected_total", reason="unknown_user") == before + 2


async def test_relay_attempt_is_554_and_nothing_is_published(mx: FilterNode, bus: Bus) -> None:
    client = await session(mx)
    await client.expect("MAIL FROM:<sender@remote.test>", 250)
    line = await client.expect("RCPT TO:<victim@elsewhere.test>", 554)
    assert line == "554 5.7.1 Relay access denied"
    await client.expect("RCPT TO:<victim@[192.0.2.1]>", 554)
    await client.expect(f"RCPT TO:<{ALICE}>", 250)
    assert (await client.send_message(MESSAGE)).startswith("250 ")
    [msg] = await stream_messages(bus)
    assert msg.recipients == [ALICE]  # the refused recipients went nowhere
    assert await stream_messages(bus, names.STREAM_OUTBOUND) == []


async def test_postmaster_and_null_sender(mx: FilterNode, accounts: Accounts, bus: Bus) -> None:
    await accounts.directory.add_alias("postmaster@example.test", [BOB])
    await asyncio.sleep(0.2)  # the node's watched copy follows the bucket
    client = await session(mx)
    await client.expect("MAIL FROM:<>", 250)  # bounces come from the null sender
    await client.expect("RCPT TO:<Postmaster>", 250)
    assert (await client.send_message(MESSAGE)).startswith("250 ")
    [msg] = await stream_messages(bus)
    assert msg.recipients == [BOB] and msg.mail_from == ""


async def test_sequence_errors(mx: FilterNode) -> None:
    client = await RawClient.connect(mx.settings.smtp_port)
    await client.expect("MAIL FROM:<a@remote.test>", 503)  # EHLO first
    await client.expect("EHLO client.test", 250)
    await client.expect("RCPT TO:<alice@example.test>", 503)  # MAIL first
    await client.expect("MAIL FROM:<a@remote.test>", 250)
    await client.expect("MAIL FROM:<a@remote.test>", 503)  # nested
    await client.expect("DATA", 503)  # no RCPT
    await client.expect("RSET", 250)
    await client.expect("RCPT TO:<alice@example.test>", 503)  # RSET ended the transaction
    await client.expect("VRFY alice@example.test", 252)
    await client.expect("NOOP", 250)
    await client.expect("HELP", 214)
    await client.expect("EXPN list", 502)
    await client.expect("MAIL FROM:<a@remote.test> RET=HDRS", 555)
    await client.expect("MAIL FROM:<not an address>", 553)


async def test_helo_clients_cannot_use_parameters(mx: FilterNode) -> None:
    client = await RawClient.connect(mx.settings.smtp_port)
    assert (await client.command("HELO client.test")) == ["250 mx.example.test"]
    await client.expect("MAIL FROM:<a@remote.test> SIZE=10", 501)
    await client.expect("MAIL FROM:<a@remote.test>", 250)


async def test_size_limits(start_filter: StartFilter, accounts: Accounts, bus: Bus) -> None:
    node = await start_filter(max_message_size=2000)
    client = await session(node)
    await client.expect("MAIL FROM:<a@remote.test> SIZE=2001", 552)  # RFC 1870 §6.1
    await client.expect("MAIL FROM:<a@remote.test> SIZE=100", 250)
    await client.expect(f"RCPT TO:<{ALICE}>", 250)
    final = await client.send_message(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 40)
    assert final == str(replies.MESSAGE_TOO_BIG)
    # the session is in step: the next transaction works
    await client.expect("MAIL FROM:<a@remote.test>", 250)
    await client.expect(f"RCPT TO:<{ALICE}>", 250)
    assert (await client.send_message(MESSAGE)).startswith("250 ")
    assert len(await stream_messages(bus)) == 1


async def test_recipient_limit(start_filter: StartFilter, accounts: Accounts) -> None:
    node = await start_filter(max_recipients=2)
    client = await session(node)
    await client.expect("MAIL FROM:<a@remote.test>", 250)
    await client.expect(f"RCPT TO:<{ALICE}>", 250)
    await client.expect(f"RCPT TO:<{BOB}>", 250)
    assert await client.expect(f"RCPT TO:<{ALIAS}>", 452) == "452 4.5.3 Too many recipients"


async def test_per_ip_connection_limit(start_filter: StartFilter, accounts: Accounts) -> None:
    before = metric("postern_smtp_rejected_total", reason="connection_limit")
    node = await start_filter(max_connections_per_ip=2)
    first = await RawClient.connect(node.settings.smtp_port)
    second = await RawClient.connect(node.settings.smtp_port)
    reader, writer = await asyncio.open_connection("127.0.0.1", node.settings.smtp_port)
    third = RawClient(reader, writer)
    assert await third.reply() == [str(replies.TOO_MANY_CONNECTIONS)]
    assert await third.closed()
    await first.expect("QUIT", 221)
    await first.closed()
    await asyncio.sleep(0.1)
    fourth = await RawClient.connect(node.settings.smtp_port)  # a slot is free again
    assert fourth.greeting[0].startswith("220 ")
    await second.expect("NOOP", 250)
    assert metric("postern_smtp_rejected_total", reason="connection_limit") == before + 1


async def test_too_many_bad_commands_end_the_session(
    start_filter: StartFilter, accounts: Accounts
) -> None:
    node = await start_filter(max_bad_commands=3)
    client = await session(node)
    await client.expect("FOO", 500)
    await client.expect("BAR", 500)
    assert await client.command("BAZ") == [str(replies.UNKNOWN_COMMAND)]
    assert await client.reply() == [str(replies.TOO_MANY_ERRORS)]
    assert await client.closed()


async def test_rejected_recipients_count_as_errors(
    start_filter: StartFilter, accounts: Accounts
) -> None:
    node = await start_filter(max_bad_commands=3)
    client = await session(node)
    await client.expect("MAIL FROM:<a@remote.test>", 250)
    for name in ("a", "b"):
        await client.expect(f"RCPT TO:<{name}@example.test>", 550)
    await client.expect("RCPT TO:<c@example.test>", 550)
    assert await client.reply() == [str(replies.TOO_MANY_ERRORS)]  # a dictionary attack ends
    assert await client.closed()


async def test_idle_client_times_out_with_421(
    start_filter: StartFilter, accounts: Accounts
) -> None:
    node = await start_filter(command_timeout=0.5)
    client = await session(node)
    assert await client.reply(timeout=10) == [str(replies.TIMEOUT)]
    assert await client.closed()


async def test_session_timeout_caps_a_busy_session(
    start_filter: StartFilter, accounts: Accounts
) -> None:
    node = await start_filter(session_timeout=1.0)
    client = await session(node)

    async def keep_busy() -> None:
        while True:
            await client.expect("NOOP", 250)
            await asyncio.sleep(0.1)

    with pytest.raises((ConnectionError, AssertionError)):
        async with asyncio.timeout(20):
            await keep_busy()


async def test_overlong_command_line_is_500_and_the_session_goes_on(mx: FilterNode) -> None:
    client = await session(mx)
    line = await client.expect("NOOP " + "x" * 10_000, 500)
    assert line == str(replies.LINE_TOO_LONG)
    await client.expect("NOOP", 250)


async def test_bare_lf_in_commands_is_refused(mx: FilterNode, bus: Bus) -> None:
    client = await session(mx)
    client.send(b"MAIL FROM:<a@remote.test>\n")
    assert await client.reply() == [str(replies.BARE_LINE_ENDING)]
    client.send(b"MAIL FROM:<a@remote.test>\rRCPT TO:<alice@example.test>\r\n")
    assert await client.reply() == [str(replies.BARE_LINE_ENDING)]
    await client.expect("MAIL FROM:<a@remote.test>", 250)  # nothing above started a transaction


async def test_overlong_data_line_is_refused_and_the_session_goes_on(
    mx: FilterNode, bus: Bus
) -> None:
    client = await session(mx)
    await client.expect("MAIL FROM:<a@remote.test>", 250)
    await client.expect(f"RCPT TO:<{ALICE}>", 250)
    final = await client.send_message(b"Subject: long\r\n\r\n" + b"y" * 1200 + b"\r\n")
    assert final == str(replies.DATA_LINE_TOO_LONG)
    await client.expect("MAIL FROM:<a@remote.test>", 250)
    await client.expect(f"RCPT TO:<{ALICE}>", 250)
    assert (await client.send_message(MESSAGE)).startswith("250 ")
    assert len(await stream_messages(bus)) == 1


@pytest.mark.parametrize(
    ("line", "accepted"),
    [(b"y" * 998, True), (b"." + b"y" * 997, True), (b"y" * 999, False)],
    ids=["998", "998-dot-stuffed", "999"],
)
async def test_data_line_limit_is_998_octets(
    mx: FilterNode, bus: Bus, line: bytes, accepted: bool
) -> None:
    """RFC 5321 §4.5.3.1.6: 998 octets and CRLF; a line of 999 is refused (the period a
    client adds for transparency does not count)."""
    client = await session(mx)
    await client.expect("MAIL FROM:<a@remote.test>", 250)
    await client.expect(f"RCPT TO:<{ALICE}>", 250)
    final = await client.send_message(b"Subject: edge\r\n\r\n" + line + b"\r\n")
    if accepted:
        assert final.startswith("250 ")
        assert len(await stream_messages(bus)) == 1
    else:
        assert final == str(replies.DATA_LINE_TOO_LONG)
        assert await stream_messages(bus) == []


async def test_pipelined_transaction(mx: FilterNode, bus: Bus) -> None:
    client = await session(mx)
    client.send(
        b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
        b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
    )
    codes = [int((await client.reply())[0][:3]) for _ in range(5)]
    assert codes == [250, 250, 550, 250, 354]
    client.send(MESSAGE + b".\r\nMAIL FROM:<b@remote.test>\r\nRCPT TO:<bob@example.test>\r\n")
    assert (await client.reply())[0].startswith("250 2.0.0 Ok: queued as")
    assert (await client.reply())[0].startswith("250 2.1.0")
    assert (await client.reply())[0].startswith("250 2.1.5")
    [msg] = await stream_messages(bus)
    assert msg.recipients == [ALICE, BOB]


async def test_smtputf8(mx: FilterNode, accounts: Accounts, bus: Bus) -> None:
    await accounts.directory.add_user("jörg@example.test", "long enough password")
    await asyncio.sleep(0.2)
    client = await session(mx)
    await client.expect("MAIL FROM:<jörg@remote.test>", 553)  # needs SMTPUTF8
    await client.expect("MAIL FROM:<jörg@remote.test> SMTPUTF8", 250)
    await client.expect("RCPT TO:<Jörg@example.test>", 250)
    assert (await client.send_message("Subject: grüße\r\n\r\nä\r\n".encode())).startswith("250")
    [msg] = await stream_messages(bus)
    assert msg.recipients == ["jörg@example.test"]
    assert b"with UTF8SMTP id" in msg.body


async def test_internal_failure_is_451_without_details(
    mx: FilterNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = metric("postern_smtp_rejected_total", reason="internal")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internal detail")

    assert mx.ctx is not None
    monkeypatch.setattr(mx.ctx.policy, "route", broken)
    client = await session(mx)
    await client.expect("MAIL FROM:<a@remote.test>", 250)
    reply = await client.command(f"RCPT TO:<{ALICE}>")
    assert reply == ["451 4.3.0 Internal error; try again later"]
    assert "secret" not in " ".join(reply)
    await client.expect("NOOP", 250)  # the session survives
    assert metric("postern_smtp_rejected_total", reason="internal") == before + 1


async def test_handle_exception_is_overridden(mx: FilterNode) -> None:
    """aiosmtpd's own handle_exception answers 500 with the exception text; ours does not."""
    assert Session.handle_exception is not SMTP.handle_exception
    assert mx.ctx is not None
    probe = Session(mx.ctx, listener_specs(mx.settings)[0])
    status = await probe.handle_exception(ValueError("leak me"))
    assert status == "451 4.3.0 Internal error; try again later"


async def test_storage_full_is_452(start_filter: StartFilter, accounts: Accounts, bus: Bus) -> None:
    # TEST_LIMITS give the inbound stream 256 MiB; a high-water mark of 0.01% is ~27 KB.
    node = await start_filter(inbound_high_water=0.0001)
    client = await session(node)
    big = b"Subject: fill\r\n\r\n" + (b"z" * 76 + b"\r\n") * 400
    await client.expect("MAIL FROM:<a@remote.test>", 250)
    await client.expect(f"RCPT TO:<{ALICE}>", 250)
    assert (await client.send_message(big)).startswith("250 ")
    assert node.gate is not None
    await node.gate.refresh()
    line = await client.expect("MAIL FROM:<a@remote.test>", 452)
    assert line == "452 4.3.1 Insufficient system storage; try again later"
    await bus.js.purge_stream(names.STREAM_INBOUND)  # the store caught up
    await node.gate.refresh()
    await client.expect("MAIL FROM:<a@remote.test>", 250)


async def test_sessions_gauge_returns_to_zero(mx: FilterNode) -> None:
    client = await session(mx)
    assert metric("postern_smtp_sessions_open", listener="smtp") >= 1
    await client.expect("QUIT", 221)
    await client.closed()
    await asyncio.sleep(0.1)
    assert metric("postern_smtp_sessions_open", listener="smtp") == 0


async def test_a_client_that_half_closes_is_disconnected(mx: FilterNode) -> None:
    client = await session(mx)
    client.writer.write_eof()  # EOF from the client: the server must not keep the socket
    assert await client.closed()
    await asyncio.sleep(0.1)
    assert metric("postern_smtp_sessions_open", listener="smtp") == 0


async def test_idle_timeout_after_a_message(
    start_filter: StartFilter, accounts: Accounts, bus: Bus
) -> None:
    """The long deadline held while a message is screened and handed off does not outlive
    it: the next idle period ends with the usual command timeout."""
    node = await start_filter(command_timeout=0.5)
    client = await session(node)
    await client.expect("MAIL FROM:<a@remote.test>", 250)
    await client.expect(f"RCPT TO:<{ALICE}>", 250)
    assert (await client.send_message(MESSAGE)).startswith("250 ")
    assert await client.reply(timeout=10) == [str(replies.TIMEOUT)]
    assert await client.closed()


def test_an_existing_certificate_on_a_read_only_mount_is_only_read(tmp_path: Path) -> None:
    from mailcore.tls import ensure_certificate
    from services.filter.app import tls_context
    from tests.services.filter.conftest import filter_settings

    settings = filter_settings(tmp_path)
    ensure_certificate(settings.cert_path, settings.key_path, "mx.example.test")
    tls_dir = settings.cert_path.parent
    tls_dir.chmod(0o555)  # as compose mounts it (root ignores modes, so also check no lock)
    try:
        assert tls_context(settings) is not None
        assert not (tls_dir / ".cert.lock").exists()
    finally:
        tls_dir.chmod(0o755)
