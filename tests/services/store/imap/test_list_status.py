"""LIST ... RETURN (STATUS ...) (RFC 5819): every mailbox's status comes from one read of
the account, not one reader thread's turn per mailbox (a webmail page's folder list)."""

from __future__ import annotations

from typing import Any

from tests.services.store.imap.conftest import ImapHarness, message


async def test_list_status_reads_the_account_once(imap: ImapHarness) -> None:
    await imap.deliver(message(1), message(2))
    acct, _ = await imap.inbox()
    c = await imap.raw_login()
    for name in (b"Work", b"Later", b"Old"):
        await c.cmd(b"c CREATE " + name)
    await c.cmd(b'w LIST "" "*"')  # the mailbox rows are read on the event loop from now
    reads: list[Any] = []
    real = acct._read

    async def counting(fn: Any) -> Any:
        reads.append(fn)
        return await real(fn)

    acct._read = counting  # type: ignore[method-assign]
    out = await c.cmd(b'a LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN))')
    assert len(reads) == 1
    statuses = [line for line in out if line.startswith(b"* STATUS ")]
    assert b"* STATUS INBOX (MESSAGES 2 UNSEEN 2)\r\n" in statuses
    assert b"* STATUS Work (MESSAGES 0 UNSEEN 0)\r\n" in statuses
    assert len(statuses) == len([line for line in out if line.startswith(b"* LIST ")])
    await c.close()
