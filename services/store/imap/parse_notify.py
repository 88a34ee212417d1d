"""NOTIFY command arguments (RFC 5465 §8 formal syntax): pure parsing, used by the command
table in :mod:`services.store.imap.parser`. Which events the server supports is the
handler's business (``NO [BADEVENT]``); this module only enforces the grammar and the
rules §5 states as syntax (answered ``BAD``)."""

from __future__ import annotations

from services.store.imap import commands as c
from services.store.imap import parse_items as items
from services.store.imap.lexer import Cursor

# RFC 5465 §5 event names in the RFC's spelling, keyed by their upper case (the ABNF
# strings are case-insensitive, RFC 5234 §2.3)
EVENTS = {
    e.upper(): e
    for e in (
        "MessageNew",
        "MessageExpunge",
        "FlagChange",
        "AnnotationChange",
        "MailboxName",
        "SubscriptionChange",
        "MailboxMetadataChange",
        "ServerMetadataChange",
    )
}
MESSAGE_EVENTS = frozenset({"MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange"})


def _mailboxes(cur: Cursor) -> tuple[str, ...]:
    """one-or-more-mailbox = mailbox / many-mailboxes"""
    if cur.peek() != 0x28:
        return (cur.mailbox(),)
    cur.open()
    out = [cur.mailbox()]
    while cur.take(b" "):
        out.append(cur.mailbox())
    cur.close()
    return tuple(out)


def _events(cur: Cursor, kind: str) -> tuple[tuple[str, ...], tuple[c.FetchAtt, ...]]:
    """events = ( "(" event *(SP event) ")" ) / "NONE" """
    if cur.take_word(b"NONE"):
        return (), ()
    cur.open()
    out: list[str] = []
    atts: tuple[c.FetchAtt, ...] = ()
    while True:
        word = cur.atom()
        name = EVENTS.get(word.upper(), word)
        if name == "MessageNew" and cur.peek_word(b" ("):
            # §5.2 / §8: MessageNew [SP "(" fetch-att *(SP fetch-att) ")"], only for
            # the selected mailbox (§6: a fetch-att list elsewhere is an error)
            if kind not in c.NOTIFY_SELECTED:
                raise cur.error("MessageNew fetch attributes are for SELECTED only")
            cur.sp()
            atts = items.fetch_atts(cur)
        out.append(name)
        if not cur.take(b" "):
            break
    cur.close()
    got = set(out)
    # §5: MessageNew and MessageExpunge go together, and FlagChange / AnnotationChange
    # need both; a client asking otherwise gets BAD
    if ("MessageNew" in got) != ("MessageExpunge" in got):
        raise cur.error("MessageNew and MessageExpunge must be requested together")
    if got & {"FlagChange", "AnnotationChange"} and "MessageNew" not in got:
        raise cur.error("FlagChange needs MessageNew and MessageExpunge")
    return tuple(out), atts


def _group(cur: Cursor) -> c.NotifyGroup:
    """event-group = "(" filter-mailboxes SP events ")" """
    cur.open()
    kind = cur.atom().upper()
    if kind not in c.NOTIFY_SELECTED | c.NOTIFY_OTHER:
        raise cur.error("unknown NOTIFY filter")
    boxes: tuple[str, ...] = ()
    cur.sp()
    if kind in ("SUBTREE", "MAILBOXES"):
        boxes = _mailboxes(cur)
        cur.sp()
    events, atts = _events(cur, kind)
    cur.close()
    return c.NotifyGroup(kind, boxes, events, atts)


def notify(cur: Cursor) -> c.Args:
    """notify = "NOTIFY" SP (notify-set / notify-none)"""
    cur.sp()
    if cur.take_word(b"NONE"):
        return c.Notify(None)
    if not cur.take_word(b"SET"):
        raise cur.error("NOTIFY SET or NOTIFY NONE expected")
    status = cur.take_word(b" STATUS")  # status-indicator = SP "STATUS"
    groups: list[c.NotifyGroup] = []
    while cur.take(b" "):
        groups.append(_group(cur))
    if not groups:
        raise cur.error("NOTIFY SET needs an event group")
    if sum(g.kind in c.NOTIFY_SELECTED for g in groups) > 1:
        raise cur.error("SELECTED given more than once")
    return c.Notify(tuple(groups), status)


__all__ = ["EVENTS", "MESSAGE_EVENTS", "notify"]
