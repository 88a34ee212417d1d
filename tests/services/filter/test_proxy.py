"""PROXY-protocol-only ports (behind HAProxy): the real client address from v1 and v2
headers, trusted proxies only, no greeting without a header, and implicit TLS that starts
after the header."""

from __future__ import annotations

import asyncio

import aiosmtplib

from mailcore.bus.connect import Bus
from services.ctl.daemons import free_port
from services.filter.app import FilterNode
from services.filter.proxy import TrustedNetworks
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
from tests.services.filter.haproxy import HaproxyLike, v1, v2


async def start_proxied(start_filter: StartFilter, **extra: object) -> FilterNode:
    return await start_filter(proxy_smtp_port=free_port(), **extra)


async def closed_without_a_word(reader: asyncio.StreamReader) -> bool:
    try:
        async with asyncio.timeout(15):
            return await reader.read() == b""
    except ConnectionResetError:  # closed with our bytes unread: the kernel resets
        return True


async def through_proxy(node: FilterNode, header: bytes) -> RawClient:
    reader, writer = await asyncio.open_connection("127.0.0.1", node.settings.proxy_smtp_port)
    writer.write(header)
    client = RawClient(reader, writer)
    client.greeting = await client.reply()
    return client


async def send_one(client: RawClient) -> None:
    await client.expect("EHLO client.test", 250)
    await client.expect("MAIL FROM:<carol@remote.test>", 250)
    await client.expect(f"RCPT TO:<{ALICE}>", 250)
    assert (await client.send_message(b"Subject: via haproxy\r\n\r\nx\r\n")).startswith("250 ")


async def test_v1_header_gives_the_client_address(
    start_filter: StartFilter, accounts: Accounts, bus: Bus
) -> None:
    node = await start_proxied(start_filter)
    client = await through_proxy(node, v1("203.0.113.7"))
    assert client.greeting[0].startswith("220 ")
    await send_one(client)
    [msg] = await stream_messages(bus)
    assert msg.client.ip == "203.0.113.7" and msg.client.listener == "proxy-smtp"
    assert b"from client.test ([203.0.113.7])" in msg.body


async def test_v2_header_ipv6(start_filter: StartFilter, accounts: Accounts, bus: Bus) -> None:
    node = await start_proxied(start_filter)
    client = await through_proxy(node, v2("2001:db8::7", "2001:db8::25"))
    await send_one(client)
    [msg] = await stream_messages(bus)
    assert msg.client.ip == "2001:db8::7"
    assert b"([IPv6:2001:db8::7])" in msg.body


async def test_v2_local_is_a_health_check_from_the_proxy(
    start_filter: StartFilter, accounts: Accounts
) -> None:
    node = await start_proxied(start_filter)
    client = await through_proxy(node, v2("0.0.0.0", local=True))
    assert client.greeting[0].startswith("220 ")
    await client.expect("QUIT", 221)


async def test_no_header_no_greeting(start_filter: StartFilter, accounts: Accounts) -> None:
    node = await start_proxied(start_filter)
    reader, writer = await asyncio.open_connection("127.0.0.1", node.settings.proxy_smtp_port)
    writer.write(b"EHLO sneaky.test\r\n")
    assert await closed_without_a_word(reader)
    writer.close()


async def test_untrusted_proxy_is_refused(start_filter: StartFilter, accounts: Accounts) -> None:
    node = await start_proxied(start_filter, proxy_trusted_networks="192.0.2.0/24")
    reader, writer = await asyncio.open_connection("127.0.0.1", node.settings.proxy_smtp_port)
    writer.write(v1("203.0.113.7"))
    assert await closed_without_a_word(reader)
    writer.close()


async def test_limits_apply_to_the_real_client(
    start_filter: StartFilter, accounts: Accounts
) -> None:
    node = await start_proxied(start_filter, max_connections_per_ip=1)
    first = await through_proxy(node, v1("203.0.113.7"))
    other = await through_proxy(node, v1("203.0.113.8"))  # another client: admitted
    assert other.greeting[0].startswith("220 ")
    second = await through_proxy(node, v1("203.0.113.7"))
    assert second.greeting == ["421 4.7.0 Too many connections from your address"]
    await first.expect("NOOP", 250)


def test_trusted_networks() -> None:
    trusted = TrustedNetworks("127.0.0.0/8, 10.0.0.0/8,fd00::/8")
    assert "127.0.0.1" in trusted and "10.1.2.3" in trusted and "fd00::1" in trusted
    assert "::ffff:10.0.0.1" in trusted  # v4-mapped
    assert "192.0.2.1" not in trusted and "not an ip" not in trusted


