"""Engine fixtures: a real store on real files and a real SQLite index in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailcore.mailstore import Account, MailStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MailStore]:
    s = await MailStore.open(tmp_path / "store")
    yield s
    await s.close()


@pytest.fixture
async def account(store: MailStore) -> Account:
    return await store.account("acct-1")


def message(subject: str = "hello", body: str = "body text", extra: str = "") -> bytes:
    return (
        f"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: {subject}\r\n"
        f"Date: Mon, 2 Dec 2024 10:00:00 +0100\r\nMessage-ID: <{subject}@example.org>\r\n"
        f"{extra}\r\n{body}\r\n"
    ).encode()
