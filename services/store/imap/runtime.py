"""What every IMAP session of one server shares: settings-derived limits, the engine,
the directory, login policy, TLS, caches."""

from __future__ import annotations

import asyncio
import ssl
from collections import OrderedDict
from dataclasses import dataclass, field

from mailcore.directory import Directory
from mailcore.mailstore import MailStore
from services.store.auth import Authenticator, ConnectionLimiter


class RenderCache:
    """Bounded LRU of rendered ENVELOPE / BODYSTRUCTURE bytes per (account, mailbox, uid, item).

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
    max_bad_commands: int = 5  # before login; a few bad commands end the session
    max_bad_after_login: int = 50
    cache: RenderCache = field(default_factory=RenderCache)
    # Engine searches that read message files (BODY, TEXT, HEADER of an unindexed field)
    # evaluate them in Python in a reader thread and compete with the event loop for the
    # GIL; one at a time keeps every other session responsive. Searches the index answers
    # alone (flags, dates, sizes, From/To/Cc/Bcc/Subject) do not take a slot.
    search_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
