"""The link to the peer store's NATS: URL, credentials, TLS (MirrorSettings).

Used by the mirror process (services/mirror) and by ``mailctl mirror resync*``, which talk
to both stores of a pair.
"""

from __future__ import annotations

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


async def connect_peer(s: MirrorSettings, **hooks: Any) -> Any:
    """The link to the peer's NATS; nats-py reconnects forever once connected. ``hooks``:
    nats-py's callbacks (``error_cb``, ``reconnect_to_server_handler``, …), as the mirror
    process sets them to log an outage once (services/mirror/peerlink.py)."""
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
    return await nats.connect(**options, **hooks)


__all__ = ["connect_peer", "peer_tls"]
