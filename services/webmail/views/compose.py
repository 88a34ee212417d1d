"""Compose, reply, reply-all, forward; send (with a copy in Sent) or save to Drafts."""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailcore.logging import get_logger
from services.webmail import compose
from services.webmail.compose import ComposeError, Draft, Upload
from services.webmail.mime_view import view
from services.webmail.runtime import Auth, authed, error_page, imap, preferences, render, url, web
from services.webmail.views.mailbox import folder_param

log = get_logger("webmail")
MAX_ATTACHMENTS = 25 * 1024 * 1024


@authed
async def compose_form(request: Request, auth: Auth) -> Response:
    mode = request.query_params.get("mode", "")
    uid = request.query_params.get("uid", "")
    folder = folder_param(request)
    draft = Draft(to=request.query_params.get("to", "")[:500].replace("\n", ""))
    if mode in ("reply", "replyall", "forward") and uid.isdigit():
        async with imap(request, auth) as c:
            raw = await c.message(folder, int(uid))
        if raw is None:
            return error_page(request, 404, "This message no longer exists.", auth)
        v = view(raw)
        if mode == "forward":
            draft = compose.forward(v, raw)
        else:
            draft = compose.reply(v, me=auth.user, everyone=mode == "replyall")
    return render(
        request,
        "compose.html",
        auth=auth,
        d=draft,
        error="",
        mode=mode,
        folder=folder,
        uid=uid,
        url=url,
    )


async def _uploads(request: Request) -> list[Upload]:
    form = await request.form()
    out: list[Upload] = []
    total = 0
    for item in form.getlist("attachment"):
        if isinstance(item, UploadFile) and item.filename:
            data = await item.read()
            total += len(data)
            if total > MAX_ATTACHMENTS:
                raise ComposeError("The attachments are larger than 25 MB together.")
            out.append(Upload(item.filename, item.content_type or "application/octet-stream", data))
    return out


@authed
async def compose_post(request: Request, auth: Auth) -> Response:
    form = await request.form()
    fields = {
        k: str(form.get(k, ""))
        for k in ("to", "cc", "bcc", "subject", "body", "in_reply_to", "references")
    }
    d = Draft(
        to=fields["to"],
        cc=fields["cc"],
        bcc=fields["bcc"],
        subject=fields["subject"],
        body=fields["body"],
        in_reply_to=fields["in_reply_to"],
        references=fields["references"],
    )
    mode, folder, uid = str(form.get("mode", "")), str(form.get("f", "")), str(form.get("uid", ""))
    action = str(form.get("action", "send"))
    wm = web(request)
    try:
        compose.check_fields(fields)
        d.attachments = await _uploads(request)
        prefs = await preferences(request, auth.user)
        async with imap(request, auth) as c:
            if mode == "forward" and uid.isdigit() and folder:
                d.forward = await c.message(folder, int(uid))
            msg = compose.build(
                d,
                sender=auth.user,
                sender_name=prefs.get("name", ""),
                hostname=wm.settings.hostname,
            )
            data = bytes(msg)
            if action == "draft":
                drafts = await c.special_folder("\\Drafts", "Drafts")
                await c.append(drafts, data, "(\\Draft \\Seen)")
                return RedirectResponse(url("/mail", f=drafts), 303)
            rcpts = compose.recipients(d)
            if not rcpts:
                raise ComposeError("Add at least one recipient.")
            try:
                await compose.send(
                    wm.submission, msg, user=auth.user, password=auth.password, rcpts=rcpts
                )
            except ComposeError:
                raise
            except Exception as exc:
                log.warning("submission failed", user=auth.user, error=str(exc))
                raise ComposeError(_smtp_text(exc)) from exc
            sent = await c.special_folder("\\Sent", "Sent")
            del msg["Bcc"]
            await c.append(sent, data, "(\\Seen)")
            if mode in ("reply", "replyall") and uid.isdigit() and folder:
                await c.set_flag(folder, [int(uid)], "\\Answered", True)
    except ComposeError as exc:
        return render(
            request,
            "compose.html",
            400,
            auth=auth,
            d=d,
            error=str(exc),
            mode=mode,
            folder=folder,
            uid=uid,
            url=url,
        )
    return RedirectResponse(url("/mail", f="INBOX", sent="1"), 303)


def _smtp_text(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", "")
    if isinstance(code, int) and 400 <= code < 600:
        return f"The mail server refused the message: {code} {message}".strip()
    return "The mail server cannot be reached right now; your message was not sent."
