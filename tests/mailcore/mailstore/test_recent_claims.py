"""\\Recent claims without a write of their own (issue 20): an APPEND by the session that
has the mailbox selected claims the new message in its own transaction (RFC 3501
§6.3.11, §2.3.2), and a claim with nothing left to claim commits nothing."""

from __future__ import annotations

import asyncio

from mailcore.mailstore import Account, MailStore
from tests.mailcore.mailstore.conftest import message


async def test_append_claiming_recent_leaves_nothing_for_others(account: Account) -> None:
    inbox = (await account.mailbox("INBOX")).id
    mine = await account.append(inbox, message("mine"), claim_recent=True)
    other = await account.append(inbox, message("other"))
    assert (await account.status(inbox)).recent == 1  # only the unclaimed one
    # another session claims what is left: never the message the appender claimed
    assert await account.claim_recent(inbox) == {other.uid}
    assert mine.uid not in await account.peek_recent(inbox, other.uid)


async def test_a_claim_with_nothing_to_claim_commits_nothing(account: Account) -> None:
    inbox = (await account.mailbox("INBOX")).id
    first = await account.append(inbox, message("a"))
    assert await account.claim_recent(inbox, first.uid) == {first.uid}
    commits, seq = account._core._commits, account.change_seq
    # what a SELECT does on a mailbox whose messages were all announced before
    assert await account.claim_recent(inbox, first.uid) == set()
    assert await account.claim_recent(inbox) == set()
    assert account._core._commits == commits  # no transaction, no hand-over to the writer
    assert account.change_seq == seq
    # a message that arrives later is still claimed, once
    second = await account.append(inbox, message("b"))
    assert await account.claim_recent(inbox, first.uid) == set()  # beyond the caller's view
    assert await account.claim_recent(inbox, second.uid) == {second.uid}
    assert account._core._commits == commits + 2  # the append and the claim


async def test_concurrent_claims_and_appends_hand_each_message_to_one_claimer(
    store: MailStore,
) -> None:
    """Many appenders (half of them claiming their own message) and claimers at once, on
    real SQLite through the writer threads: every message is recent exactly once, to its
    appender or to one claimer, and no UID is handed out twice."""
    acct = await store.account("acct-2")
    inbox = (await acct.mailbox("INBOX")).id
    claimed: list[set[int]] = []
    own: list[int] = []

    async def appender(i: int) -> None:
        res = await acct.append(inbox, message(f"m{i}"), claim_recent=i % 2 == 0)
        if i % 2 == 0:
            own.append(res.uid)

    async def claimer() -> None:
        for _ in range(10):
            claimed.append(await acct.claim_recent(inbox))
            await asyncio.sleep(0)

    await asyncio.gather(*(appender(i) for i in range(40)), *(claimer() for _ in range(4)))
    claimed.append(await acct.claim_recent(inbox))
    snap = await acct.snapshot(inbox)
    assert snap.uids == list(range(1, 41))  # ascending, none reused
    by_claimers = [u for c in claimed for u in c]
    assert len(by_claimers) == len(set(by_claimers))  # each claimed once
    assert set(by_claimers).isdisjoint(own)
    assert sorted(by_claimers + own) == snap.uids
