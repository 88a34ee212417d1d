"""Parsing of FETCH data items (RFC 3501 §6.4.5), SEARCH keys (§6.4.4) and dates."""

from __future__ import annotations

import codecs
import datetime

from services.store.imap import commands as c
from services.store.imap.lexer import BadCharset, Cursor

MONTHS = {
    m.encode(): i + 1
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    )
}

# --- dates ----------------------------------------------------------------------------


def _month(cur: Cursor) -> int:
    m = MONTHS.get(cur.buf[cur.pos : cur.pos + 3].upper())
    if m is None:
        raise cur.error("bad month")
    cur.pos += 3
    return m


def search_date(cur: Cursor) -> datetime.date:
    """RFC 3501 §9 date = date-text / DQUOTE date-text DQUOTE; date-text = d-Mon-yyyy."""
    quoted = cur.take(b'"')
    day = cur.number()
    cur.expect(b"-")
    month = _month(cur)
    cur.expect(b"-")
    year = cur.number()
    if quoted:
        cur.expect(b'"')
    try:
        return datetime.date(year, month, day)
    except ValueError:
        raise cur.error("invalid date") from None


def date_time(cur: Cursor) -> datetime.datetime:
    """RFC 3501 §9 date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time
    SP zone DQUOTE, e.g. ``"17-Jul-1996 02:44:25 -0700"``."""
    cur.expect(b'"')
    cur.take(b" ")  # date-day-fixed may be space-padded
    day = cur.number()
    cur.expect(b"-")
    month = _month(cur)
    cur.expect(b"-")
    year = cur.number()
    cur.sp()
    hh = cur.number()
    cur.expect(b":")
    mm = cur.number()
    cur.expect(b":")
    ss = cur.number()
    cur.sp()
    sign = cur.peek()
    if sign not in (0x2B, 0x2D):
        raise cur.error("bad time zone")
    cur.pos += 1
    zone = cur.buf[cur.pos : cur.pos + 4]
    if len(zone) != 4 or not zone.isdigit():
        raise cur.error("bad time zone")
    cur.pos += 4
    cur.expect(b'"')
    offset = datetime.timedelta(hours=int(zone[:2]), minutes=int(zone[2:]))
    try:
        tz = datetime.timezone(-offset if sign == 0x2D else offset)
        return datetime.datetime(year, month, day, hh, mm, ss, tzinfo=tz)
    except ValueError:
        raise cur.error("invalid date-time") from None


# --- FETCH --------------------------------------------------------------------------------

_SIMPLE = frozenset(
    [
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",
        "EMAILID",  # RFC 8474 §5
        "THREADID",
        "SAVEDATE",  # RFC 8514 §4.1
    ]
)
_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}


# A client sends the same few FETCH item lists again and again (its flag sync, its list
# page, a message's body): each list's parse is kept, keyed by the bytes from the list to
# the end of the command (the same bytes parse the same way; what follows the list, CHANGEDSINCE
# and the like, is part of the key, so it can only make a miss). Parsed items are frozen.
_ATTS: dict[tuple[bytes, bool], tuple[tuple[c.FetchAtt, ...], int]] = {}
ATTS_KEPT = 512  # item lists kept (all dropped when full)
ATTS_KEY_MAX = 512  # longer remainders are parsed each time


def fetch_atts(cur: Cursor) -> tuple[c.FetchAtt, ...]:
    rest = cur.buf[cur.pos :]
    if len(rest) > ATTS_KEY_MAX:
        return _fetch_atts(cur)
    key = (bytes(rest), cur.utf8)
    hit = _ATTS.get(key)
    if hit is not None:
        cur.pos += hit[1]
        return hit[0]
    start = cur.pos
    atts = _fetch_atts(cur)
    if len(_ATTS) >= ATTS_KEPT:
        _ATTS.clear()
    _ATTS[key] = (atts, cur.pos - start)
    return atts


def _fetch_atts(cur: Cursor) -> tuple[c.FetchAtt, ...]:
    if cur.peek() == 0x28:
        cur.open()
        atts = [fetch_att(cur)]
        while cur.take(b" "):
            atts.append(fetch_att(cur))
        cur.close()
        return tuple(atts)
    start = cur.pos
    word = cur.atom().upper()
    if word in _MACROS:
        return tuple(c.FetchAtt(n) for n in _MACROS[word])
    cur.pos = start
    return (fetch_att(cur),)


