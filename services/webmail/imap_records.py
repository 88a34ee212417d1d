"""Records the webmail shows (folders, list rows, pages) and the pure functions that make
them from IMAP response data; no sockets here (imap_gateway.py runs the commands)."""

from __future__ import annotations

import email.utils
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import decode_header, make_header
from typing import Any

from services.webmail.imap_parse import Value, number, pairs, parse, text

# "arrival" is UID order (what Roundcube shows unsorted): no SORT needed, no headers read
SORT_KEYS = {
    "arrival": "ARRIVAL",
    "date": "DATE",
    "from": "FROM",
    "subject": "SUBJECT",
    "size": "SIZE",
}
SPECIAL_USES = ("\\Drafts", "\\Sent", "\\Trash", "\\Junk", "\\Archive")
LIST_HEADERS = "BODY.PEEK[HEADER.FIELDS (DATE FROM TO SUBJECT)]"


@dataclass(frozen=True, slots=True)
class Folder:
    name: str  # decoded (Unicode)
    flags: frozenset[str]
    delimiter: str
    messages: int = 0
    unseen: int = 0

    @property
    def special(self) -> str | None:
        if self.name.upper() == "INBOX":
            return "\\Inbox"
        return next((f for f in SPECIAL_USES if f in self.flags), None)

    @property
    def selectable(self) -> bool:
        return "\\Noselect" not in self.flags and "\\NonExistent" not in self.flags


@dataclass(frozen=True, slots=True)
class Row:
    uid: int
    flags: frozenset[str]
    size: int
    date: datetime | None
    sender: str
    sender_address: str
    to: str
    subject: str
    preview: str = ""

    @property
    def seen(self) -> bool:
        return "\\Seen" in self.flags

    @property
    def flagged(self) -> bool:
        return "\\Flagged" in self.flags


@dataclass(slots=True)
class Page:
    rows: list[Row]
    total: int
    page: int
    pages: int
    sorted_by_server: bool = False
    # What the page was rendered from, so its live event stream can tell mail that arrived
    # between the render and the stream's own SELECT (0 / -1: not known).
    last_uid: int = 0
    messages: int = -1


def decode_words(raw: str) -> str:
    """RFC 2047 encoded words → text; never raises on garbage."""
    if "=?" not in raw:  # no encoded word (RFC 2047 §2): nothing to decode
        return raw
    try:
        return str(make_header(decode_header(raw)))
    except (ValueError, LookupError, UnicodeError):
        return raw


