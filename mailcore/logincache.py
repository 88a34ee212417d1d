"""Successful password checks shared by the processes of one store (issue 20: the store
process and its IMAP worker processes), so that a user's first login in each process does
not pay argon2id again.

The store process creates the file afresh at every start (``0600``, SQLite WAL, whose
``-wal`` and ``-shm`` files SQLite makes with the same mode) together with a random key
that exists only in memory: the store process hands it to each worker through an
inherited pipe, never through the environment or a file. A row is never a password: it is
``HMAC-SHA256(key, address, password hash, password)``, the proof that this password was
found right for this address while the directory held this argon2 hash. A changed hash
gives another HMAC, so an old row can never admit a changed password, and the processes
also delete an address's rows when the directory reports its hash changed or the user
gone. Without the key nobody can make a row that admits anything, even with write access
to the file.

Every call blocks (SQLite); callers run them in a thread. A failure of the file is logged
and counts as a miss: the cache never refuses nor admits a login by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import sqlite3
import threading
from pathlib import Path

from mailcore.logging import get_logger

log = get_logger("auth")

FILE_NAME = "login-cache.sqlite"
KEY_SIZE = 32
ROW_LIMIT = 100_000  # rows; past it the file starts afresh (as the in-process cache does)
COUNT_EVERY = 1024  # rows added between two counts
BUSY_TIMEOUT_MS = 2000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verified (
  entry BLOB PRIMARY KEY,   -- HMAC(key, address, password hash, password)
  account BLOB NOT NULL     -- HMAC(key, address): what a change of the user deletes
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS verified_account ON verified(account);
"""


def _field(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    return len(data).to_bytes(4, "big") + data


class SharedLoginCache:
    """One process's handle on the shared file; see the module docstring."""

    def __init__(self, path: Path, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError("a login cache key has 32 bytes")
        self.path = path
        self._key = key
        self._lock = threading.Lock()
        self._added = 0
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._conn.execute("PRAGMA synchronous=OFF")  # a cache, made afresh at each start

    @classmethod
    def create(cls, data: Path) -> SharedLoginCache:
        """The store process: a new empty file in ``data`` (any older one removed, its
        rows were made under a key that is gone) and a new key."""
        path = data / FILE_NAME
        data.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{path}{suffix}")
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        cache = cls(path, os.urandom(KEY_SIZE))
        cache._conn.execute("PRAGMA journal_mode=WAL")
        cache._conn.executescript(_SCHEMA)
        return cache

    @classmethod
    def attach(cls, data: Path, key: bytes) -> SharedLoginCache:
        """A worker process: the file the store process created, with its key."""
        path = data / FILE_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no login cache at {path}")
        return cls(path, key)

    @property
    def key(self) -> bytes:
        """For the store process to hand to its workers (services/store/imap_workers.py)."""
        return self._key

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    async def aclose(self) -> None:
        """:meth:`close` for a service's clean-up (it waits for a call under way)."""
        await asyncio.to_thread(self.close)

    def entry(self, address: str, password_hash: str, password: str) -> bytes:
        msg = b"login\0" + _field(address) + _field(password_hash) + _field(password)
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def _account(self, address: str) -> bytes:
        return hmac.new(self._key, b"account\0" + _field(address), hashlib.sha256).digest()

    # --- blocking calls (run them in a thread) -------------------------------------------
    def contains(self, entry: bytes) -> bool:
        try:
            with self._lock:
                row = self._conn.execute(
                    "SELECT 1 FROM verified WHERE entry = ?", (entry,)
                ).fetchone()
        except sqlite3.Error as exc:
            log.warning("login cache unreadable", error=f"{type(exc).__name__}: {exc}")
            return False
        return row is not None

    def add(self, entry: bytes, address: str) -> None:
        try:
            with self._lock:
                self._added += 1
                if self._added % COUNT_EVERY == 0:
                    (rows,) = self._conn.execute("SELECT count(*) FROM verified").fetchone()
                    if rows > ROW_LIMIT:
                        self._conn.execute("DELETE FROM verified")
                self._conn.execute(
                    "INSERT OR IGNORE INTO verified (entry, account) VALUES (?, ?)",
                    (entry, self._account(address)),
                )
        except sqlite3.Error as exc:
            log.warning("login cache not written", error=f"{type(exc).__name__}: {exc}")

    def forget(self, address: str) -> None:
        try:
            with self._lock:
                self._conn.execute(
                    "DELETE FROM verified WHERE account = ?", (self._account(address),)
                )
        except sqlite3.Error as exc:
            log.warning("login cache not cleared", error=f"{type(exc).__name__}: {exc}")

    def rows(self) -> int:
        """Rows held (tests, diagnostics)."""
        with self._lock:
            (n,) = self._conn.execute("SELECT count(*) FROM verified").fetchone()
        return int(n)