def fetch_att(cur: Cursor) -> c.FetchAtt:
    start = cur.pos
    name = cur.atom().upper()  # atoms stop at "[" ? no: "[" is an atom char; split below
    if "[" in name:
        cur.pos = start + name.index("[")
        name = name[: name.index("[")]
    if name in ("BINARY", "BINARY.PEEK", "BINARY.SIZE") and cur.peek() == 0x5B:
        # RFC 3516 §4.1 / RFC 9051: section-binary = "[" [section-part] "]"
        cur.expect(b"[")
        parts: list[int] = []
        while 0x30 <= cur.peek() <= 0x39:
            parts.append(cur.number(nonzero=True))
            if not cur.take(b"."):
                break
        cur.expect(b"]")
        partial = None
        if name != "BINARY.SIZE" and cur.take(b"<"):
            offset = cur.number()
            cur.expect(b".")
            length = cur.number(nonzero=True)
            cur.expect(b">")
            partial = (offset, length)
        kind = "BINARY.SIZE" if name == "BINARY.SIZE" else "BINARY"
        return c.FetchAtt(kind, c.Section(tuple(parts)), partial, peek=name != "BINARY")
    if name in ("BODY", "BODY.PEEK") and cur.peek() == 0x5B:
        section = _section(cur)
        partial = None
        if cur.take(b"<"):
            offset = cur.number()
            cur.expect(b".")
            length = cur.number(nonzero=True)
            cur.expect(b">")
            partial = (offset, length)
        return c.FetchAtt("BODY", section, partial, peek=name == "BODY.PEEK")
    if name == "PREVIEW":
        # RFC 8970 §3: "PREVIEW" [SP "(" preview-mod *(SP preview-mod) ")"]; preview-mod
        # = "LAZY" (a preview is always made here, so LAZY changes nothing)
        if cur.buf[cur.pos : cur.pos + 2] == b" (":
            cur.pos += 1
            cur.open()
            mods = [cur.atom().upper()]
            while cur.take(b" "):
                mods.append(cur.atom().upper())
            cur.close()
            if any(m != "LAZY" for m in mods):
                raise cur.error("unknown PREVIEW modifier")
        return c.FetchAtt("PREVIEW")
    if name == "BODY" or name in _SIMPLE:
        return c.FetchAtt(name)
    raise cur.error(f"unknown FETCH item {name}")


