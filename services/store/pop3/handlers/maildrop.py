"""TRANSACTION-state commands (RFC 1939 §5, §7): STAT, LIST, UIDL, RETR, TOP, DELE, RSET,
NOOP, CAPA, and QUIT, which enters the UPDATE state (RFC 1939 §6).

Message-number errors (no such message, already deleted) are raised by the maildrop and
turned into replies in ``errors.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mailcore.logging import get_logger
from services.store.pop3 import parser, replies
from services.store.pop3.handlers.auth import capa
from services.store.pop3.maildrop import Maildrop
from services.store.pop3.stream import send_message

if TYPE_CHECKING:
    from services.store.pop3.session import Handler, Session

log = get_logger("pop3")


def _md(s: Session) -> Maildrop:
    assert s.maildrop is not None  # the TRANSACTION table is used only with a maildrop
    return s.maildrop


async def stat(s: Session, cmd: parser.Stat) -> None:
    # RFC 1939 §5 STAT: messages marked deleted are not counted.
    md = _md(s)
    await s.send(replies.stat(md.count, md.octets))


async def list_(s: Session, cmd: parser.List) -> None:
    # RFC 1939 §5 LIST [msg]
    md = _md(s)
    if cmd.msg is not None:
        n = md.check(cmd.msg)
        await s.send(replies.ok(f"{n} {md.size(n)}"))
        return
    lines = [replies.scan_line(n, size) for n, size in md.sizes()]
    await s.send_lines(replies.LISTING_FOLLOWS, lines)


async def uidl(s: Session, cmd: parser.Uidl) -> None:
    # RFC 1939 §7 UIDL [msg]
    md = _md(s)
    if cmd.msg is not None:
        n = md.check(cmd.msg)
        await s.send(replies.ok(f"{n} {md.unique_id(n)}"))
        return
    lines = [replies.uidl_line(n, uid) for n, uid in md.unique_ids()]
    await s.send_lines(replies.UIDL_FOLLOWS, lines)


async def retr(s: Session, cmd: parser.Retr) -> None:
    # RFC 1939 §5 RETR msg: the whole message, byte-stuffed.
    md = _md(s)
    n = md.check(cmd.msg)
    await _send(s, md, n, replies.retr_follows(md.size(n)), None)
    md.mark_retrieved(n)


async def top(s: Session, cmd: parser.Top) -> None:
    # RFC 1939 §7 TOP msg n: the header, the blank line, n body lines (all if fewer).
    md = _md(s)
    n = md.check(cmd.msg)
    await _send(s, md, n, replies.TOP_FOLLOWS, cmd.lines)


async def _send(s: Session, md: Maildrop, n: int, first: replies.Reply, lines: int | None) -> None:
    source = md.open_message(n)  # errors here go out as -ERR: nothing is sent yet
    with source:
        s.mark_sent(True)
        try:
            await send_message(
                s.conn.writer,
                source,
                first.line,
                body_lines=lines,
                size_hint=md.size(n),
                drain=s.conn.drain,
            )
        except OSError as exc:
            if isinstance(exc, ConnectionError):
                raise
            # a read failed mid-response: the only honest end is to drop the connection
            log.error("message read failed mid-response", msg=n, error=type(exc).__name__)
            s.abort()


async def dele(s: Session, cmd: parser.Dele) -> None:
    # RFC 1939 §5 DELE msg: only marked here; removed in the UPDATE state.
    _md(s).delete(cmd.msg)
    await s.send(replies.DELETED)


async def rset(s: Session, cmd: parser.Rset) -> None:
    # RFC 1939 §5 RSET: unmark every message marked as deleted.
    md = _md(s)
    md.reset()
    await s.send(replies.maildrop_reset(md.count, md.octets))


async def noop(s: Session, cmd: parser.Noop) -> None:
    await s.send(replies.NOOP)


async def quit_(s: Session, cmd: parser.Quit) -> None:
    # RFC 1939 §6: QUIT from TRANSACTION enters UPDATE: remove the messages marked as
    # deleted, release the maildrop, close.
    s.enter_update()
    md = _md(s)
    try:
        removed = await md.commit()
    except Exception:
        log.exception("update failed", deleted=md.deleted_count)
        await s.send(replies.UPDATE_FAILED)
        return
    log.info("update", deleted=removed)
    await s.send(replies.signed_off(removed))


HANDLERS: dict[type[Any], Handler] = {
    parser.Stat: stat,
    parser.List: list_,
    parser.Uidl: uidl,
    parser.Retr: retr,
    parser.Top: top,
    parser.Dele: dele,
    parser.Rset: rset,
    parser.Noop: noop,
    parser.Capa: capa,
    parser.Quit: quit_,
}
