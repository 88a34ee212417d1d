"""The node's HTTP listening sockets, bound before uvicorn serves them.

With several processes on one node (``webmail_workers``), each binds the same port with
``SO_REUSEPORT`` and the kernel spreads new connections over them; a node with one process
binds without it, so a second node started on the same port fails instead of sharing it.
"""

from __future__ import annotations

import socket


def listen_sockets(host: str, port: int, *, reuse_port: bool, backlog: int) -> list[socket.socket]:
    """One listening socket per address ``host`` names (as asyncio's create_server binds)."""
    found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    out: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, address in found:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            out.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            sock.listen(backlog)
            sock.setblocking(False)
            if port == 0:  # every address on the port the first one got
                port = sock.getsockname()[1]
    except OSError:
        for sock in out:
            sock.close()
        raise
    return out
