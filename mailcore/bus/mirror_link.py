"""The link to the peer store's NATS: URL, credentials, TLS (MirrorSettings).

Used by the mirror process (services/mirror) and by ``mailctl mirror resync*``, which talk
to both stores of a pair.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import nats

from mailcore.bus.permissions import inbox_prefix
from mailcore.config import MirrorSettings


def peer_tls(s: MirrorSettings) -> ssl.SSLContext | None:
    if s.peer_tls_ca is None and s.peer_tls_cert is None:
        return None
    ctx = ssl.create_default_context(cafile=str(s.peer_tls_ca) if s.peer_tls_ca else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if s.peer_tls_cert is not None:
        ctx.load_cert_chain(str(s.peer_tls_cert), str(s.peer_tls_key) if s.peer_tls_key else None)
    return ctx


class PeerUnreachable(Exception):
    """The peer's NATS did not take a connection (one line: the URL and why)."""


async def connect_peer(s: MirrorSettings, **hooks: Any) -> Any:
    """The link to the peer's NATS; nats-py reconnects forever once connected. ``hooks``:
    nats-py's callbacks (``error_cb``, ``reconnect_to_server_handler``, …), as the mirror
    process sets them to log an outage once (services/mirror/peerlink.py), or options that
    replace the defaults (:func:`connect_peer_once`)."""
    options: dict[str, Any] = {
        "servers": [s.peer_nats_url],
        "name": f"postern-mirror-{s.mirror_node}",
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 1,
        "connect_timeout": 2,
    }
    if s.peer_nats_creds is not None:
        options["user_credentials"] = str(s.peer_nats_creds)
    if s.peer_nats_user is not None:
        password = s.peer_nats_password
        if s.peer_nats_password_file is not None:
            password = s.peer_nats_password_file.read_text().strip()
        options["user"], options["password"] = s.peer_nats_user, password
        # replies to the user's own inbox: the only one its permissions let it read
        options["inbox_prefix"] = inbox_prefix(s.peer_nats_user)
    tls = peer_tls(s)
    if tls is not None:
        options["tls"] = tls
    return await nats.connect(**(options | hooks))


async def connect_peer_once(s: MirrorSettings, timeout: float = 10.0) -> Any:
    """The link for a one-shot command (``mailctl mirror resync*``): two tries a second
    apart (2 s each at most), bounded by ``timeout`` in all, no reconnects later. With
    reconnects on, nats-py retries an unreachable server for ever and its default error
    callback prints a traceback on every try; here a dead peer is
    :class:`PeerUnreachable`, and a link lost later fails the command's next request (the
    resync is resumable: run it again)."""
    url = s.peer_nats_url or ""
    seen: list[BaseException] = []

    async def noted(exc: Exception) -> None:  # nats-py's error callback: no traceback
        seen.append(exc)

    try:
        return await asyncio.wait_for(
            connect_peer(
                s,
                allow_reconnect=False,
                max_reconnect_attempts=1,  # two tries: 0 means for ever to nats-py
                error_cb=noted,
            ),
            timeout,
        )
    except TimeoutError:
        why = f"no answer in {timeout:.0f}s"
    except Exception as exc:
        why = _short(seen[-1] if seen else exc)
    raise PeerUnreachable(f"cannot reach the peer's NATS at {url}: {why}")


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text and text != name else name


__all__ = ["PeerUnreachable", "connect_peer", "connect_peer_once", "peer_tls"]
