"""Submission (STARTTLS) and submissions (implicit TLS): AUTH only after TLS, sender
ownership, remote mail to the outbound stream, and the failed-login throttle."""

from __future__ import annotations

import asyncio
import base64

import aiosmtplib
import pytest
from prometheus_client import REGISTRY

from mailcore.bus import names
from mailcore.bus.connect import Bus
from services.filter.app import FilterNode
from services.filter.smtp import replies
from tests.services.filter.conftest import (
    ALIAS,
    ALICE,
    BOB,
    PASSWORD,
    Accounts,
    RawClient,
    StartFilter,
    client_tls,
    stream_messages,
)

MESSAGE = b"From: alice@example.test\r\nSubject: out\r\n\r\nHi.\r\n"


def ext(reply: list[str]) -> set[str]:
    """EHLO keywords from a multi-line reply."""
    return {line[4:] for line in reply[1:]}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def test_auth_before_starttls_is_refused(mx: FilterNode) -> None:
    client = await RawClient.connect(mx.settings.submission_port)
    features = ext(await client.command("EHLO client.test"))
    assert "STARTTLS" in features
    assert not any("AUTH" in line for line in features)  # not offered in the clear
    line = await client.expect(f"AUTH PLAIN {b64(chr(0) + ALICE + chr(0) + PASSWORD)}", 538)
    assert line == str(replies.AUTH_ENCRYPTION_REQUIRED)
    await client.expect("AUTH LOGIN", 538)
    assert await client.expect("MAIL FROM:<alice@example.test>", 530) == str(
        replies.STARTTLS_REQUIRED
    )
    await client.starttls(client_tls(mx))
    await client.expect("MAIL FROM:<alice@example.test>", 503)  # RFC 3207: EHLO again
    features = ext(await client.command("EHLO client.test"))
    assert "AUTH PLAIN LOGIN" in features and "STARTTLS" not in features
    await client.expect("MAIL FROM:<alice@example.test>", 530)  # AUTH required
    assert await client.login(ALICE, PASSWORD) == str(replies.AUTH_OK)


async def test_authenticated_submission_local_and_remote(mx: FilterNode, bus: Bus) -> None:
    client = await RawClient.connect(mx.settings.submission_port)
    await client.expect("EHLO client.test", 250)
    await client.starttls(client_tls(mx))
    await client.expect("EHLO client.test", 250)
    await client.expect("AUTH PLAIN", 334)  # no initial response: a 334 challenge
    client.send(base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()) + b"\r\n")
    assert (await client.reply()) == [str(replies.AUTH_OK)]
    await client.expect("MAIL FROM:<bob@example.test>", 553)  # not hers
    await client.expect(f"MAIL FROM:<{ALIAS}>", 250)  # her alias is
    await client.expect("RCPT TO:<friend@remote.test>", 250)  # authenticated: may relay
    await client.expect(f"RCPT TO:<{BOB}>", 250)
    final = await client.send_message(MESSAGE)
    assert final.startswith("250 2.0.0 Ok: queued as ")
    message_id = final.rsplit(" ", 1)[1]

    [inbound] = await stream_messages(bus)
    [outbound] = await stream_messages(bus, names.STREAM_OUTBOUND)
    assert inbound.id == outbound.id == message_id  # one message, two destinations
    assert inbound.recipients == [BOB]
    assert outbound.recipients == ["friend@remote.test"]
    assert outbound.client.auth_user == ALICE and outbound.client.tls
    assert outbound.client.listener == "submission"
    head = inbound.body[: -len(MESSAGE)].decode()
    assert "with ESMTPSA (TLSv1." in head
    assert (
        "Authentication-Results: mx.example.test;\r\n\tauth=pass smtp.auth=alice@example.test"
        in (head)
    )


async def test_sender_plus_tag_is_the_users_own(mx: FilterNode) -> None:
    client = await RawClient.connect(mx.settings.submission_port)
    await client.expect("EHLO client.test", 250)
    await client.starttls(client_tls(mx))
    await client.expect("EHLO client.test", 250)
    await client.login(ALICE, PASSWORD)
    await client.expect("MAIL FROM:<Alice+news@Example.test>", 250)
    await client.expect("RSET", 250)
    await client.expect("MAIL FROM:<>", 553)


async def test_submissions_implicit_tls_with_auth_login(mx: FilterNode, bus: Bus) -> None:
    client = await RawClient.connect(mx.settings.submissions_port, tls=client_tls(mx))
    features = ext(await client.command("EHLO client.test"))
    assert "AUTH PLAIN LOGIN" in features
    assert "STARTTLS" not in features
    assert await client.expect("AUTH LOGIN", 334) == "334 " + b64("Username:")
    assert await client.expect(b64(BOB), 334) == "334 " + b64("Password:")
    assert await client.expect(b64(PASSWORD), 235) == str(replies.AUTH_OK)
    await client.expect(f"MAIL FROM:<{BOB}>", 250)
    await client.expect(f"RCPT TO:<{ALICE}>", 250)
    assert (await client.send_message(MESSAGE)).startswith("250 ")
    [msg] = await stream_messages(bus)
    assert msg.client.listener == "submissions" and msg.client.auth_user == BOB


