"""What every IMAP session of one server shares: settings-derived limits, the engine,
the directory, login policy, TLS, caches."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from mailcore.directory import Directory
from mailcore.mailstore import MailStore
from services.store.auth import Authenticator, ConnectionLimiter, IPNetwork
from services.store.listener import DEFAULT_WRITE_TIMEOUT
from services.store.mirror_sync import MirrorSync


class RenderCache:
    """Bounded LRU of rendered ENVELOPE / BODYSTRUCTURE / PREVIEW / BODY[HEADER.FIELDS ...]
    bytes per (account, mailbox, uid, item).

    A message's bytes never change once stored, so entries never go stale; UIDs are not
    reused within a UIDVALIDITY, which is part of the key."""

    def __init__(self, size: int = 50_000) -> None:
        self.size = size
        self._data: OrderedDict[tuple[str, int, int, int, str], bytes] = OrderedDict()

    def get(self, key: tuple[str, int, int, int, str]) -> bytes | None:
        v = self._data.get(key)
        if v is not None:
            self._data.move_to_end(key)
        return v

    def put(self, key: tuple[str, int, int, int, str], value: bytes) -> None:
        self._data[key] = value
        if len(self._data) > self.size:
            self._data.popitem(last=False)


class SearchGate:
    """Admission for searches that read message files (BODY, TEXT, unindexed HEADER).

    Such a scan evaluates criteria in Python in a reader thread and competes with the
    event loop for the GIL, so only ``total`` run at once server-wide, and one account
    never runs more than one: its other searches queue behind its own, not in front of
    other users' (one user's long scan cannot starve another user's search). Waiters
    are served first come, first served."""

    def __init__(self, total: int = 2) -> None:
        self.total = max(1, total)
        self._slots = asyncio.Semaphore(self.total)
        self._accounts: dict[str, tuple[asyncio.Lock, int]] = {}
        self.granted = 0  # scans admitted so far (metrics, tests)
        self.running = 0

    @contextlib.asynccontextmanager
    async def slot(self, account_id: str) -> AsyncIterator[None]:
        lock, users = self._accounts.get(account_id, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._accounts[account_id] = (lock, users + 1)
        try:
            async with lock, self._slots:
                self.granted += 1
                self.running += 1
                try:
                    yield
                finally:
                    self.running -= 1
        finally:
            _, users = self._accounts[account_id]
            if users <= 1:
                del self._accounts[account_id]  # no lock kept for idle accounts
            else:
                self._accounts[account_id] = (lock, users - 1)


@dataclass
class Runtime:
    store: MailStore
    directory: Directory
    auth: Authenticator
    limiter: ConnectionLimiter
    hostname: str = "localhost"
    tls_context: ssl.SSLContext | None = None
    max_message_size: int = 50_000_000
    idle_timeout: float = 1800.0  # RFC 3501 §5.4: at least 30 minutes of inactivity
    login_timeout: float = 60.0  # before login: RFC 9051 §5.4 allows a shorter timer
    write_timeout: float = DEFAULT_WRITE_TIMEOUT  # output left unread this long: dropped
    max_bad_commands: int = 5  # before login; a few bad commands end the session
    max_bad_after_login: int = 50
    cache: RenderCache = field(default_factory=RenderCache)
    # Engine searches that read message files (BODY, TEXT, HEADER of an unindexed field)
    # pass the gate (one per account, ``search_scans`` server-wide) and get
    # ``search_timeout`` seconds, waiting included, before they answer NO [LIMIT].
    # Searches the index answers alone (flags, dates, sizes, From/To/Cc/Bcc/Subject) do
    # not take a slot.
    searches: SearchGate = field(default_factory=SearchGate)
    search_timeout: float = 120.0
    # Peers whose ID x-originating-ip is believed (webmail nodes), see handlers/misc.py.
    trusted_id_networks: tuple[IPNetwork, ...] = ()
    # synchronous mirroring: a write is answered OK once the peer committed it too
    mirror_sync: MirrorSync | None = None
