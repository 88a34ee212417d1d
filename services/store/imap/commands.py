"""IMAP command values: what the parser produces and the handlers consume.

Pure data, no behaviour beyond sequence-set resolution. Mailbox names are already decoded
from modified UTF-7 (RFC 3501 §5.1.3) by the parser; flags keep their case as sent.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

# --- sequence sets (RFC 3501 §9 sequence-set) ------------------------------------------


@dataclass(frozen=True, slots=True)
class SeqSet:
    """Ranges of sequence numbers or UIDs; ``None`` stands for ``*`` (the largest in use)."""

    ranges: tuple[tuple[int | None, int | None], ...]
    # RFC 5182 SEARCHRES: "$", the result saved by the last SEARCH ... RETURN (SAVE)
    saved: bool = False

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Concrete, ordered inclusive ranges. RFC 3501 §9: ``*`` is the largest number in
        use; ``a:b`` equals ``b:a``; on an empty mailbox ``*`` is 0 (matches nothing)."""
        out = []
        for a, b in self.ranges:
            lo = largest if a is None else a
            hi = largest if b is None else b
            if lo > hi:
                lo, hi = hi, lo
            out.append((lo, hi))
        return out

    def contains(self, n: int, largest: int) -> bool:
        return any(lo <= n <= hi for lo, hi in self.resolve(largest))


# --- FETCH (RFC 3501 §6.4.5) -------------------------------------------------------------

SectionText = Literal["HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME", ""]


@dataclass(frozen=True, slots=True)
class Section:
    part: tuple[int, ...] = ()
    text: SectionText = ""
    fields: tuple[str, ...] = ()  # upper-cased header names for HEADER.FIELDS[.NOT]

    def spec(self) -> str:
        """The section spec as echoed in the response, e.g. ``1.2.HEADER.FIELDS (FROM)``."""
        parts = [".".join(str(p) for p in self.part)] if self.part else []
        if self.text:
            parts.append(self.text)
        s = ".".join(parts)
        if self.fields:
            s += " (" + " ".join(self.fields) + ")"
        return s


@dataclass(frozen=True, slots=True)
class FetchAtt:
    """One FETCH data item. ``name`` is ENVELOPE, FLAGS, INTERNALDATE, RFC822,
    RFC822.HEADER, RFC822.SIZE, RFC822.TEXT, BODY, BODYSTRUCTURE, UID, MODSEQ,
    or BODY[...] (``section`` set), with ``peek`` for BODY.PEEK and ``partial``."""

    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None  # (offset, length)
    peek: bool = False


# --- SEARCH (RFC 3501 §6.4.4) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SAll:
    pass


@dataclass(frozen=True, slots=True)
class SAnd:
    keys: tuple[SearchKey, ...]


@dataclass(frozen=True, slots=True)
class SOr:
    a: SearchKey
    b: SearchKey


@dataclass(frozen=True, slots=True)
class SNot:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class SSeq:
    seqs: SeqSet
    uid: bool


@dataclass(frozen=True, slots=True)
class SFlag:
    flag: str  # "\\Seen", keyword…
    present: bool


@dataclass(frozen=True, slots=True)
class SRecent:
    kind: Literal["recent", "new", "old"]


@dataclass(frozen=True, slots=True)
class SSize:
    larger: bool
    n: int


@dataclass(frozen=True, slots=True)
class SDate:
    sent: bool  # SENT* (Date: header) or BEFORE/ON/SINCE (internal date)
    op: Literal["before", "on", "since"]
    day: datetime.date


@dataclass(frozen=True, slots=True)
class SSaved:
    """RFC 8514 §4.2 SAVEDBEFORE / SAVEDON / SAVEDSINCE."""

    op: Literal["before", "on", "since"]
    day: datetime.date


@dataclass(frozen=True, slots=True)
class SWithin:
    """RFC 5032 OLDER / YOUNGER ``seconds``."""

    older: bool
    seconds: int


@dataclass(frozen=True, slots=True)
class SObjectId:
    """RFC 8474 §6 EMAILID / THREADID ``objectid``."""

    kind: Literal["EMAILID", "THREADID"]
    value: str


