"""Mailbox management (RFC 3501 §6.3.3–6.3.9): CREATE (+ RFC 6154 USE), DELETE, RENAME,
SUBSCRIBE, UNSUBSCRIBE, LIST (+ RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS,
RFC 3348 CHILDREN, RFC 6154 SPECIAL-USE) and LSUB."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailcore.mailstore import MailboxInfo, MailboxStatus
from services.store.imap import objectid
from services.store.imap.commands import Create, ListCmd, MailboxArg, Rename, Request
from services.store.imap.errors import Refused, bad
from services.store.imap.handlers.common import existing, new_name
from services.store.imap.handlers.status import render_status
from services.store.imap.wildcard import Pattern, compile_pattern

if TYPE_CHECKING:
    from mailcore.mailstore import Account
    from services.store.imap.session import Session

SEP = "/"
SPECIAL_USES = frozenset(
    {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}
)


def _account(s: Session) -> Account:
    assert s.account is not None
    return s.account


async def create(s: Session, req: Request) -> str:
    assert isinstance(req.args, Create)
    new_name(req.args.mailbox)
    # RFC 3501 §6.3.3: a trailing separator only declares the intent to create children
    name = req.args.mailbox.rstrip(SEP) or req.args.mailbox
    use = None
    if req.args.special_use:
        # RFC 6154 §3: one special use per mailbox here; unknown ones are refused
        uses = {u.capitalize() for u in req.args.special_use}
        if len(uses) != 1 or not uses <= {u.capitalize() for u in SPECIAL_USES}:
            raise Refused("Unsupported special-use attribute", code="USEATTR")
        use = next(iter(uses))
    box = await _account(s).create_mailbox(name, use)
    return f"[MAILBOXID ({objectid.mailbox_id(box.uidvalidity)})] CREATE completed"  # RFC 8474 §4.1


async def delete(s: Session, req: Request) -> str:
    assert isinstance(req.args, MailboxArg)
    if req.args.mailbox == "INBOX":
        raise Refused("INBOX cannot be deleted", code="CANNOT")
    await existing(s, req.args.mailbox)
    await _account(s).delete_mailbox(req.args.mailbox)
    return "DELETE completed"


async def rename(s: Session, req: Request) -> str:
    assert isinstance(req.args, Rename)
    await existing(s, req.args.old)
    new_name(req.args.new)
    await _account(s).rename_mailbox(req.args.old, req.args.new.rstrip(SEP) or req.args.new)
    return "RENAME completed"


async def subscribe(s: Session, req: Request) -> str:
    assert isinstance(req.args, MailboxArg)
    new_name(req.args.mailbox)
    await _account(s).set_subscribed(req.args.mailbox, True)
    return "SUBSCRIBE completed"


async def unsubscribe(s: Session, req: Request) -> str:
    assert isinstance(req.args, MailboxArg)
    new_name(req.args.mailbox)
    await _account(s).set_subscribed(req.args.mailbox, False)
    return "UNSUBSCRIBE completed"


def pattern_matcher(reference: str, pattern: str) -> Pattern:
    """RFC 3501 §6.3.8: ``*`` matches anything, ``%`` anything but the separator; the
    reference is prefixed; INBOX matches case-insensitively. A linear-time matcher, never a
    regex (``.*`` per ``*`` backtracked exponentially: a LIST ReDoS on the event loop)."""
    return compile_pattern(reference, pattern)


def parents(names: set[str]) -> set[str]:
    """Every name that has at least one child (one pass, not one scan per mailbox)."""
    out: set[str] = set()
    for n in names:
        parts = n.split(SEP)
        for k in range(1, len(parts)):
            out.add(SEP.join(parts[:k]))
    return out


SELECT_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})


async def list_(s: Session, req: Request) -> str:
    a = req.args
    assert isinstance(a, ListCmd)
    acct = _account(s)
    # RFC 5258 §3: unknown options, or RECURSIVEMATCH alone, are syntax errors
    if a.select - SELECT_OPTIONS or a.returns - RETURN_OPTIONS:
        raise bad("Unknown LIST option")
    if "RECURSIVEMATCH" in a.select and a.select <= {"RECURSIVEMATCH", "REMOTE"}:
        raise bad("RECURSIVEMATCH needs another selection option")
    if a.lsub:
        return await _lsub(s, a)
    if a.patterns == ("",):
        # RFC 3501 §6.3.8: an empty pattern asks for the hierarchy delimiter
        s.untagged(b'LIST (\\Noselect) "/" ""')
        return "LIST completed"
    boxes = await acct.list_mailboxes()
    existing = {b.name: b for b in boxes}
    names = set(existing)
    with_children = parents(names)
    subscribed = set(await acct.subscriptions()) if _wants_subscribed(a) else set()
    matchers = [pattern_matcher(a.reference, p) for p in a.patterns]
    only_subscribed = "SUBSCRIBED" in a.select
    only_special = "SPECIAL-USE" in a.select
    pool = names | subscribed if only_subscribed else names
    candidates = sorted(pool, key=lambda n: (n != "INBOX", n))
    entries: list[tuple[bytes, MailboxInfo | None]] = []
    for name in candidates:
        if not any(m.match(name) for m in matchers):
            continue
        box = existing.get(name)
        attrs: list[str] = []
        extra = b""
        if only_subscribed and name not in subscribed:
            # RFC 5258 §3.5 RECURSIVEMATCH: a parent of subscribed children that the
            # patterns do not return themselves (with several patterns, one may)
            if "RECURSIVEMATCH" in a.select and any(
                n.startswith(name + SEP) and not any(m.match(n) for m in matchers)
                for n in subscribed
            ):
                extra = b' ("CHILDINFO" ("SUBSCRIBED"))'
            else:
                continue
        if box is None:
            attrs.append("\\NonExistent")  # RFC 5258 §3
        else:
            if only_special and box.special_use is None:
                continue
            # RFC 3348 / RFC 5258 §3.4: always answered here
            attrs.append("\\HasChildren" if name in with_children else "\\HasNoChildren")
            if box.special_use:
                attrs.append(box.special_use)  # RFC 6154 §2
        if name in subscribed and ("SUBSCRIBED" in a.returns or only_subscribed):
            attrs.append("\\Subscribed")
        line = b'* LIST (%s) "/" %s%s\r\n' % (" ".join(attrs).encode(), s.mbox(name), extra)
        entries.append((line, box))
    statuses: dict[int, MailboxStatus] = {}
    if a.status is not None:
        # every status in one read of the account (not a reader thread's turn per mailbox)
        statuses = await acct.statuses([box.id for _, box in entries if box is not None])
    for line, box in entries:
        s.send(line)
        if box is not None and a.status is not None:
            # RFC 5819 §2: the STATUS response follows its LIST response
            s.send(render_status(s, box, statuses[box.id], a.status))
    return "LIST completed"


def _wants_subscribed(a: ListCmd) -> bool:
    return "SUBSCRIBED" in a.select or "SUBSCRIBED" in a.returns


async def _lsub(s: Session, a: ListCmd) -> str:
    # RFC 3501 §6.3.9
    acct = _account(s)
    matcher = pattern_matcher(a.reference, a.patterns[0])
    subs = sorted(set(await acct.subscriptions()))
    existing = {b.name for b in await acct.list_mailboxes()}
    if a.patterns == ("",):
        s.untagged(b'LSUB (\\Noselect) "/" ""')
        return "LSUB completed"
    shown: set[str] = set()
    for name in subs:
        if matcher.match(name):
            attrs = "" if name in existing else "\\Noselect"
            s.send(b'* LSUB (%s) "/" %s\r\n' % (attrs.encode(), s.mbox(name)))
            shown.add(name)
        elif a.patterns[0].endswith("%"):
            # RFC 3501 §6.3.9: a "%" that hides a subscribed child shows its parent \Noselect
            parts = name.split(SEP)
            for k in range(1, len(parts)):
                parent = SEP.join(parts[:k])
                if parent not in shown and matcher.match(parent) and parent not in subs:
                    s.send(b'* LSUB (\\Noselect) "/" %s\r\n' % s.mbox(parent))
                    shown.add(parent)
    return "LSUB completed"
