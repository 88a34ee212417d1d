"""The store: every account below one root directory, the writer threads, delivery."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mailcore.mailstore.account import Account
from mailcore.mailstore.model import Delivery, DeliveryResult


class MailStore:
    """See the package docstring."""

    root: Path

    @classmethod
    async def open(cls, root: Path, *, fsync: bool = True, exclusive: bool = True) -> MailStore:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def account(self, account_id: str) -> Account:
        raise NotImplementedError

    async def deliver(self, items: Sequence[Delivery]) -> list[DeliveryResult]:
        raise NotImplementedError

    def account_dir(self, account_id: str) -> Path:
        raise NotImplementedError

    async def remove_account(self, account_id: str) -> None:
        raise NotImplementedError
