"""AUTH PLAIN and AUTH LOGIN (RFC 4954, RFC 4616), on submission ports only.

Passwords are checked by the store, the only service that may read the hashes
(services/filter/auth_check.py); the user then comes from this node's directory. When no
store answers the client hears ``454 4.7.0`` (RFC 4954 §6), which is not a failed login.
A failed attempt costs the client ``auth_fail_delay`` seconds, and an address with
``auth_max_failures_per_ip`` failures in ``auth_failure_window`` seconds is turned away.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from mailcore import metrics
from mailcore.directory import User
from mailcore.logging import bind, get_logger
from services.filter.auth_check import AuthUnavailable
from services.filter.smtp import replies
from services.filter.smtp.replies import Reply

if TYPE_CHECKING:
    from services.filter.smtp.session import Session

log = get_logger("filter.auth")

AUTH_NOT_ENABLED = Reply(503, "5.5.1", "Authentication not enabled on this port")
Credentials = tuple[str, str]
Mechanism = Callable[["Session", str], Awaitable[Credentials | Reply]]


def _decode(text: str | bytes) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


async def _challenge(s: Session, prompt: bytes) -> bytes | Reply:
    """RFC 4954 §4: ``334 <base64>``; the answer is base64, or ``*`` to cancel."""
    s.send(b"334 " + base64.b64encode(prompt) + b"\r\n")
    line = await s.read_line()
    if line is None:
        return replies.AUTH_BAD_RESPONSE
    if line == b"*":
        return replies.AUTH_CANCELLED
    decoded = _decode(line)
    return replies.AUTH_BAD_RESPONSE if decoded is None else decoded


async def plain(s: Session, initial: str) -> Credentials | Reply:
    """RFC 4616 §2: ``[authzid] NUL authcid NUL passwd``."""
    if initial in ("", "="):  # "=" is an empty initial response (RFC 4954 §4)
        response = await _challenge(s, b"") if initial == "" else b""
    else:
        response = _decode(initial) or replies.AUTH_BAD_RESPONSE
    if isinstance(response, Reply):
        return response
    parts = response.split(b"\0")
    if len(parts) != 3:
        return replies.AUTH_BAD_RESPONSE
    try:
        authzid, authcid, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        return replies.AUTH_BAD_RESPONSE
    if authzid and authzid != authcid:
        return ("", "")  # acting as someone else is not supported: a failed login
    return authcid, password


async def login(s: Session, initial: str) -> Credentials | Reply:
    """The LOGIN mechanism (draft-murchison-sasl-login): user name, then password."""
    user = _decode(initial) if initial else await _challenge(s, b"Username:")
    if user is None:
        return replies.AUTH_BAD_RESPONSE
    if isinstance(user, Reply):
        return user
    password = await _challenge(s, b"Password:")
    if isinstance(password, Reply):
        return password
    try:
        return user.decode("utf-8"), password.decode("utf-8")
    except UnicodeDecodeError:
        return replies.AUTH_BAD_RESPONSE


MECHANISMS: dict[str, Mechanism] = {"PLAIN": plain, "LOGIN": login}


async def auth(s: Session, arg: str) -> None:
    st = s.state
    ctx = s.ctx
    if not s.listener.submission:
        s.error(AUTH_NOT_ENABLED)
        return
    if not st.esmtp:
        s.error(replies.NEED_HELO)
        return
    if st.user is not None:
        s.error(replies.ALREADY_AUTHENTICATED)
        return
    if st.tx is not None:
        s.error(replies.AUTH_IN_TRANSACTION)  # RFC 4954 §4
        return
    if not s.auth_offered:
        s.reject(replies.AUTH_ENCRYPTION_REQUIRED, "tls_required", counts=True)
        return
    if ctx.login_guard is None and ctx.auth_throttle.blocked(st.client_ip):
        s.reject(replies.AUTH_THROTTLED, "auth_throttled")
        return
    name, _, initial = arg.strip().partition(" ")
    mechanism = MECHANISMS.get(name.upper())
    if mechanism is None:
        s.error(replies.AUTH_UNKNOWN_MECHANISM)
        return
    credentials = await mechanism(s, initial.strip())
    if isinstance(credentials, Reply):
        s.error(credentials)
        return
    login_name, password = credentials
    if ctx.login_guard is not None:
        await _guarded(s, name, login_name, password)
        return
    try:
        user = await _check(s, login_name, password)
    except AuthUnavailable:
        return
    if user is None:
        metrics.AUTH_FAILURES.labels("smtp").inc()
        ctx.auth_throttle.record_failure(st.client_ip)
        log.info("authentication failed", login=login_name[:100])
        await asyncio.sleep(ctx.auth_throttle.delay)
        if ctx.auth_throttle.blocked(st.client_ip):
            s.reject(replies.AUTH_THROTTLED, "auth_throttled")
        else:
            s.reject(replies.AUTH_FAILED, "auth_failed")
        return
    st.user = user
    bind(user=user.address)
    log.info("authenticated", mechanism=name.upper())
    s.reply(replies.AUTH_OK)


async def _guarded(s: Session, mechanism: str, login_name: str, password: str) -> None:
    """The shared failed-login policy (mailcore.loginguard): per (account, address) and per
    address, across filters and the store."""
    ctx, st = s.ctx, s.state
    guard = ctx.login_guard
    assert guard is not None
    if await guard.blocked("smtp", st.client_ip, login_name):
        await asyncio.sleep(guard.policy.base_delay)
        s.reject(replies.AUTH_THROTTLED, "auth_throttled")
        return
    try:
        user = await _check(s, login_name, password)
    except AuthUnavailable:
        return
    if user is None:
        await asyncio.sleep(await guard.failed("smtp", st.client_ip, login_name))
        if await guard.blocked("smtp", st.client_ip, login_name):
            s.reject(replies.AUTH_THROTTLED, "auth_throttled")  # and the session ends
        else:
            s.reject(replies.AUTH_FAILED, "auth_failed")
        return
    await guard.succeeded(st.client_ip, login_name)
    st.user = user
    bind(user=user.address)
    log.info("authenticated", mechanism=mechanism.upper())
    s.reply(replies.AUTH_OK)


async def _check(s: Session, login_name: str, password: str) -> User | None:
    """The user, None for a wrong login; :class:`AuthUnavailable` after answering 454
    (RFC 4954 §6: a temporary failure, which counts as no failed login)."""
    if not login_name or not password:
        return None
    try:
        return await s.ctx.passwords.check(login_name, password)
    except AuthUnavailable:
        log.warning("password check unavailable: no store answered", login=login_name[:100])
        s.reject(replies.AUTH_TEMPORARY, "auth_unavailable")
        raise
