"""RFC 9208 quotas enforced on APPEND, COPY and delivery; usage follows every change."""

from __future__ import annotations

import pytest

from mailcore.mailstore import Account, Delivery, FlagOp, MailStore, Quota, QuotaExceeded
from tests.mailcore.mailstore.conftest import message


async def test_append_refused_over_byte_and_message_limits(account: Account) -> None:
    inbox = await account.mailbox("INBOX")
    data = message("q", body="x" * 100)
    limit = Quota(bytes=len(data) * 2, messages=0)
    await account.append(inbox.id, data, quota=limit)
    await account.append(inbox.id, data, quota=limit)
    with pytest.raises(QuotaExceeded):
        await account.append(inbox.id, data, quota=limit)
    with pytest.raises(QuotaExceeded):
        await account.append(inbox.id, b"S: x\r\n\r\n", quota=Quota(messages=2))
    assert await account.usage() == (2 * len(data), 2)
    assert (await account.status(inbox.id)).messages == 2  # nothing half-stored


async def test_copy_counts_move_does_not(account: Account) -> None:
    inbox = await account.mailbox("INBOX")
    archive = await account.mailbox("Archive")
    data = message("c")
    for _ in range(2):
        await account.append(inbox.id, data)
    limit = Quota(messages=3)
    with pytest.raises(QuotaExceeded):
        await account.copy(inbox.id, [1, 2], archive.id, quota=limit)
    assert (await account.status(archive.id)).messages == 0
    moved = await account.move(inbox.id, [1, 2], archive.id, quota=Quota(messages=2))
    assert len(moved.mapping) == 2
    assert await account.usage() == (2 * len(data), 2)


async def test_expunge_and_delete_release_usage(account: Account) -> None:
    inbox = await account.mailbox("INBOX")
    box = await account.create_mailbox("Big")
    data = message("u", body="y" * 500)
    await account.append(inbox.id, data)
    await account.append(box.id, data)
    await account.store_flags(inbox.id, [1], FlagOp.ADD, ["\\Deleted"])
    await account.expunge(inbox.id)
    assert await account.usage() == (len(data), 1)
    await account.delete_mailbox("Big")
    assert await account.usage() == (0, 0)
    await account.append(inbox.id, data, quota=Quota(bytes=len(data)))


async def test_delivery_outcome_quota_keeps_earlier_items(store: MailStore) -> None:
    data = message("d", body="z" * 200)
    limit = Quota(bytes=len(data) * 2)
    items = [Delivery(f"k{i}", "quota-user", "inbox", data, 0.0, quota=limit) for i in range(3)]
    results = await store.deliver(items)
    assert [r.outcome for r in results] == ["delivered", "delivered", "quota"]
    acct = await store.account("quota-user")
    assert await acct.usage() == (2 * len(data), 2)
    # Once there is room again the refused copy goes in.
    inbox = await acct.mailbox("INBOX")
    await acct.store_flags(inbox.id, [1], FlagOp.ADD, ["\\Deleted"])
    await acct.expunge(inbox.id)
    (again,) = await store.deliver([items[2]])
    assert again.outcome == "delivered"
