"""One failed-login policy for SMTP AUTH, IMAP, POP3 and webmail, shared by every process.

As Dovecot's auth penalty and fail2ban practice do, failures count against the *client
address*: per (account, address) and per address, never per account alone — otherwise
anyone could lock anyone out by failing on purpose. So:

* every failure is answered after ``base_delay × 2^(n-1)`` seconds (at most ``max_delay``),
  n being the failures of this (account, address), or a third of the address's failures
  for any account, whichever is more;
* at ``max_per_pair`` failures for one account from one address, or ``max_per_address``
  from one address for any accounts, that address is refused without a password check
  until ``window`` seconds pass without a failure;
* a correct password from an address with no failures always works;
* a success forgets the (account, address) failures.

Counts live in the JetStream KV bucket ``AUTH_FAILURES`` (entries expire ``window`` seconds
after their last failure), so filters and the store share them and a restart forgets
nothing. Without NATS the guard answers from nothing (no lockout, the base delay), never
locking everybody out.

Each failure is logged in a form fail2ban can match (see docs/operations.md)::

    authentication failure; rhost=192.0.2.7 user=alice@example.org protocol=imap
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Protocol

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from mailcore import metrics
from mailcore.bus import names
from mailcore.config import CommonSettings
from mailcore.logging import get_logger

log = get_logger("auth")

WINDOW = names.AUTH_FAILURE_WINDOW


@dataclass(frozen=True, slots=True)
class Policy:
    base_delay: float = 2.0
    max_delay: float = 30.0
    max_per_pair: int = 10
    max_per_address: int = 30
    window: float = WINDOW

    @classmethod
    def from_settings(cls, s: CommonSettings, base_delay: float) -> Policy:
        return cls(
            base_delay=base_delay,
            max_per_pair=s.login_max_failures,
            max_per_address=s.login_max_failures_per_address,
        )


class Counts(Protocol):
    """Failure counters by key, expiring ``window`` seconds after their last increment."""

    async def get(self, key: str) -> int: ...

    async def incr(self, key: str) -> int: ...

    async def reset(self, key: str) -> None: ...


class MemoryCounts:
    """For one process (tests, tools); :class:`KvCounts` is what the services use."""

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self._data: dict[str, tuple[int, float]] = {}

    async def get(self, key: str) -> int:
        n, at = self._data.get(key, (0, 0.0))
        if n and time.monotonic() - at >= self.window:
            del self._data[key]
            return 0
        return n

    async def incr(self, key: str) -> int:
        n = await self.get(key) + 1
        self._data[key] = (n, time.monotonic())
        return n

    async def reset(self, key: str) -> None:
        self._data.pop(key, None)


class KvCounts:
    """Counters in the ``AUTH_FAILURES`` bucket (max age = the window)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> KvCounts:
        return cls(await js.key_value(names.KV_AUTH_FAILURES))

    async def get(self, key: str) -> int:
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:  # deleted keys too (KeyDeletedError is a subclass)
            return 0
        return int(entry.value or b"0")

    async def incr(self, key: str) -> int:
        n = 1
        for _ in range(8):  # optimistic concurrency: another process may count at once
            try:
                entry = await self.kv.get(key)
            except KeyNotFoundError:
                try:
                    await self.kv.create(key, b"1")
                    return 1
                except KeyWrongLastSequenceError:
                    continue
            n = int(entry.value or b"0") + 1
            try:
                await self.kv.update(key, str(n).encode(), last=entry.revision)
                return n
            except KeyWrongLastSequenceError:
                continue
        return n

    async def reset(self, key: str) -> None:
        await self.kv.delete(key)


def _h(text: str) -> str:
    return hashlib.blake2b(text.lower().encode("utf-8", "replace"), digest_size=12).hexdigest()


def pair_key(account: str, ip: str) -> str:
    # KV keys allow [-/_=.a-zA-Z0-9]: names and IPv6 addresses are hashed
    return f"pair.{_h(account)}.{_h(ip)}"


def address_key(ip: str) -> str:
    return f"addr.{_h(ip)}"


class LoginGuard:
    def __init__(self, counts: Counts, policy: Policy | None = None) -> None:
        self.counts = counts
        self.policy = policy or Policy()

    @classmethod
    async def open(cls, js: JetStreamContext, policy: Policy | None = None) -> LoginGuard:
        return cls(await KvCounts.open(js), policy)

    async def _counts(self, ip: str, account: str) -> tuple[int, int]:
        try:
            return (
                await self.counts.get(pair_key(account, ip)),
                await self.counts.get(address_key(ip)),
            )
        except Exception as exc:  # no NATS: no lockout rather than everybody locked out
            log.warning("login failures not read", error=f"{type(exc).__name__}: {exc}")
            return 0, 0

    async def blocked(self, protocol: str, ip: str, account: str) -> bool:
        """Refuse this attempt without checking the password?"""
        pair, address = await self._counts(ip, account)
        p = self.policy
        if pair >= p.max_per_pair or address >= p.max_per_address:
            metrics.AUTH_THROTTLED.labels(protocol).inc()
            log.warning(
                f"authentication throttled; rhost={ip} user={_shown(account)} protocol={protocol}"
            )
            return True
        return False

    def _delay(self, pair: int, address: int) -> float:
        n = max(pair, address // 3)
        if n <= 0:
            return 0.0
        p = self.policy
        return float(min(p.base_delay * 2 ** min(n - 1, 16), p.max_delay))

    async def failed(self, protocol: str, ip: str, account: str) -> float:
        """Count a failure; the seconds to wait before answering it."""
        metrics.AUTH_FAILURES.labels(protocol).inc()
        log.warning(
            f"authentication failure; rhost={ip} user={_shown(account)} protocol={protocol}"
        )
        try:
            pair = await self.counts.incr(pair_key(account, ip))
            address = await self.counts.incr(address_key(ip))
        except Exception as exc:
            log.warning("login failure not counted", error=f"{type(exc).__name__}: {exc}")
            return self.policy.base_delay
        return self._delay(pair, address)

    async def failures(self, ip: str, account: str) -> int:
        """This (account, address)'s failures now; 0 when NATS cannot be read."""
        return (await self._counts(ip, account))[0]

    async def failed_upstream(self, protocol: str, ip: str, account: str, before: int) -> float:
        """A failure a server behind us may have counted already: a webmail node's IMAP
        login, which the store counts under the browser's address when it believes the
        node's ID x-originating-ip (RFC 2971 §3.3). ``before`` is :meth:`failures` read
        before the attempt. If the count has grown since, the store counted this failure
        (and made us wait): it is not counted twice, 0 is returned. Otherwise it is counted
        here like :meth:`failed` and its delay returned. (A concurrent failure of the same
        account from the same address can hide one failure here: never more than one.)"""
        if await self.failures(ip, account) > before:
            log.info(f"authentication failure counted upstream; rhost={ip} protocol={protocol}")
            return 0.0
        return await self.failed(protocol, ip, account)

    async def succeeded(self, ip: str, account: str) -> None:
        try:
            await self.counts.reset(pair_key(account, ip))
        except Exception as exc:
            log.warning("login failures not reset", error=f"{type(exc).__name__}: {exc}")


def _shown(account: str) -> str:
    """The login name as logged: bounded, no spaces or control characters."""
    cleaned = "".join(c if c.isprintable() and not c.isspace() else "?" for c in account[:100])
    return cleaned or "-"
