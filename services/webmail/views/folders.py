"""Folder management: create, rename, delete."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from services.webmail.imap_gateway import ImapError
from services.webmail.runtime import Auth, authed, error_page, imap, render, url


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200 or any(c in name for c in '\r\n\x00%*"\\'):
        raise ValueError("A folder name may not be empty or hold line breaks, quotes, % or *.")
    if name.upper() == "INBOX":
        raise ValueError("INBOX is always there.")
    return name


@authed
async def folders_page(request: Request, auth: Auth) -> Response:
    async with imap(request, auth) as c:
        folders = await c.folders()
    return render(request, "folders.html", auth=auth, folders=folders, folder="", error="", url=url)


@authed
async def folders_post(request: Request, auth: Auth) -> Response:
    form = await request.form()
    op = str(form.get("op", ""))
    async with imap(request, auth) as c:
        try:
            if op == "create":
                await c.create(_check_name(str(form.get("name", ""))))
            elif op == "rename":
                await c.rename(str(form.get("old", "")), _check_name(str(form.get("name", ""))))
            elif op == "delete":
                await c.delete(_check_name(str(form.get("old", ""))))
            else:
                return error_page(request, 400, "Unknown folder operation.", auth)
        except (ValueError, ImapError) as exc:
            if isinstance(exc, ImapError) and (exc.connection or exc.auth):
                raise
            folders = await c.folders()
            text = exc.text if isinstance(exc, ImapError) else str(exc)
            return render(
                request,
                "folders.html",
                400,
                auth=auth,
                folders=folders,
                folder="",
                error=text,
                url=url,
            )
    return RedirectResponse("/folders", 303)
