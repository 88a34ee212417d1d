"""The thread side of one account: its connections and write transactions.

``wconn`` is used by one thread at a time, under the account's write lock: the account's
writer thread (:meth:`AccountCore.txn`, open, release, prune), or the event loop for a
write that needs no disk sync and finds the lock free (:meth:`AccountCore.txn_inline`).
Readers borrow a connection of their own from :meth:`AccountCore.reader`.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mailcore.logging import get_logger
from mailcore.mailstore import journal, layout, readers, schema
from mailcore.mailstore.errors import StorageFull, StoreClosed
from mailcore.mailstore.files import FileWriter, remove, sync_dir
from mailcore.mailstore.records import Record, mailbox_of

log = get_logger("mailstore")

CHANGES_KEPT = 200_000  # journal records kept per account (beyond what readers need)
DELIVERY_KEYS_KEPT = 14 * 86400.0  # seconds a delivery key is remembered (redelivery window)
PRUNE_EVERY = 500  # commits between prunes
MAX_READERS = 4  # idle read connections kept per account (one per reader thread)
CHANGES_IN_MEMORY = 2048  # newest journal records also kept in memory (recent_changes)


@dataclass(slots=True)
class State:
    next_file_id: int
    modseq: int
    change_seq: int
    last_uidvalidity: int
    usage_bytes: int
    usage_messages: int
    last_mailbox_id: int
    quota_bytes: int
    quota_messages: int


@dataclass(slots=True)
class Txn:
    """One write transaction: state to write back, files to clean up either way."""

    core: AccountCore
    conn: sqlite3.Connection
    state: State
    created: bool = False  # the index was created in this transaction
    new_files: list[Path] = field(default_factory=list)
    dead_files: list[int] = field(default_factory=list)
    changes: list[Record] = field(default_factory=list)  # the journal records written
    journalled: int = 0  # how many of them are in the journal table already
    at: float = field(default_factory=time.time)  # the records' time
    _modseq: int | None = None
    unsynced: list[Path] | None = None  # group commit: files synced once, before COMMIT

    def mark(self) -> tuple[State, int, int, int, int]:
        """Where one write of a group starts (:meth:`AccountCore.txn_group`)."""
        s = self.state
        copy = dataclasses.replace(s)  # every counter, whatever State grows to hold
        unsynced = len(self.unsynced) if self.unsynced is not None else 0
        return copy, len(self.new_files), len(self.dead_files), len(self.changes), unsynced

    def undo(self, mark: tuple[State, int, int, int, int]) -> None:
        """Forget what one failed write of a group did (its SQL was rolled back to its
        savepoint): the counters, its change log entries, and its new files."""
        self.state, files, dead, changes, unsynced = mark
        for path in self.new_files[files:]:
            remove(path)
        del self.new_files[files:], self.dead_files[dead:], self.changes[changes:]
        self.journalled = min(self.journalled, changes)  # (its SQL rows rolled back too)
        if self.unsynced is not None:
            del self.unsynced[unsynced:]

    def modseq(self) -> int:
        """The mod-sequence of this operation (RFC 7162 §3.1.1: one new value per write)."""
        if self._modseq is None:
            self.state.modseq += 1
            self._modseq = self.state.modseq
        return self._modseq

    def next_seq(self) -> int:
        """The journal position of the next record (dense: one per :meth:`log`)."""
        return self.state.change_seq + 1

    def log(self, rec: Record) -> None:
        """Journal ``rec`` (built with ``seq=t.next_seq()``) in this transaction."""
        assert rec.seq == self.state.change_seq + 1, "journal records are numbered densely"
        self.state.change_seq = rec.seq
        self.changes.append(rec)

    def uidvalidity(self) -> int:
        # RFC 3501 §2.3.1.1: never reused for a name; values are unique per account.
        value = max(self.state.last_uidvalidity + 1, int(time.time()))
        parity = self.core.uidvalidity_parity
        if parity is not None and value % 2 != parity:
            # a mirrored pair: the master's values even, the slave's odd, so two mailboxes
            # the two sides make in one second (a split) never share one (docs/mirror.md)
            value += 1
        self.state.last_uidvalidity = value
        return value

    def mailbox_id(self) -> int:
        """A new mailbox id: never one the account used before (a session that had the
        old mailbox selected must never see another's mail under its id)."""
        self.state.last_mailbox_id += 1
        return self.state.last_mailbox_id

    def write_files(self, datas: list[bytes]) -> list[int]:
        """Store new message files durably; their ids (rows must follow in this txn)."""
        first = self.state.next_file_id
        self.state.next_file_id += len(datas)
        paths = [layout.message_path(self.core.path, first + i) for i in range(len(datas))]
        self.new_files.extend(paths)
        items = list(zip(paths, datas, strict=True))
        if self.unsynced is None:
            self.core.files.write_batch(self.core.path, items)
        else:
            self.core.files.write_batch(self.core.path, items, sync=False)
            self.unsynced.extend(paths)
        return list(range(first, first + len(datas)))

    def release_files(self, file_ids: list[int]) -> None:
        """Forget files no message refers to any more; unlinked after the commit."""
        conn = self.conn
        for fid in set(file_ids):
            if conn.execute("SELECT 1 FROM messages WHERE file_id = ? LIMIT 1", (fid,)).fetchone():
                continue
            conn.execute("DELETE FROM files WHERE id = ?", (fid,))
            conn.execute("INSERT OR IGNORE INTO unlink VALUES (?)", (fid,))
            self.dead_files.append(fid)

    def write_journal(self) -> None:
        """Put the records logged so far into the journal table (still uncommitted).
        Group commit does so before each write of a group: a write reads the journal
        (the split-brain settlement asks it who made a mailbox, who deleted it, what a
        UID held: splitboxes.py, splitbrain.py) as if the writes before it had committed
        one by one. Without it a mirror's batch of the peer's records (one group) took a
        mailbox the peer had just made, in the same batch, for one of its own."""
        if len(self.changes) > self.journalled:
            journal.write(self.conn, self.changes[self.journalled :])
            self.journalled = len(self.changes)

    def flush(self) -> None:
        self.write_journal()
        s = self.state
        self.conn.execute(
            "UPDATE state SET next_file_id = ?, modseq = ?, change_seq = ?, last_uidvalidity = ?,"
            " usage_bytes = ?, usage_messages = ?, last_mailbox_id = ?, quota_bytes = ?,"
            " quota_messages = ? WHERE id = 1",
            (
                s.next_file_id,
                s.modseq,
                s.change_seq,
                s.last_uidvalidity,
                s.usage_bytes,
                s.usage_messages,
                s.last_mailbox_id,
                s.quota_bytes,
                s.quota_messages,
            ),
        )


def in_savepoint(t: Txn, step: Callable[[Txn], object]) -> tuple[object, Exception | None]:
    """One write of a group (:meth:`AccountCore.txn_group`), in a savepoint of its own
    with its own mod-sequence: if it raises, its SQL is rolled back to the savepoint and
    what it did to ``t`` undone (the exception is its outcome; the transaction goes on).
    Savepoints nest: a write may run its parts this way too (replica_run.py). Each sees
    the journal records of the writes and parts before it (:meth:`Txn.write_journal`)."""
    t.write_journal()  # the earlier writes' records: as if committed (see write_journal)
    conn = t.conn
    mark = t.mark()
    conn.execute("SAVEPOINT step")
    try:
        result = step(t)
    except Exception as exc:
        if not conn.in_transaction:
            raise  # SQLite ended the whole transaction (e.g. disk full)
        conn.execute("ROLLBACK TO step")
        conn.execute("RELEASE step")
        t.undo(mark)
        return None, exc
    else:
        conn.execute("RELEASE step")
        return result, None
    finally:
        t._modseq = None  # RFC 7162 §3.1.1: a new mod-sequence per write


def load_state(conn: sqlite3.Connection) -> State:
    row = conn.execute(
        "SELECT next_file_id, modseq, change_seq, last_uidvalidity, usage_bytes, usage_messages,"
        " last_mailbox_id, quota_bytes, quota_messages FROM state WHERE id = 1"
    ).fetchone()
    return State(*row)


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _is_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


class AccountCore:
    def __init__(self, account_id: str, path: Path, files: FileWriter) -> None:
        self.id = account_id
        self.path = path
        self.msgs_dir = str(layout.msgs_dir(path))  # str: message paths are built per read
        self.files = files
        self.durable = files.durable
        self.wconn: sqlite3.Connection | None = None
        # held by whoever uses wconn: the writer thread waits for it, the event loop only
        # tries it (txn_inline)
        self._wlock = threading.Lock()
        self._inlining = False  # a txn_inline is running (on the event loop)
        self.prune_due = False  # an inline commit left the periodic prune to the writer
        self.change_seq = 0
        self._seq_lock = threading.Lock()  # change_seq moves forward only (advance)
        self.on_commit: Callable[[int], None] | None = None
        # told of every commit that moved the journal (writer thread): the store's
        # cross-process notices (notify.py), when other processes share the account
        self.announce: Callable[[str, int], None] | None = None
        self._readers: list[sqlite3.Connection] = []
        self._rlock = threading.Lock()
        self._inline: sqlite3.Connection | None = None  # the event loop's (inline_reader)
        self._ilock = threading.Lock()
        self._unlinked: list[int] = []
        # the newest changes committed by this process, consecutive seqs (recent_changes)
        self._recent: collections.deque[Record] = collections.deque(maxlen=CHANGES_IN_MEMORY)
        self._recent_lock = threading.Lock()
        self._commits = 0
        # journal reader ceilings (readers.prune); None: the module's defaults
        self.reader_max_behind: int | None = None
        self.reader_max_age: float | None = None
        self.uidvalidity_parity: int | None = None  # MailStore.open's
        self.closed = False
        self.last_used = time.monotonic()

    # --- life cycle (writer thread) ---------------------------------------------------
    def open(
        self, setup: Callable[[Txn], None], upgrade: Callable[[Txn], None] | None = None
    ) -> None:
        """Open or create the index (``setup`` fills a new one, ``upgrade`` brings an older
        one up to date), then drop files no committed row names."""
        fresh_dir = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        if fresh_dir and self.durable:
            sync_dir(self.path.parent)
        with self._wlock:
            self.wconn = schema.connect(layout.index_path(self.path), durable=self.durable)
            self._open_txn(self.wconn, setup, upgrade)

    def _open_txn(
        self,
        conn: sqlite3.Connection,
        setup: Callable[[Txn], None],
        upgrade: Callable[[Txn], None] | None,
    ) -> None:
        # Schema, default mailboxes and the orphan sweep in one transaction: another
        # process opening the same new account sees all of it or none.
        with self._txn(conn, init=True) as t:
            if t.created:
                setup(t)
            elif upgrade is not None:
                upgrade(t)
            self._clean_orphans(t)
        if t.created and self.durable:
            sync_dir(self.path)
        self.change_seq = t.state.change_seq

    def _clean_orphans(self, t: Txn) -> None:
        # Runs under the write lock, so no other writer has files in flight.
        first_free = t.state.next_file_id
        msgs = self.path / "msgs"
        removed = 0
        if msgs.is_dir():
            for shard_dir in msgs.iterdir():
                try:
                    shard = int(shard_dir.name, 16)
                except ValueError:
                    continue
                if shard < layout.shard_of(first_free):
                    continue
                for entry in shard_dir.iterdir():
                    if not entry.name.isdigit() or int(entry.name) >= first_free:
                        remove(entry)
                        removed += 1
        pending = [r[0] for r in t.conn.execute("SELECT file_id FROM unlink")]
        for fid in pending:
            remove(layout.message_path(self.path, fid))
        if pending:
            t.conn.execute("DELETE FROM unlink")
        if removed or pending:
            log.info(
                "orphaned message files removed", account=self.id, files=removed + len(pending)
            )

    def close(self) -> None:
        self.closed = True
        self.release()

    def release(self) -> None:
        """Close the connections (writer thread); they reopen on the next use."""
        with self._wlock:
            if self.wconn is not None:
                self.wconn.close()
                self.wconn = None
        with self._rlock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._ilock:
            if self._inline is not None:
                self._inline.close()
                self._inline = None

    @property
    def connected(self) -> bool:
        return self.wconn is not None or bool(self._readers) or self._inline is not None

    def _writer_conn(self) -> sqlite3.Connection:
        if self.closed:
            raise StoreClosed(f"account {self.id} was closed or removed")
        if self.wconn is None:
            self.wconn = schema.connect(layout.index_path(self.path), durable=self.durable)
        return self.wconn

    # --- writes (writer thread) -------------------------------------------------------
    @contextlib.contextmanager
    def txn(self, *, durable: bool = True) -> Iterator[Txn]:
        """BEGIN IMMEDIATE … COMMIT. ``durable=False`` commits without waiting for the
        disk (WAL, synchronous=NORMAL): for state whose loss is harmless."""
        with self._wlock:
            conn = self._writer_conn()
            self.last_used = time.monotonic()
            lazy = self.durable and not durable
            if lazy:
                conn.execute("PRAGMA synchronous=NORMAL")
            try:
                with self._txn(conn) as t:
                    yield t
            finally:
                if lazy:
                    conn.execute("PRAGMA synchronous=FULL")

    def txn_inline(self, step: Callable[[Txn], object]) -> tuple[object] | None:
        """Run ``step`` in a write transaction on the calling thread (the event loop) and
        commit it without waiting for the disk; ``(result,)``, or None when it cannot run
        here without waiting: the writer thread holds the account (or the connection is
        closed), or another process holds the index's write lock. Then nothing was done
        and the caller hands the write to the writer thread.

        For writes whose loss to a power cut is harmless (flag and keyword changes with
        ``POSTERN_FSYNC_FLAGS=false``, \\Recent claims): WAL with ``synchronous=NORMAL``
        commits atomically, and the next synced commit (or checkpoint) makes it durable.
        The write's SQL takes tens of microseconds; the hand-over to the writer thread and
        the answer's way back to the event loop took milliseconds on a busy machine (bench
        W4b: queued 3 ms, on the writer 3.7 ms, back to the loop 10.5 ms, p50). Nothing
        here waits: the lock is only tried, ``busy_timeout`` is 0 for the BEGIN, and the
        WAL's automatic checkpoint (which syncs) is left to the writer thread's commits.
        A step that writes or removes message files must not run here (their syncs)."""
        if not self._wlock.acquire(blocking=False):
            return None
        try:
            conn = self.wconn
            if conn is None or self.closed:
                return None  # (re)opening a connection is not for the event loop
            self.last_used = time.monotonic()
            conn.execute("PRAGMA busy_timeout=0")
            conn.execute("PRAGMA wal_autocheckpoint=0")
            if self.durable:
                conn.execute("PRAGMA synchronous=NORMAL")
            self._inlining = True
            begun = False
            try:
                with self._txn(conn) as t:
                    begun = True
                    result = step(t)
                    if t.new_files or t.dead_files:
                        raise RuntimeError("a write with message files ran inline")
            except sqlite3.OperationalError as exc:
                if not begun and _is_busy(exc):
                    return None  # another process is writing: the writer thread waits
                raise
            finally:
                self._inlining = False
                if self.durable:
                    conn.execute("PRAGMA synchronous=FULL")
                conn.execute(f"PRAGMA wal_autocheckpoint={schema.WAL_AUTOCHECKPOINT}")
                conn.execute(f"PRAGMA busy_timeout={schema.WAIT_SECONDS * 1000}")
            return (result,)
        finally:
            self._wlock.release()

    def txn_group(
        self, steps: list[Callable[[Txn], object]], *, durable: bool = True
    ) -> list[tuple[object, Exception | None]]:
        """Group commit: several writes in one transaction, each in a savepoint of its own
        with its own mod-sequence, and one COMMIT (one sync of the index and one of the
        new message files) for all — under many sessions the writer thread otherwise
        spends its time waiting for the disk once per write. A write that raises is
        rolled back alone (its result is the exception); the others commit. If the
        transaction as a whole fails, the exception is raised for all of them.
        ``durable=False`` only when no step needs the disk (see :meth:`txn`)."""
        if len(steps) == 1:
            return [self._lone(steps[0], durable=durable)]
        out: list[tuple[object, Exception | None]] = []
        with self.txn(durable=durable) as t:
            t.unsynced = []
            for step in steps:
                out.append(in_savepoint(t, step))
            self.files.sync(self.path, t.unsynced)
        return out

    def _lone(
        self, step: Callable[[Txn], object], *, durable: bool
    ) -> tuple[object, Exception | None]:
        """A write with no other waiting (the usual case): its own transaction, without
        the savepoint a group gives each write. If it fails, the whole transaction rolls
        back (:meth:`_txn`: its SQL, the counters, the message files it wrote), which is
        exactly what the savepoint would undo, and the failure is its answer."""
        try:
            with self.txn(durable=durable) as t:
                t.unsynced = []
                result = step(t)
                self.files.sync(self.path, t.unsynced)
        except Exception as exc:
            return None, exc
        return result, None

    @contextlib.contextmanager
    def _txn(self, conn: sqlite3.Connection, *, init: bool = False) -> Iterator[Txn]:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_full(exc):
                raise StorageFull("disk full") from exc
            raise
        try:
            created = schema.create(conn) if init else False
            t = Txn(core=self, conn=conn, state=load_state(conn), created=created)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            if self._unlinked:
                conn.executemany(
                    "DELETE FROM unlink WHERE file_id = ?", [(f,) for f in self._unlinked]
                )
            yield t
            t.flush()
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for path in t.new_files:
                remove(path)
            if isinstance(exc, sqlite3.Error) and _is_full(exc):
                raise StorageFull("disk full") from exc
            raise
        self._unlinked.clear()
        if t.changes:
            self._remember(t.changes)  # before change_seq moves: readers rely on the order
        for fid in t.dead_files:
            remove(layout.message_path(self.path, fid))
        self._unlinked.extend(t.dead_files)
        self._commits += 1
        if self._commits % PRUNE_EVERY == 0:
            if self._inlining:
                self.prune_due = True  # a transaction of its own: the writer's (Account)
            else:
                self._prune()
        moved = self.advance(t.state.change_seq)
        if moved and self.on_commit is not None:
            self.on_commit(self.change_seq)
        if (moved or t.changes) and self.announce is not None:
            self.announce(self.id, t.state.change_seq)

    def advance(self, seq: int) -> bool:
        """Move :attr:`change_seq` to ``seq`` if that is newer (any thread): after a commit
        of this process, or when another process sharing the account says it committed
        up to ``seq`` (its commit is visible to every read that starts after that)."""
        with self._seq_lock:
            if seq <= self.change_seq:
                return False
            self.change_seq = seq
            return True

    def _remember(self, entries: list[Record]) -> None:
        with self._recent_lock:
            if self._recent and self._recent[-1].seq + 1 != entries[0].seq:
                self._recent.clear()  # another process committed in between: a gap
            self._recent.extend(entries)

    def recent_changes(
        self, seq: int, mailbox_id: int | None, upto: int | None = None
    ) -> list[Record] | None:
        """The records after ``seq`` (of ``mailbox_id``; up to ``upto``, default
        :attr:`change_seq`) from memory, exactly what the journal holds; None when memory
        does not cover them all (read the index then)."""
        with self._recent_lock:
            recent = self._recent
            if not recent or seq >= self.change_seq:
                return None
            first, last = recent[0].seq, recent[-1].seq
            if seq + 1 < first or last != self.change_seq:
                return None
            if upto is not None and (upto > last or upto <= seq):
                return None
            stop = None if upto is None else upto + 1 - first
            found = list(itertools.islice(recent, seq + 1 - first, stop))
        if mailbox_id is None:
            return found
        return [c for c in found if mailbox_of(c) == mailbox_id]

    def _prune(self) -> None:
        conn = self.wconn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            readers.prune(conn, self.id, CHANGES_KEPT, self.reader_max_behind, self.reader_max_age)
            conn.execute("DELETE FROM deliveries WHERE at < ?", (time.time() - DELIVERY_KEYS_KEPT,))
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.warning("pruning the journal failed", account=self.id)

    def prune(self) -> None:
        """Prune now (writer thread); otherwise every :data:`PRUNE_EVERY` commits."""
        with self._wlock:
            self.prune_due = False
            self._writer_conn()
            self._prune()

    # --- reads (any thread) -----------------------------------------------------------
    @contextlib.contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """A read connection inside one read transaction (a consistent snapshot)."""
        self.last_used = time.monotonic()
        with self._rlock:
            conn = self._readers.pop() if self._readers else None
        if conn is None:
            if self.closed:
                raise StoreClosed(f"account {self.id} was closed or removed")
            conn = schema.connect(layout.index_path(self.path), durable=self.durable)
        ok = True
        try:
            conn.execute("BEGIN")
            yield conn
        except sqlite3.Error:
            ok = False
            raise
        finally:
            if ok and conn.in_transaction:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error:
                    ok = False
            self._release(conn, ok)

    @contextlib.contextmanager
    def inline_reader(self) -> Iterator[sqlite3.Connection | None]:
        """The event loop thread's own read connection, for point reads too small to be
        worth a hand-over to a reader thread; None while it is not open and warm (read on
        a reader thread then, which calls :meth:`warm_inline`). Opening a connection and
        its first statement (file opens, WAL index mapping, schema parse, the first
        pages) can take milliseconds, so that never happens on the event loop. It never
        waits for a lock: a busy database raises ``sqlite3.OperationalError`` at once."""
        self.last_used = time.monotonic()
        with self._ilock:
            if self.closed:
                raise StoreClosed(f"account {self.id} was closed or removed")
            conn = self._inline
            if conn is None:
                yield None
                return
            try:
                conn.execute("BEGIN")
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")  # read only: nothing to keep

    def warm_inline(self) -> None:
        """Open the inline connection and run a first read on it (a reader thread)."""
        if self._inline is not None or self.closed:
            return
        conn = schema.connect(layout.index_path(self.path), durable=self.durable, wait=False)
        try:
            # parses the schema and reads the upper pages of the tables fetch() uses
            conn.execute("SELECT uid FROM messages LIMIT 1").fetchall()
            conn.execute("SELECT id FROM files LIMIT 1").fetchall()
        except sqlite3.Error:
            conn.close()
            return  # busy: the next reader-thread fetch tries again
        with self._ilock:
            # another thread may have won the race, or the account closed meanwhile
            taken = self._inline is None and not self.closed
            if taken:
                self._inline = conn
        if not taken:
            conn.close()

    def _release(self, conn: sqlite3.Connection, ok: bool) -> None:
        with self._rlock:
            if ok and len(self._readers) < MAX_READERS and not self.closed:
                self._readers.append(conn)
                return
        conn.close()