@dataclass(frozen=True, slots=True)
class SHeader:
    name: str
    text: str


@dataclass(frozen=True, slots=True)
class SBody:
    text: str
    whole: bool  # TEXT (header + body) rather than BODY


@dataclass(frozen=True, slots=True)
class SModSeq:
    modseq: int


SearchKey = (
    SAll
    | SAnd
    | SOr
    | SNot
    | SSeq
    | SFlag
    | SRecent
    | SSize
    | SDate
    | SSaved
    | SWithin
    | SObjectId
    | SHeader
    | SBody
    | SModSeq
)


def walk(key: SearchKey) -> Iterator[SearchKey]:
    yield key
    if isinstance(key, SAnd):
        for k in key.keys:
            yield from walk(k)
    elif isinstance(key, SOr):
        yield from walk(key.a)
        yield from walk(key.b)
    elif isinstance(key, SNot):
        yield from walk(key.key)


# --- commands --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoArgs:
    """CAPABILITY, NOOP, LOGOUT, STARTTLS, CHECK, CLOSE, UNSELECT, IDLE, NAMESPACE."""


@dataclass(frozen=True, slots=True)
class Login:
    user: str
    password: str


@dataclass(frozen=True, slots=True)
class Authenticate:
    mechanism: str
    initial: bytes | None  # RFC 4959 SASL-IR, still base64 ("=" means empty)


@dataclass(frozen=True, slots=True)
class Select:
    mailbox: str
    readonly: bool  # EXAMINE
    condstore: bool = False
    qresync: tuple[int, int, SeqSet | None] | None = None  # (uidvalidity, modseq, known uids)


@dataclass(frozen=True, slots=True)
class MailboxArg:
    """DELETE, SUBSCRIBE, UNSUBSCRIBE, GETQUOTAROOT."""

    mailbox: str


@dataclass(frozen=True, slots=True)
class Create:
    mailbox: str
    special_use: tuple[str, ...] = ()  # RFC 6154 §3 CREATE-SPECIAL-USE


