"""Commands valid in any state (RFC 3501 §6.1) and small extensions:
CAPABILITY, NOOP, LOGOUT, ID (RFC 2971), ENABLE (RFC 5161), NAMESPACE (RFC 2342)."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from mailcore.logging import bind, get_logger
from services.store.auth import in_networks
from services.store.imap.capabilities import ENABLEABLE
from services.store.imap.commands import Enable, Id, Request

if TYPE_CHECKING:
    from services.store.imap.session import Session

log = get_logger("imap")


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


async def capability(s: Session, req: Request) -> str:
    # RFC 3501 §6.1.1
    s.untagged("CAPABILITY " + " ".join(s.capabilities()))
    return "CAPABILITY completed"


async def noop(s: Session, req: Request) -> str:
    # RFC 3501 §6.1.2: the session sends pending updates before the tagged reply
    return "NOOP completed"


async def logout(s: Session, req: Request) -> str:
    # RFC 3501 §6.1.3
    from services.store.imap.session import State

    s.untagged("BYE Logging out")
    s.state = State.LOGOUT
    return "LOGOUT completed"


async def id_(s: Session, req: Request) -> str:
    # RFC 2971 §3.1: the server answers with its own identification
    assert isinstance(req.args, Id)
    # RFC 2971 §3.3 lets a proxy name the end client (x-originating-ip, as Dovecot and
    # Roundcube do). Believed only before login and only from a trusted webmail node, so
    # the login throttle counts the browser's address, not the webmail node's.
    if s.user is None and in_networks(s.conn.peer_ip, s.rt.trusted_id_networks):
        for key, value in req.args.params or ():
            if key.lower() == "x-originating-ip" and value and _is_ip(value):
                s.client_ip = value
                bind(client=value)
                log.info("client address from ID", client=value, via=s.conn.peer_ip)
    s.untagged(b'ID ("name" "Postern" "vendor" "Postern")')
    return "ID completed"


async def enable(s: Session, req: Request) -> str:
    # RFC 5161 §3.1: list only what was newly enabled; RFC 7162 §3.2.3: QRESYNC implies CONDSTORE
    assert isinstance(req.args, Enable)
    newly: list[str] = []
    for cap in req.args.capabilities:
        if cap in ENABLEABLE and cap not in s.enabled:
            s.enabled.add(cap)
            newly.append(ENABLEABLE[cap])
    if "QRESYNC" in s.enabled and "CONDSTORE" not in s.enabled:
        s.enabled.add("CONDSTORE")
        newly.append("CONDSTORE")
    s.untagged(("ENABLED " + " ".join(newly)).strip())
    return "ENABLE completed"


async def namespace(s: Session, req: Request) -> str:
    # RFC 2342 §5: one personal namespace, "" with "/" as hierarchy separator
    s.untagged(b'NAMESPACE (("" "/")) NIL NIL')
    return "NAMESPACE completed"