def imap_quote(s: str) -> str:
    """A quoted string (RFC 3501 §4.3); CR, LF and NUL never reach here (refused earlier)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- helpers (pure) ---------------------------------------------------------------------
def uid_set(uids: Sequence[int]) -> str:
    return ",".join(str(int(u)) for u in uids) or "0"


def search_criteria(query: str) -> list[str]:
    """A search box's words → IMAP SEARCH keys (RFC 3501 §6.4.4): every word must appear in
    the From, To, Subject or the text."""
    keys: list[str] = []
    for word in query.split()[:8]:
        q = imap_quote(word)
        keys += ["OR", "OR", "FROM", q, "SUBJECT", q, "TEXT", q]
    return keys or ["ALL"]


def strip_name(line: bytes, name: bytes) -> bytes:
    # aioimaplib drops the response name of an untagged reply routed to its command
    if line[: len(name) + 1].upper() == name + b" ":
        return line[len(name) + 1 :]
    return b"" if line.upper() == name else line


def values_of(line: bytes, name: bytes) -> list[Value]:
    rest = strip_name(line, name)
    try:
        return parse(rest)
    except ValueError:
        return []


def numbers(lines: list[bytes], name: bytes) -> list[int]:
    out: list[int] = []
    for line in lines:
        out += [int(p) for p in strip_name(line, name).split() if p.isdigit()]
    return out


def fetch_attrs(line: bytes) -> dict[bytes, Value] | None:
    parts = line.split(b" ", 2)
    if len(parts) < 3 or parts[1].upper() != b"FETCH":
        return None
    try:
        vals = parse(parts[2])
    except ValueError:
        return None
    if not vals or not isinstance(vals[0], list):
        return None
    return pairs(vals[0])


_ROWS: dict[bytes, Row | None] = {}
_ROWS_LIMIT = 4096  # entries: a few users' first pages
_ROW_LONGEST = 16 * 1024  # bytes of a FETCH line worth remembering


def row_of(line: bytes) -> Row | None:
    """A list row from one FETCH response line. The row is a function of the line alone
    (UID, FLAGS, sizes, header fields, preview all ride in it) and rows are immutable,
    so the rows of lines seen lately are remembered: a list page shown again is not
    parsed again (an equal line always gives an equal row, whoever fetched it)."""
    if len(line) > _ROW_LONGEST:
        return _row_of(line)
    key = bytes(line)
    if key in _ROWS:
        return _ROWS[key]
    if len(_ROWS) >= _ROWS_LIMIT:
        _ROWS.clear()
    found = _ROWS[key] = _row_of(key)
    return found


def _row_of(line: bytes) -> Row | None:
    attrs = fetch_attrs(line)
    if attrs is None or b"UID" not in attrs:
        return None
    header_raw = next((v for k, v in attrs.items() if k.startswith(b"BODY[HEADER")), b"")
    headers = header_fields(header_raw if isinstance(header_raw, bytes) else b"")
    flags = attrs.get(b"FLAGS")
    name, addr = _first_address(headers.get("from", ""))
    to_name, to_addr = _first_address(headers.get("to", ""))
    date: datetime | None = None
    raw_date = headers.get("date")
    if raw_date:
        try:
            date = email.utils.parsedate_to_datetime(str(raw_date))
        except (TypeError, ValueError):
            date = None
    if date is None:
        date = _internaldate(text(attrs.get(b"INTERNALDATE")))
    elif date.tzinfo is None:
        date = date.replace(tzinfo=UTC)
    return Row(
        uid=number(attrs.get(b"UID")),
        flags=frozenset(text(f) for f in flags) if isinstance(flags, list) else frozenset(),
        size=number(attrs.get(b"RFC822.SIZE")),
        date=date,
        sender=name or addr,
        sender_address=addr,
        to=to_name or to_addr,
        subject=decode_words(headers.get("subject", "")).strip(),
        preview=text(attrs.get(b"PREVIEW")),
    )


def header_fields(raw: bytes) -> dict[str, str]:
    """RFC 5322 §2.2 header fields → {lower-case name: unfolded raw value}, the first of
    each name. (The email package's parser is ~50× slower, and a list page has 50 rows.)"""
    out: dict[str, str] = {}
    name = ""
    for line in raw.decode("utf-8", "replace").splitlines():
        if not line:
            break
        if line[0] in " \t":  # a folded line continues the field above (§2.2.3)
            if name:
                out[name] += " " + line.strip()
            continue
        key, colon, value = line.partition(":")
        name = key.strip().lower() if colon else ""
        if name and name not in out:
            out[name] = value.strip()
        elif name:
            name = ""  # a repeated field: keep the first, skip its continuation lines
    return out


# The shapes nearly every From and To has (RFC 5322 §3.4): `addr`, `Name <addr>`,
# `"Name" <addr>`, one mailbox, no comments, groups or escapes; anything else takes the
# email package's full parser.
_SIMPLE_ADDRESS = re.compile(
    r'\s*(?:"([^"\\]*)"|([^"<>,;:()\\@]*?))\s*<([^<>\s,;:()"\\]+@[^<>\s,;:()"\\]+)>\s*'
    r'|\s*([^<>\s,;:()"\\]+@[^<>\s,;:()"\\]+)\s*'
)


def _first_address(raw: str) -> tuple[str, str]:
    m = _SIMPLE_ADDRESS.fullmatch(raw)
    if m is not None:
        if m.group(4) is not None:
            return "", m.group(4)
        if m.group(1) is not None:  # a quoted-string keeps its spaces (RFC 5322 §3.2.4)
            return decode_words(m.group(1)), m.group(3)
        return decode_words((m.group(2) or "").strip()), m.group(3)
    pairs_ = email.utils.getaddresses([raw])
    if not pairs_:
        return "", ""
    name, addr = pairs_[0]
    return decode_words(name), addr


def _internaldate(s: str) -> datetime | None:
    try:
        return datetime.strptime(s, "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return None


def sort_key(sort: str) -> Any:
    # RFC 5256 §3 orders: sent date, first From mailbox, base subject, size; ties by UID
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    if sort == "from":
        return lambda r: (r.sender_address.lower(), r.uid)
    if sort == "subject":
        return lambda r: (base_subject(r.subject), r.uid)
    if sort == "size":
        return lambda r: (r.size, r.uid)
    return lambda r: (r.date or epoch, r.uid)


def base_subject(subject: str) -> str:
    """RFC 5256 §2.1 base subject, simplified: reply/forward prefixes and case dropped."""
    s = subject.strip().lower()
    changed = True
    while changed:
        changed = False
        for prefix in ("re:", "fw:", "fwd:", "[fwd:"):
            if s.startswith(prefix):
                s = s[len(prefix) :].strip()
                changed = True
    return s.rstrip("]").strip()


def flatten(v: Value) -> list[int]:
    """The numbers in ``v`` at any depth, in order (a stack, not recursion: THREAD nests
    as deep as a conversation's branches)."""
    out: list[int] = []
    todo: list[Value] = [v]
    while todo:
        x = todo.pop()
        if isinstance(x, list):
            todo.extend(reversed(x))
        elif isinstance(x, bytes) and x.isdigit():
            out.append(int(x))
    return out


def is_change(line: bytes) -> bool:
    parts = line.replace(b"* ", b"", 1).split()
    return len(parts) >= 2 and parts[1].upper() in (b"EXISTS", b"EXPUNGE", b"FETCH", b"RECENT")


def folder_order(f: Folder) -> tuple[int, str]:
    rank = {"\\Inbox": 0, "\\Drafts": 1, "\\Sent": 2, "\\Archive": 3, "\\Junk": 4, "\\Trash": 5}
    return (rank.get(f.special or "", 10), f.name.lower())


def last_text(lines: Sequence[bytes | bytearray]) -> str:
    if not lines:
        return "no answer"
    return bytes(lines[-1]).decode("utf-8", "replace")
