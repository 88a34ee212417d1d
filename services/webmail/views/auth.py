"""Login, logout, and "log out everywhere"."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailcore import metrics
from mailcore.logging import get_logger
from services.webmail.imap_gateway import ImapError
from services.webmail.runtime import (
    Auth,
    authed,
    client_ip,
    count_login,
    current,
    render,
    web,
)
from services.webmail.security import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    new_token,
    same_origin,
    set_cookie,
    tokens_match,
)

log = get_logger("webmail")
PROTOCOL = "webmail"  # the label of the shared policy's metrics and fail2ban lines


def _safe_next(value: str) -> str:
    # only a path on this site: never //host or a scheme (open redirect)
    if value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _form(request: Request, status: int = 200, error: str = "", user: str = "") -> Response:
    token = new_token()
    resp = render(
        request,
        "login.html",
        status,
        csrf=token,
        error=error,
        user=user,
        next=_safe_next(request.query_params.get("next", "/")),
    )
    set_cookie(request, resp, LOGIN_CSRF_COOKIE, token)
    return resp


async def login_form(request: Request) -> Response:
    if await current(request) is not None:
        return RedirectResponse("/", 303)
    return _form(request)


async def login(request: Request) -> Response:
    wm = web(request)
    form = await request.form()
    user = str(form.get("user", "")).strip()
    password = str(form.get("password", ""))
    nxt = _safe_next(str(form.get("next", "/")))
    # login CSRF: the token in the form must match the cookie set with the form
    if not same_origin(request) or not tokens_match(
        request.cookies.get(LOGIN_CSRF_COOKIE, ""), str(form.get("csrf", ""))
    ):
        count_login("csrf")
        return _form(request, 403, "The login form expired. Please try again.", user)
    if not user or not password or len(user) > 254 or len(password) > 1024:
        return _form(request, 400, "Enter your address and password.", user)
    ip = client_ip(request)
    # The shared policy (mailcore.loginguard): failures per (account, browser address) and
    # per browser address, counted in NATS by every webmail node, filter and store alike.
    if await wm.guard.blocked(PROTOCOL, ip, user):
        count_login("throttled")
        log.warning("webmail login throttled", user=user, client=ip)
        return _form(
            request, 429, "Too many failed logins. Wait a few minutes and try again.", user
        )
    before = await wm.guard.failures(ip, user)
    try:
        async with wm.pool.connection(user, password, ip):
            pass
    except ImapError as exc:
        if exc.auth:
            # the store counted it already when it believes our x-originating-ip
            await asyncio.sleep(await wm.guard.failed_upstream(PROTOCOL, ip, user, before))
            count_login("failed")
            log.info("webmail login failed", user=user, client=ip)
            return _form(request, 401, "Wrong address or password.", user)
        count_login("error")
        log.warning("webmail login: store unreachable", error=exc.text)
        return _form(request, 503, "The mail store cannot be reached. Try again shortly.", user)
    await wm.guard.succeeded(ip, user)
    session = await wm.sessions.create(user, password, ip)
    count_login("ok")
    log.info("webmail login", user=user, client=ip)
    resp = RedirectResponse(nxt, 303)
    set_cookie(request, resp, SESSION_COOKIE, session.sid)
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return resp


@authed
async def logout(request: Request, auth: Auth) -> Response:
    await web(request).sessions.end(auth.session.sid)
    metrics.WEBMAIL_SESSIONS_ENDED.labels("logout").inc()
    resp = RedirectResponse("/login", 303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


@authed
async def logout_everywhere(request: Request, auth: Auth) -> Response:
    wm = web(request)
    await wm.sessions.end_everywhere(auth.user)
    await wm.sessions.end(auth.session.sid)
    await wm.pool.drop_user(auth.user)
    metrics.WEBMAIL_SESSIONS_ENDED.labels("everywhere").inc()
    log.info("webmail sessions ended everywhere", user=auth.user)
    resp = RedirectResponse("/login", 303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp
