"""Passwords: argon2id hashes, and checking them without stalling the event loop.

Checking a password runs in a thread, a few at a time, so logins never stall the event
loop. A successful check is remembered (keyed by an HMAC of the password under a
per-process secret) until the user's hash changes, as Dovecot's auth cache does. An unknown
user is checked against a dummy hash, so it costs the same time as a known one.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import os

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mailcore.directory_errors import InvalidName

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
    Made on first use: hashing costs argon2's 64 MiB, which a process that never checks a
    password should not pay."""
    return _hasher.hash(os.urandom(16).hex())


class PasswordChecker:
    """Verification a few at a time in threads, and the cache of successful checks."""

    def __init__(self, concurrency: int | None = None) -> None:
        self._slots = asyncio.Semaphore(concurrency or max(2, os.cpu_count() or 2))
        self._secret = os.urandom(32)
        self._cache: dict[tuple[str, bytes], str] = {}

    def digest(self, password: str) -> bytes:
        """The cache's key for ``password``: never the password itself."""
        return hmac.new(self._secret, password.encode(), hashlib.sha256).digest()

    def cached(self, address: str, digest: bytes, password_hash: str) -> bool:
        """Whether this password was found right for ``address`` while it had this hash."""
        cached = self._cache.get((address, digest))
        return cached is not None and cached == password_hash

    async def verify(self, stored: str, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(verify_password, stored, password)

    def remember(self, address: str, digest: bytes, password_hash: str) -> None:
        if len(self._cache) > AUTH_CACHE_LIMIT:
            self._cache.clear()
        self._cache[(address, digest)] = password_hash

    def forget(self, address: str) -> None:
        for k in [k for k in self._cache if k[0] == address]:
            del self._cache[k]
