"""HTTP-side protections: CSRF tokens, cookies, security headers (login throttling is the
shared policy of mailcore.loginguard)."""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

SESSION_COOKIE = "postern_session"
LOGIN_CSRF_COOKIE = "postern_login_csrf"

# The app's own pages: our script and styles only, frames only from us (the message body).
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)


def body_csp(remote_images: bool) -> str:
    """A message body: no script at all, inline styles, images inlined (cid:) or, once
    asked for, remote; a sandbox even when opened outside its iframe."""
    img = "data: https: http:" if remote_images else "data:"
    return (
        f"default-src 'none'; img-src {img}; style-src 'unsafe-inline'; font-src data:; "
        "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; "
        "sandbox allow-popups allow-popups-to-escape-sandbox"
    )


DEFAULT_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # no Referer to other sites, Origin kept for ours
    "cross-origin-opener-policy": "same-origin",
    "content-security-policy": PAGE_CSP,
    "cache-control": "no-store",
}


def set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    # HttpOnly always, Secure whenever the browser came over HTTPS (behind a proxy too,
    # see webmail_forwarded_allow_ips), SameSite=Lax: no cookie on cross-site POSTs.
    response.set_cookie(
        name,
        value,
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="lax",
        path="/",
    )


def tokens_match(expected: str, given: str | None) -> bool:
    return bool(expected) and given is not None and hmac.compare_digest(expected, given)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same_origin(request: Request) -> bool:
    """An Origin header, when the browser sends one, must be ours (``null``, sent for
    privacy-sensitive contexts, decides nothing: the CSRF token still must match)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return True
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host
