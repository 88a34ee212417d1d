"""One account's mail: mailboxes, messages, flags, the change log (async API).

Writes go to the account's writer thread; reads run on the store's reader pool with
connections of their own. See the package docstring for the contract of every method.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from mailcore.mailstore import flags as flagset
from mailcore.mailstore import (
    journal,
    mailboxes,
    mailthreads,
    matcher,
    messages,
    reads,
    searchdata,
    snapshots,
    sorting,
    sqlsearch,
    threadcache,
)
from mailcore.mailstore.core import AccountCore, Txn
from mailcore.mailstore.errors import (
    MessageTooLarge,
    NoSuchMessage,
    ReadOnlyReplica,
    SearchStopped,
    StoreClosed,
)
from mailcore.mailstore.layout import SHARD_SIZE
from mailcore.mailstore.model import (
    NO_QUOTA,
    AppendResult,
    CopyResult,
    FlagOp,
    MailboxInfo,
    MailboxStatus,
    MessageRecord,
    Quota,
    Snapshot,
    StoreResult,
)
from mailcore.mailstore.records import Record
from mailcore.mailstore.replication import Replication
from mailcore.mailstore.search import SearchKey
from mailcore.mailstore.snapshots import SnapshotCache
from mailcore.mailstore.threads import Writer, defer, deferring
from mailcore.message import dumps, parse, to_crlf

if TYPE_CHECKING:
    from concurrent.futures import Executor

T = TypeVar("T")
INLINE_FETCH = 4  # fetch() of at most this many UIDs reads on the event loop thread
INLINE_PREPARE = 256 * 1024  # append() parses larger messages in a thread
INLINE_STATUS = 1000  # status() of a mailbox of at most this many messages: on the loop
_LAST_UID = 2**63 - 1  # above every UID (claim_recent without a limit)
# every this many writes run on the event loop, one goes to the writer thread instead:
# inline commits leave the WAL's automatic checkpoint (which syncs) to the writer's
INLINE_CHECKPOINT_EVERY = 64


class Account:
    """One account of a :class:`~mailcore.mailstore.MailStore` (get it from
    ``store.account(account_id)``; one object per account per store)."""

    def __init__(
        self,
        core: AccountCore,
        writer: Writer,
        readers: Executor,
        loop: asyncio.AbstractEventLoop,
        max_message_size: int = 0,
        *,
        fsync_flags: bool = True,
        read_only: bool = False,
    ) -> None:
        self.id = core.id
        self.read_only = read_only  # users may not write (MailStore.open)
        self._fsync_flags = fsync_flags
        self._core = core
        self._writer = writer
        self._readers = readers
        self._loop = loop
        self._max_size = max_message_size
        self._changed = asyncio.Event()
        self._inline_writes = 0  # writes run on the event loop (_write_inline)
        self._msgs = core.msgs_dir
        self._snapshots = SnapshotCache()  # the last snapshots of the busiest mailboxes
        self._threads = threadcache.ThreadCache()  # the last THREAD answers (same)
        # a weak link back: the engine forgets an unused Account by dropping its reference,
        # and no cycle through the core should keep it (and its snapshots) alive until GC
        committed = weakref.WeakMethod(self._committed)

        def on_commit(seq: int) -> None:
            method = committed()
            if method is not None:
                method(seq)

        core.on_commit = on_commit
        # the store's journal listeners (MailStore.journal_listeners), told on the event
        # loop when this account's journal moved (a commit here or in another process)
        self.on_journal: Callable[[str], None] | None = None

    # --- plumbing ------------------------------------------------------------------------
    def _committed(self, seq: int) -> None:  # writer thread
        # with the answer of the write that committed, when there is one for this loop
        # (a single wake-up of the event loop for both: threads.defer)
        if not defer(self._loop, self._wake):
            self._loop.call_soon_threadsafe(self._wake)

    def _advanced(self, seq: int) -> None:  # event loop
        """Another process committed up to ``seq`` (MailStore.enable_notices)."""
        if self._core.advance(seq):
            self._wake()

    async def _journal_end(self) -> int:
        """The newest journal position committed by any process (the index's state)."""

        def run(c: sqlite3.Connection) -> int:
            return int(c.execute("SELECT change_seq FROM state WHERE id = 1").fetchone()[0])

        return await self._read_small(run)

    def _wake(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()
        if self.on_journal is not None:
            self.on_journal(self.id)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            with self._core.reader() as conn:
                return fn(conn)

        if self._core.closed:
            raise StoreClosed(f"account {self.id} was closed or removed")
        try:
            fut = self._loop.run_in_executor(self._readers, run)
        except RuntimeError:  # the reader pool was shut down: MailStore.close()
            raise StoreClosed("the mail store is closed") from None
        return await fut

    def _read_inline(self, fn: Callable[[sqlite3.Connection], T]) -> T | None:
        """``fn`` on the event loop's own connection; None when that connection is not
        open and warm yet, or the database is busy (the caller reads on a thread)."""
        try:
            with self._core.inline_reader() as conn:
                if conn is None:
                    return None
                return fn(conn)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return None
            raise

    async def _read_small(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A read of a few rows by key, on the event loop's own connection when it is warm
        (see :meth:`_read_inline`), else on a reader thread, which then warms it.

        A hand-over to a reader thread and back costs two thread wake-ups; on a machine
        with more runnable threads than cores each waits its turn in the run queue, so a
        command with one hop answered 3–4× slower than Dovecot under bench W4b while the
        same command without one kept up. Only reads bounded by a few rows belong here.
        """
        found = self._read_inline(lambda c: (fn(c),))  # a tuple: None means "not inline"
        if found is not None:
            return found[0]

        def run_and_warm(c: sqlite3.Connection) -> T:
            out = fn(c)
            self._core.warm_inline()
            return out

        return await self._read(run_and_warm)

    async def _user_write(
        self, fn: Callable[[Txn], T], *, durable: bool = True, inline: bool = False
    ) -> T:
        """A write a user (IMAP, POP3, webmail) asks for: refused with
        :class:`ReadOnlyReplica` on a read-only store (a mirror's follower, whose mail
        comes from its peer's journal only: ``replication`` still writes)."""
        if self.read_only:
            raise ReadOnlyReplica("this store is a read-only replica")
        return await self._write(fn, durable=durable, inline=inline)

    async def _write(
        self, fn: Callable[[Txn], T], *, durable: bool = True, inline: bool = False
    ) -> T:
        if inline and not durable:
            done = self._write_inline(fn)
            if done is not None:
                return done[0]
        # grouped with the account's other waiting writes: one commit, one fsync for all
        return await self._writer.submit_txn(self._core, fn, durable=durable)

    def _write_inline(self, fn: Callable[[Txn], T]) -> tuple[T] | None:
        """A write that needs no disk sync (its loss to a power cut is harmless), run on
        the event loop when the account's writer thread has none of its writes queued or
        running (:meth:`AccountCore.txn_inline`); None: hand it to the writer thread.

        Its SQL takes tens of microseconds; a hand-over to the writer thread and back
        cost STORE 20 ms p50 against Dovecot's 3 under bench W4b, in turns waited for
        (the writer thread's, the event loop's for the answer), not in work. Writes of
        the account queued on the writer stay ahead of it: per account, writes commit in
        the order they were asked for. IDLE and the journal's listeners are woken as
        after the writer's commit (before the answer: :func:`threads.defer`)."""
        core = self._core
        if core.wconn is None or self._writer.busy_with(core):
            return None
        self._inline_writes += 1
        if self._inline_writes % INLINE_CHECKPOINT_EVERY == 0:
            return None  # the writer's commit checkpoints the WAL when it has grown
        with deferring(self._loop) as calls:
            done = core.txn_inline(fn)
        for call in calls:
            call()
        if core.prune_due:
            core.prune_due = False
            self._writer.post(core.prune)
        return done  # type: ignore[return-value]  # (fn's result, as txn_inline ran it)

    @property
    def replication(self) -> Replication:
        """The journal by position, readers, replica apply, digests (a new view each
        time: a view kept here would be a reference cycle, and the engine frees an
        unused Account by reference counting)."""
        return Replication(self)

    @property
    def path(self) -> str:
        return str(self._core.path)

    def release_memory(self) -> None:
        """Drop what is kept for speed only (mailbox snapshots, THREAD answers); called
        when the engine closes an idle account's connections."""
        self._snapshots.clear()
        self._threads.clear()

    # --- mailboxes -------------------------------------------------------------------------
    # The mailbox reads below are small (an account's mailbox rows and subscriptions): they
    # read on the event loop when they can (_read_small), so LIST, and the name look-up of
    # SELECT and STATUS, need no reader thread.
    async def list_mailboxes(self) -> list[MailboxInfo]:
        return await self._read_small(mailboxes.list_all)

    async def mailbox(self, name: str) -> MailboxInfo:
        return await self._read_small(lambda c: mailboxes.info(c, mailboxes.require(c, name)))

    async def mailbox_by_id(self, mailbox_id: int) -> MailboxInfo:
        return await self._read_small(lambda c: mailboxes.info(c, mailboxes.by_id(c, mailbox_id)))

    async def mailbox_by_role(self, special_use: str) -> MailboxInfo | None:
        def run(c: sqlite3.Connection) -> MailboxInfo | None:
            row = mailboxes.by_role(c, special_use)
            return mailboxes.info(c, row) if row else None

        return await self._read(run)

    async def create_mailbox(self, name: str, special_use: str | None = None) -> MailboxInfo:
        def run(t: Txn) -> MailboxInfo:
            return mailboxes.info(t.conn, mailboxes.create(t, name, special_use))

        return await self._user_write(run)

    async def delete_mailbox(self, name: str) -> None:
        await self._user_write(lambda t: mailboxes.delete(t, name))

    async def rename_mailbox(self, old: str, new: str) -> None:
        await self._user_write(lambda t: mailboxes.rename(t, old, new))

    async def set_subscribed(self, name: str, subscribed: bool) -> None:
        await self._user_write(lambda t: mailboxes.set_subscribed(t, name, subscribed))

    async def subscriptions(self) -> list[str]:
        return await self._read_small(mailboxes.subscriptions)

    async def status(self, mailbox_id: int, *, size: bool = True) -> MailboxStatus:
        """``size=False``: SIZE is not wanted (-1 in the answer); the counts then come
        from the mailbox's kept snapshot when it is current (reads.status_kept, on the
        event loop: a few point reads), not from an aggregate over its rows."""
        cache = self._snapshots
        if not size and cache.get(mailbox_id) is not None:
            recent = self._core.recent_changes
            found = self._read_inline(lambda c: reads.status_kept(c, mailbox_id, cache, recent))
            if found is not None:
                return found
        count = cache.count(mailbox_id)
        if count is not None and count <= INLINE_STATUS:
            # a small mailbox (as its kept snapshot says): its counts are a short index
            # scan, cheaper on the event loop than a hand-over to a reader thread and back
            return await self._read_small(lambda c: reads.status(c, mailbox_id))
        return await self._read(lambda c: reads.status(c, mailbox_id))

    async def statuses(self, mailbox_ids: Sequence[int]) -> dict[int, MailboxStatus]:
        """The status of each mailbox, in one read (LIST-STATUS: one hand-over to a
        reader thread for the whole list, not one per mailbox)."""
        return await self._read(lambda c: {i: reads.status(c, i) for i in mailbox_ids})

    # --- messages --------------------------------------------------------------------------
    async def snapshot(self, mailbox_id: int) -> Snapshot:
        recent = self._core.recent_changes
        cache = self._snapshots
        if cache.get(mailbox_id) is not None:
            # kept and current, or brought up to date from the changes in memory: point
            # reads and list copies, on the event loop (no hand-over to a reader thread
            # for SELECT and a POP3 login); anything that reads rows goes to the pool
            found = self._read_inline(
                lambda c: snapshots.snapshot(c, mailbox_id, cache, recent, cached_only=True)
            )
            if found is not None:
                return found
        return await self._read(lambda c: reads.snapshot(c, mailbox_id, cache, recent))

    async def fetch(
        self, mailbox_id: int, uids: Sequence[int], *, parsed: bool = True
    ) -> list[MessageRecord]:
        def run(c: sqlite3.Connection) -> list[MessageRecord]:
            return reads.fetch(c, mailbox_id, uids, parsed)

        if len(uids) <= INLINE_FETCH:
            # Deliberate (commit 4df30a0): a few primary-key look-ups on a warm connection
            # cost tens of µs, less than the hand-over to a reader thread and back (FETCH
            # BODY[] of one message is most of IMAP). Only the look-ups run on the loop:
            # the connection is opened and warmed on a reader thread (core.warm_inline),
            # so the loop never pays for a file open or a schema parse; the index of an
            # account in use is in the OS page cache, so its pages are memory reads; a
            # locked index and a connection not yet warm send the read to the pool.
            return await self._read_small(run)
        return await self._read(run)

    def open_message(self, rec: MessageRecord) -> BinaryIO:
        """The stored bytes of a message (still readable after an expunge once opened).

        Unbuffered: each ``read(n)`` is one read(2) of up to ``n`` bytes, straight into
        the result, which is what FETCH and RETR do (one read of the message or section).
        """
        fid = rec.file_id
        try:
            return open(f"{self._msgs}/{fid // SHARD_SIZE:06x}/{fid}", "rb", buffering=0)
        except FileNotFoundError:
            raise NoSuchMessage(f"message {rec.uid} is gone") from None

    async def append(
        self,
        mailbox_id: int,
        data: bytes,
        *,
        flags: Iterable[str] = (),
        internal_date: float | None = None,
        quota: Quota = NO_QUOTA,
        verbatim: bool = False,
        claim_recent: bool = False,
    ) -> AppendResult:
        """RFC 3501 §6.3.11 APPEND; raises QuotaExceeded (RFC 9208 §5.1).

        ``claim_recent``: the caller is a session with this mailbox selected, which will
        announce the message itself (§6.3.11: "the normal new message actions SHOULD
        occur"), so its \\Recent is claimed in the same transaction (§2.3.2: the first
        session notified of it) — no other session sees it as recent, and the caller
        needs no second write (:meth:`claim_recent`) to learn that.

        Bare LF and bare CR become CRLF (RFC 5322 §2.3), so the stored size is the size on
        the wire (RFC 3501 §7.4.2 RFC822.SIZE = length of BODY[]); the size limit applies
        to ``data`` as given (what the client announced, RFC 7889 APPENDLIMIT). With
        ``verbatim`` (an RFC 3516 §4.4 literal8 APPEND: binary content) the octets are
        kept exactly as given.
        """
        if self._max_size and len(data) > self._max_size:
            raise MessageTooLarge(f"message of {len(data)} bytes, limit {self._max_size}")
        wanted = flagset.normalize(flags)
        date = time.time() if internal_date is None else internal_date

        def prepare() -> tuple[bytes, bytes, searchdata.SearchData, bytes]:
            clean = data if verbatim else to_crlf(data)
            parsed = parse(clean)
            sha = hashlib.sha256(clean).digest()
            return clean, dumps(parsed), searchdata.of(parsed, clean), sha

        # before the write lock; a large message in a thread (some 3 ms per MiB of Python
        # work: 25 MiB would stop the event loop for ~70 ms), a small one right here
        if len(data) > INLINE_PREPARE:
            data, blob, search, sha = await asyncio.to_thread(prepare)
        else:
            data, blob, search, sha = prepare()
        new = messages.NewMessage(0, wanted, date, len(data), search, sha)

        def run(t: Txn) -> AppendResult:
            mb = mailboxes.by_id(t.conn, mailbox_id)
            messages.quota_check(t, quota, len(data), 1)
            (fid,) = t.write_files([data])
            t.conn.execute("INSERT INTO files VALUES (?, ?, ?)", (fid, len(data), blob))
            (uid,) = messages.insert(t, mb, [new._replace(file_id=fid)], recent=not claim_recent)
            return AppendResult(mb.uidvalidity, uid, mb.id, t.modseq())

        return await self._user_write(run)

    async def append_many(
        self,
        mailbox_id: int,
        items: Sequence[tuple[bytes, Iterable[str], float | None, bool]],
        *,
        quota: Quota = NO_QUOTA,
    ) -> list[AppendResult]:
        """RFC 3502 MULTIAPPEND: several messages (data, flags, internal date, verbatim) in
        one transaction, so all of them are stored or none; the quota is checked for all
        of them together before any is written. UIDs ascend in the order given."""
        for data, *_ in items:
            if self._max_size and len(data) > self._max_size:
                raise MessageTooLarge(f"message of {len(data)} bytes, limit {self._max_size}")
        now = time.time()

        def prepare() -> list[tuple[bytes, bytes, messages.NewMessage]]:
            out = []
            for data, flags, when, verbatim in items:
                clean = data if verbatim else to_crlf(data)
                parsed = parse(clean)
                new = messages.NewMessage(
                    0,
                    flagset.normalize(flags),
                    now if when is None else when,
                    len(clean),
                    searchdata.of(parsed, clean),
                    hashlib.sha256(clean).digest(),
                )
                out.append((clean, dumps(parsed), new))
            return out

        if sum(len(d) for d, *_ in items) > INLINE_PREPARE:
            prepared = await asyncio.to_thread(prepare)
        else:
            prepared = prepare()

        def run(t: Txn) -> list[AppendResult]:
            mb = mailboxes.by_id(t.conn, mailbox_id)
            messages.quota_check(t, quota, sum(len(c) for c, _, _ in prepared), len(prepared))
            fids = t.write_files([c for c, _, _ in prepared])
            t.conn.executemany(
                "INSERT INTO files VALUES (?, ?, ?)",
                [(fid, len(c), blob) for fid, (c, blob, _) in zip(fids, prepared, strict=True)],
            )
            news = [n._replace(file_id=fid) for fid, (_, _, n) in zip(fids, prepared, strict=True)]
            uids = messages.insert(t, mb, news)
            modseq = t.modseq()
            return [AppendResult(mb.uidvalidity, uid, mb.id, modseq) for uid in uids]

        return await self._user_write(run)

    async def store_flags(
        self,
        mailbox_id: int,
        uids: Sequence[int],
        op: FlagOp,
        flags: Iterable[str],
        *,
        unchanged_since: int | None = None,
    ) -> StoreResult:
        wanted = flagset.normalize(flags)

        def run(t: Txn) -> StoreResult:
            mb = mailboxes.by_id(t.conn, mailbox_id)
            return messages.set_flags(t, mb, uids, op, wanted, unchanged_since=unchanged_since)

        # fsync_flags=False (POSTERN_FSYNC_FLAGS): committed without waiting for the disk,
        # like Dovecot's mail_fsync=optimized, on the event loop when the account's writer
        # is idle; a group with any other write stays durable
        return await self._user_write(run, durable=self._fsync_flags, inline=not self._fsync_flags)

    async def expunge(
        self, mailbox_id: int, uids: Sequence[int] | None = None, *, force: bool = False
    ) -> list[int]:
        """Remove messages flagged \\Deleted (all, or those among ``uids``); the UIDs gone.

        ``force=True`` removes exactly ``uids`` whatever their flags, in one transaction
        (RFC 1939 §6 POP3 UPDATE): all of them or, on failure, none.
        """
        if force and uids is None:
            raise ValueError("expunge(force=True) needs the UIDs to remove")
        return await self._user_write(
            lambda t: messages.expunge(t, mailboxes.by_id(t.conn, mailbox_id), uids, force=force)
        )

    async def copy(
        self, src_id: int, uids: Sequence[int], dst_id: int, *, quota: Quota = NO_QUOTA
    ) -> CopyResult:
        return await self._user_write(
            lambda t: self._copy(t, src_id, uids, dst_id, quota=quota, move=False)
        )

    async def move(
        self, src_id: int, uids: Sequence[int], dst_id: int, *, quota: Quota = NO_QUOTA
    ) -> CopyResult:
        """RFC 6851 MOVE, atomic: one transaction. Usage does not change, so no quota check."""
        return await self._user_write(
            lambda t: self._copy(t, src_id, uids, dst_id, quota=quota, move=True)
        )

    @staticmethod
    def _copy(
        t: Txn, src_id: int, uids: Sequence[int], dst_id: int, *, quota: Quota, move: bool
    ) -> CopyResult:
        src = mailboxes.by_id(t.conn, src_id)
        dst = mailboxes.by_id(t.conn, dst_id)
        return messages.copy(t, src, uids, dst, move=move, quota=quota)

    async def search(
        self, mailbox_id: int, criteria: SearchKey, *, uids: Sequence[int] | None = None
    ) -> list[int]:
        """RFC 3501 §6.4.4 semantics, as one SQL query over the index (sqlsearch); only
        BODY, TEXT and header fields other than From/To/Cc/Bcc/Subject read messages.

        Cancelling the awaiting task stops a scan that reads messages between two
        messages, and the cancellation returns only once the reader thread has let go
        (so a caller that limits concurrent scans never has more running than it
        allowed). Set a deadline with ``asyncio.timeout`` around the call."""
        msgs = self._msgs
        stop = threading.Event()
        stopped = stop.is_set

        def run(c: sqlite3.Connection) -> list[int]:
            mailboxes.by_id(c, mailbox_id)
            try:
                return sqlsearch.run(c, msgs, mailbox_id, criteria, uids, stopped=stopped)
            except sqlite3.OperationalError as exc:
                if not _too_big(exc):
                    raise
            # criteria beyond SQLite's limits (thousands of keys): the reference scan
            return matcher.scan(c, msgs, mailbox_id, criteria, uids, stopped=stopped)

        return await self._reading(run, stop)

    async def sort(
        self, mailbox_id: int, criteria: SearchKey, keys: Sequence[tuple[str, bool]]
    ) -> list[int]:
        """RFC 5256 §3 SORT: UIDs matching ``criteria`` in the order of ``keys``
        ((key, reverse) pairs, mailcore.mailstore.sorting), one SQL query."""
        msgs = self._msgs
        stop = threading.Event()
        order = sorting.order_by(keys)

        def run(c: sqlite3.Connection) -> list[int]:
            mailboxes.by_id(c, mailbox_id)
            return sqlsearch.ordered(c, msgs, mailbox_id, criteria, order, stopped=stop.is_set)

        return await self._reading(run, stop)

    async def thread(
        self, mailbox_id: int, criteria: SearchKey, algorithm: str
    ) -> list[mailthreads.Node] | mailthreads.SubjectThreads | mailthreads.Rendered:
        """RFC 5256 §4 THREAD (``ORDEREDSUBJECT`` or ``REFERENCES``) over the messages
        matching ``criteria``, from the index's thread columns (render the result with
        :func:`mailcore.mailstore.mailthreads.render`). The answer for every message of
        a UID span is kept (mailcore.mailstore.threadcache) and given again, already
        rendered, while that span's messages stay the same (flag changes included)."""
        msgs = self._msgs
        stop = threading.Event()
        cache = self._threads
        span = threadcache.span(criteria)

        def run(
            c: sqlite3.Connection,
        ) -> list[mailthreads.Node] | mailthreads.SubjectThreads | mailthreads.Rendered:
            box = mailboxes.by_id(c, mailbox_id)
            key: threadcache.Key | None = None
            if span is not None:
                # the span ends at the last UID given so far: a message stored later
                # gets a UID above it, so within the span messages only ever go
                lo, hi = span[0], min(span[1], box.uidnext - 1)
                (count,) = c.execute(
                    "SELECT count(*) FROM messages WHERE mailbox_id = ? AND uid BETWEEN ? AND ?",
                    (mailbox_id, lo, hi),
                ).fetchone()
                key = (mailbox_id, box.uidvalidity, algorithm, lo, hi, count)
                kept = cache.get(key)
                if kept is not None:
                    return mailthreads.Rendered(kept)
            found: list[mailthreads.Node] | mailthreads.SubjectThreads
            if algorithm == "ORDEREDSUBJECT":
                # grouped and ordered by SQLite from base subject and date: Message-IDs
                # and references stay unread, no node per message
                pairs = sqlsearch.subject_threads(
                    c, msgs, mailbox_id, criteria, stopped=stop.is_set
                )
                found = mailthreads.SubjectThreads(pairs)
            else:
                rows = sqlsearch.rows(
                    c, msgs, mailbox_id, criteria, mailthreads.COLUMNS, stopped=stop.is_set
                )
                found = mailthreads.references(mailthreads.rows_of(rows))
            if key is None:
                return found
            text = mailthreads.render(found)
            cache.put(key, text)
            return mailthreads.Rendered(text)

        return await self._reading(run, stop)

    async def _reading(self, run: Callable[[sqlite3.Connection], T], stop: threading.Event) -> T:
        """``run`` on a reader connection in the reader pool; cancelling sets ``stop``
        and returns once the thread has let go."""
        if self._core.closed:
            raise StoreClosed(f"account {self.id} was closed or removed")

        def guarded() -> T:
            if stop.is_set():  # cancelled before a reader thread took it
                raise SearchStopped("search stopped")
            with self._core.reader() as conn:
                return run(conn)

        try:
            fut = self._loop.run_in_executor(self._readers, guarded)
        except RuntimeError:  # the reader pool was shut down: MailStore.close()
            raise StoreClosed("the mail store is closed") from None
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            stop.set()
            # wait for the thread to notice (one message at most), then re-raise
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await fut
            raise

    async def claim_recent(self, mailbox_id: int, upto_uid: int | None = None) -> set[int]:
        """RFC 3501 §2.3.2 \\Recent: the caller is the first session to see these messages.

        ``upto_uid`` limits the claim to the messages the caller has been told about (its
        view ends there): a message appended after that belongs to whichever session
        announces it first, and RECENT never exceeds EXISTS (RFC 3501 §7.3.2).
        Committed without an fsync of its own: a claim lost to a power cut only makes the
        messages recent once more, which is harmless. When nothing is left to claim (the
        usual case: every message was announced before) the answer comes from a point
        read on the event loop, and no write is queued at all: a SELECT then needs no
        write, and a write is a hand-over to the writer thread and back. Sound because a
        message the caller was told about was committed before, with its \\Recent row in
        the same transaction, so a read that starts now sees that row unless another
        session already claimed it.
        """

        def unclaimed(c: sqlite3.Connection) -> bool:
            mailboxes.by_id(c, mailbox_id)  # NoSuchMailbox as the claim would raise
            upto = _LAST_UID if upto_uid is None else upto_uid
            row = c.execute(
                "SELECT 1 FROM recent WHERE mailbox_id = ? AND uid <= ? LIMIT 1",
                (mailbox_id, upto),
            ).fetchone()
            return row is not None

        if not await self._read_small(unclaimed):
            return set()

        def run(t: Txn) -> set[int]:
            mailboxes.by_id(t.conn, mailbox_id)
            if upto_uid is None:
                rows = t.conn.execute(
                    "DELETE FROM recent WHERE mailbox_id = ? RETURNING uid", (mailbox_id,)
                ).fetchall()
            else:
                rows = t.conn.execute(
                    "DELETE FROM recent WHERE mailbox_id = ? AND uid <= ? RETURNING uid",
                    (mailbox_id, upto_uid),
                ).fetchall()
            return {r[0] for r in rows}

        return await self._user_write(run, durable=False, inline=True)

    async def peek_recent(self, mailbox_id: int, upto_uid: int) -> set[int]:
        """The unclaimed \\Recent messages up to ``upto_uid``, left unclaimed: what a
        read-only session (EXAMINE) reports as recent (RFC 3501 §6.3.2)."""

        def run(conn: sqlite3.Connection) -> set[int]:
            rows = conn.execute(
                "SELECT uid FROM recent WHERE mailbox_id = ? AND uid <= ?", (mailbox_id, upto_uid)
            ).fetchall()
            return {r[0] for r in rows}

        return await self._read(run)

    async def usage(self) -> tuple[int, int]:
        return await self._read(reads.usage)

    # --- journal -------------------------------------------------------------------------
    @property
    def change_seq(self) -> int:
        """The newest journal record's ``seq`` (0: none yet)."""
        return self._core.change_seq

    async def changes_since(self, seq: int, mailbox_id: int | None = None) -> list[Record]:
        """The journal records after ``seq`` up to :attr:`change_seq` (of ``mailbox_id``):
        from memory when this process committed all of them recently (every IMAP command
        of a session asks), else from the index. :class:`ChangeLogTruncated` when some
        were pruned (take a fresh snapshot)."""
        if self._core.closed:
            raise StoreClosed(f"account {self.id} was closed or removed")
        found = self._core.recent_changes(seq, mailbox_id)
        if found is not None:
            return found
        upto = self._core.change_seq
        return await self._read(
            lambda c: journal.read(c, seq, mailbox_id=mailbox_id, upto=max(upto, seq))
        )

    async def wait_for_change(self, seq: int, timeout: float | None = None) -> int:
        """Return as soon as ``change_seq > seq`` (or when ``timeout`` passes)."""
        deadline = None if timeout is None else self._loop.time() + timeout
        while self._core.change_seq <= seq:
            event = self._changed
            if self._core.change_seq > seq:
                break
            remaining = None if deadline is None else deadline - self._loop.time()
            if remaining is not None and remaining <= 0:
                break
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                break
        return self._core.change_seq

    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        return await self._read(lambda c: reads.expunged_since(c, mailbox_id, modseq))


def _too_big(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return any(m in text for m in ("too large", "too many", "stack overflow", "too long"))


__all__ = ["Account"]