async def test_aiosmtplib_client_submits(mx: FilterNode, bus: Bus) -> None:
    smtp = aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=mx.settings.submission_port,
        start_tls=True,
        tls_context=client_tls(mx),
    )
    await smtp.connect()
    await smtp.login(ALICE, PASSWORD)
    errors, _ = await smtp.sendmail(ALICE, [BOB], MESSAGE)
    assert errors == {}
    await smtp.quit()
    assert len(await stream_messages(bus)) == 1


async def test_auth_cancel_and_garbage(mx: FilterNode) -> None:
    client = await RawClient.connect(mx.settings.submissions_port, tls=client_tls(mx))
    await client.expect("EHLO client.test", 250)
    await client.expect("AUTH LOGIN", 334)
    assert await client.expect("*", 501) == str(replies.AUTH_CANCELLED)
    await client.expect("AUTH PLAIN !!!notbase64", 501)
    await client.expect("AUTH CRAM-MD5", 504)
    await client.expect(f"AUTH PLAIN {b64('only-two' + chr(0) + 'parts')}", 501)
    assert await client.login(ALICE, PASSWORD) == str(replies.AUTH_OK)
    await client.expect("AUTH PLAIN", 503)  # already authenticated


async def test_auth_as_someone_else_fails(mx: FilterNode) -> None:
    client = await RawClient.connect(mx.settings.submissions_port, tls=client_tls(mx))
    await client.expect("EHLO client.test", 250)
    token = b64(f"{BOB}\0{ALICE}\0{PASSWORD}")  # authorise as Bob with Alice's password
    await client.expect(f"AUTH PLAIN {token}", 535)


async def test_plaintext_auth_on_loopback_when_allowed(
    start_filter: StartFilter, accounts: Accounts
) -> None:
    node = await start_filter(allow_plaintext_auth="loopback")
    client = await RawClient.connect(node.settings.submission_port)
    features = ext(await client.command("EHLO client.test"))
    assert "AUTH PLAIN LOGIN" in features  # 127.0.0.1 is loopback
    assert await client.login(ALICE, PASSWORD) == str(replies.AUTH_OK)


async def test_no_auth_on_the_mx_port(mx: FilterNode) -> None:
    client = await RawClient.connect(mx.settings.smtp_port)
    await client.expect("EHLO client.test", 250)
    await client.starttls(client_tls(mx))
    features = await client.command("EHLO client.test")
    assert not any("AUTH" in line for line in features)
    await client.expect(f"AUTH PLAIN {b64(chr(0) + ALICE + chr(0) + PASSWORD)}", 503)


async def test_failed_logins_are_delayed_and_throttled_per_ip(
    start_filter: StartFilter, accounts: Accounts
) -> None:
    before = REGISTRY.get_sample_value("postern_auth_failures_total", {"protocol": "smtp"}) or 0
    node = await start_filter(auth_fail_delay=0.3, login_max_failures=3)
    client = await RawClient.connect(node.settings.submissions_port, tls=client_tls(node))
    await client.expect("EHLO client.test", 250)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await client.login(ALICE, "wrong password 1") == str(replies.AUTH_FAILED)
    assert loop.time() - started >= 0.3  # the failure cost the client the delay
    assert await client.login(ALICE, "wrong password 2") == str(replies.AUTH_FAILED)
    assert await client.login(ALICE, "wrong password 3") == str(replies.AUTH_THROTTLED)
    assert await client.closed()
    # a new connection from the same address may not even try, the right password included
    again = await RawClient.connect(node.settings.submissions_port, tls=client_tls(node))
    await again.expect("EHLO client.test", 250)
    assert await again.login(ALICE, PASSWORD) == str(replies.AUTH_THROTTLED)
    after = REGISTRY.get_sample_value("postern_auth_failures_total", {"protocol": "smtp"})
    assert after == before + 3


@pytest.mark.parametrize("payload", [b"STARTTLS\r\nNOOP\r\n", b"STARTTLS\r\nMAIL FROM:<x@y.z>\r\n"])
async def test_plaintext_pipelined_after_starttls_is_discarded(
    mx: FilterNode, payload: bytes
) -> None:
    """RFC 3207 §4.2 (the STARTTLS command-injection class): nothing sent before the
    handshake may be executed after it."""
    client = await RawClient.connect(mx.settings.smtp_port)
    await client.expect("EHLO client.test", 250)
    client.send(payload)
    assert (await client.reply())[0].startswith("220")
    await client.writer.start_tls(client_tls(mx))
    # If the injected command had survived, its reply would come before EHLO's.
    reply = await client.command("EHLO client.test")
    assert reply[0] == "250-mx.example.test"
    await client.expect("NOOP", 250)
