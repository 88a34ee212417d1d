"""Not-authenticated state (RFC 3501 §6.2): STARTTLS, LOGIN, AUTHENTICATE PLAIN
(RFC 4616) with SASL-IR (RFC 4959). Credentials go through the shared Authenticator:
plaintext policy, failure delays, per-IP and per-account throttling."""

from __future__ import annotations

import contextlib
import ssl
from typing import TYPE_CHECKING

from mailcore.logging import bind, get_logger
from services.store.auth import AuthRefused
from services.store.imap import errors
from services.store.imap.commands import Authenticate, Login, Request
from services.store.imap.errors import Refused, bad
from services.store.imap.parser import ParseError, decode_sasl

if TYPE_CHECKING:
    from services.store.imap.session import Session

log = get_logger("imap")
PRIVACY = "Use STARTTLS or the IMAPS port before logging in"


async def starttls(s: Session, req: Request) -> str | None:
    # RFC 3501 §6.2.1
    from services.store.imap.session import CloseSession

    if s.conn.tls:
        raise bad("Already using TLS")
    if s.rt.tls_context is None:
        raise Refused("TLS is not configured")
    # RFC 3501 §6.2.1 / RFC 7817: anything pipelined after STARTTLS must not survive the
    # handshake (plaintext command injection)
    if s.conn.discard_pending_input():
        log.warning("discarded data pipelined after STARTTLS")
    s.send(f"{req.tag} OK Begin TLS negotiation now\r\n".encode())
    await s.flush()
    try:
        await s.conn.start_tls(s.rt.tls_context)
    except (ssl.SSLError, ConnectionError, OSError):
        raise CloseSession from None
    return None  # answered before the handshake


async def login(s: Session, req: Request) -> str:
    # RFC 3501 §6.2.3
    assert isinstance(req.args, Login)
    if not s.plaintext_ok:
        raise Refused(PRIVACY, code="PRIVACYREQUIRED")
    return await _authenticate(s, req.args.user, req.args.password)


async def authenticate(s: Session, req: Request) -> str:
    # RFC 3501 §6.2.2, RFC 4616 PLAIN, RFC 4959 SASL-IR
    assert isinstance(req.args, Authenticate)
    if req.args.mechanism != "PLAIN":
        raise Refused("Unsupported authentication mechanism", code="CANNOT")
    if not s.plaintext_ok:
        raise Refused(PRIVACY, code="PRIVACYREQUIRED")
    raw = req.args.initial
    if raw is None:
        raw = await s.continuation()
        if raw == b"*":
            raise bad("AUTHENTICATE cancelled")  # RFC 3501 §6.2.2
    try:
        payload = decode_sasl(raw)
    except ParseError:
        raise bad("Invalid base64") from None
    parts = payload.split(b"\x00")
    if len(parts) != 3:
        raise bad("Invalid PLAIN response")
    authzid, authcid, password = parts
    try:
        user, pw, zid = authcid.decode(), password.decode(), authzid.decode()
    except UnicodeDecodeError:
        raise bad("Invalid PLAIN response") from None
    if zid and zid.lower() != user.lower():
        raise Refused("Authorization identity must match", code="AUTHORIZATIONFAILED")
    return await _authenticate(s, user, pw)


async def _authenticate(s: Session, username: str, password: str) -> str:
    from services.store.imap.session import State

    try:
        user = await s.rt.auth.login(
            username, password, peer_ip=s.conn.peer_ip, tls=s.conn.tls, client_ip=s.client_ip
        )
    except AuthRefused as exc:
        raise errors.auth_refusal(exc.reason) from None
    if not s.rt.limiter.open_user(user.address):
        raise Refused("Too many connections for this user", code="LIMIT")
    try:
        acct = await s.rt.store.account(user.account_id)
    except BaseException:
        # not logged in after all: give the user slot back, change nothing in the session
        # (s.user decides capabilities and the APPEND literal limit)
        s.rt.limiter.close_user(user.address)
        raise
    s.user = user
    s.account = acct
    s.state = State.AUTHENTICATED
    s.bad_commands = 0
    with contextlib.suppress(Exception):
        bind(user=user.address)
    log.info("login", user=user.address)
    # RFC 3501 §6.2.3: a CAPABILITY response code saves the client a round trip
    return f"[CAPABILITY {' '.join(s.capabilities())}] Logged in"
