"""Login policy shared by IMAP and POP3: when plaintext credentials are accepted, how
failed logins are delayed and throttled, and how many connections a peer or user may hold.

Protocol-neutral: the IMAP and POP3 modules map :class:`AuthRefused` reasons to their own
wire replies (``NO [PRIVACYREQUIRED]``, ``-ERR [AUTH]``…).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import ipaddress
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from mailcore import metrics
from mailcore.config import PlaintextAuth
from mailcore.directory import Directory, User
from mailcore.logging import get_logger
from mailcore.loginguard import LoginGuard

log = get_logger("auth")

FAILURE_WINDOW = 900.0  # seconds a failure counts against a peer or an account
MAX_DELAY = 30.0
MAX_TRACKED = 50_000  # peers or account names remembered at most (client input is unbounded)
SWEEP_EVERY = 256  # failures between sweeps of expired entries


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(spec: str) -> tuple[IPNetwork, ...]:
    """``"127.0.0.0/8, ::1/128"`` → networks (a bad entry raises ValueError at start)."""
    return tuple(
        ipaddress.ip_network(p.strip(), strict=False) for p in spec.split(",") if p.strip()
    )


def in_networks(ip: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(ip.split("%", maxsplit=1)[0])
    except ValueError:
        return False
    return any(addr in net for net in networks)


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%", maxsplit=1)[0]).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class PlaintextPolicy:
    """RFC 3501 §6.2.3 / RFC 2595 §3.1: servers should refuse plaintext credentials on an
    unencrypted connection. ``loopback`` allows them from 127.0.0.0/8 and ::1 only."""

    mode: PlaintextAuth = "never"

    def allows(self, peer_ip: str, tls: bool) -> bool:
        if tls or self.mode == "always":
            return True
        return self.mode == "loopback" and is_loopback(peer_ip)


class Refusal(enum.Enum):
    PLAINTEXT = "plaintext"  # credentials on an unencrypted connection
    THROTTLED = "throttled"  # too many recent failures from this peer or for this account
    FAILED = "failed"  # wrong user or password (one reply for both)
    TOO_MANY_CONNECTIONS = "too_many_connections"
    SERVER_BUSY = "server_busy"  # the server-wide connection cap


class AuthRefused(Exception):
    def __init__(self, reason: Refusal) -> None:
        super().__init__(reason.value)
        self.reason = reason


class LoginThrottle:
    """Sliding-window failure counts per peer IP and per account name.

    Every failure is answered only after ``base_delay × 2^(n-1)`` seconds (capped), where n
    counts recent failures of that peer or account, whichever is larger; beyond the limits
    a login is refused without checking the password.
    """

    def __init__(
        self,
        base_delay: float = 2.0,
        *,
        max_per_ip: int = 30,
        max_per_account: int = 10,
        window: float = FAILURE_WINDOW,
    ) -> None:
        self.base_delay = base_delay
        self.max_per_ip = max_per_ip
        self.max_per_account = max_per_account
        self.window = window
        self._by_ip: dict[str, deque[float]] = defaultdict(deque)
        self._by_account: dict[bytes, deque[float]] = defaultdict(deque)
        self._failures = 0

    @staticmethod
    def _account_key(account: str) -> bytes:
        # A fixed-size key: login names are client input, up to a literal's size.
        return hashlib.blake2b(account.lower().encode("utf-8", "replace"), digest_size=16).digest()

    @property
    def tracked(self) -> int:
        """Entries held (peers + account names); bounded by :data:`MAX_TRACKED` each."""
        return len(self._by_ip) + len(self._by_account)

    def _sweep(self) -> None:
        """Forget expired entries; beyond the cap forget the oldest ones."""
        tables: tuple[dict[Any, deque[float]], ...] = (self._by_ip, self._by_account)
        for table in tables:
            for key in list(table):
                self._count(table, key)
            while len(table) > MAX_TRACKED:
                del table[next(iter(table))]

    def _count(self, table: dict[Any, deque[float]], key: Any) -> int:
        q = table.get(key)
        if not q:
            return 0
        cutoff = time.monotonic() - self.window
        while q and q[0] < cutoff:
            q.popleft()
        if not q:
            del table[key]
            return 0
        return len(q)

    def blocked(self, ip: str, account: str) -> bool:
        return (
            self._count(self._by_ip, ip) >= self.max_per_ip
            or self._count(self._by_account, self._account_key(account)) >= self.max_per_account
        )

    def delay_for(self, ip: str, account: str) -> float:
        n = max(
            self._count(self._by_ip, ip),
            self._count(self._by_account, self._account_key(account)),
        )
        if n == 0:
            return 0.0
        return float(min(self.base_delay * (2 ** (n - 1)), MAX_DELAY))

    def record_failure(self, ip: str, account: str) -> float:
        now = time.monotonic()
        self._by_ip[ip].append(now)
        self._by_account[self._account_key(account)].append(now)
        self._failures += 1
        if self._failures % SWEEP_EVERY == 0 or self.tracked > 2 * MAX_TRACKED:
            self._sweep()
        return self.delay_for(ip, account)

    def record_success(self, ip: str, account: str) -> None:
        self._by_account.pop(self._account_key(account), None)


class Authenticator:
    """Checks credentials against the directory under the plaintext policy and throttle."""

    def __init__(
        self,
        directory: Directory,
        *,
        policy: PlaintextPolicy,
        throttle: LoginThrottle,
        protocol: str,
        guard: LoginGuard | None = None,
    ) -> None:
        self.directory = directory
        self.policy = policy
        self.throttle = throttle
        self.protocol = protocol
        # The shared policy (mailcore.loginguard; the store passes one): failures count per
        # (account, address) and per address across every filter and store, in NATS.
        # Without it the in-process LoginThrottle applies.
        self.guard = guard

    def plaintext_allowed(self, peer_ip: str, tls: bool) -> bool:
        return self.policy.allows(peer_ip, tls)

    async def login(
        self, username: str, password: str, *, peer_ip: str, tls: bool, client_ip: str = ""
    ) -> User:
        """The user, or :class:`AuthRefused` after the failure delay. ``client_ip`` (the
        browser behind a trusted webmail node) replaces the peer in the throttle and logs;
        the plaintext policy is always about the connection itself."""
        if not self.policy.allows(peer_ip, tls):
            raise AuthRefused(Refusal.PLAINTEXT)
        peer_ip = client_ip or peer_ip
        if self.guard is not None:
            return await self._guarded(self.guard, username, password, peer_ip)
        if self.throttle.blocked(peer_ip, username):
            metrics.AUTH_FAILURES.labels(self.protocol).inc()
            log.warning("login throttled", user=username, peer=peer_ip)
            await asyncio.sleep(self.throttle.base_delay)
            raise AuthRefused(Refusal.THROTTLED)
        user = await self.directory.authenticate(username, password)
        if user is None:
            metrics.AUTH_FAILURES.labels(self.protocol).inc()
            delay = self.throttle.record_failure(peer_ip, username)
            log.info("login failed", user=username, peer=peer_ip, delay=delay)
            await asyncio.sleep(delay)
            raise AuthRefused(Refusal.FAILED)
        self.throttle.record_success(peer_ip, username)
        return user

    async def _guarded(self, guard: LoginGuard, username: str, password: str, peer_ip: str) -> User:
        if await guard.blocked(self.protocol, peer_ip, username):
            await asyncio.sleep(guard.policy.base_delay)
            raise AuthRefused(Refusal.THROTTLED)
        user = await self.directory.authenticate(username, password)
        if user is None:
            await asyncio.sleep(await guard.failed(self.protocol, peer_ip, username))
            raise AuthRefused(Refusal.FAILED)
        await guard.succeeded(peer_ip, username)
        return user


class ConnectionLimiter:
    """Caps concurrent connections server-wide (``max_total``, 0 = no cap), per peer IP and
    per user (shared by IMAP and POP3)."""

    def __init__(self, max_per_ip: int, max_per_user: int, max_total: int = 0) -> None:
        self.max_per_ip = max_per_ip
        self.max_per_user = max_per_user
        self.max_total = max_total
        self.total = 0
        self._ips: dict[str, int] = defaultdict(int)
        self._users: dict[str, int] = defaultdict(int)

    def admit(self, ip: str) -> Refusal | None:
        """Take a connection slot for ``ip``; None when admitted, else why not
        (:attr:`Refusal.SERVER_BUSY` or :attr:`Refusal.TOO_MANY_CONNECTIONS`)."""
        if self.max_total and self.total >= self.max_total:
            return Refusal.SERVER_BUSY
        if self._ips[ip] >= self.max_per_ip:
            return Refusal.TOO_MANY_CONNECTIONS
        self._ips[ip] += 1
        self.total += 1
        return None

    def open_ip(self, ip: str) -> bool:
        return self.admit(ip) is None

    def close_ip(self, ip: str) -> None:
        self.total = max(0, self.total - 1)
        self._release(self._ips, ip)

    def open_user(self, address: str) -> bool:
        if self._users[address] >= self.max_per_user:
            return False
        self._users[address] += 1
        return True

    def close_user(self, address: str) -> None:
        self._release(self._users, address)

    @staticmethod
    def _release(table: dict[str, int], key: str) -> None:
        n = table.get(key, 0) - 1
        if n <= 0:
            table.pop(key, None)
        else:
            table[key] = n
