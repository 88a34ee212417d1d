"""What a mirror (or any journal consumer) uses of one account: ``account.replication``.

Reading the journal by position, named readers with confirmed positions, replica apply,
mailbox digests. See docs/storage.md "Journal" and the modules behind each method
(journal.py, readers.py, replica.py, digest.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from mailcore.mailstore import (
    digest,
    journal,
    layout,
    mirrortrash,
    readers,
    replica,
    replica_run,
    splitbrain,
)
from mailcore.mailstore.core import Txn
from mailcore.mailstore.records import (
    ExpungeRecord,
    MailboxDigest,
    RangeDigest,
    ReaderPosition,
    Record,
)

if TYPE_CHECKING:
    from mailcore.mailstore.account import Account

READ_LIMIT = 1000  # records per read unless asked otherwise


class Replication:
    def __init__(self, account: Account) -> None:
        self._acct = account

    # --- reading --------------------------------------------------------------------------
    @property
    def head(self) -> int:
        """The newest record's ``seq`` (0: none yet)."""
        return self._acct.change_seq

    async def read(self, after: int, limit: int = READ_LIMIT) -> list[Record]:
        """Records with ``seq > after``, ascending, at most ``limit``; raises
        :class:`ChangeLogTruncated` when some of them were pruned."""
        return await self._acct._read(lambda c: journal.read(c, after, limit=limit))

    async def first_kept(self) -> int | None:
        """The oldest record still kept (None: the journal is empty)."""
        return await self._acct._read(journal.first_kept)

    def message_bytes(self, file_id: int) -> bytes | None:
        """The stored bytes an append record names (``file_id``); None once every copy of
        the message was expunged (apply the record with ``data=None`` then)."""
        path = layout.message_path(self._acct._core.path, file_id)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    # --- readers --------------------------------------------------------------------------
    async def register_reader(
        self, name: str, position: int | None = None, *, reset: bool = False
    ) -> ReaderPosition:
        """Register reader ``name`` at ``position`` (default: the head); an existing one
        keeps its position unless ``reset`` (after a full resync)."""
        return await self._acct._write(lambda t: readers.register(t, name, position, reset=reset))

    async def unregister_reader(self, name: str) -> None:
        await self._acct._write(lambda t: readers.unregister(t, name))

    async def confirm(self, name: str, seq: int) -> None:
        """``name`` has applied every record up to ``seq`` (they may be pruned now).
        Raises :class:`ResyncRequired` for a reader beyond its ceiling."""
        await self._acct._write(lambda t: readers.confirm(t, name, seq), durable=False)

    async def read_for(self, name: str, limit: int = READ_LIMIT) -> list[Record]:
        """The records after ``name``'s confirmed position (:class:`ResyncRequired`)."""
        return await self._acct._read(lambda c: readers.read(c, name, limit))

    async def read_skipping(
        self, name: str, origin: str, limit: int = READ_LIMIT
    ) -> tuple[list[Record], int]:
        """As :meth:`read_for`, without the records applied from ``origin``; also the
        last ``seq`` read (confirm it once the records returned are safe)."""
        return await self._acct._read(lambda c: readers.read_skipping(c, name, limit, origin))

    async def last_own(self) -> int:
        """The newest record this store wrote itself, not applied from a peer (0: none)."""
        return await self._acct._read(readers.last_own)

    async def forget_origin(self, origin: str) -> None:
        """:meth:`read_skipping` leaves out nothing of ``origin``'s any more (its
        changes go back to it): before resending everything to a wiped peer."""
        await self._acct._write(lambda t: readers.forget_origin(t, origin))

    async def readers(self) -> list[ReaderPosition]:
        return await self._acct._read(readers.all_positions)

    async def prune(self) -> None:
        """Prune now (the store also does every few hundred commits)."""
        core = self._acct._core
        await self._acct._writer.submit(core.prune)

    # --- replica apply --------------------------------------------------------------------
    async def apply(
        self, rec: Record, data: bytes | None = None, *, origin: str | None = None
    ) -> bool:
        """Apply a peer's record verbatim (same UID, UIDVALIDITY, modseq, internal date,
        mailbox id); ``data``: the stored bytes for an append. False: it was applied
        already. :class:`ReplicaConflict`: refused, nothing applied. ``origin``: the
        peer's name, kept with the records this writes (:meth:`read_skipping`)."""

        return await self._acct._write(lambda t: _plain(t, rec, data, origin))

    async def apply_resolving(
        self, rec: Record, data: bytes | None, *, origin: str, resolver: bool, trash: bool = False
    ) -> splitbrain.Resolution:
        """:meth:`apply`, with the collisions of a split brain settled (splitbrain.py)
        instead of refused; ``resolver``: this store gives out the new UIDs; ``trash``: a
        peer's expunge copies the messages to Trash first (mirrortrash.py). The
        resolution's own records are journalled without origin: they go to the peer."""

        return await self._acct._write(
            lambda t: _resolving(t, rec, data, origin, resolver=resolver, trash=trash)
        )

    async def apply_many(
        self,
        items: Sequence[tuple[Record, bytes | None]],
        *,
        origin: str | None,
        resolve: bool | None = None,
        trash: bool = False,
    ) -> list[tuple[bool | splitbrain.Resolution | None, Exception | None]]:
        """Several records in order, as one write (one job of the account's writer):
        each record's outcome is what :meth:`apply` (``resolve`` None) or
        :meth:`apply_resolving` (``resolve``: the ``resolver`` role) returns, or the
        exception it raised (that record rolled back alone). Runs of appends to one
        mailbox that collide with nothing are applied together (replica_run.py)."""

        def one(t: Txn, rec: Record, data: bytes | None) -> object:
            if resolve is None:
                return _plain(t, rec, data, origin)
            assert origin is not None
            return _resolving(t, rec, data, origin, resolver=resolve, trash=trash)

        def run(t: Txn) -> list[tuple[object, Exception | None]]:
            return replica_run.apply(t, items, one, origin=origin, resolver=resolve)

        return cast(
            list[tuple[bool | splitbrain.Resolution | None, Exception | None]],
            await self._acct._write(run),
        )

    async def raise_uidnext(self, mailbox_id: int, uidnext: int) -> bool:
        """Never give out UIDs below ``uidnext`` in the mailbox (after a conflict)."""
        return await self._acct._write(lambda t: replica.raise_uidnext(t, mailbox_id, uidnext))

    # --- digests --------------------------------------------------------------------------
    async def digest(self, mailbox_id: int) -> MailboxDigest:
        return await self._acct._read(lambda c: digest.mailbox(c, mailbox_id))

    async def range_digest(self, mailbox_id: int, first: int, last: int) -> RangeDigest:
        return await self._acct._read(lambda c: digest.uid_range(c, mailbox_id, first, last))


def _plain(t: Txn, rec: Record, data: bytes | None, origin: str | None) -> bool:
    before = t.state.change_seq
    applied = replica.apply(t, rec, data)
    if origin is not None:
        readers.mark_origin(t, before, origin)
    return applied


def _resolving(
    t: Txn, rec: Record, data: bytes | None, origin: str, *, resolver: bool, trash: bool
) -> splitbrain.Resolution:
    res = splitbrain.Resolution(origin, resolver)
    before = t.state.change_seq
    if trash and isinstance(rec, ExpungeRecord):
        kept = mirrortrash.keep(t, rec)
        res.own.extend(range(before + 1, t.state.change_seq + 1))
        if kept:
            res.note("trash", f"mailbox {rec.mailbox_id}: UIDs {kept} kept in Trash")
    res.applied = replica.apply(t, rec, data, res)
    readers.mark_origin(t, before, origin)
    splitbrain.unmark_own(t, res)
    return res


__all__ = ["Replication"]
