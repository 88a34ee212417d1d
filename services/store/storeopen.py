"""How the store service opens its mail store: one place for the settings that shape the
engine, shared by the store process and its IMAP worker processes (imap_worker.py)."""

from __future__ import annotations

from mailcore.config import StoreSettings
from mailcore.mailstore import MailStore, store_root


async def open_store(s: StoreSettings, *, lock_fd: int | None = None) -> MailStore:
    """The mail store below ``s.data`` as the settings say (docs/storage.md).

    ``store_writers`` writer threads per process: every account's writes run on one of
    them (chosen by the account id), so writes to different accounts wait for each
    other's commits and fsyncs only when they share a thread."""
    return await MailStore.open(
        store_root(s.data),
        fsync=s.fsync,
        writers=s.store_writers,
        max_message_size=s.max_message_size,
        reader_max_behind=s.journal_reader_max_behind,
        reader_max_age=s.journal_reader_max_age,
        fsync_flags=s.fsync_flags,
        lock_fd=lock_fd,
        read_only=s.mirror_follower,  # a read-only follower: users read, never write
        paired=bool(s.mirror_role),  # one of a mirrored pair: default mailboxes as the peer's
        # and the UIDVALIDITY values it makes never the peer's: by its configured role
        uidvalidity_parity={"master": 0, "slave": 1}.get(s.mirror_role),
    )
