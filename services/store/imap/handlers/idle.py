"""IDLE (RFC 2177): report changes from the engine's change log as they are committed,
until the client says DONE, the idle timeout passes, or the server stops."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from services.store.imap.commands import Request
from services.store.imap.errors import bad
from services.store.imap.handlers.common import account

if TYPE_CHECKING:
    from services.store.imap.session import Session


async def idle(s: Session, req: Request) -> str:
    from services.store.imap.session import CloseSession

    acct = account(s)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + s.rt.idle_timeout
    s.send(b"+ idling\r\n")
    await _updates(s)
    await s.flush()
    read = asyncio.ensure_future(s.read_line())
    stop = asyncio.ensure_future(s.conn.stopping.wait())
    try:
        while True:
            if s.notify is not None:
                seen = s.notify.position(s)
                if s.selected is not None:
                    seen = min(seen, s.selected.seen)
            else:
                seen = s.selected.seen if s.selected is not None else acct.change_seq
            change = asyncio.ensure_future(acct.wait_for_change(seen))
            try:
                remaining = deadline - loop.time()
                done, _ = await asyncio.wait(
                    {read, stop, change},
                    timeout=max(remaining, 0),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                change.cancel()
                with contextlib.suppress(BaseException):
                    await change
            if read in done:
                line = read.result()  # CloseSession on EOF propagates
                if line.strip().upper() != b"DONE":
                    raise bad("Expected DONE")
                return "IDLE terminated"
            if stop in done:
                s.untagged("BYE Server shutting down")
                raise CloseSession
            if not done:
                # RFC 2177 §3 / RFC 3501 §5.4: the inactivity autologout applies to IDLE too
                s.untagged("BYE Autologout; idle for too long")
                raise CloseSession
            await _updates(s)
            await s.flush()
    finally:
        for t in (read, stop):
            if not t.done():
                t.cancel()
                with contextlib.suppress(BaseException):
                    await t


async def _updates(s: Session) -> None:
    """Everything owed: the selected mailbox's changes, and under NOTIFY (RFC 5465 §3) the
    events asked for other mailboxes (IDLE may carry expunges, even SELECTED-DELAYED's)."""
    if s.notify is not None:
        await s.notify.deliver(s, selected=s.selected is not None, expunge_ok=True)
    elif s.selected is not None:
        await s.selected.sync(s, expunge_ok=True)
