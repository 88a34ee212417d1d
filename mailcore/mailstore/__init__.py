"""The mail storage engine: protocol-neutral (no IMAP syntax, no sequence numbers).

Per account: an SQLite index (WAL, ``synchronous=FULL``) plus one file per stored message,
below ``<root>/accounts/<account_id>/`` (see :mod:`mailcore.mailstore.layout`). Mailbox
and user names are rows, never paths. Every write runs on a writer thread (one account is
always served by the same one), so the event loop never waits for an fsync; reads run on a
small thread pool with their own connections, except ``fetch`` of at most 4 UIDs, which
reads on the event loop's own connection (never waiting for a lock: a busy index sends it
to the pool). Messages are stored with CRLF line ends (bare LF/CR become CRLF), so
``MessageRecord.size`` is the size on the wire.

Opening and delivery::

    store = await MailStore.open(root, fsync=True)      # orphaned files of an account
        # (interrupted writes) are removed lazily, when that account is first opened
    acct = await store.account(user.account_id)         # opens or creates; a new account
        # has INBOX, Sent (\\Sent), Drafts (\\Drafts), Trash (\\Trash), Junk (\\Junk),
        # Archive (\\Archive), all subscribed
    results = await store.deliver([Delivery(...), ...])  # group commit: one transaction
        # per account per call; idempotent by Delivery.key; outcome per item
    store.account_dir(account_id) -> Path;  await store.remove_account(account_id)
    await store.close()

Account (names use "/" as hierarchy separator; INBOX is case-insensitive)::

    list_mailboxes() -> [MailboxInfo]; mailbox(name) -> MailboxInfo  (NoSuchMailbox)
    mailbox_by_id(id) -> MailboxInfo; mailbox_by_role("\\\\Junk") -> MailboxInfo | None
    create_mailbox(name, special_use=None)  creates missing parents (RFC 3501 §6.3.3)
    delete_mailbox(name)      INBOX -> MailboxNotAllowed; children stay
    rename_mailbox(old, new)  children move too; INBOX: its messages move (RFC 3501 §6.3.5)
    set_subscribed(name, bool); subscriptions() -> [str] (may name missing mailboxes)
    status(mailbox_id) -> MailboxStatus
    snapshot(mailbox_id) -> Snapshot       uids/modseqs/flags, no message file read; the
        last one of the 16 busiest mailboxes is kept and replayed from the journal
        (snapshots.py)
    fetch(mailbox_id, uids, parsed=True) -> [MessageRecord]   missing UIDs are skipped
    open_message(rec) -> BinaryIO          the stored bytes (NoSuchMessage once gone)
    append(mailbox_id, data, flags=(), internal_date=None, quota=Quota()) -> AppendResult
    store_flags(mailbox_id, uids, FlagOp, flags, unchanged_since=None) -> StoreResult
    expunge(mailbox_id, uids=None, *, force=False) -> [uid]   only messages flagged
        \\Deleted; force=True: exactly ``uids`` whatever their flags (one transaction)
    copy(src, uids, dst, quota=Quota()) / move(...) -> CopyResult   move is atomic
    search(mailbox_id, SearchKey, uids=None) -> [uid]   one SQL query over the index
        (sqlsearch.py); BODY/TEXT/unindexed HEADER read message files (search.reads_messages);
        cancelling the awaiting task stops such a scan between two messages
    claim_recent(mailbox_id, upto_uid) -> {uid}  each message is \\Recent for one caller only;
    peek_recent(mailbox_id, upto_uid) -> {uid}   the same, left unclaimed (EXAMINE)
    usage() -> (bytes, messages)
    change_seq; changes_since(seq, mailbox_id=None) -> [Record]  (recent ones from memory;
        records.py: one typed, immutable journal record per event, dense seq);
    wait_for_change(seq, timeout=None) -> int; expunged_since(mailbox_id, modseq) -> [uid]

Journal, readers, replica apply, digests (docs/storage.md "Journal")::

    acct.replication.read(after, limit) -> [Record]; .head; .first_kept()
    .register_reader(name, position=None, reset=False) -> ReaderPosition
    .read_for(name, limit) -> [Record]; .confirm(name, seq); .readers(); .prune()
        ResyncRequired once a reader fell beyond the ceiling (readers.py)
    .apply(record, data=None) -> bool   replica apply, idempotent; ReplicaConflict
    .message_bytes(file_id) -> bytes | None; .raise_uidnext(mailbox_id, uidnext)
    .digest(mailbox_id) -> MailboxDigest; .range_digest(mailbox_id, a, b) -> RangeDigest
    store.account(id, replica=True)   a new account without default mailboxes (tests)
    store.existing(id) -> Account | None   never creates (a peer's read-only requests)
    store.replica_account(id, first, origin=None) -> (Account, applied)   a missing
        account is created only by its INBOX's creation record, in one transaction
    store.remove_account(id) -> AccountRemovedRecord | None

Mailbox ids and UIDVALIDITY values are never reused in an account.

MODSEQ is one counter per account: each write operation takes the next value (RFC 7162
§3.1.1 only asks that it grows); a mailbox's HIGHESTMODSEQ is the largest modseq of its
changes. UIDVALIDITY values are unique per account, so they never repeat for a name.

Deviations from /work/engine-contract.md (all additive or narrowing):

* ``MailStore.open(root, *, fsync=True, exclusive=True, writers=2, max_message_size=0,
  max_open_accounts=256)``: ``exclusive`` takes an flock on
  ``<root>/store.lock`` so a second store process on the same data fails with
  :class:`StoreLocked`. With ``exclusive=False`` several processes may write one account
  (SQLite serialises them, UIDs stay unique) but ``wait_for_change`` only wakes on
  changes made in the same process, unless every process calls
  ``store.enable_notices()`` (notify.py: commit notices between them, a 1 s poll behind).
  ``lock_fd``: the store lock inherited from the parent (the store's IMAP worker
  processes). ``fsync_flags=False``: ``store_flags`` commits without waiting for the disk
  (on the event loop when the account's writer thread is idle).
* ``Account.mailbox_by_id`` added; ``AppendResult`` also carries ``mailbox_id`` and
  ``modseq``; ``MailboxStatus`` also carries ``recent``; ``MessageRecord`` also carries
  ``mailbox_id`` and an opaque ``file_id``.
* Errors add :class:`InvalidAccountId`, :class:`InvalidFlag`, :class:`StoreClosed`
  (every call after ``MailStore.close()``, and on an account removed meanwhile),
  :class:`StoreLocked` and :class:`ChangeLogTruncated` (``changes_since`` for a position
  older than the newest 200,000 changes kept: take a fresh snapshot).
* :class:`TooManyKeywords`: at most 100 keywords per message and 1,000 distinct ones per
  mailbox (keywords.py), raised by ``store_flags``, ``append``, ``copy``/``move``.
* ``max_open_accounts`` bounds memory too: beyond it the least recently used accounts are
  forgotten (an Account a caller still holds stays valid, and ``account()`` returns that
  same object), and idle ones lose their connections and kept snapshots.
* ``expunge(..., force=True)`` added (POP3 UPDATE).
  ``MessageTooLarge`` is raised by ``append`` when ``max_message_size`` is set.
* ``store_flags``: ``StoreResult.changed`` lists only messages whose flags changed (a STORE
  that changes nothing assigns no new MODSEQ); IMAP answers FETCH for the others from
  its own view. ``DeliveryResult.error`` is ``engine.STORAGE_FULL`` when the disk is full.
* Flags: system flags are stored in their canonical spelling (``\\seen`` -> ``\\Seen``);
  ``\\Recent`` is ignored (session state); other ``\\``-flags and keywords with spaces,
  brackets or controls raise :class:`InvalidFlag`.
"""

from mailcore.mailstore.account import Account
from mailcore.mailstore.engine import MailStore
from mailcore.mailstore.errors import (
    ChangeLogTruncated,
    InvalidAccountId,
    InvalidFlag,
    InvalidMailboxName,
    MailboxExists,
    MailboxNotAllowed,
    MailstoreError,
    MessageTooLarge,
    NoSuchMailbox,
    NoSuchMessage,
    QuotaExceeded,
    ReadOnlyReplica,
    ReplicaConflict,
    ResyncRequired,
    SearchStopped,
    StorageFull,
    StoreClosed,
    StoreLocked,
    TooManyKeywords,
    UnknownReader,
)
from mailcore.mailstore.layout import store_root
from mailcore.mailstore.model import (
    SYSTEM_FLAGS,
    AppendResult,
    CopyResult,
    Delivery,
    DeliveryResult,
    FlagOp,
    MailboxInfo,
    MailboxStatus,
    MessageRecord,
    Quota,
    Snapshot,
    StoreResult,
)

__all__ = [
    "SYSTEM_FLAGS",
    "Account",
    "AppendResult",
    "ChangeLogTruncated",
    "CopyResult",
    "Delivery",
    "DeliveryResult",
    "FlagOp",
    "InvalidAccountId",
    "InvalidFlag",
    "InvalidMailboxName",
    "MailStore",
    "MailboxExists",
    "MailboxInfo",
    "MailboxNotAllowed",
    "MailboxStatus",
    "MailstoreError",
    "MessageRecord",
    "MessageTooLarge",
    "NoSuchMailbox",
    "NoSuchMessage",
    "Quota",
    "QuotaExceeded",
    "ReadOnlyReplica",
    "ReplicaConflict",
    "ResyncRequired",
    "SearchStopped",
    "Snapshot",
    "StorageFull",
    "StoreClosed",
    "StoreLocked",
    "StoreResult",
    "TooManyKeywords",
    "UnknownReader",
    "store_root",
]
