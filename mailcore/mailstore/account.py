"""One account's mail: mailboxes, messages, flags, the change log (async API)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import BinaryIO

from mailcore.mailstore.model import (
    NO_QUOTA,
    AppendResult,
    Change,
    CopyResult,
    FlagOp,
    MailboxInfo,
    MailboxStatus,
    MessageRecord,
    Quota,
    Snapshot,
    StoreResult,
)
from mailcore.mailstore.search import SearchKey


class Account:
    """See the package docstring for the contract of every method."""

    id: str

    async def list_mailboxes(self) -> list[MailboxInfo]:
        raise NotImplementedError

    async def mailbox(self, name: str) -> MailboxInfo:
        raise NotImplementedError

    async def mailbox_by_id(self, mailbox_id: int) -> MailboxInfo:
        raise NotImplementedError

    async def mailbox_by_role(self, special_use: str) -> MailboxInfo | None:
        raise NotImplementedError

    async def create_mailbox(self, name: str, special_use: str | None = None) -> MailboxInfo:
        raise NotImplementedError

    async def delete_mailbox(self, name: str) -> None:
        raise NotImplementedError

    async def rename_mailbox(self, old: str, new: str) -> None:
        raise NotImplementedError

    async def set_subscribed(self, name: str, subscribed: bool) -> None:
        raise NotImplementedError

    async def subscriptions(self) -> list[str]:
        raise NotImplementedError

    async def status(self, mailbox_id: int) -> MailboxStatus:
        raise NotImplementedError

    async def snapshot(self, mailbox_id: int) -> Snapshot:
        raise NotImplementedError

    async def fetch(
        self, mailbox_id: int, uids: Sequence[int], *, parsed: bool = True
    ) -> list[MessageRecord]:
        raise NotImplementedError

    def open_message(self, rec: MessageRecord) -> BinaryIO:
        raise NotImplementedError

    async def append(
        self,
        mailbox_id: int,
        data: bytes,
        *,
        flags: Iterable[str] = (),
        internal_date: float | None = None,
        quota: Quota = NO_QUOTA,
    ) -> AppendResult:
        raise NotImplementedError

    async def store_flags(
        self,
        mailbox_id: int,
        uids: Sequence[int],
        op: FlagOp,
        flags: Iterable[str],
        *,
        unchanged_since: int | None = None,
    ) -> StoreResult:
        raise NotImplementedError

    async def expunge(self, mailbox_id: int, uids: Sequence[int] | None = None) -> list[int]:
        raise NotImplementedError

    async def copy(
        self, src_id: int, uids: Sequence[int], dst_id: int, *, quota: Quota = NO_QUOTA
    ) -> CopyResult:
        raise NotImplementedError

    async def move(
        self, src_id: int, uids: Sequence[int], dst_id: int, *, quota: Quota = NO_QUOTA
    ) -> CopyResult:
        raise NotImplementedError

    async def search(
        self, mailbox_id: int, criteria: SearchKey, *, uids: Sequence[int] | None = None
    ) -> list[int]:
        raise NotImplementedError

    async def claim_recent(self, mailbox_id: int) -> set[int]:
        raise NotImplementedError

    async def usage(self) -> tuple[int, int]:
        raise NotImplementedError

    @property
    def change_seq(self) -> int:
        raise NotImplementedError

    async def changes_since(self, seq: int, mailbox_id: int | None = None) -> list[Change]:
        raise NotImplementedError

    async def wait_for_change(self, seq: int, timeout: float | None = None) -> int:
        raise NotImplementedError

    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        raise NotImplementedError
