"""Delivery from the bus writes exactly the journal records it should (issue 11): an
append per recipient copy carrying the delivery key, none for a redelivery, $Junk in
Junk for spam, the directory's quota once when it changes, and the purge that
``mailctl user remove --purge`` asks for ends the account's journal."""

from __future__ import annotations

import hashlib

from mailcore.directory import User
from mailcore.mailstore.records import AccountRemovedRecord, AppendRecord, QuotaRecord, Record
from services.store.admin import purge
from tests.services.store.test_delivery import BODY, Env, env, eventually  # noqa: F401 (fixture)


async def _records(e: Env, user: User, after: int) -> list[Record]:
    acct = await e.store.account(user.account_id)
    return await acct.changes_since(after)


async def _head(e: Env, user: User) -> int:
    return (await e.store.account(user.account_id)).change_seq


async def test_delivery_records(env: Env) -> None:  # noqa: F811 (the fixture)
    a0, b0 = await _head(env, env.alice), await _head(env, env.bob)
    msg = await env.publish(["team@example.org"])

    async def delivered() -> bool:
        return len(await _records(env, env.alice, a0)) == 1 and (
            len(await _records(env, env.bob, b0)) == 1
        )

    await eventually(delivered)
    for user in (env.alice, env.bob):
        (rec,) = await _records(env, user, a0 if user is env.alice else b0)
        assert isinstance(rec, AppendRecord)
        assert rec.delivery_key == f"{msg.id}/{user.account_id}"
        (stored,) = await env.inbox(user)
        assert rec.sha256 == hashlib.sha256(stored).hexdigest() and rec.size == len(stored)
    # the same bus message again (a redelivery): nothing new
    a1 = await _head(env, env.alice)
    await env.publish(["alice@example.org"], mid=msg.id)
    # distinct bodies: an identical resend within minutes is dropped as a duplicate (issue 19)
    await env.publish(["alice@example.org"], BODY + b"spam\r\n", spam=True)
    await eventually(lambda: _count(env, env.alice, a1, 1))
    (junk,) = await _records(env, env.alice, a1)
    assert isinstance(junk, AppendRecord) and junk.flags == {"$Junk"}
    acct = await env.store.account(env.alice.account_id)
    assert junk.mailbox_id == (await acct.mailbox("Junk")).id
    # a quota set in the directory is journalled with the next delivery, once
    await env.directory.set_quota("alice@example.org", quota_bytes=10**8, quota_messages=50)
    await eventually(lambda: _quota_seen(env))
    a2 = await _head(env, env.alice)
    await env.publish(["alice@example.org"], BODY + b"one\r\n")
    await env.publish(["alice@example.org"], BODY + b"two\r\n")
    await eventually(lambda: _count(env, env.alice, a2, 3))
    kinds = [type(r) for r in await _records(env, env.alice, a2)]
    assert kinds == [QuotaRecord, AppendRecord, AppendRecord]
    (quota,) = [r for r in await _records(env, env.alice, a2) if isinstance(r, QuotaRecord)]
    assert (quota.bytes, quota.messages) == (10**8, 50)
    # mailctl user remove --purge: the store's purge writes the account's last record
    head = await _head(env, env.bob)
    bob = await env.store.account(env.bob.account_id)
    reply = await purge(env.directory, env.store, "bob@example.org")
    assert reply["ok"] is True
    assert bob.change_seq == head + 1
    # the index went to the trash with the account: the record as it was committed
    (last,) = bob._core.recent_changes(head, None) or []
    assert isinstance(last, AccountRemovedRecord) and last.account_id == env.bob.account_id


async def _count(e: Env, user: User, after: int, n: int) -> bool:
    return len(await _records(e, user, after)) >= n


async def _quota_seen(e: Env) -> bool:
    found = e.directory.user("alice@example.org")
    return found is not None and found.quota_bytes == 10**8
