""" "Spam" and "not spam": the message moves (to Junk, or back to the Inbox) and spamd
learns from it (SPAMC TELL, via aiospamc), so the next one like it scores right."""

from __future__ import annotations

from collections.abc import Sequence

import aiospamc
from starlette.requests import Request

from mailcore.logging import get_logger
from services.webmail.imap_gateway import ImapClient
from services.webmail.runtime import web

log = get_logger("webmail")


async def teach(request: Request, raw: bytes, *, is_spam: bool, user: str) -> bool:
    s = web(request).settings
    if not s.webmail_spamd_enabled:
        return False
    try:
        # SPAMC TELL: learn as spam/ham and set it in the local (Bayes) database
        response = await aiospamc.tell(
            raw,
            message_class="spam" if is_spam else "ham",
            set_action="local",
            host=s.webmail_spamd_host,
            port=s.webmail_spamd_port,
            user=user,
        )
    except Exception as exc:  # spamd down: the move still happens, the lesson is lost
        log.warning("spamd TELL failed", error=str(exc))
        return False
    # spamd answers DidSet when it learned; nothing when it could not (no writable Bayes
    # database) or had learned this message already
    learned = "DidSet" in response.headers
    log.info("spamd TELL", user=user, spam=is_spam, learned=learned)
    return learned


async def teach_and_move(
    request: Request, c: ImapClient, folder: str, uids: Sequence[int], *, is_spam: bool
) -> None:
    user = c.user
    for uid in uids:
        raw = await c.message(folder, uid)
        if raw is not None:
            await teach(request, raw, is_spam=is_spam, user=user)
    dest = await c.special_folder("\\Junk", "Junk") if is_spam else "INBOX"
    if dest != folder:
        await c.move(folder, uids, dest)
