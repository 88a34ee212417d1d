"""The user's settings: identity (the From name) and password."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailcore.bus import authrpc, names
from mailcore.bus.authrpc import AuthRequest, Result
from mailcore.logging import get_logger
from services.webmail.imap_gateway import ImapClient, ImapError
from services.webmail.runtime import (
    Auth,
    authed,
    client_ip,
    preferences,
    render,
    save_preferences,
    url,
    web,
)
from services.webmail.security import SESSION_COOKIE, set_cookie

log = get_logger("webmail")

CHANGE_TIMEOUT = 15.0  # seconds for the store to check the old password and hash the new


@authed
async def settings_page(request: Request, auth: Auth) -> Response:
    prefs = await preferences(request, auth.user)
    return render(
        request,
        "settings.html",
        auth=auth,
        prefs=prefs,
        folder="",
        folders=[],
        error="",
        done=request.query_params.get("done", ""),
        url=url,
    )


@authed
async def settings_post(request: Request, auth: Auth) -> Response:
    form = await request.form()
    op = str(form.get("op", ""))
    prefs = await preferences(request, auth.user)
    if op == "identity":
        name = str(form.get("name", "")).strip()
        if any(c in name for c in "\r\n\x00") or len(name) > 100:
            return _page(request, auth, prefs, "The name may not hold line breaks.")
        prefs["name"] = name
        await save_preferences(request, auth.user, prefs)
        return RedirectResponse("/settings?done=identity", 303)
    if op == "password":
        return await _change_password(request, auth, prefs, form)
    return _page(request, auth, prefs, "Unknown setting.")


def _page(request: Request, auth: Auth, prefs: dict[str, str], error: str) -> Response:
    return render(
        request,
        "settings.html",
        400,
        auth=auth,
        prefs=prefs,
        folder="",
        folders=[],
        error=error,
        done="",
        url=url,
    )


async def _change_password(
    request: Request, auth: Auth, prefs: dict[str, str], form: object
) -> Response:
    get = getattr(form, "get")  # noqa: B009 - starlette FormData
    old, new, again = (str(get(k, "")) for k in ("old", "new", "again"))
    if new != again:
        return _page(request, auth, prefs, "The new passwords do not match.")
    wm = web(request)
    try:  # the current password, checked by the store itself
        c = await ImapClient.connect(wm.pool.upstream, auth.user, old, client_ip=client_ip(request))
        await c.close()
    except ImapError as exc:
        if exc.auth:
            return _page(request, auth, prefs, "The current password is wrong.")
        raise
    # the store checks the current password again and writes the new hash: the hashes
    # are the store's alone (mailcore/credentials.py)
    request_ = AuthRequest(auth.user, old, new)
    answer = await authrpc.ask(wm.nc, names.SUBJECT_AUTH_PASSWORD, request_, CHANGE_TIMEOUT)
    if answer.result is Result.FAIL:
        return _page(request, auth, prefs, "The current password is wrong.")
    if answer.result is Result.INVALID:
        return _page(request, auth, prefs, answer.detail or "That password cannot be used.")
    if answer.result is not Result.OK:
        return _page(request, auth, prefs, "The password cannot be changed now; try later.")
    log.info("password changed in webmail", user=auth.user)
    # every other session ends; this browser gets a fresh one with the new password
    await wm.sessions.end_everywhere(auth.user)
    await wm.sessions.end(auth.session.sid)
    await wm.pool.drop_user(auth.user)
    session = await wm.sessions.create(auth.user, new, client_ip(request))
    resp = RedirectResponse("/settings?done=password", 303)
    set_cookie(request, resp, SESSION_COOKIE, session.sid)
    return resp