@dataclass(frozen=True, slots=True)
class Rename:
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class ListCmd:
    reference: str
    patterns: tuple[str, ...]
    lsub: bool = False
    # RFC 5258 LIST-EXTENDED selection options: SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE
    select: frozenset[str] = frozenset()
    # return options: SUBSCRIBED, CHILDREN, SPECIAL-USE; STATUS items (RFC 5819)
    returns: frozenset[str] = frozenset()
    status: tuple[str, ...] | None = None
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Status:
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Append:
    mailbox: str
    flags: tuple[str, ...]
    date: datetime.datetime | None
    data: bytes
    binary: bool = False  # sent as an RFC 3516 literal8: the octets are kept as they are
    # RFC 3502 MULTIAPPEND: the messages after the first, in order
    more: tuple[AppendMessage, ...] = ()
    utf8: bool = False  # the first message came as RFC 6855 UTF8 (literal8)
    catenate: tuple[CatPart, ...] = ()  # the first message's RFC 4469 parts

    @property
    def messages(self) -> tuple[AppendMessage, ...]:
        first = AppendMessage(
            self.flags, self.date, self.data, self.binary, self.utf8, self.catenate
        )
        return (first, *self.more)


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of an APPEND (RFC 3502 §6.3.11 append-message)."""

    flags: tuple[str, ...]
    date: datetime.datetime | None
    data: bytes
    binary: bool = False
    utf8: bool = False  # RFC 6855 §4: sent as UTF8 (literal8), its headers may be UTF-8
    # RFC 4469 §5 CATENATE: the parts to join (``data`` is empty until they are)
    catenate: tuple[CatPart, ...] = ()


@dataclass(frozen=True, slots=True)
class CatPart:
    """RFC 4469 §5 cat-part: TEXT literal octets, or an IMAP URL (RFC 5092)."""

    text: bytes | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Expunge:
    uids: SeqSet | None = None  # UID EXPUNGE (RFC 4315 §2.1)


@dataclass(frozen=True, slots=True)
class Search:
    uid: bool
    key: SearchKey
    charset: str | None = None
    # RFC 4731 ESEARCH: RETURN (MIN MAX ALL COUNT); None = classic SEARCH response
    returns: frozenset[str] | None = None
    partial: tuple[int, int] | None = None  # RFC 9394 RETURN (PARTIAL a:b)


@dataclass(frozen=True, slots=True)
class Sort:
    """RFC 5256 §3 SORT (RFC 5957 DISPLAY keys); ``returns``: RFC 5267 §3.2 ESORT."""

    uid: bool
    keys: tuple[tuple[str, bool], ...]  # (sort key, REVERSE)
    key: SearchKey
    charset: str
    returns: frozenset[str] | None = None
    partial: tuple[int, int] | None = None  # RFC 5267 §4.4 / RFC 9394 PARTIAL


@dataclass(frozen=True, slots=True)
class Thread:
    """RFC 5256 §4 THREAD."""

    uid: bool
    algorithm: str  # ORDEREDSUBJECT or REFERENCES
    key: SearchKey
    charset: str


@dataclass(frozen=True, slots=True)
class Fetch:
    uid: bool
    seqs: SeqSet
    atts: tuple[FetchAtt, ...]
    changed_since: int | None = None  # RFC 7162 §3.1.4
    vanished: bool = False  # RFC 7162 §3.2.6
    partial: tuple[int, int] | None = None  # RFC 9394 §4: the FETCH modifier


@dataclass(frozen=True, slots=True)
class StoreCmd:
    uid: bool
    seqs: SeqSet
    op: Literal["add", "remove", "replace"]
    silent: bool
    flags: tuple[str, ...]
    unchanged_since: int | None = None  # RFC 7162 §3.1.3


@dataclass(frozen=True, slots=True)
class CopyCmd:
    uid: bool
    seqs: SeqSet
    mailbox: str
    move: bool = False  # RFC 6851 MOVE


@dataclass(frozen=True, slots=True)
class Enable:
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Id:
    params: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True, slots=True)
class QuotaRoot:
    """GETQUOTA (root name) / GETQUOTAROOT (mailbox name)."""

    name: str


@dataclass(frozen=True, slots=True)
class SetQuota:
    root: str
    limits: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Compress:
    mechanism: str  # RFC 4978 §3: upper-cased; only DEFLATE is known


# --- NOTIFY (RFC 5465 §8) ---------------------------------------------------------------

# filter-mailboxes (§6), upper-cased
NOTIFY_SELECTED = frozenset({"SELECTED", "SELECTED-DELAYED"})
NOTIFY_OTHER = frozenset({"INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE", "MAILBOXES"})


@dataclass(frozen=True, slots=True)
class NotifyGroup:
    """One event-group: which mailboxes (``kind``, with ``mailboxes`` for SUBTREE and
    MAILBOXES) and which events (names as sent, case-folded to the RFC's spelling when
    known; empty for NONE). ``fetch_atts``: MessageNew's fetch-att list (§5.2)."""

    kind: str
    mailboxes: tuple[str, ...]
    events: tuple[str, ...]
    fetch_atts: tuple[FetchAtt, ...] = ()


@dataclass(frozen=True, slots=True)
class Notify:
    """``NOTIFY NONE`` (``groups`` None) or ``NOTIFY SET [STATUS] groups``."""

    groups: tuple[NotifyGroup, ...] | None
    status: bool = False


@dataclass(frozen=True, slots=True)
class CancelUpdate:
    """RFC 5267 §4.3: the tags of the search contexts to stop updating."""

    tags: tuple[str, ...]


Args = (
    NoArgs
    | Compress
    | Login
    | Authenticate
    | Select
    | MailboxArg
    | Create
    | Rename
    | ListCmd
    | Status
    | Append
    | Expunge
    | Search
    | Sort
    | Thread
    | Fetch
    | StoreCmd
    | CopyCmd
    | Enable
    | Id
    | QuotaRoot
    | SetQuota
    | Notify
    | CancelUpdate
)


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed command: ``name`` is canonical upper case (``UID FETCH`` for UID forms)."""

    tag: str
    name: str
    args: Args = field(default_factory=NoArgs)
