"""The IMAP command parser: one command's bytes in, a :class:`Request` out.

Pure (no sockets, no state): the framing layer hands over the whole command, literal
octets included, without the final CRLF. Raises only :class:`ParseError` subclasses.
Grammar references are to RFC 3501 §9 unless stated otherwise.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from services.store.imap import commands as c
from services.store.imap import parse_items as items
from services.store.imap import parse_notify, parse_sort
from services.store.imap.lexer import (
    MAX_LINE,
    BadCharset,
    BadSyntax,
    Cursor,
    LineTooLong,
    ParseError,
    TooDeep,
    UnknownCommand,
    literal_suffix,
    tag_of,
)
from services.store.imap.parse_returns import partial_range, return_options

__all__ = [
    "MAX_LINE",
    "BadCharset",
    "BadSyntax",
    "LineTooLong",
    "ParseError",
    "TooDeep",
    "UnknownCommand",
    "literal_suffix",
    "parse",
    "tag_of",
]

Sub = Callable[[Cursor], c.Args]
# RFC 4731, RFC 5182 SAVE, RFC 9394 PARTIAL, RFC 5267 §4 UPDATE and CONTEXT
SEARCH_RETURNS = frozenset(("MIN", "MAX", "ALL", "COUNT", "SAVE", "PARTIAL", "UPDATE", "CONTEXT"))


def _none(cur: Cursor) -> c.Args:
    return c.NoArgs()


def _login(cur: Cursor) -> c.Args:
    cur.sp()
    user = cur.astr()
    cur.sp()
    return c.Login(user, cur.astr())


def _authenticate(cur: Cursor) -> c.Args:
    cur.sp()
    mech = cur.atom().upper()
    initial = None
    if cur.take(b" "):
        # RFC 4959 §3: initial response is base64 or "=" for an empty one
        raw = cur.run(
            frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
        )
        if not raw:
            raise cur.error("bad initial response")
        initial = raw
    return c.Authenticate(mech, initial)


def _select(readonly: bool) -> Sub:
    def sub(cur: Cursor) -> c.Args:
        cur.sp()
        mailbox = cur.mailbox()
        condstore = False
        qresync = None
        if cur.take(b" "):
            # RFC 4466 §2.1 select-params; RFC 7162 §3.1.8 CONDSTORE, §3.2.5 QRESYNC
            cur.open()
            while True:
                word = cur.atom().upper()
                if word == "CONDSTORE":
                    condstore = True
                elif word == "QRESYNC":
                    cur.sp()
                    cur.open()
                    uidvalidity = cur.number(nonzero=True)
                    cur.sp()
                    modseq = cur.number(bits=63)
                    known = None
                    if cur.take(b" ") and cur.peek() != 0x28:
                        known = cur.sequence_set()
                        cur.take(b" ")
                    if cur.peek() == 0x28:  # seq-match-data: accepted, not needed
                        cur.open()
                        cur.seqset()
                        cur.sp()
                        cur.seqset()
                        cur.close()
                    cur.close()
                    qresync = (uidvalidity, modseq, known)
                else:
                    raise cur.error(f"unknown SELECT parameter {word}")
                if not cur.take(b" "):
                    break
            cur.close()
        return c.Select(mailbox, readonly, condstore, qresync)

    return sub


def _mailbox_arg(cur: Cursor) -> c.Args:
    cur.sp()
    return c.MailboxArg(cur.mailbox())


def _create(cur: Cursor) -> c.Args:
    cur.sp()
    mailbox = cur.mailbox()
    uses: tuple[str, ...] = ()
    if cur.take(b" "):
        # RFC 6154 §3: CREATE mailbox (USE (\Flag ...))
        cur.open()
        if not cur.take_word(b"USE "):
            raise cur.error("unknown CREATE parameter")
        uses = cur.flag_list()
        cur.close()
    return c.Create(mailbox, uses)


def _rename(cur: Cursor) -> c.Args:
    cur.sp()
    old = cur.mailbox()
    cur.sp()
    return c.Rename(old, cur.mailbox())


def _list(lsub: bool) -> Sub:
    def sub(cur: Cursor) -> c.Args:
        cur.sp()
        select: set[str] = set()
        extended = False
        if not lsub and cur.peek() == 0x28:
            # RFC 5258 §6 list-select-opts
            extended = True
            cur.open()
            if not cur.take(b")"):
                select.add(cur.atom().upper())
                while cur.take(b" "):
                    select.add(cur.atom().upper())
                cur.expect(b")")
            cur.depth -= 1
            cur.sp()
        ref = cur.mailbox()
        cur.sp()
        patterns: list[str] = []
        if not lsub and cur.peek() == 0x28:
            extended = True
            cur.open()
            patterns.append(cur.list_mailbox())
            while cur.take(b" "):
                patterns.append(cur.list_mailbox())
            cur.close()
        else:
            patterns.append(cur.list_mailbox())
        returns: set[str] = set()
        status = None
        if not lsub and cur.take(b" "):
            extended = True
            if not cur.take_word(b"RETURN "):
                raise cur.error("expected RETURN")
            cur.open()
            if not cur.take(b")"):
                while True:
                    word = cur.atom().upper()
                    if word == "STATUS":
                        # RFC 5819 §2
                        cur.sp()
                        status = _status_items(cur)
                    returns.add(word)
                    if not cur.take(b" "):
                        break
                cur.expect(b")")
            cur.depth -= 1
        return c.ListCmd(
            ref, tuple(patterns), lsub, frozenset(select), frozenset(returns), status, extended
        )

    return sub


STATUS_ITEMS = frozenset(
    [
        "MESSAGES",
        "RECENT",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
        "HIGHESTMODSEQ",
        "SIZE",
        "DELETED",
        "MAILBOXID",  # RFC 8474 §4.3
    ]
)


def _status_items(cur: Cursor) -> tuple[str, ...]:
    cur.open()
    names = [cur.atom().upper()]
    while cur.take(b" "):
        names.append(cur.atom().upper())
    cur.close()
    for n in names:
        if n not in STATUS_ITEMS:
            raise cur.error(f"unknown STATUS item {n}")
    return tuple(names)


def _status(cur: Cursor) -> c.Args:
    cur.sp()
    mailbox = cur.mailbox()
    cur.sp()
    return c.Status(mailbox, _status_items(cur))


def _append(cur: Cursor) -> c.Args:
    # RFC 3501 §6.3.11: APPEND mailbox [flag-list] [date-time] literal;
    # RFC 3502 §6: append = "APPEND" SP mailbox 1*append-message
    cur.sp()
    mailbox = cur.mailbox()
    cur.sp()
    first = _append_message(cur)
    more = []
    while cur.take(b" "):
        more.append(_append_message(cur))
    return c.Append(
        mailbox,
        first.flags,
        first.date,
        first.data,
        first.binary,
        tuple(more),
        first.utf8,
        first.catenate,
    )


def _append_message(cur: Cursor) -> c.AppendMessage:
    # RFC 3502 §6: append-message = append-opts SP append-data
    flags: tuple[str, ...] = ()
    date = None
    if cur.peek() == 0x28:
        flags = cur.flag_list()
        cur.sp()
    if cur.peek() == 0x22:
        date = items.date_time(cur)
        cur.sp()
    if cur.take_word(b"CATENATE ("):
        # RFC 4469 §5: "CATENATE" SP "(" cat-part *(SP cat-part) ")"
        cur.nest()
        parts = [_cat_part(cur)]
        while cur.take(b" "):
            parts.append(_cat_part(cur))
        cur.close()
        return c.AppendMessage(flags, date, b"", catenate=tuple(parts))
    if cur.take_word(b"UTF8 ("):
        # RFC 6855 §4: append-data =/ "UTF8" SP "(" literal8 ")"
        if cur.peek() != 0x7E:
            raise cur.error("UTF8 needs a literal8")
        data = cur.literal(binary=True)
        cur.expect(b")")
        return c.AppendMessage(flags, date, data, utf8=True)
    if cur.peek() not in (0x7B, 0x7E):
        raise cur.error("APPEND needs a literal")
    # RFC 3516 §4.4 / RFC 9051: literal8 for binary content
    binary = cur.peek() == 0x7E
    return c.AppendMessage(flags, date, cur.literal(binary=True), binary)


def _cat_part(cur: Cursor) -> c.CatPart:
    # RFC 4469 §5: cat-part = text-literal / url; text-literal = "TEXT" SP literal
    if cur.take_word(b"TEXT "):
        if cur.peek() not in (0x7B, 0x7E):
            raise cur.error("TEXT needs a literal")
        return c.CatPart(text=cur.literal(binary=True))
    if cur.take_word(b"URL "):
        return c.CatPart(url=cur.astr())
    raise cur.error("expected TEXT or URL")


def _expunge(cur: Cursor) -> c.Args:
    return c.Expunge()


def _uid_expunge(cur: Cursor) -> c.Args:
    cur.sp()
    return c.Expunge(cur.sequence_set())


def _search(uid: bool) -> Sub:
    def sub(cur: Cursor) -> c.Args:
        cur.sp()
        returns = None
        partial = None
        if cur.take_word(b"RETURN "):
            # RFC 4731 §3: RETURN (MIN MAX ALL COUNT), RFC 5182 SAVE, RFC 9394 PARTIAL
            returns, partial = return_options(cur, SEARCH_RETURNS)
            cur.sp()
        charset = None
        if cur.take_word(b"CHARSET "):
            charset = cur.astr().upper()
            cur.sp()
        # RFC 6855 §3 / RFC 9051 §6.4.4: strings are UTF-8 once UTF8=ACCEPT (or rev2) is on
        key = items.SearchParser(cur, charset or ("UTF-8" if cur.utf8 else "US-ASCII")).keys()
        return c.Search(uid, key, charset, returns, partial)

    return sub


def _fetch(uid: bool) -> Sub:
    def sub(cur: Cursor) -> c.Args:
        cur.sp()
        seqs = cur.sequence_set()
        cur.sp()
        atts = items.fetch_atts(cur)
        changed_since = None
        vanished = False
        partial = None
        if cur.take(b" "):
            # RFC 7162 §3.1.4.1 CHANGEDSINCE, §3.2.6 VANISHED (UID FETCH only)
            cur.open()
            while True:
                word = cur.atom().upper()
                if word == "CHANGEDSINCE":
                    cur.sp()
                    changed_since = cur.number(bits=63)
                elif word == "VANISHED" and uid:
                    vanished = True
                elif word == "PARTIAL" and partial is None:
                    cur.sp()
                    partial = partial_range(cur)  # RFC 9394 §4
                else:
                    raise cur.error(f"unknown FETCH modifier {word}")
                if not cur.take(b" "):
                    break
            cur.close()
            if vanished and changed_since is None:
                raise cur.error("VANISHED needs CHANGEDSINCE")
        return c.Fetch(uid, seqs, atts, changed_since, vanished, partial)

    return sub


def _store(uid: bool) -> Sub:
    def sub(cur: Cursor) -> c.Args:
        cur.sp()
        seqs = cur.sequence_set()
        cur.sp()
        unchanged = None
        if cur.peek() == 0x28:
            # RFC 7162 §3.1.3 UNCHANGEDSINCE
            cur.open()
            if not cur.take_word(b"UNCHANGEDSINCE "):
                raise cur.error("unknown STORE modifier")
            unchanged = cur.number(bits=63)
            cur.close()
            cur.sp()
        op = "replace"
        if cur.take(b"+"):
            op = "add"
        elif cur.take(b"-"):
            op = "remove"
        if not cur.take_word(b"FLAGS"):
            raise cur.error("expected FLAGS")
        silent = cur.take_word(b".SILENT")
        cur.sp()
        if cur.peek() == 0x28:
            flags = cur.flag_list()
        else:
            fl = [cur.flag()]
            while cur.take(b" "):
                fl.append(cur.flag())
            flags = tuple(fl)
        return c.StoreCmd(uid, seqs, op, silent, flags, unchanged)  # type: ignore[arg-type]

    return sub


def _copy(uid: bool, move: bool) -> Sub:
    def sub(cur: Cursor) -> c.Args:
        cur.sp()
        seqs = cur.sequence_set()
        cur.sp()
        return c.CopyCmd(uid, seqs, cur.mailbox(), move)

    return sub


def _cancelupdate(cur: Cursor) -> c.Args:
    """RFC 5267 §5: "CANCELUPDATE" 1*(SP tag-string), tag-string = string"""
    tags = []
    while cur.take(b" "):
        tags.append(cur.text(cur.string()))
    if not tags:
        raise cur.error("CANCELUPDATE needs a tag")
    return c.CancelUpdate(tuple(tags))


def _enable(cur: Cursor) -> c.Args:
    caps = []
    while cur.take(b" "):
        caps.append(cur.atom().upper())
    if not caps:
        raise cur.error("ENABLE needs a capability")
    return c.Enable(tuple(caps))


def _compress(cur: Cursor) -> c.Args:
    # RFC 4978 §3: COMPRESS SP algorithm
    cur.sp()
    return c.Compress(cur.atom().upper())


def _id(cur: Cursor) -> c.Args:
    # RFC 2971 §4: ID ("(" string SP nstring *(SP string SP nstring) ")" / NIL)
    cur.sp()
    if cur.take_word(b"NIL"):
        return c.Id(None)
    cur.open()
    params: list[tuple[str, str | None]] = []
    if not cur.take(b")"):
        while True:
            key = cur.text(cur.string())
            cur.sp()
            value = cur.nstring()
            params.append((key, None if value is None else cur.text(value)))
            if not cur.take(b" "):
                break
        cur.expect(b")")
    cur.depth -= 1
    if len(params) > 30:
        raise cur.error("too many ID fields")
    return c.Id(tuple(params))


def _getquota(cur: Cursor) -> c.Args:
    cur.sp()
    return c.QuotaRoot(cur.astr())


def _getquotaroot(cur: Cursor) -> c.Args:
    cur.sp()
    return c.QuotaRoot(cur.mailbox())


def _setquota(cur: Cursor) -> c.Args:
    # RFC 9208 §4.3.3
    cur.sp()
    root = cur.astr()
    cur.sp()
    cur.open()
    limits: list[tuple[str, int]] = []
    if not cur.take(b")"):
        while True:
            name = cur.atom().upper()
            cur.sp()
            limits.append((name, cur.number(bits=63)))
            if not cur.take(b" "):
                break
        cur.expect(b")")
    cur.depth -= 1
    return c.SetQuota(root, tuple(limits))


COMMANDS: dict[str, Sub] = {
    "CAPABILITY": _none,
    "NOOP": _none,
    "LOGOUT": _none,
    "STARTTLS": _none,
    "LOGIN": _login,
    "AUTHENTICATE": _authenticate,
    "SELECT": _select(readonly=False),
    "EXAMINE": _select(readonly=True),
    "CREATE": _create,
    "DELETE": _mailbox_arg,
    "RENAME": _rename,
    "SUBSCRIBE": _mailbox_arg,
    "UNSUBSCRIBE": _mailbox_arg,
    "LIST": _list(lsub=False),
    "LSUB": _list(lsub=True),
    "STATUS": _status,
    "APPEND": _append,
    "CHECK": _none,
    "CLOSE": _none,
    "UNSELECT": _none,
    "EXPUNGE": _expunge,
    "SEARCH": _search(uid=False),
    "FETCH": _fetch(uid=False),
    "STORE": _store(uid=False),
    "COPY": _copy(uid=False, move=False),
    "MOVE": _copy(uid=False, move=True),
    "IDLE": _none,
    "NAMESPACE": _none,
    "ENABLE": _enable,
    "COMPRESS": _compress,
    "ID": _id,
    "GETQUOTA": _getquota,
    "GETQUOTAROOT": _getquotaroot,
    "SETQUOTA": _setquota,
    "SORT": parse_sort.sort(uid=False),  # RFC 5256
    "THREAD": parse_sort.thread(uid=False),
    "NOTIFY": parse_notify.notify,  # RFC 5465
    "CANCELUPDATE": _cancelupdate,  # RFC 5267 §4.3
}

UID_COMMANDS: dict[str, Sub] = {
    "FETCH": _fetch(uid=True),
    "SEARCH": _search(uid=True),
    "STORE": _store(uid=True),
    "COPY": _copy(uid=True, move=False),
    "MOVE": _copy(uid=True, move=True),
    "EXPUNGE": _uid_expunge,
    "SORT": parse_sort.sort(uid=True),
    "THREAD": parse_sort.thread(uid=True),
}


def parse(data: bytes, *, utf8: bool = False) -> c.Request:
    """Parse one complete command (without its final CRLF); ``utf8``: mailbox names are
    UTF-8 (IMAP4rev2 enabled) rather than modified UTF-7."""
    cur = Cursor(data, utf8=utf8)
    try:
        tag = cur.tag_token()
        cur.tag = tag
        cur.sp()
        name = cur.atom().upper()
        table = COMMANDS
        if name == "UID":
            cur.sp()
            name = cur.atom().upper()
            table = UID_COMMANDS
            full = "UID " + name
        else:
            full = name
        sub = table.get(name)
        if sub is None:
            raise UnknownCommand(f"unknown command {full[:40]}", tag)
        args = sub(cur)
        cur.end()
        return c.Request(tag, full, args)
    except ParseError:
        raise
    except (ValueError, IndexError, OverflowError, RecursionError) as exc:
        # defensive: a grammar path we did not anticipate is still only a syntax error
        raise BadSyntax("syntax error", cur.tag) from exc


def decode_sasl(data: bytes) -> bytes:
    """RFC 4959 / RFC 3501 §6.2.2: a base64 SASL response ("=" is the empty response)."""
    if data == b"=":
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadSyntax("invalid base64") from None
