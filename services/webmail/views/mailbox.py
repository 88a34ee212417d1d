"""The folder list, a folder's messages (paging, sorting, search) and actions on many."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from services.webmail import spam
from services.webmail.imap_gateway import ImapClient
from services.webmail.imap_records import SORT_KEYS, Folder, Page, Row
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
    threaded = q.get("view") == "threads"
    per_page = web(request).settings.webmail_page_size
    conversations: list[Conversation] = []
    async with imap(request, auth) as c:
        folders = [] if fragment else await sidebar(c)
        if threaded:
            page, conversations = await _conversations(c, folder, page_no, per_page, search)
        else:
            page = await c.page(
                folder,
                sort=sort,
                reverse=order == "desc",
                page=page_no,
                per_page=per_page,
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
        threaded=threaded,
        conversations=conversations,
        unread=sum(f.unseen for f in folders if f.name == folder),
    )
    return render(request, "_rows.html" if fragment else "mailbox.html", **ctx)


@dataclass(slots=True)
class Conversation:
    newest: Row
    uids: list[int]
    unread: bool

    @property
    def count(self) -> int:
        return len(self.uids)


async def _conversations(
    c: ImapClient, folder: str, page_no: int, per_page: int, search: str
) -> tuple[Page, list[Conversation]]:
    threads, by_server = await c.threads(folder, query=search)
    pages = max(1, -(-len(threads) // per_page))
    page_no = min(max(1, page_no), pages)
    chosen = threads[(page_no - 1) * per_page : page_no * per_page]
    wanted = [u for t in chosen for u in t]
    rows = {r.uid: r for r in await c.rows(folder, wanted)} if wanted else {}
    out = [
        Conversation(rows[t[-1]], t, any(not rows[u].seen for u in t if u in rows))
        for t in chosen
        if t[-1] in rows
    ]
    every = [u for t in threads for u in t]
    newest = [x.newest for x in out]
    last = max(every, default=0)
    return Page(newest, len(threads), page_no, pages, by_server, last, len(every)), out


def _uids(values: list[str]) -> list[int]:
    out = []
    for v in values:
        for part in v.split(","):  # a conversation's checkbox carries all its UIDs
            if part.isdigit() and 0 < int(part) < 2**32:
                out.append(int(part))
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
