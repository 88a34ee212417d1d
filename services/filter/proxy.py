"""PROXY protocol (HAProxy's v1 text and v2 binary headers) on the internal ports.

Behind HAProxy every connection comes from the proxy; the header tells the real client
address, which policy, throttling and the Received: header then use. A header is only
believed from a trusted network (``POSTERN_PROXY_TRUSTED_NETWORKS``): anyone else could
claim any address. Parsing is aiosmtpd's ``get_proxy`` (v1 and v2); the decision is ours.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

from aiosmtpd.proxy_protocol import V2_CMD, get_proxy

from mailcore.logging import get_logger

log = get_logger("filter.proxy")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedNetworks:
    def __init__(self, spec: str) -> None:
        self.networks: list[IPNetwork] = [
            ipaddress.ip_network(part.strip(), strict=False)
            for part in spec.split(",")
            if part.strip()
        ]

    def __contains__(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address.version == n.version and address in n for n in self.networks)


@dataclass(frozen=True, slots=True)
class Peer:
    ip: str
    port: int
    local: bool = False  # the proxy speaking for itself (v2 LOCAL, v1 UNKNOWN): a health check


async def read_header(
    reader: asyncio.StreamReader, peer: Peer, trusted: TrustedNetworks, timeout: float
) -> Peer | None:
    """The real client behind the proxy, or None: the connection is to be closed."""
    if peer.ip not in trusted:
        log.warning("PROXY connection from an untrusted address refused", proxy=peer.ip)
        return None
    try:
        async with asyncio.timeout(timeout):
            data = await get_proxy(reader)
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        return None  # a health check's bare connect, or a client that never spoke
    if not data.valid:
        log.warning("bad PROXY header", proxy=peer.ip, error=data.error)
        return None
    # v2 LOCAL (HAProxy's own health checks) and v1 UNKNOWN carry no client address.
    if data.command == V2_CMD.LOCAL or data.src_addr is None:
        return Peer(peer.ip, peer.port, local=True)
    if isinstance(data.src_addr, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return Peer(str(data.src_addr), int(data.src_port or 0))
    return peer  # AF_UNIX source: keep the proxy's address
