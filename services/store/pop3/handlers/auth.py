"""AUTHORIZATION-state commands: CAPA, STLS, USER/PASS, AUTH PLAIN, QUIT.

RFC 1939 §4 and §7 (USER/PASS), RFC 2449 §5 (CAPA), RFC 2595 §4 (STLS), RFC 5034 (AUTH),
RFC 4616 (PLAIN). Credentials in the clear are refused on an unencrypted connection unless
the plaintext policy allows them (``allow_plaintext_auth``); CAPA then leaves out USER and
SASL until STLS. Unknown users and wrong passwords get one and the same reply, after the
Authenticator's failure delay.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from mailcore import address
from mailcore.logging import get_logger
from services.store.auth import AuthRefused
from services.store.pop3 import errors, parser, replies
from services.store.pop3.maildrop import Maildrop

if TYPE_CHECKING:
    from services.store.pop3.session import Handler, Session

log = get_logger("pop3")

MECHANISMS = ("PLAIN",)


def _plaintext_ok(s: Session) -> bool:
    return s.env.authenticator.plaintext_allowed(s.conn.peer_ip, s.conn.tls)


def capabilities(s: Session) -> list[str]:
    """RFC 2449 §6: what this session can do now."""
    caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
    if s.user is None:  # AUTHORIZATION state
        if _plaintext_ok(s):
            caps += ["USER", "SASL " + " ".join(MECHANISMS)]
        # RFC 2595 §4: STLS is announced only where it can be used.
        if not s.conn.tls and s.env.tls_context is not None:
            caps.append("STLS")
    caps.append("IMPLEMENTATION Postern")
    return caps


async def capa(s: Session, cmd: parser.Capa) -> None:
    # RFC 2449 §5: CAPA is valid in every state.
    await s.send_lines(replies.CAPA_FOLLOWS, [f"{c}\r\n".encode() for c in capabilities(s)])


async def stls(s: Session, cmd: parser.Stls) -> None:
    # RFC 2595 §4: STLS only in AUTHORIZATION state, only once.
    conn = s.conn
    if conn.tls:
        await s.send(replies.STLS_ACTIVE)
        return
    if s.env.tls_context is None:
        await s.send(replies.STLS_UNAVAILABLE)
        return
    # Nothing the client pipelined after STLS may be acted on once TLS is up (the
    # STARTTLS command-injection class of attacks): drop it before the handshake.
    dropped = conn.discard_pending_input()
    if dropped:
        log.warning("input pipelined after STLS discarded", octets=dropped)
    await s.send(replies.STLS_BEGIN)
    try:
        await conn.start_tls(s.env.tls_context)
    except (ssl.SSLError, ConnectionError, TimeoutError, OSError) as exc:
        log.info("TLS handshake failed", error=type(exc).__name__)
        s.closing = True
        conn.close()
        return
    # RFC 2595 §4: the client must discard what it learnt before; so does the server.
    s.pending_user = None


async def user(s: Session, cmd: parser.User) -> None:
    # RFC 1939 §7 USER. The name is accepted whether or not such a user exists: the
    # verdict comes after PASS, the same for an unknown user and a wrong password.
    if not _plaintext_ok(s):
        s.pending_user = None
        await s.send(replies.PLAINTEXT_REFUSED)
        return
    s.pending_user = cmd.name
    await s.send(replies.USER_ACCEPTED)


async def pass_(s: Session, cmd: parser.Pass) -> None:
    # RFC 1939 §7 PASS: only straight after a USER that was accepted.
    name, s.pending_user = s.pending_user, None
    if name is None:
        await s.send(replies.PASS_WITHOUT_USER)
        return
    await login(s, name, cmd.password)


async def auth(s: Session, cmd: parser.Auth) -> None:
    # RFC 5034 §4 AUTH mechanism [initial-response]
    s.pending_user = None
    if cmd.mechanism is None:
        # AUTH without a mechanism lists them (RFC 1734 practice, used by Outlook).
        mechs = MECHANISMS if _plaintext_ok(s) else ()
        await s.send_lines(replies.AUTH_MECHANISMS, [f"{m}\r\n".encode() for m in mechs])
        return
    if cmd.mechanism not in MECHANISMS:
        await s.send(replies.AUTH_UNSUPPORTED)
        return
    if not _plaintext_ok(s):
        await s.send(replies.PLAINTEXT_REFUSED)
        return
    response = cmd.initial_response
    if response is None:
        # RFC 5034 §4: "+ " and an empty challenge; the client answers with one line.
        s.write(replies.SASL_CONTINUE)
        line = await s.read_line(parser.MAX_SASL_LINE)
        if line is None:
            s.closing = True
            return
        if not isinstance(line, bytes):
            await s.send(replies.LINE_TOO_LONG)
            return
        try:
            answer = parser.parse_sasl_response(line)
        except parser.ParseError:
            await s.send(replies.AUTH_BAD_RESPONSE)
            return
        if isinstance(answer, parser.SaslCancel):
            await s.send(replies.AUTH_CANCELLED)
            return
        response = answer
    try:
        creds = parser.decode_plain(response)
    except parser.ParseError:
        await s.send(replies.AUTH_BAD_RESPONSE)
        return
    await login(s, creds.authcid, creds.password, authzid=creds.authzid)


async def login(s: Session, name: str, password: str, *, authzid: str = "") -> None:
    """Authenticate, take the maildrop lock, open the maildrop (RFC 1939 §4)."""
    env, conn = s.env, s.conn
    try:
        found = await env.authenticator.login(name, password, peer_ip=conn.peer_ip, tls=conn.tls)
    except AuthRefused as exc:
        await s.send(errors.reply_for(exc))
        return
    # RFC 4616 §2: an authorization identity other than the user's own is refused
    # (checked after the password, so it tells nothing about unknown users).
    if authzid and _canonical(authzid) != found.address:
        await s.send(replies.AUTH_AUTHZID_REFUSED)
        return
    lease = env.locks.acquire(found.account_id, conn.conn_id)
    if lease is None:
        log.info("maildrop in use", user=found.address, holder=env.locks.holder(found.account_id))
        await s.send(replies.IN_USE)
        return
    # the per-user connection cap counts IMAP sessions too (shared limiter)
    if not env.limiter.open_user(found.address):
        env.locks.release(lease)
        await s.send(replies.TOO_MANY_CONNECTIONS)
        return
    s.hold(lease, found.address)  # released when the session ends, even if cancelled now
    try:
        md = await Maildrop.open(env.store, found.account_id)
    except Exception as exc:
        s.release()
        reply = errors.reply_for(exc)
        if reply is replies.INTERNAL_ERROR:
            log.exception("maildrop open failed", user=found.address)
            reply = replies.MAILDROP_UNAVAILABLE
        await s.send(reply)
        return
    s.enter_transaction(found, md)
    log.info("logged in", user=found.address, messages=md.count, octets=md.octets)
    await s.send(replies.logged_in(md.count, md.octets))


def _canonical(name: str) -> str:
    try:
        return address.normalize(name)
    except address.InvalidAddress:
        return name


async def quit_(s: Session, cmd: parser.Quit) -> None:
    # RFC 1939 §4: QUIT in the AUTHORIZATION state ends the session, no UPDATE state.
    s.closing = True
    await s.send(replies.BYE)


HANDLERS: dict[type[Any], Handler] = {
    parser.Capa: capa,
    parser.Stls: stls,
    parser.User: user,
    parser.Pass: pass_,
    parser.Auth: auth,
    parser.Quit: quit_,
}
