"""The engine's value types: what it hands to IMAP, POP3, delivery and the mirror."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

from mailcore.message import ParsedMessage

# RFC 3501 §2.3.2 system flags that are stored (\Recent is session state, see claim_recent).
SEEN = "\\Seen"
ANSWERED = "\\Answered"
FLAGGED = "\\Flagged"
DELETED = "\\Deleted"
DRAFT = "\\Draft"
SYSTEM_FLAGS = frozenset((SEEN, ANSWERED, FLAGGED, DELETED, DRAFT))

# RFC 6154 special-use attributes given to the mailboxes every account starts with.
SPECIAL_USE = frozenset(("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive", "\\All"))
DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)


class FlagOp(enum.Enum):
    """RFC 3501 §6.4.6 STORE: FLAGS (replace), +FLAGS (add), -FLAGS (remove)."""

    ADD = "add"
    REMOVE = "remove"
    REPLACE = "replace"


@dataclass(frozen=True, slots=True)
class Quota:
    """Per-account limits; 0 = unlimited (from the directory's User record)."""

    bytes: int = 0
    messages: int = 0


NO_QUOTA = Quota()


@dataclass(frozen=True, slots=True)
class MailboxInfo:
    id: int
    name: str  # "/" is the hierarchy separator; "INBOX" is always spelled so
    special_use: str | None
    subscribed: bool
    uidvalidity: int


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """RFC 3501 §6.3.10 STATUS data (+ RFC 7162 HIGHESTMODSEQ, RFC 8438 SIZE)."""

    id: int
    messages: int
    unseen: int
    deleted: int
    size: int
    recent: int  # messages whose \Recent nobody has claimed yet
    uidnext: int
    uidvalidity: int
    highestmodseq: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What SELECT needs, read in one consistent transaction without any message file.

    ``uids`` ascend; ``modseqs[i]`` and ``flags[i]`` belong to ``uids[i]``. ``change_seq``
    is the account's journal position the snapshot reflects: follow it with
    :meth:`Account.changes_since` to stay current.
    """

    mailbox_id: int
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    change_seq: int
    uids: list[int]
    modseqs: list[int]
    flags: list[frozenset[str]]


@dataclass(slots=True)
class MessageRecord:
    mailbox_id: int
    uid: int
    modseq: int
    flags: frozenset[str]
    internal_date: float
    size: int
    parsed: ParsedMessage | None
    file_id: int  # opaque: which stored file holds the bytes (see Account.open_message)
    save_date: float | None = None  # RFC 8514: when saved in this mailbox (None: unknown)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """RFC 4315 §3 APPENDUID data."""

    uidvalidity: int
    uid: int
    mailbox_id: int = 0
    modseq: int = 0


@dataclass(frozen=True, slots=True)
class StoreResult:
    """Messages whose flags changed (uid, new modseq, new flags); RFC 7162 §3.1.3: UIDs that
    failed UNCHANGEDSINCE are in ``modified`` and were left alone."""

    changed: list[tuple[int, int, frozenset[str]]]
    modified: list[int]


@dataclass(frozen=True, slots=True)
class CopyResult:
    """RFC 4315 §3 COPYUID data: the destination's UIDVALIDITY and (source, new) UID pairs."""

    uidvalidity: int
    mapping: list[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One recipient's copy of one bus message."""

    key: str  # unique per (bus message id, recipient): redelivery is recognised by it
    account_id: str
    mailbox_role: str  # "inbox" or "junk" (falls back to INBOX when the role is missing)
    data: bytes
    internal_date: float
    flags: frozenset[str] = frozenset()
    quota: Quota = field(default_factory=Quota)


DeliveryOutcome = Literal["delivered", "duplicate", "quota", "failed"]


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    key: str
    outcome: DeliveryOutcome
    mailbox_id: int | None = None
    uid: int | None = None
    error: str | None = None
