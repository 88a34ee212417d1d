"""Passwords: argon2id hashes, and checking them without stalling the event loop.

Checking a password runs argon2id in a thread, a few at a time (argon2-cffi releases the
GIL while it hashes, so the event loop keeps serving other sessions meanwhile). A
successful check is remembered until the user's hash changes, as Dovecot's auth cache
does: in the process (keyed by an HMAC of the password under a per-process secret) and,
in the store, in the file its processes share (mailcore/logincache.py), so a user's first
login in each IMAP worker process costs no second argon2id. Concurrent checks of the same
credentials in one process share one argon2id run. An unknown user is checked against a
dummy hash, so it costs the same time as a known one.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import os

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mailcore import metrics
from mailcore.directory_errors import InvalidName
from mailcore.logging import get_logger
from mailcore.logincache import SharedLoginCache

log = get_logger("auth")

AUTH_CACHE_LIMIT = 100_000  # entries; past it the cache starts afresh
_hasher = PasswordHasher()  # argon2id, library defaults (t=3, m=64 MiB, p=4)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def check_password(password: str) -> None:
    if len(password) < 8:
        raise InvalidName("a password needs at least 8 characters")
    if len(password) > 1024 or any(c in password for c in "\r\n\0"):
        raise InvalidName("a password may not hold line breaks or NUL and is at most 1024 long")


@functools.cache
def dummy_hash() -> str:
    """Verified against when the user is unknown, so an unknown user costs the same time.
    Made on first use (in a thread: it costs an argon2id hash), which a process that never
    checks a password should not pay."""
    return _hasher.hash(os.urandom(16).hex())


class PasswordChecker:
    """Verification a few at a time in threads, and the caches of successful checks."""

    def __init__(self, concurrency: int | None = None) -> None:
        self._slots = asyncio.Semaphore(concurrency or max(2, os.cpu_count() or 2))
        self._secret = os.urandom(32)
        self._cache: dict[tuple[str, bytes], str] = {}
        self._running: dict[tuple[str, bytes, str], asyncio.Task[bool]] = {}
        self.shared: SharedLoginCache | None = None

    def _digest(self, password: str) -> bytes:
        """The in-process cache's key for ``password``: never the password itself."""
        return hmac.new(
            self._secret, password.encode("utf-8", "surrogatepass"), hashlib.sha256
        ).digest()

    async def check(self, address: str, password_hash: str, password: str) -> bool:
        """Whether ``password`` is right for ``address`` while it has ``password_hash``."""
        digest = self._digest(password)
        if self._cache.get((address, digest)) == password_hash:
            metrics.PASSWORD_CHECKS.labels("process_cache").inc()
            return True
        key = (address, digest, password_hash)
        task = self._running.get(key)
        if task is None:
            task = asyncio.create_task(self._check_uncached(address, password_hash, password))
            self._running[key] = task
            task.add_done_callback(functools.partial(self._done, key))
        # a cancelled login leaves the check running for the others waiting on it
        return await asyncio.shield(task)

    def _done(self, key: tuple[str, bytes, str], task: asyncio.Task[bool]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled() and task.exception() is None and task.result():
            self._remember(key[0], key[1], key[2])

    async def _check_uncached(self, address: str, password_hash: str, password: str) -> bool:
        shared = self.shared
        entry = b""
        if shared is not None:
            entry = shared.entry(address, password_hash, password)
            if await asyncio.to_thread(shared.contains, entry):
                metrics.PASSWORD_CHECKS.labels("shared_cache").inc()
                return True
        ok = await self.verify(password_hash, password, address=address)
        if ok and shared is not None:
            await asyncio.to_thread(shared.add, entry, address)
        return ok

    async def check_unknown(self, password: str) -> None:
        """The time of a check, for a user that does not exist."""
        await self.verify(await asyncio.to_thread(dummy_hash), password, address="")

    async def verify(self, stored: str, password: str, *, address: str) -> bool:
        """argon2id, in a thread, at most ``concurrency`` at a time."""
        async with self._slots:
            ok = await asyncio.to_thread(verify_password, stored, password)
        metrics.PASSWORD_CHECKS.labels("argon2").inc()
        # once per user and start when the caches work: the tests count these per process
        log.info("password hash checked", user=address, ok=ok, pid=os.getpid())
        return ok

    def _remember(self, address: str, digest: bytes, password_hash: str) -> None:
        if len(self._cache) > AUTH_CACHE_LIMIT:
            self._cache.clear()
        self._cache[(address, digest)] = password_hash

    def forget(self, address: str) -> None:
        """``address``'s hash changed or the user is gone: drop what was remembered."""
        for k in [k for k in self._cache if k[0] == address]:
            del self._cache[k]
        shared = self.shared
        if shared is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            shared.forget(address)
            return
        # in a thread; the HMAC holds the hash, so a late delete admits nothing
        loop.run_in_executor(None, shared.forget, address)
