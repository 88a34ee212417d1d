"""Commit notices between the processes that share one store (issue 20: IMAP worker
processes beside the store process, all on the same account files).

SQLite lets several processes read and write one account's index (WAL; one writer at a
time, so UIDs stay unique), but an :class:`~mailcore.mailstore.Account` only learns of
commits made in its own process: ``change_seq`` moves and IDLE and selected sessions wake
on those. So every process binds a Unix datagram socket in ``<root>/notify/`` and, after
each commit that moves an account's journal, sends ``b"<seq> <account id>"`` to every
other socket there; a receiver moves that account's ``change_seq`` forward (the commit is
visible to every read that starts after it was sent) and wakes its waiters.

Only the store's own user may send notices: the directory is 0700 and each socket 0600
(sending to a Unix socket needs write permission on it); a process of that user could as
well write the index. A notice is never waited for: one that finds the receiver's queue
full is dropped, so a stalled process never slows the writers of the others. A notice can
thus be lost (that, or a process that started between two scans of the directory), so the
store also reads each loaded account's ``change_seq`` from the index every
:data:`POLL_EVERY` seconds (:meth:`MailStore.enable_notices`): a lost notice delays a
change by at most that long, it never hides it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mailcore.logging import get_logger

log = get_logger("mailstore")

NOTIFY_DIR = "notify"
RESCAN = 1.0  # seconds between two readings of the directory (also on any change of it)
POLL_EVERY = 1.0  # seconds between two checks of every loaded account (lost notices)
MAX_NOTICE = 2048

_serial = itertools.count()


def parse(data: bytes) -> tuple[str, int] | None:
    """``(account id, seq)`` of a notice; None for anything else (ignored)."""
    seq, sep, account = data.partition(b" ")
    if not sep or not seq.isdigit() or not account:
        return None
    try:
        return account.decode(), int(seq)
    except UnicodeDecodeError:
        return None


def encode(account_id: str, seq: int) -> bytes:
    return b"%d %s" % (seq, account_id.encode())


class Notices:
    """This process's end: a socket to receive notices on (the event loop reads it) and
    :meth:`send` (any thread) to tell every other process of a commit."""

    def __init__(self, root: Path, on_notice: Callable[[str, int], None]) -> None:
        self.dir = root / NOTIFY_DIR
        self.dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.dir, 0o700)  # also when an older one was made with other modes
        self.path = self.dir / f"{os.getpid()}-{next(_serial)}.sock"
        self._on_notice = on_notice
        self._rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.path.unlink(missing_ok=True)  # a process of the same pid that died
        self._rx.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self._rx.setblocking(False)
        self._tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._tx.setblocking(False)
        self._tx_lock = threading.Lock()
        self._peers: list[str] = []
        self._scanned_at = -RESCAN
        self._scanned_mtime = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sent = 0  # notices sent and received (tests, metrics)
        self.received = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self._rx.fileno(), self._drain)

    def close(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._rx.fileno())
            self._loop = None
        self._rx.close()
        with self._tx_lock:
            self._tx.close()
        self.path.unlink(missing_ok=True)

    # --- receiving (event loop) ---------------------------------------------------------
    def _drain(self) -> None:
        while True:
            try:
                data = self._rx.recv(MAX_NOTICE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # closed meanwhile
            notice = parse(data)
            if notice is not None:
                self.received += 1
                self._on_notice(*notice)

    # --- sending (any thread) -----------------------------------------------------------
    def send(self, account_id: str, seq: int) -> None:
        """Tell every other process sharing the store that ``account_id`` committed up to
        ``seq``. Never raises: a notice that cannot be delivered is caught up by the
        receivers' poll."""
        data = encode(account_id, seq)
        with self._tx_lock:
            if self._tx.fileno() < 0:
                return
            for peer in self._peer_list():
                try:
                    self._tx.sendto(data, peer)
                    self.sent += 1
                except (ConnectionRefusedError, FileNotFoundError) as exc:
                    # nobody bound there any more: a process that ended without removing
                    # its socket (killed); its file goes, so that nobody sends to it again
                    if isinstance(exc, ConnectionRefusedError):
                        with contextlib.suppress(OSError):
                            os.unlink(peer)
                    self._scanned_at = -RESCAN
                except OSError as exc:
                    # a full queue (EAGAIN): dropped, the receiver's poll catches up
                    if exc.errno not in (errno.EAGAIN, errno.ENOBUFS):
                        log.warning("commit notice failed", peer=peer, error=str(exc))

    def _peer_list(self) -> list[str]:
        now = time.monotonic()
        try:
            mtime = os.stat(self.dir).st_mtime_ns
        except OSError:
            return []
        if mtime != self._scanned_mtime or now - self._scanned_at >= RESCAN:
            own = self.path.name
            try:
                names = [e.name for e in os.scandir(self.dir)]
            except OSError:
                names = []
            self._peers = [
                str(self.dir / n) for n in sorted(names) if n.endswith(".sock") and n != own
            ]
            self._scanned_mtime, self._scanned_at = mtime, now
        return self._peers
