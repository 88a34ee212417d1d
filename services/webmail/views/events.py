"""New mail without a reload: the server IDLEs on the folder (RFC 2177) and tells the page
over Server-Sent Events; the page then fetches the new rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mailcore.logging import get_logger
from services.webmail.imap_gateway import ImapClient, ImapError
from services.webmail.runtime import Auth, authed, client_ip, web
from services.webmail.views.mailbox import folder_param

log = get_logger("webmail")
IDLE_SLICE = 25.0  # seconds per IDLE round; a comment line keeps proxies from timing out


@authed
async def events(request: Request, auth: Auth) -> Response:
    folder = folder_param(request)
    since = _since(request.query_params.get("since", ""))
    wm = web(request)

    async def stream() -> AsyncIterator[bytes]:
        # A connection of its own, outside the pool: IDLE holds it for the whole stream.
        client: ImapClient | None = None
        try:
            client = await ImapClient.connect(
                wm.pool.upstream, auth.user, auth.password, client_ip=client_ip(request)
            )
            yield b"retry: 3000\n\n"
            # Mail that arrived between the page's render and this SELECT raises no IDLE
            # event: compare with what the page was rendered from.
            if since is not None and await client.changed_since(folder, *since):
                yield b"event: change\ndata: 1\n\n"
            while not await request.is_disconnected():
                if await wm.sessions.get(auth.session.sid) is None:
                    yield b"event: ended\ndata: session\n\n"
                    return
                changed = await client.wait_for_change(folder, IDLE_SLICE)
                yield b"event: change\ndata: 1\n\n" if changed else b": idle\n\n"
        except ImapError as exc:
            log.info("event stream ended", user=auth.user, error=exc.text)
        except asyncio.CancelledError:
            raise
        finally:
            if client is not None:
                await client.close()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


def _since(value: str) -> tuple[int, int] | None:
    """``last_uid:messages`` from the page; None when absent or malformed."""
    uid, _, count = value.partition(":")
    if not (uid.isdigit() and count.isdigit()) or len(value) > 24:
        return None
    return int(uid), int(count)
