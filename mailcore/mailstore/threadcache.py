"""The last THREAD answers of an account's busiest mailboxes (RFC 5256 §4), kept between
commands so that a repeated ``THREAD REFERENCES ALL`` (or ``ORDEREDSUBJECT``) on a
mailbox that did not change skips the query and the per-message work.

A THREAD result depends only on which messages take part and on their thread columns
(base subject, reply marker, sent date, Message-ID, parent chain: mailcore.mailstore.
sortkeys), which never change once a message is stored; flags play no part. Only
criteria that select every message of a UID span are kept (``ALL``, and ``ALL`` within
the session's view: handlers.sort), and such a set of messages is known by
``(mailbox, UIDVALIDITY, span, number of messages in the span)``, the span ending at
the mailbox's UIDNEXT - 1 at most: UIDs are never reused and a new message gets a UID
of UIDNEXT or above, so within such a span messages only go (expunge, move), and each
going lowers the count. Any change of
the set is therefore a new key (the old entry is simply not found, then falls out).

What is kept is the UID form of the thread-list (mailthreads.render), about 8 bytes a
message (a 100,000-message mailbox: under 1 MB), for at most :data:`MAX_ENTRIES`
answers per account, the least recently used dropped first."""

from __future__ import annotations

import threading
from collections import OrderedDict

from mailcore.mailstore import search as q

MAX_ENTRIES = 4  # answers kept per account (a few mailboxes, or views of one)
_EVERY_UID = (1, 2**63 - 1)

Key = tuple[int, int, str, int, int, int]  # mailbox, uidvalidity, algorithm, span, count


def span(criteria: q.SearchKey) -> tuple[int, int] | None:
    """The UID span that ``criteria`` select every message of, or None (other criteria:
    the answer is not kept)."""
    if isinstance(criteria, q.All):
        return _EVERY_UID
    if isinstance(criteria, q.And) and len(criteria.keys) == 2:
        seen, rest = criteria.keys
        if isinstance(seen, q.UidIn) and len(seen.ranges) == 1 and isinstance(rest, q.All):
            return seen.ranges[0]
    return None


class ThreadCache:
    """At most ``size`` rendered THREAD answers (UID form), any reader thread."""

    def __init__(self, size: int = MAX_ENTRIES) -> None:
        self.size = max(1, size)
        self._entries: OrderedDict[Key, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0  # for tests and metrics

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> bytes | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            return found

    def put(self, key: Key, text: bytes) -> None:
        with self._lock:
            self._entries[key] = text
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


__all__ = ["MAX_ENTRIES", "Key", "ThreadCache", "span"]
