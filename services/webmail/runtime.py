"""What every view shares (one per node) and the helpers that guard a view: the session,
its CSRF token, a pooled IMAP connection, rendering, and the mapping of errors to pages."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from mailcore import metrics
from mailcore.config import WebmailSettings
from mailcore.logging import get_logger
from mailcore.loginguard import LoginGuard
from services.webmail.compose import Submission
from services.webmail.imap_gateway import ImapClient, ImapError
from services.webmail.pool import ImapPool
from services.webmail.security import SESSION_COOKIE, same_origin, tokens_match
from services.webmail.sessions import Session, SessionStore

log = get_logger("webmail")
TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass
class Webmail:
    settings: WebmailSettings
    sessions: SessionStore
    pool: ImapPool
    submission: Submission
    guard: LoginGuard  # the failed-login policy every node, filter and store shares
    kv: KeyValue
    js: JetStreamContext
    nc: Any  # NATS requests to the store (a password change: mailcore/bus/authrpc.py)
    templates: Jinja2Templates


@dataclass(slots=True)
class Auth:
    session: Session
    password: str

    @property
    def user(self) -> str:
        return self.session.user


def web(request: Request) -> Webmail:
    wm: Webmail = request.app.state.webmail
    return wm


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    resp: HTMLResponse = web(request).templates.TemplateResponse(
        request, name, ctx, status_code=status
    )
    return resp


def url(path: str, **params: Any) -> str:
    """``path?k=v&...`` as urllib's urlencode writes it, without the empty parameters."""
    query = "&".join(
        f"{_quoted(k)}={_quoted(v if isinstance(v, bytes) else str(v))}"
        for k, v in params.items()
        if v not in (None, "")
    )
    return path + "?" + query if query else path


@functools.lru_cache(maxsize=4096)
def _quoted(s: str | bytes) -> str:
    # a list page asks for the same few folder names and keys fifty times over
    return s if isinstance(s, str) and s.isdigit() and s.isascii() else quote_plus(s)


async def current(request: Request) -> Auth | None:
    wm = web(request)
    sid = request.cookies.get(SESSION_COOKIE, "")
    s = await wm.sessions.get(sid)
    if s is None:
        return None
    try:
        password = wm.sessions.unseal(s)
    except Exception:  # a record sealed with another key: treat as logged out
        await wm.sessions.end(sid)
        return None
    return Auth(s, password)


View = Callable[[Request, Auth], Awaitable[Response]]


def authed(fn: View) -> Callable[[Request], Awaitable[Response]]:
    """The view runs only for a live session; a POST must carry the session's CSRF token
    (form field ``csrf``) and, when the browser names one, our Origin."""

    @functools.wraps(fn)
    async def wrapper(request: Request) -> Response:
        auth = await current(request)
        if auth is None:
            if request.method == "GET" and "text/event-stream" not in request.headers.get(
                "accept", ""
            ):
                return RedirectResponse(url("/login", next=str(request.url.path)), 303)
            return error_page(request, 401, "Your session has ended. Please log in again.")
        if request.method == "POST":
            form = await request.form()
            token = form.get("csrf")
            if not same_origin(request) or not tokens_match(
                auth.session.csrf, token if isinstance(token, str) else None
            ):
                log.warning("csrf refused", user=auth.user, path=request.url.path)
                return error_page(
                    request,
                    403,
                    "This form has expired or did not come from this site. "
                    "Go back, reload the page and try again.",
                    auth=auth,
                )
        request.state.auth = auth
        try:
            return await fn(request, auth)
        except ImapError as exc:
            if exc.auth:
                await web(request).sessions.end(auth.session.sid)
                return RedirectResponse("/login", 303)
            log.warning("imap error", user=auth.user, error=exc.text)
            if exc.connection:
                return error_page(
                    request,
                    503,
                    "The mail store cannot be reached right now. Try again in a moment.",
                    auth=auth,
                )
            return error_page(request, 400, f"The mail store refused: {exc.text}", auth=auth)

    return wrapper


def error_page(request: Request, status: int, message: str, auth: Auth | None = None) -> Response:
    return render(request, "error.html", status, message=message, auth=auth)


@contextlib.asynccontextmanager
async def imap(request: Request, auth: Auth) -> AsyncIterator[ImapClient]:
    async with web(request).pool.connection(auth.user, auth.password, client_ip(request)) as client:
        yield client


# --- preferences (identity) ---------------------------------------------------------------
def _pref_key(user: str) -> str:
    return "pref." + hashlib.sha256(user.lower().encode()).hexdigest()[:40]


async def preferences(request: Request, user: str) -> dict[str, str]:
    try:
        entry = await web(request).kv.get(_pref_key(user))
    except KeyNotFoundError:
        return {}
    try:
        data = json.loads(entry.value or b"{}")
    except ValueError:
        return {}
    return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}


async def save_preferences(request: Request, user: str, prefs: dict[str, str]) -> None:
    await web(request).kv.put(_pref_key(user), json.dumps(prefs).encode())


def count_login(outcome: str) -> None:
    metrics.WEBMAIL_LOGINS.labels(outcome).inc()