# --- implicit TLS behind the proxy (RFC 8314 §3.3 on the proxy-submissions port) ----------
# HAProxy's send-proxy-v2 sends the header in the clear, and then the client's own bytes:
# for port 465 that is the TLS ClientHello, often in the same segment as the header.


async def start_proxied_submissions(start_filter: StartFilter) -> FilterNode:
    return await start_filter(proxy_submissions_port=free_port())


async def test_v2_header_then_tls_on_the_submissions_port(
    start_filter: StartFilter, accounts: Accounts, bus: Bus
) -> None:
    node = await start_proxied_submissions(start_filter)
    async with HaproxyLike(node.settings.proxy_submissions_port, v2("203.0.113.9")) as proxy:
        smtp = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=proxy.port, use_tls=True, tls_context=client_tls(node)
        )
        await smtp.connect()
        await smtp.login(ALICE, PASSWORD)
        errors, _ = await smtp.sendmail(ALICE, [BOB], b"Subject: via 465\r\n\r\nx\r\n")
        assert errors == {}
        await smtp.quit()
    [msg] = await stream_messages(bus)
    assert msg.client.ip == "203.0.113.9" and msg.client.listener == "proxy-submissions"
    assert msg.client.tls and msg.client.auth_user == ALICE
    assert b"from " in msg.body and b"([203.0.113.9])" in msg.body
    assert b"with ESMTPSA (TLSv1." in msg.body


async def test_v1_header_then_tls_on_the_submissions_port(
    start_filter: StartFilter, accounts: Accounts, bus: Bus
) -> None:
    node = await start_proxied_submissions(start_filter)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", node.settings.proxy_submissions_port
    )
    writer.write(v1("2001:db8::9", "2001:db8::465"))
    await writer.drain()
    await writer.start_tls(client_tls(node))  # the handshake follows the header
    client = RawClient(reader, writer)
    client.greeting = await client.reply()
    assert client.greeting[0].startswith("220 ")
    features = await client.command("EHLO client.test")
    extensions = {line[4:] for line in features}
    assert "AUTH PLAIN LOGIN" in extensions and "STARTTLS" not in extensions
    assert (await client.login(BOB, PASSWORD)).startswith("235 ")
    await client.expect(f"MAIL FROM:<{BOB}>", 250)
    await client.expect(f"RCPT TO:<{ALICE}>", 250)
    assert (await client.send_message(b"Subject: v1\r\n\r\nx\r\n")).startswith("250 ")
    await client.expect("QUIT", 221)
    await client.close()
    [msg] = await stream_messages(bus)
    assert msg.client.ip == "2001:db8::9" and msg.client.auth_user == BOB
    assert b"([IPv6:2001:db8::9])" in msg.body


async def test_plaintext_after_the_header_is_no_tls_and_gets_nothing(
    start_filter: StartFilter, accounts: Accounts
) -> None:
    node = await start_proxied_submissions(start_filter)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", node.settings.proxy_submissions_port
    )
    writer.write(v2("203.0.113.9") + b"EHLO client.test\r\n")
    assert await closed_without_a_word(reader)
    writer.close()
    await until_no_sessions(node)


async def test_health_checks_and_failed_handshakes_leave_no_session_behind(
    start_filter: StartFilter, accounts: Accounts
) -> None:
    """asyncio's TLS layer never tells the protocol about a failed handshake: HAProxy's
    health checks (v2 LOCAL, then a hang-up) and port scanners must not pile up sessions."""
    node = await start_filter(proxy_submissions_port=free_port())
    for _ in range(3):
        _, writer = await asyncio.open_connection("127.0.0.1", node.settings.proxy_submissions_port)
        writer.write(v2("0.0.0.0", local=True))
        await writer.drain()
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", node.settings.submissions_port)
        writer.write(b"\x16\x03\x01\x00\x05garbage, not a ClientHello\r\n")
        assert await closed_without_a_word(reader)
        writer.close()
    await until_no_sessions(node)
    # A STARTTLS handshake that fails is forgotten the same way.
    client = await RawClient.connect(node.settings.submission_port)
    await client.expect("EHLO client.test", 250)
    await client.expect("STARTTLS", 220)
    client.send(b"\x16\x03\x01\x00\x05garbage\r\n")
    assert await closed_without_a_word(client.reader)
    await until_no_sessions(node)


async def until_no_sessions(node: FilterNode, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while node.open_sessions:
            await asyncio.sleep(0.05)
