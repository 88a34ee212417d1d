"""The maildrop lock: one POP3 session per account at a time.

RFC 1939 §4: once a client is authenticated "the POP3 server then acquires an
exclusive-access lock on the maildrop, as necessary to prevent messages from being modified
or removed before the session enters the UPDATE state"; a second session is refused with
``-ERR [IN-USE]`` (RFC 2449 §8.1.1), as SurgeMail's ``g_pop_lock`` does.

The store is one process and owns its data directory, so an in-process table keyed by
account id is the whole lock: no lock files, nothing stale after a crash (a restarted store
starts with no sessions). IMAP sessions do not take it: they may change the INBOX while a
POP3 session is open, and the POP3 session copes (its snapshot is fixed at login, RETR of
a message expunged meanwhile answers ``-ERR``, and QUIT removes only its own deletions).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Lease:
    account_id: str
    holder: str  # the connection id, for logs


class MaildropLocks:
    def __init__(self) -> None:
        self._held: dict[str, Lease] = {}

    def acquire(self, account_id: str, holder: str) -> Lease | None:
        """The lease, or None when another session holds this maildrop."""
        if account_id in self._held:
            return None
        lease = Lease(account_id, holder)
        self._held[account_id] = lease
        return lease

    def release(self, lease: Lease) -> None:
        """Idempotent; only the holder's own lease is released."""
        if self._held.get(lease.account_id) is lease:
            del self._held[lease.account_id]

    def holder(self, account_id: str) -> str | None:
        lease = self._held.get(account_id)
        return lease.holder if lease else None

    def __len__(self) -> int:
        return len(self._held)
