"""Journal origins (index schema 4): records replica apply wrote from a peer are left out of
that peer's reads, so a mirror never ships them back; the reader still moves past them."""

from __future__ import annotations

from pathlib import Path

from mailcore.mailstore import Account, MailStore
from mailcore.mailstore.records import AppendRecord
from tests.mailcore.mailstore.conftest import message


async def test_records_from_a_peer_are_not_read_back_for_it(
    tmp_path: Path, store: MailStore, account: Account
) -> None:
    inbox = await account.mailbox("INBOX")
    await account.append(inbox.id, message("one"))
    source = account.replication
    peer_store = await MailStore.open(tmp_path / "peer")
    try:
        peer = (await peer_store.account(account.id, replica=True)).replication
        for rec in await source.read(0):  # the peer applies everything from store-a
            data = source.message_bytes(rec.file_id) if isinstance(rec, AppendRecord) else None
            assert await peer.apply(rec, data, origin="store-a")
        head = peer.head
        assert head == source.head
        # the peer's own change after them
        peer_acct = await peer_store.account(account.id)
        await peer_acct.append((await peer_acct.mailbox("INBOX")).id, message("two"))
        await peer.register_reader("mirror:store-a", position=0)
        records, last = await peer.read_skipping("mirror:store-a", "store-a")
        assert last == head + 1
        assert [r.kind for r in records] == ["append"]  # only the peer's own record
        assert records[0].seq == head + 1
        # another reader (another peer) gets everything
        await peer.register_reader("mirror:store-c", position=0)
        others, _ = await peer.read_skipping("mirror:store-c", "store-c")
        assert len(others) == head + 1
        await peer.confirm("mirror:store-a", last)
        assert await peer.read_skipping("mirror:store-a", "store-a") == ([], 0)
    finally:
        await peer_store.close()