def _section(cur: Cursor) -> c.Section:
    cur.expect(b"[")
    parts: list[int] = []
    text = ""
    fields: tuple[str, ...] = ()
    while 0x30 <= cur.peek() <= 0x39:
        parts.append(cur.number(nonzero=True))
        if not cur.take(b"."):
            break
    if cur.peek() != 0x5D:
        word = cur.run(frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.")).upper()
        if word not in (b"HEADER", b"HEADER.FIELDS", b"HEADER.FIELDS.NOT", b"TEXT", b"MIME"):
            raise cur.error("bad section")
        if word == b"MIME" and not parts:
            raise cur.error("MIME needs a part number")
        text = word.decode()
        if word.startswith(b"HEADER.FIELDS"):
            cur.sp()
            cur.open()
            names = [cur.astr().upper()]
            while cur.take(b" "):
                names.append(cur.astr().upper())
            cur.close()
            fields = tuple(names)
    cur.expect(b"]")
    return c.Section(tuple(parts), text, fields)  # type: ignore[arg-type]


# --- SEARCH ---------------------------------------------------------------------------------

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_HEADER_KEYS = {"BCC": "BCC", "CC": "CC", "FROM": "FROM", "SUBJECT": "SUBJECT", "TO": "TO"}
_DATE_KEYS = {
    "BEFORE": (False, "before"),
    "ON": (False, "on"),
    "SINCE": (False, "since"),
    "SENTBEFORE": (True, "before"),
    "SENTON": (True, "on"),
    "SENTSINCE": (True, "since"),
}
# RFC 8514 §4.2
_SAVED_KEYS = {"SAVEDBEFORE": "before", "SAVEDON": "on", "SAVEDSINCE": "since"}


class SearchParser:
    def __init__(self, cur: Cursor, charset: str) -> None:
        self.cur = cur
        try:
            self.codec = codecs.lookup(charset).name
        except LookupError:
            raise BadCharset(f"unknown charset {charset}", cur.tag) from None

    def string(self) -> str:
        raw = self.cur.astring()
        try:
            return raw.decode(self.codec)
        except UnicodeDecodeError:
            raise self.cur.error("search string not in the given charset") from None

    def keys(self) -> c.SearchKey:
        """1*(SP search-key), the caller having consumed the first SP."""
        keys = [self.key()]
        while self.cur.take(b" "):
            keys.append(self.key())
        return keys[0] if len(keys) == 1 else c.SAnd(tuple(keys))

    def key(self) -> c.SearchKey:
        cur = self.cur
        ch = cur.peek()
        if ch == 0x28:
            cur.open()
            keys = [self.key()]
            while cur.take(b" "):
                keys.append(self.key())
            cur.close()
            return keys[0] if len(keys) == 1 else c.SAnd(tuple(keys))
        if ch in (0x2A, 0x24) or 0x30 <= ch <= 0x39:
            return c.SSeq(cur.sequence_set(), uid=False)
        word = cur.atom().upper()
        if word == "ALL":
            return c.SAll()
        if word in _FLAG_KEYS:
            flag, present = _FLAG_KEYS[word]
            return c.SFlag(flag, present)
        if word in ("RECENT", "NEW", "OLD"):
            return c.SRecent(word.lower())  # type: ignore[arg-type]
        if word in ("KEYWORD", "UNKEYWORD"):
            cur.sp()
            return c.SFlag(cur.flag(), word == "KEYWORD")
        if word in _HEADER_KEYS:
            cur.sp()
            return c.SHeader(_HEADER_KEYS[word], self.string())
        if word == "HEADER":
            cur.sp()
            name = cur.astr().upper()
            cur.sp()
            return c.SHeader(name, self.string())
        if word in ("BODY", "TEXT"):
            cur.sp()
            return c.SBody(self.string(), whole=word == "TEXT")
        if word in _DATE_KEYS:
            sent, op = _DATE_KEYS[word]
            cur.sp()
            return c.SDate(sent, op, search_date(cur))  # type: ignore[arg-type]
        if word in _SAVED_KEYS:
            cur.sp()
            return c.SSaved(_SAVED_KEYS[word], search_date(cur))  # type: ignore[arg-type]
        if word == "SAVEDATESUPPORTED":
            return c.SAll()  # RFC 8514 §4.2: every mailbox here keeps save dates
        if word in ("OLDER", "YOUNGER"):
            # RFC 5032 §4: "OLDER" / "YOUNGER" SP nz-number (seconds)
            cur.sp()
            seconds = cur.number(bits=32)
            if seconds == 0:
                raise cur.error("OLDER/YOUNGER need a non-zero number of seconds")
            return c.SWithin(word == "OLDER", seconds)
        if word in ("LARGER", "SMALLER"):
            cur.sp()
            return c.SSize(word == "LARGER", cur.number(bits=64))
        if word == "UID":
            cur.sp()
            return c.SSeq(cur.sequence_set(), uid=True)
        if word == "NOT":
            cur.sp()
            cur.nest()
            k = self.key()
            cur.depth -= 1
            return c.SNot(k)
        if word == "OR":
            cur.sp()
            cur.nest()
            a = self.key()
            cur.sp()
            b = self.key()
            cur.depth -= 1
            return c.SOr(a, b)
        if word in ("EMAILID", "THREADID"):
            # RFC 8474 §6: "EMAILID" SP objectid / "THREADID" SP objectid
            cur.sp()
            value = cur.atom()
            if not 1 <= len(value) <= 255 or not all(ch.isalnum() or ch in "_-" for ch in value):
                raise cur.error("bad objectid")
            return c.SObjectId(word, value)  # type: ignore[arg-type]
        if word == "MODSEQ":
            # RFC 7162 §3.1.5: MODSEQ [SP entry-name SP entry-type-req] SP mod-sequence-valzer
            cur.sp()
            if cur.peek() == 0x22:
                cur.quoted()
                cur.sp()
                cur.atom()
                cur.sp()
            return c.SModSeq(cur.number(bits=63))
        raise cur.error(f"unknown search key {word}")
