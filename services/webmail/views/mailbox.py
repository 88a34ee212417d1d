"""The folder list, a folder's messages (paging, sorting, search) and actions on many."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from services.webmail import spam
from services.webmail.imap_gateway import SORT_KEYS, Folder, ImapClient
from services.webmail.runtime import Auth, authed, error_page, imap, render, url, web

ACTIONS = ("read", "unread", "flag", "unflag", "delete", "move", "spam", "ham")


def folder_param(request: Request) -> str:
    return request.query_params.get("f", "INBOX")[:512] or "INBOX"


async def sidebar(c: ImapClient) -> list[Folder]:
    return await c.folders()


@authed
async def index(request: Request, auth: Auth) -> Response:
    return RedirectResponse("/mail?f=INBOX", 303)


@authed
async def mailbox(request: Request, auth: Auth) -> Response:
    q = request.query_params
    folder = folder_param(request)
    sort = q.get("s", "arrival") if q.get("s") in SORT_KEYS else "arrival"
    order = "asc" if q.get("o") == "asc" else "desc"
    search = q.get("q", "")[:200]
    if "\r" in search or "\n" in search:
        search = search.replace("\r", " ").replace("\n", " ")
    try:
        page_no = int(q.get("p", "1"))
    except ValueError:
        page_no = 1
    fragment = q.get("fragment") == "rows"
    async with imap(request, auth) as c:
        folders = [] if fragment else await sidebar(c)
        page = await c.page(
            folder,
            sort=sort,
            reverse=order == "desc",
            page=page_no,
            per_page=web(request).settings.webmail_page_size,
            query=search,
        )
    ctx: dict[str, Any] = dict(
        auth=auth,
        folder=folder,
        folders=folders,
        page=page,
        sort=sort,
        order=order,
        search=search,
        url=url,
        unread=sum(f.unseen for f in folders if f.name == folder),
    )
    return render(request, "_rows.html" if fragment else "mailbox.html", **ctx)


def _uids(values: list[str]) -> list[int]:
    out = []
    for v in values:
        if v.isdigit() and 0 < int(v) < 2**32:
            out.append(int(v))
    return out[:1000]


@authed
async def act(request: Request, auth: Auth) -> Response:
    form = await request.form()
    folder = str(form.get("f", "INBOX"))
    action = str(form.get("action", ""))
    uids = _uids([str(v) for v in form.getlist("uid")])
    back = str(form.get("back", "")) or url("/mail", f=folder)
    if not back.startswith("/") or back.startswith("//"):
        back = "/"
    if action not in ACTIONS:
        return error_page(request, 400, "Unknown action.", auth)
    if not uids:
        return RedirectResponse(back, 303)
    async with imap(request, auth) as c:
        if action in ("read", "unread"):
            await c.set_flag(folder, uids, "\\Seen", action == "read")
        elif action in ("flag", "unflag"):
            await c.set_flag(folder, uids, "\\Flagged", action == "flag")
        elif action == "delete":
            trash = await c.special_folder("\\Trash", "Trash")
            if folder == trash:
                await c.expunge(folder, uids)  # deleting from Trash deletes for good
            else:
                await c.move(folder, uids, trash)
        elif action == "move":
            dest = str(form.get("dest", ""))
            if not dest or dest == folder:
                return error_page(request, 400, "Choose a folder to move to.", auth)
            await c.move(folder, uids, dest)
        else:
            await spam.teach_and_move(request, c, folder, uids, is_spam=action == "spam")
    return RedirectResponse(back, 303)
