"""PROXY-protocol-only ports (behind HAProxy): the real client address from v1 and v2
headers, trusted proxies only, and no greeting without a header."""

from __future__ import annotations

import asyncio
import ipaddress
import struct

from mailcore.bus.connect import Bus
from services.ctl.daemons import free_port
from services.filter.app import FilterNode
from services.filter.proxy import TrustedNetworks
from tests.services.filter.conftest import ALICE, Accounts, RawClient, StartFilter, stream_messages

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src: str, dst: str = "192.0.2.25") -> bytes:
    family = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {family} {src} {dst} 40000 25\r\n".encode()


def v2(src: str, dst: str = "192.0.2.25", local: bool = False) -> bytes:
    if local:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    source, target = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    family = 0x21 if source.version == 6 else 0x11  # AF_INET6 / AF_INET, STREAM
    body = source.packed + target.packed + struct.pack("!HH", 40000, 25)
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(body)) + body


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
