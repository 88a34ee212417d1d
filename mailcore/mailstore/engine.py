"""The store: every account below one root directory, the writer threads, delivery."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import os
import shutil
import sqlite3
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from mailcore.logging import get_logger
from mailcore.mailstore import deliver as delivery
from mailcore.mailstore import layout, mailboxes, migrate, notify, readers, replica
from mailcore.mailstore.account import Account
from mailcore.mailstore.core import AccountCore, Txn
from mailcore.mailstore.errors import (
    MailstoreError,
    ReadOnlyReplica,
    ReplicaConflict,
    StorageFull,
    StoreClosed,
    StoreLocked,
)
from mailcore.mailstore.files import FileWriter, is_full, sync_dir
from mailcore.mailstore.model import Delivery, DeliveryResult
from mailcore.mailstore.records import AccountRemovedRecord, Record
from mailcore.mailstore.threads import Writer

log = get_logger("mailstore")

STORAGE_FULL = "storage full"


class MailStore:
    """All accounts below ``root``; see the package docstring."""

    def __init__(
        self,
        root: Path,
        files: FileWriter,
        *,
        writers: int,
        lock_fd: int,
        max_message_size: int,
        max_open_accounts: int = 256,
        reader_max_behind: int | None = None,
        reader_max_age: float | None = None,
        fsync_flags: bool = True,
    ) -> None:
        self.root = root
        self._files = files
        self._loop = asyncio.get_running_loop()
        self._writers = [Writer(f"mailstore-writer-{i}") for i in range(writers)]
        self._readers = concurrent.futures.ThreadPoolExecutor(
            4, thread_name_prefix="mailstore-read"
        )
        # The most recently used accounts, at most ``max_open_accounts``; older ones are
        # dropped by _trim (connections closed, snapshots and change memory freed with
        # the object) unless a session still holds them: ``_live`` finds every Account
        # object still in use, so one account never has two (two cores would each miss
        # the other's commits).
        self._accounts: dict[str, Account] = {}
        self._live: weakref.WeakValueDictionary[str, Account] = weakref.WeakValueDictionary()
        self._opening: dict[str, asyncio.Lock] = {}
        self._lock_fd = lock_fd
        self._max_size = max_message_size
        self._max_open = max(1, max_open_accounts)
        self._reader_limits = (reader_max_behind, reader_max_age)
        self._closed = False
        self._fsync_flags = fsync_flags
        # called on the event loop with an account's id whenever its journal moved (a
        # commit in this process or, with notices, another): the store service tells its
        # mirror (services/store/mirror_changed.py). A listener must not block.
        self.journal_listeners: list[Callable[[str], None]] = []
        self.read_only = False  # a follower's store: users may not write (open)
        self.paired = False  # a store of a mirrored pair (open)
        self.uidvalidity_parity: int | None = None  # (open)
        self._notices: notify.Notices | None = None  # other processes share the store
        self._poll: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        root: Path,
        *,
        fsync: bool = True,
        exclusive: bool = True,
        writers: int = 2,
        max_message_size: int = 0,
        max_open_accounts: int = 256,
        reader_max_behind: int | None = None,
        reader_max_age: float | None = None,
        lock_fd: int | None = None,
        fsync_flags: bool = True,
        read_only: bool = False,
        paired: bool = False,
        uidvalidity_parity: int | None = None,
    ) -> MailStore:
        """Open (creating) the store below ``root``.

        ``exclusive`` (the store service) refuses a second process on the same root with
        :class:`StoreLocked`; tools and tests may pass False to share it. Orphaned files
        of interrupted writes are removed as each account is opened. At most
        ``max_open_accounts`` accounts keep their SQLite connections (and file
        descriptors) open; the least recently used are closed and reopen when used.
        ``reader_max_behind`` (records) and ``reader_max_age`` (seconds): the ceilings
        beyond which a journal reader must resync (default: readers.MAX_BEHIND/MAX_AGE).
        ``lock_fd``: the store lock taken by the parent process and inherited (an IMAP
        worker process of the store service, services/store/imap_workers.py): the lock is
        already held for this process, which only keeps the descriptor (and leaves the
        trash to the parent). ``fsync_flags=False``: flag and keyword changes
        (``store_flags``) commit without waiting for the disk (docs/storage.md).
        ``read_only``: a mirror's follower (docs/mirror.md): users' changes and
        deliveries are refused (:class:`ReadOnlyReplica`), accounts open without default
        mailboxes (they come from the journal it follows); replica apply writes as ever.
        ``paired``: a store of a mirrored pair: a new account's default mailboxes get the
        same UIDVALIDITY as on the peer (mailboxes.create_defaults).
        ``uidvalidity_parity`` (0 or 1): every UIDVALIDITY this store makes has that parity
        (a pair's master 0, its slave 1), so the two never make the same one.
        """
        root = Path(root)
        for sub in ("accounts", "trash"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        if lock_fd is not None:
            fd = lock_fd
        else:
            fd = os.open(root / "store.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise StoreLocked(f"{root} is in use by another store process") from None
        store = cls(
            root,
            FileWriter(durable=fsync),
            writers=max(1, writers),
            lock_fd=fd,
            max_message_size=max_message_size,
            max_open_accounts=max_open_accounts,
            reader_max_behind=reader_max_behind,
            reader_max_age=reader_max_age,
            fsync_flags=fsync_flags,
        )
        store.read_only = read_only
        store.paired = paired
        store.uidvalidity_parity = uidvalidity_parity
        if lock_fd is None:
            threading.Thread(target=store._empty_trash, name="mailstore-trash", daemon=True).start()
        return store

    @property
    def lock_fd(self) -> int:
        """The descriptor holding the store lock (for a worker process to inherit)."""
        return self._lock_fd

    def enable_notices(self, poll_every: float = notify.POLL_EVERY) -> notify.Notices:
        """Share the store with other processes (notify.py): tell them of this
        process's commits, and follow theirs (a notice per commit, and a check of every
        loaded account each ``poll_every`` seconds for any notice lost)."""
        if self._notices is None:
            self._notices = notify.Notices(self.root, self._notice)
            self._notices.start(self._loop)
            for acct in self._live.values():
                acct._core.announce = self._notices.send
            self._poll = asyncio.create_task(self._poll_forever(poll_every), name="store-poll")
        return self._notices

    def _journal_moved(self, account_id: str) -> None:  # event loop
        for listener in self.journal_listeners:
            listener(account_id)

    def _notice(self, account_id: str, seq: int) -> None:  # event loop
        acct = self._live.get(account_id)
        if acct is not None:
            acct._advanced(seq)

    async def _poll_forever(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            for acct in list(self._live.values()):
                if acct._core.closed:
                    continue
                with contextlib.suppress(MailstoreError, sqlite3.Error):
                    acct._advanced(await acct._journal_end())

    def _empty_trash(self) -> None:
        trash = self.root / "trash"
        for entry in list(trash.iterdir()) if trash.is_dir() else []:
            shutil.rmtree(entry, ignore_errors=True)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._poll is not None:
            self._poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll
        if self._notices is not None:
            self._notices.close()
        for w in self._writers:
            await asyncio.to_thread(w.stop)
        for acct in list(self._live.values()):
            acct._core.close()
        self._readers.shutdown(wait=True)
        self._files.close()
        os.close(self._lock_fd)

    def _writer_for(self, account_id: str) -> Writer:
        return self._writers[zlib.crc32(account_id.encode()) % len(self._writers)]

    def account_dir(self, account_id: str) -> Path:
        """Where ``account_id``'s mail lives (for ``mailctl path``)."""
        return layout.account_dir(self.root, account_id)

    async def account(self, account_id: str, *, replica: bool = False) -> Account:
        """The account, opened (and created with its default mailboxes) on first use;
        ``replica``: created empty, for a peer's journal to fill (replica apply). The
        store's replica requests use :meth:`existing` and :meth:`replica_account`
        instead, which never leave an account without INBOX behind."""
        empty = replica or self.read_only  # a follower's accounts come from the journal
        made = _paired_defaults if self.paired else _defaults
        return await self._open(account_id, _no_mailboxes if empty else made)

    async def existing(self, account_id: str) -> Account | None:
        """The account when this store holds it, else None: nothing is created (a
        peer's question about an account must not leave an empty one here, which a
        later delivery would find without INBOX)."""
        if self._closed:
            raise StoreClosed("the mail store is closed")
        found = self._known(account_id)
        if found is not None:
            return found
        if not layout.index_path(layout.account_dir(self.root, account_id)).is_file():
            return None
        try:  # an index whose creation never committed holds no account either
            return await self._open(account_id, _absent)
        except _Absent:
            return None

    async def replica_account(
        self, account_id: str, first: Record, *, origin: str | None = None
    ) -> tuple[Account, bool]:
        """The account a peer's record ``first`` goes to, and whether ``first`` was
        applied here. A missing account is created complete or not at all: only by the
        creation of its INBOX (the first record of every account's journal), applied in
        the transaction that creates the account (marked as ``origin``'s); any other
        record for a missing account raises :class:`ReplicaConflict`, nothing created."""
        found = await self.existing(account_id)
        if found is not None:
            return found, False
        if not replica.creates_account(first):
            raise ReplicaConflict(
                f"account {account_id} is not on this store and the record does not create"
                " its INBOX"
            )
        seeded: list[bool] = []

        def seed(t: Txn) -> None:
            before = t.state.change_seq
            replica.apply(t, first)
            if origin is not None:
                readers.mark_origin(t, before, origin)
            seeded.append(True)

        acct = await self._open(account_id, seed)
        return acct, bool(seeded)

    async def _open(self, account_id: str, setup: Callable[[Txn], None]) -> Account:
        """Open the account, ``setup`` filling its index when this creates it."""
        if self._closed:
            raise StoreClosed("the mail store is closed")
        found = self._known(account_id)
        if found is not None:
            return found
        path = layout.account_dir(self.root, account_id)
        lock = self._opening.setdefault(account_id, asyncio.Lock())
        async with lock:
            found = self._known(account_id)
            if found is not None:
                return found
            core = AccountCore(account_id, path, self._files)
            core.reader_max_behind, core.reader_max_age = self._reader_limits
            core.uidvalidity_parity = self.uidvalidity_parity
            writer = self._writer_for(account_id)
            try:
                await writer.submit(lambda: core.open(setup, migrate.upgrade))
            except BaseException:
                await writer.submit(core.release)
                raise
            if self._notices is not None:
                core.announce = self._notices.send
            acct = Account(
                core,
                writer,
                self._readers,
                self._loop,
                self._max_size,
                fsync_flags=self._fsync_flags,
                read_only=self.read_only,
            )
            acct.on_journal = self._journal_moved
            self._accounts[account_id] = acct
            self._live[account_id] = acct
            # forgotten and no longer used: its connections are closed on its writer,
            # after any job still queued there (sqlite3 connections would otherwise
            # wait for the cycle collector, file descriptors and all)
            weakref.finalize(acct, writer.post, core.release)
        self._opening.pop(account_id, None)
        await self._trim(keep=account_id)
        return acct

    def _known(self, account_id: str) -> Account | None:
        found = self._accounts.get(account_id)
        if found is None:
            found = self._live.get(account_id)  # dropped by _trim, still held by a session
            if found is not None:
                self._accounts[account_id] = found
        return found

    def loaded(self) -> list[Account]:
        """Every Account object in memory (recently used, or still held by a session)."""
        return list(self._live.values())

    async def _trim(self, keep: str) -> None:
        """Beyond ``max_open_accounts``: forget the least recently used accounts (their
        connections closed, their kept snapshots and changes freed with the object) and
        close the connections of any others beyond the limit. An account a session
        still holds stays usable (connections reopen on use) and :meth:`account` finds
        that same object again (``_live``); it is only no longer kept for its own sake."""
        kept = [a for a in self._accounts.values() if a.id != keep]
        excess = len(kept) + 1 - self._max_open
        if excess > 0:
            for acct in sorted(kept, key=lambda a: a._core.last_used)[:excess]:
                # once nobody holds it, its finalizer closes the connections (account())
                self._accounts.pop(acct.id, None)
        connected = [a for a in self._live.values() if a._core.connected and a.id != keep]
        excess = len(connected) + 1 - self._max_open
        if excess > 0:
            for acct in sorted(connected, key=lambda a: a._core.last_used)[:excess]:
                await self._release(acct)

    async def _release(self, acct: Account) -> None:
        if acct._core.connected:
            # On the account's own writer: never in the middle of one of its transactions.
            await self._writer_for(acct.id).submit(acct._core.release)
        acct.release_memory()

    async def deliver(self, items: Sequence[Delivery]) -> list[DeliveryResult]:
        """Commit every item; one transaction (and one sync) per account.

        Never raises for one bad item: each result says delivered, duplicate, quota or
        failed (``error`` is :data:`STORAGE_FULL` when the disk is full).
        """
        if self.read_only:
            raise ReadOnlyReplica("this store is a read-only replica: it takes no deliveries")
        groups: dict[str, list[int]] = {}
        for i, d in enumerate(items):
            groups.setdefault(d.account_id, []).append(i)
        results: list[DeliveryResult | None] = [None] * len(items)
        now = time.time()

        async def one(account_id: str, idxs: list[int]) -> None:
            batch = [items[i] for i in idxs]
            try:
                acct = await self.account(account_id)
                core = acct._core
                done = await acct._writer.submit(lambda: delivery.deliver(core, batch, now))
            except StorageFull:
                done = [DeliveryResult(d.key, "failed", error=STORAGE_FULL) for d in batch]
            except (OSError, sqlite3.Error) as exc:
                full = _disk_full(exc)
                if not full:
                    log.exception("delivery failed", account=account_id)
                error = STORAGE_FULL if full else f"{type(exc).__name__}: {exc}"
                done = [DeliveryResult(d.key, "failed", error=error) for d in batch]
            except MailstoreError as exc:
                done = [DeliveryResult(d.key, "failed", error=str(exc)) for d in batch]
            except Exception as exc:
                log.exception("delivery failed", account=account_id)
                error = f"{type(exc).__name__}: {exc}"
                done = [DeliveryResult(d.key, "failed", error=error) for d in batch]
            for i, r in zip(idxs, done, strict=True):
                results[i] = r

        await asyncio.gather(*(one(a, idxs) for a, idxs in groups.items()))
        if len(groups) > 1 or len(self._accounts) > self._max_open:
            await self._trim(keep="")
        return [r for r in results if r is not None]

    async def remove_account(self, account_id: str) -> AccountRemovedRecord | None:
        """Delete an account's mail: moved to trash at once, erased in the background.

        The account's journal gets its last record first (returned; None when the
        account had no mail directory), for whoever follows it (the mirror)."""
        path = layout.account_dir(self.root, account_id)
        last: AccountRemovedRecord | None = None
        if path.exists():
            opened = await self.account(account_id)

            def farewell(t: Txn) -> AccountRemovedRecord:
                rec = AccountRemovedRecord(t.next_seq(), t.at, account_id)
                t.log(rec)
                return rec

            last = await opened._write(farewell)
            del opened
        self._accounts.pop(account_id, None)
        acct = self._live.pop(account_id, None)
        core = acct._core if acct is not None else None
        writer = self._writer_for(account_id)

        def run() -> None:
            if core is not None:
                core.close()
            if not path.exists():
                return
            target = self.root / "trash" / f"{account_id}.{time.time_ns()}"
            os.rename(path, target)
            if self._files.durable:
                sync_dir(path.parent)
                sync_dir(target.parent)
            shutil.rmtree(target, ignore_errors=True)

        del acct
        await writer.submit(run)
        return last

    async def __aenter__(self) -> MailStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self.close()


def _no_mailboxes(t: Txn) -> None:
    """A replica's new account: its mailboxes come from the primary's journal."""


def _defaults(t: Txn) -> None:
    mailboxes.create_defaults(t)


def _paired_defaults(t: Txn) -> None:
    mailboxes.create_defaults(t, paired=True)


class _Absent(Exception):
    """An account :meth:`MailStore.existing` found no committed index for."""


def _absent(t: Txn) -> None:
    raise _Absent


def _disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT from the OS, or SQLite's "database or disk is full"."""
    if isinstance(exc, OSError):
        return is_full(exc)
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
