"""Reading one message: headers and text in the page, HTML in a sandboxed iframe under
its own CSP, attachments as downloads."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from mailcore.logging import get_logger
from services.webmail.mime_view import part_by_index, safe_html, view
from services.webmail.runtime import Auth, authed, error_page, imap, render, url
from services.webmail.security import body_csp
from services.webmail.views.mailbox import folder_param, sidebar

log = get_logger("webmail")


def _uid(request: Request) -> int:
    v = request.query_params.get("uid", "")
    return int(v) if v.isdigit() and 0 < int(v) < 2**32 else 0


@authed
async def read(request: Request, auth: Auth) -> Response:
    folder, uid = folder_param(request), _uid(request)
    images = request.query_params.get("images") == "1"
    async with imap(request, auth) as c:
        found = await c.message_and_flags(folder, uid) if uid else None
        if found is None:
            log.info("message not found", user=auth.user, folder=folder, uid=uid)
            return error_page(request, 404, "This message no longer exists.", auth)
        raw, flags = found
        if "\\Seen" not in flags:
            await c.set_flag(folder, [uid], "\\Seen", True)
        flagged = "\\Flagged" in flags
        folders = await sidebar(c)
    v = view(raw)
    return render(
        request,
        "message.html",
        auth=auth,
        folder=folder,
        folders=folders,
        uid=uid,
        v=v,
        images=images,
        flagged=flagged,
        url=url,
    )


MAX_CONVERSATION = 50


@authed
async def conversation(request: Request, auth: Auth) -> Response:
    """Every message of a conversation, oldest first, on one page."""
    folder = folder_param(request)
    uids = [int(u) for u in request.query_params.get("uids", "").split(",") if u.isdigit()]
    uids = sorted({u for u in uids if 0 < u < 2**32})[:MAX_CONVERSATION]
    found = []
    async with imap(request, auth) as c:
        for uid in uids:
            raw = await c.message(folder, uid)
            if raw is not None:
                found.append((uid, view(raw)))
        if found:
            await c.set_flag(folder, [u for u, _ in found], "\\Seen", True)
        folders = await sidebar(c)
    if not found:
        return error_page(request, 404, "This conversation no longer exists.", auth)
    return render(
        request,
        "conversation.html",
        auth=auth,
        folder=folder,
        folders=folders,
        messages=found,
        url=url,
    )


@authed
async def body(request: Request, auth: Auth) -> Response:
    folder, uid = folder_param(request), _uid(request)
    images = request.query_params.get("images") == "1"
    async with imap(request, auth) as c:
        raw = await c.message(folder, uid) if uid else None
    if raw is None:
        return Response("gone", 404, media_type="text/plain")
    v = view(raw)
    html = safe_html(raw, v.html or "", remote_images=images)
    doc = (
        "<!doctype html><html><head><meta charset=utf-8>"
        "<meta name=referrer content=no-referrer></head><body>" + html + "</body></html>"
    )
    return HTMLResponse(
        doc,
        headers={
            "content-security-policy": body_csp(images),
            "cache-control": "private, no-store",
        },
    )


@authed
async def part(request: Request, auth: Auth) -> Response:
    folder, uid = folder_param(request), _uid(request)
    n = request.query_params.get("n", "")
    async with imap(request, auth) as c:
        raw = await c.message(folder, uid) if uid else None
    found = part_by_index(raw, int(n)) if raw is not None and n.isdigit() else None
    if found is None:
        return error_page(request, 404, "This attachment no longer exists.", auth)
    data, _ctype, filename = found
    safe_name = filename.replace('"', "").replace("\r", "").replace("\n", "")
    ascii_name = safe_name.encode("ascii", "replace").decode().replace("?", "_")
    return Response(
        data,
        media_type="application/octet-stream",  # never rendered by the browser
        headers={
            "content-disposition": f'attachment; filename="{ascii_name}"; '
            f"filename*=UTF-8''{quote(safe_name)}",
            "x-content-type-options": "nosniff",
            "content-security-policy": "default-src 'none'; sandbox",
        },
    )
