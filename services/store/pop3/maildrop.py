"""The maildrop of one POP3 session: the user's INBOX as it was at login.

RFC 1939 §5: messages are numbered from 1 in the order of the snapshot (UID order), and
the numbers, sizes and listing never change during the session — mail that arrives
meanwhile is not shown. DELE only marks (RSET unmarks); :meth:`Maildrop.commit` runs in
the UPDATE state and removes exactly the marked messages through the engine, so an IMAP
session on the same INBOX loses nothing else (messages it flagged ``\\Deleted`` itself stay
until it expunges them).

Only record metadata is held (UID and size per message), never message bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from mailcore.mailstore import Account, FlagOp, MailStore, MessageRecord, ReadOnlyReplica

INBOX = "INBOX"
FETCH_BATCH = 2000  # UIDs per engine fetch while opening a large maildrop


class MessageNumberError(Exception):
    """Base of the message-number refusals (mapped to replies in ``errors.py``)."""


class NoSuchMessageNumber(MessageNumberError):
    pass


class MessageMarkedDeleted(MessageNumberError):
    pass


def unique_id(uidvalidity: int, uid: int) -> str:
    """RFC 1939 §7: 1-70 characters 0x21-0x7E, unique and never reused in the maildrop.

    UIDVALIDITY never repeats for a mailbox name and UIDs never repeat within it, and a
    mirror keeps both verbatim, so the pair is stable forever and the same on the mirror.
    """
    return f"{uidvalidity}.{uid}"


class Maildrop:
    def __init__(
        self, account: Account, mailbox_id: int, uidvalidity: int, records: list[MessageRecord]
    ) -> None:
        self._account = account
        self._mailbox_id = mailbox_id
        self.uidvalidity = uidvalidity
        self._records = records
        self._deleted: set[int] = set()  # message numbers
        self._retrieved: set[int] = set()
        self._total = sum(r.size for r in records)
        self._deleted_octets = 0

    @classmethod
    async def open(cls, store: MailStore, account_id: str) -> Maildrop:
        account = await store.account(account_id)
        inbox = await account.mailbox(INBOX)
        snap = await account.snapshot(inbox.id)
        records: list[MessageRecord] = []
        for i in range(0, len(snap.uids), FETCH_BATCH):
            batch = snap.uids[i : i + FETCH_BATCH]
            records += await account.fetch(inbox.id, batch, parsed=False)
        records.sort(key=lambda r: r.uid)
        return cls(account, inbox.id, snap.uidvalidity, records)

    # --- what STAT/LIST/UIDL show --------------------------------------------------------
    @property
    def count(self) -> int:
        return len(self._records) - len(self._deleted)

    @property
    def octets(self) -> int:
        return self._total - self._deleted_octets

    @property
    def deleted_count(self) -> int:
        return len(self._deleted)

    def check(self, n: int) -> int:
        """``n`` when it names a message that is not marked deleted."""
        if not 1 <= n <= len(self._records):
            raise NoSuchMessageNumber(n)
        if n in self._deleted:
            raise MessageMarkedDeleted(n)
        return n

    def size(self, n: int) -> int:
        return self._records[n - 1].size

    def unique_id(self, n: int) -> str:
        return unique_id(self.uidvalidity, self._records[n - 1].uid)

    def sizes(self) -> Iterator[tuple[int, int]]:
        deleted = self._deleted
        for n, rec in enumerate(self._records, 1):
            if n not in deleted:
                yield n, rec.size

    def unique_ids(self) -> Iterator[tuple[int, str]]:
        deleted, v = self._deleted, self.uidvalidity
        for n, rec in enumerate(self._records, 1):
            if n not in deleted:
                yield n, unique_id(v, rec.uid)

    def open_message(self, n: int) -> BinaryIO:
        """The stored bytes (the engine raises NoSuchMessage if it was expunged since)."""
        return self._account.open_message(self._records[n - 1])

    # --- marks --------------------------------------------------------------------------
    def delete(self, n: int) -> None:
        self.check(n)
        if self._account.read_only:  # refused now, not at QUIT: the client is told
            raise ReadOnlyReplica("a read-only replica removes no message")
        self._deleted.add(n)
        self._deleted_octets += self._records[n - 1].size

    def reset(self) -> None:
        self._deleted.clear()
        self._deleted_octets = 0

    def mark_retrieved(self, n: int) -> None:
        self._retrieved.add(n)

    # --- UPDATE state -------------------------------------------------------------------
    async def commit(self) -> int:
        """Apply the session's changes; the number of messages removed.

        Messages fetched with RETR and kept become \\Seen (as Dovecot does), so a webmail
        or IMAP client shows them as read. Deleted messages are expunged by UID in one
        transaction whatever their flags (all of them or, on failure, none), only those:
        anything else flagged \\Deleted in the INBOX is not touched.
        """
        acc, mb = self._account, self._mailbox_id
        if acc.read_only:  # a read-only replica: reading marks nothing (DELE was refused)
            return 0
        seen = [
            self._records[n - 1].uid
            for n in sorted(self._retrieved - self._deleted)
            if "\\Seen" not in self._records[n - 1].flags
        ]
        if seen:
            await acc.store_flags(mb, seen, FlagOp.ADD, ["\\Seen"])
        if not self._deleted:
            return 0
        uids = [self._records[n - 1].uid for n in sorted(self._deleted)]
        # RFC 1939 §6: exactly the messages marked as deleted, atomically
        removed = await acc.expunge(mb, uids, force=True)
        return len(removed)
