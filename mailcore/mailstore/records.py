"""The account journal's typed records: what IMAP IDLE and selected sessions, the mirror
and any later consumer read (never SQL rows).

One record per event, written in the same transaction as the change it describes, numbered
densely per account (``seq`` 1, 2, 3 …, no gaps, never reused). Records are immutable.
``at`` is the time of the commit's transaction (seconds since the epoch). See
docs/storage.md "Journal" for every kind and field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

RecordKind = Literal[
    "append",
    "expunge",
    "flags",
    "mailbox-create",
    "mailbox-delete",
    "mailbox-rename",
    "mailbox-merge",
    "uid-move",
    "uid-merge",
    "subscribe",
    "unsubscribe",
    "uidnext",
    "quota",
    "account-removed",
]


@dataclass(frozen=True, slots=True)
class AppendRecord:
    """A message added to a mailbox (APPEND, delivery, COPY, MOVE, RENAME of INBOX).

    ``sha256`` (hex) is of the stored bytes; ``file_id`` names the stored file (a COPY
    shares its source's); ``flags`` is the full set, keywords included; ``delivery_key``
    is the bus delivery's key (None for IMAP and copies)."""

    kind: ClassVar[RecordKind] = "append"
    seq: int
    at: float
    mailbox_id: int
    uidvalidity: int
    uid: int
    modseq: int
    internal_date: float
    size: int
    sha256: str
    file_id: int
    flags: frozenset[str]
    delivery_key: str | None = None

    @property
    def keywords(self) -> frozenset[str]:
        """The flags that are keywords (RFC 3501 §2.3.2: not starting with a backslash)."""
        return frozenset(f for f in self.flags if not f.startswith("\\"))


@dataclass(frozen=True, slots=True)
class ExpungeRecord:
    """Messages removed from a mailbox by one operation, all with one ``modseq``."""

    kind: ClassVar[RecordKind] = "expunge"
    seq: int
    at: float
    mailbox_id: int
    uids: tuple[int, ...]
    modseq: int


@dataclass(frozen=True, slots=True)
class FlagsRecord:
    """A message's flags changed: ``flags`` is the full new set (keywords included)."""

    kind: ClassVar[RecordKind] = "flags"
    seq: int
    at: float
    mailbox_id: int
    uid: int
    modseq: int
    flags: frozenset[str]


@dataclass(frozen=True, slots=True)
class MailboxCreateRecord:
    """A new mailbox; its id and UIDVALIDITY are never used again in the account."""

    kind: ClassVar[RecordKind] = "mailbox-create"
    seq: int
    at: float
    mailbox_id: int
    name: str
    special_use: str | None
    uidvalidity: int
    uidnext: int
    modseq: int


@dataclass(frozen=True, slots=True)
class MailboxDeleteRecord:
    """A mailbox and every message in it removed. ``uids``: the messages it held (what
    the deleting side knew of: a peer that took more mail into it meanwhile keeps those,
    mailcore/mailstore/splitboxes.py; empty in records written before it was kept)."""

    kind: ClassVar[RecordKind] = "mailbox-delete"
    seq: int
    at: float
    mailbox_id: int
    name: str
    modseq: int
    uids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class MailboxRenameRecord:
    """A mailbox renamed; id, UIDVALIDITY and messages stay. Subscriptions that follow
    the rename are separate (un)subscribe records."""

    kind: ClassVar[RecordKind] = "mailbox-rename"
    seq: int
    at: float
    mailbox_id: int
    old_name: str
    new_name: str
    modseq: int


@dataclass(frozen=True, slots=True)
class MailboxMergeRecord:
    """Split brain (mailcore/mailstore/splitboxes.py): the resolving store's verdict on a
    mailbox that collided with one of its own: mailbox ``from_id`` is merged into
    ``mailbox_id``, its messages come again there under new UIDs. ``theirs``: ``from_id``
    is the peer's own mailbox (its id there, made while the link was cut); else one both
    stores hold. Changes nothing by itself; the deferring store drains its copy."""

    kind: ClassVar[RecordKind] = "mailbox-merge"
    seq: int
    at: float
    mailbox_id: int
    from_id: int
    theirs: bool


@dataclass(frozen=True, slots=True)
class UidMoveRecord:
    """Split brain (mailcore/mailstore/splitbrain.py): the resolving store moved the
    peer's message that came under ``uid`` (the peer's UID, which collided here) to
    ``new_uid`` — the first time, or again when the new UID collided on the peer too.
    Written before the append record of the copy at ``new_uid``, so the deferring peer
    knows that copy for its own message under ``uid`` exactly (not by its bytes and
    order). Changes nothing by itself; a store that resolves, and a follower, ignore it."""

    kind: ClassVar[RecordKind] = "uid-move"
    seq: int
    at: float
    mailbox_id: int
    uid: int
    new_uid: int


@dataclass(frozen=True, slots=True)
class UidMergeRecord:
    """Split brain, mailboxes (mailcore/mailstore/splitmerge.py): the resolving store took
    the peer's message ``uid`` of the peer's mailbox ``from_id`` (the peer's own when
    ``theirs``, as in :class:`MailboxMergeRecord`) into its mailbox ``mailbox_id`` under
    ``new_uid``. Written next to the append of that copy, so the deferring peer drains
    exactly that message from the mailbox it set aside (not one of the same bytes: the
    same bytes twice in a mailbox, a message copied or moved within it while cut).
    Changes nothing by itself; a store that resolves, and a follower, ignore it."""

    kind: ClassVar[RecordKind] = "uid-merge"
    seq: int
    at: float
    mailbox_id: int
    from_id: int
    theirs: bool
    uid: int
    new_uid: int


@dataclass(frozen=True, slots=True)
class SubscribeRecord:
    """RFC 3501 §6.3.6: ``name`` subscribed (a mailbox of that name may not exist)."""

    kind: ClassVar[RecordKind] = "subscribe"
    seq: int
    at: float
    name: str


@dataclass(frozen=True, slots=True)
class UnsubscribeRecord:
    """RFC 3501 §6.3.7: ``name`` no longer subscribed."""

    kind: ClassVar[RecordKind] = "unsubscribe"
    seq: int
    at: float
    name: str


@dataclass(frozen=True, slots=True)
class UidNextRecord:
    """A mailbox's UIDNEXT raised without a message (``Account.raise_uidnext``: after a
    replication conflict the UIDs in between are never given out)."""

    kind: ClassVar[RecordKind] = "uidnext"
    seq: int
    at: float
    mailbox_id: int
    uidnext: int
    modseq: int


@dataclass(frozen=True, slots=True)
class QuotaRecord:
    """The account's quota as the directory gives it (RFC 9208; 0 = unlimited), recorded
    when the store first sees a new value."""

    kind: ClassVar[RecordKind] = "quota"
    seq: int
    at: float
    bytes: int
    messages: int


@dataclass(frozen=True, slots=True)
class AccountRemovedRecord:
    """The account's mail is being erased (the last record of its journal)."""

    kind: ClassVar[RecordKind] = "account-removed"
    seq: int
    at: float
    account_id: str


Record = (
    AppendRecord
    | ExpungeRecord
    | FlagsRecord
    | MailboxCreateRecord
    | MailboxDeleteRecord
    | MailboxRenameRecord
    | MailboxMergeRecord
    | UidMoveRecord
    | UidMergeRecord
    | SubscribeRecord
    | UnsubscribeRecord
    | UidNextRecord
    | QuotaRecord
    | AccountRemovedRecord
)

MailboxRecord = (
    AppendRecord
    | ExpungeRecord
    | FlagsRecord
    | MailboxCreateRecord
    | MailboxDeleteRecord
    | MailboxRenameRecord
    | MailboxMergeRecord
    | UidMoveRecord
    | UidMergeRecord
    | UidNextRecord
)

RECORD_TYPES: tuple[type[Record], ...] = (
    AppendRecord,
    ExpungeRecord,
    FlagsRecord,
    MailboxCreateRecord,
    MailboxDeleteRecord,
    MailboxRenameRecord,
    MailboxMergeRecord,
    SubscribeRecord,
    UnsubscribeRecord,
    UidNextRecord,
    QuotaRecord,
    AccountRemovedRecord,
    UidMoveRecord,
    UidMergeRecord,
)


def mailbox_of(rec: Record) -> int | None:
    """The mailbox a record is about (None: subscriptions, quota, account removal)."""
    return getattr(rec, "mailbox_id", None)


@dataclass(frozen=True, slots=True)
class ReaderPosition:
    """A named journal reader (``mirror:store-b``): the last record it confirmed.

    ``resync`` is True once it fell further behind than the journal keeps for it (size or
    age ceiling): the records it lacks are gone and it must start over from a full copy
    (then :meth:`Account.register_reader` with ``reset=True``)."""

    name: str
    position: int
    confirmed_at: float
    resync: bool
    behind: int  # records after ``position`` (journal head minus position)


@dataclass(frozen=True, slots=True)
class MailboxDigest:
    """Per mailbox: ``digest`` (hex) is the XOR of SHA-256(uid, message SHA-256, flags)
    over its messages, maintained on every change, with UIDNEXT and HIGHESTMODSEQ. Two
    mailboxes with equal digests hold the same messages with the same flags."""

    mailbox_id: int
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    digest: str


@dataclass(frozen=True, slots=True)
class RangeDigest:
    """The digest of the messages with UIDs ``first``..``last`` (for bisection)."""

    mailbox_id: int
    first: int
    last: int
    messages: int
    digest: str


__all__ = [
    "RECORD_TYPES",
    "AccountRemovedRecord",
    "AppendRecord",
    "ExpungeRecord",
    "FlagsRecord",
    "MailboxCreateRecord",
    "MailboxDeleteRecord",
    "MailboxDigest",
    "MailboxMergeRecord",
    "MailboxRecord",
    "MailboxRenameRecord",
    "QuotaRecord",
    "RangeDigest",
    "ReaderPosition",
    "Record",
    "RecordKind",
    "SubscribeRecord",
    "UidMergeRecord",
    "UidMoveRecord",
    "UidNextRecord",
    "UnsubscribeRecord",
    "mailbox_of",
]
