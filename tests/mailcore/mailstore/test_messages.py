"""Messages on real SQLite and real files: UIDs, MODSEQ, flags, expunge, copy, move."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailcore.mailstore import (
    Account,
    Delivery,
    FlagOp,
    InvalidFlag,
    MailStore,
    MessageTooLarge,
    NoSuchMailbox,
    NoSuchMessage,
    StoreClosed,
    schema,
)
from mailcore.mailstore.core import AccountCore, Txn
from mailcore.mailstore.layout import message_path
from tests.mailcore.mailstore.conftest import message


async def test_append_fetch_and_read_back(account: Account) -> None:
    inbox = await account.mailbox("INBOX")
    data = message("first", extra="Content-Type: text/plain; charset=utf-8\r\n")
    res = await account.append(inbox.id, data, flags=["\\seen", "$Label1"], internal_date=1.7e9)
    assert res.uid == 1 and res.uidvalidity == inbox.uidvalidity and res.mailbox_id == inbox.id
    (rec,) = await account.fetch(inbox.id, [1, 2, 99])
    assert rec.uid == 1 and rec.size == len(data) and rec.internal_date == 1.7e9
    assert rec.flags == {"\\Seen", "$Label1"}
    assert rec.parsed is not None
    assert rec.parsed.envelope.subject == "first"
    assert rec.parsed.structure.param("charset") == "utf-8"
    with account.open_message(rec) as fh:
        assert fh.read() == data
    (bare,) = await account.fetch(inbox.id, [1], parsed=False)
    assert bare.parsed is None


async def test_fetch_never_reparses_the_file(account: Account, store: MailStore) -> None:
    inbox = await account.mailbox("INBOX")
    await account.append(inbox.id, message("cached subject"))
    (rec,) = await account.fetch(inbox.id, [1])
    # Overwrite the stored bytes: the envelope must still come from the parse cache.
    path = message_path(store.account_dir(account.id), rec.file_id)
    path.write_bytes(b"Subject: something else\r\n\r\n")
    (again,) = await account.fetch(inbox.id, [1])
    assert again.parsed is not None and again.parsed.envelope.subject == "cached subject"


async def test_uids_ascend_and_are_never_reused(account: Account) -> None:
    inbox = await account.mailbox("INBOX")
    uids = [(await account.append(inbox.id, message(f"m{i}"))).uid for i in range(5)]
    assert uids == [1, 2, 3, 4, 5]
    await account.store_flags(inbox.id, [4, 5], FlagOp.ADD, ["\\Deleted"])
    assert await account.expunge(inbox.id) == [4, 5]
    assert (await account.append(inbox.id, message("after"))).uid == 6
    snap = await account.snapshot(inbox.id)
    assert snap.uids == [1, 2, 3, 6] and snap.uidnext == 7


async def test_modseq_increments_with_every_change(account: Account) -> None:
    inbox = await account.mailbox("INBOX")
    a = await account.append(inbox.id, message("a"))
    b = await account.append(inbox.id, message("b"))
    assert b.modseq > a.modseq
    s1 = await account.status(inbox.id)
    assert s1.highestmodseq == b.modseq
    r1 = await account.store_flags(inbox.id, [1], FlagOp.ADD, ["\\Flagged"])
    (uid, modseq1, flags) = r1.changed[0]
    assert uid == 1 and modseq1 > b.modseq and flags == {"\\Flagged"}
    r2 = await account.store_flags(inbox.id, [1, 2], FlagOp.ADD, ["\\Seen"])
    assert all(m > modseq1 for _, m, _ in r2.changed)
    # No change, no new modseq.
    r3 = await account.store_flags(inbox.id, [1], FlagOp.ADD, ["\\Seen"])
    assert r3.changed == []
    s2 = await account.status(inbox.id)
    assert s2.highestmodseq == r2.changed[0][1]
    await account.store_flags(inbox.id, [2], FlagOp.ADD, ["\\Deleted"])
    await account.expunge(inbox.id)
    s3 = await account.status(inbox.id)
    assert s3.highestmodseq > s2.highestmodseq
    snap = await account.snapshot(inbox.id)
    assert snap.modseqs == [r2.changed[0][1]]
    # Other mailboxes keep their own HIGHESTMODSEQ.
    sent = await account.mailbox("Sent")
    assert (await account.status(sent.id)).highestmodseq < s3.highestmodseq


async def test_flag_operations(account: Account) -> None:
    inbox = await account.mailbox("INBOX")
    await account.append(inbox.id, message(), flags=["$Work"])
    r = await account.store_flags(inbox.id, [1], FlagOp.ADD, ["\\Answered", "$work", "Todo"])
    assert r.changed[0][2] == {"$Work", "\\Answered", "Todo"}  # keyword kept its spelling
    r = await account.store_flags(inbox.id, [1], FlagOp.REMOVE, ["$WORK", "\\answered"])
    assert r.changed[0][2] == {"Todo"}
    r = await account.store_flags(inbox.id, [1], FlagOp.REPLACE, ["\\Draft", "\\Recent"])
    assert r.changed[0][2] == {"\\Draft"}  # \Recent is never stored
    for bad in ("\\Bogus", "has space", "", "br]acket", 'quo"te'):
        with pytest.raises(InvalidFlag):
            await account.store_flags(inbox.id, [1], FlagOp.ADD, [bad])


async def test_unchanged_since_reports_modified(account: Account) -> None:
    inbox = await account.mailbox("INBOX")
    first = await account.append(inbox.id, message("a"))
    await account.append(inbox.id, message("b"))
    bumped = await account.store_flags(inbox.id, [2], FlagOp.ADD, ["\\Seen"])
    # RFC 7162 §3.1.3: message 2 changed after first.modseq, so it is reported, not changed.
    r = await account.store_flags(
        inbox.id, [1, 2], FlagOp.ADD, ["\\Flagged"], unchanged_since=first.modseq
    )
    assert r.modified == [2]
    assert [u for u, _, _ in r.changed] == [1]
    (rec2,) = await account.fetch(inbox.id, [2])
    assert rec2.flags == {"\\Seen"} and rec2.modseq == bumped.changed[0][1]


async def test_expunge_only_deleted_and_only_among_uids(account: Account) -> None:
    inbox = await account.mailbox("INBOX")
    for i in range(4):
        await account.append(inbox.id, message(f"m{i}"))
    await account.store_flags(inbox.id, [1, 2, 3], FlagOp.ADD, ["\\Deleted"])
    assert await account.expunge(inbox.id, [2, 4]) == [2]
    assert await account.expunge(inbox.id) == [1, 3]
    assert (await account.snapshot(inbox.id)).uids == [4]
    assert await account.expunged_since(inbox.id, 0) == [1, 2, 3]
    status = await account.status(inbox.id)
    assert await account.expunged_since(inbox.id, status.highestmodseq) == []


async def test_expunged_files_are_removed_but_shared_copies_stay(
    account: Account, store: MailStore
) -> None:
    inbox = await account.mailbox("INBOX")
    archive = await account.mailbox("Archive")
    await account.append(inbox.id, message("shared"))
    copied = await account.copy(inbox.id, [1], archive.id)
    assert copied.mapping == [(1, 1)] and copied.uidvalidity == archive.uidvalidity
    (rec,) = await account.fetch(inbox.id, [1])
    path = message_path(store.account_dir(account.id), rec.file_id)
    await account.store_flags(inbox.id, [1], FlagOp.ADD, ["\\Deleted"])
    await account.expunge(inbox.id)
    assert path.exists()  # the copy in Archive still uses the file
    (arec,) = await account.fetch(archive.id, [1])
    with account.open_message(arec) as fh:
        assert fh.read() == message("shared")
    await account.store_flags(archive.id, [1], FlagOp.ADD, ["\\Deleted"])
    await account.expunge(archive.id)
    assert not path.exists()
    with pytest.raises(NoSuchMessage):
        account.open_message(arec)


async def test_copy_keeps_flags_and_dates_move_is_atomic(account: Account) -> None:
    inbox = await account.mailbox("INBOX")
    trash = await account.mailbox("Trash")
    for i in range(3):
        await account.append(inbox.id, message(f"m{i}"), flags=["\\Seen"], internal_date=1000.0 + i)
    await account.append(trash.id, message("already"))
    res = await account.move(inbox.id, [1, 3], trash.id)
    assert res.mapping == [(1, 2), (3, 3)]
    assert (await account.snapshot(inbox.id)).uids == [2]
    recs = await account.fetch(trash.id, [2, 3])
    assert [r.internal_date for r in recs] == [1000.0, 1002.0]
    assert all(r.flags == {"\\Seen"} for r in recs)
    assert await account.expunged_since(inbox.id, 0) == [1, 3]
    assert await account.usage() == (
        sum(len(message(f"m{i}")) for i in range(3)) + len(message("already")),
        4,
    )
    empty = await account.copy(inbox.id, [99], trash.id)
    assert empty.mapping == []
    with pytest.raises(NoSuchMailbox):
        await account.copy(inbox.id, [2], 9999)


async def test_recent_is_claimed_exactly_once(account: Account) -> None:
    inbox = await account.mailbox("INBOX")
    for i in range(3):
        await account.append(inbox.id, message(f"m{i}"))
    assert (await account.status(inbox.id)).recent == 3
    assert await account.claim_recent(inbox.id) == {1, 2, 3}
    assert await account.claim_recent(inbox.id) == set()
    await account.append(inbox.id, message("new"))
    assert await account.claim_recent(inbox.id) == {4}
    assert (await account.status(inbox.id)).recent == 0


async def test_status_counts(account: Account) -> None:
    inbox = await account.mailbox("INBOX")
    sizes = []
    for i in range(4):
        data = message(f"m{i}", body="x" * i)
        sizes.append(len(data))
        await account.append(inbox.id, data)
    await account.store_flags(inbox.id, [1, 2], FlagOp.ADD, ["\\Seen"])
    await account.store_flags(inbox.id, [3], FlagOp.ADD, ["\\Deleted"])
    st = await account.status(inbox.id)
    assert (st.messages, st.unseen, st.deleted, st.size) == (4, 2, 1, sum(sizes))
    assert st.uidnext == 5 and st.uidvalidity == inbox.uidvalidity


async def test_limits_and_missing_mailboxes(tmp_path: Path) -> None:
    store = await MailStore.open(tmp_path / "s", max_message_size=100)
    try:
        acct = await store.account("small")
        inbox = await acct.mailbox("INBOX")
        with pytest.raises(MessageTooLarge):
            await acct.append(inbox.id, b"x" * 101)
        with pytest.raises(NoSuchMailbox):
            await acct.append(12345, b"Subject: x\r\n\r\n")
        with pytest.raises(NoSuchMailbox):
            await acct.snapshot(12345)
    finally:
        await store.close()


async def test_state_survives_reopen(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = await MailStore.open(root)
    acct = await store.account("persist")
    inbox = await acct.mailbox("INBOX")
    await acct.append(inbox.id, message("kept"), flags=["\\Flagged"])
    seq, usage = acct.change_seq, await acct.usage()
    await store.close()
    store = await MailStore.open(root)
    try:
        acct = await store.account("persist")
        assert acct.change_seq == seq and await acct.usage() == usage
        (rec,) = await acct.fetch(inbox.id, [1])
        assert rec.flags == {"\\Flagged"}
        assert (await acct.append(inbox.id, message("next"))).uid == 2
    finally:
        await store.close()


async def test_append_stores_crlf_so_the_size_is_the_wire_size(account: Account) -> None:
    # RFC 3501 §7.4.2: RFC822.SIZE is the length of BODY[]; RFC 1939: octets as sent.
    inbox = await account.mailbox("INBOX")
    bare = b"Subject: lf\nFrom: a@example.org\n\nline 1\nline 2\rline 3\r\n"
    await account.append(inbox.id, bare)
    (rec,) = await account.fetch(inbox.id, [1])
    wire = b"Subject: lf\r\nFrom: a@example.org\r\n\r\nline 1\r\nline 2\r\nline 3\r\n"
    with account.open_message(rec) as fh:
        assert fh.read() == wire
    assert rec.size == len(wire) and (await account.usage())[0] == len(wire)
    assert rec.parsed is not None and rec.parsed.header_size == wire.index(b"\r\n\r\n") + 4
    assert rec.parsed.envelope.subject == "lf"


async def test_delivery_stores_crlf_and_leaves_clean_mail_untouched(store: MailStore) -> None:
    clean = message("clean")
    await store.deliver(
        [
            Delivery("k1", "crlf", "inbox", b"Subject: a\n\nbare lf\n", 1.0),
            Delivery("k2", "crlf", "inbox", clean, 2.0),
        ]
    )
    acct = await store.account("crlf")
    inbox = await acct.mailbox("INBOX")
    first, second = await acct.fetch(inbox.id, [1, 2])
    with acct.open_message(first) as fh:
        assert fh.read() == b"Subject: a\r\n\r\nbare lf\r\n"
    assert first.size == 23
    with acct.open_message(second) as fh:
        assert fh.read() == clean
    assert second.size == len(clean)


async def test_forced_expunge_removes_exactly_these_uids_whatever_their_flags(
    account: Account,
) -> None:
    inbox = await account.mailbox("INBOX")
    for i in range(5):
        await account.append(inbox.id, message(f"m{i}"))
    await account.store_flags(inbox.id, [4], FlagOp.ADD, ["\\Deleted"])
    assert await account.expunge(inbox.id, [1, 3, 99], force=True) == [1, 3]
    assert (await account.snapshot(inbox.id)).uids == [2, 4, 5]  # 4 stays: not named
    assert await account.expunged_since(inbox.id, 0) == [1, 3]
    with pytest.raises(ValueError, match="UIDs"):
        await account.expunge(inbox.id, None, force=True)


async def test_forced_expunge_is_one_transaction(
    account: Account, store: MailStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = await account.mailbox("INBOX")
    for i in range(3):
        await account.append(inbox.id, message(f"m{i}"))
    before = (await account.snapshot(inbox.id), await account.usage(), account.change_seq)

    def fail(self: Txn, file_ids: list[int]) -> None:
        raise OSError("disk gone")  # after every row is deleted, before the commit

    monkeypatch.setattr(Txn, "release_files", fail)
    with pytest.raises(OSError, match="disk gone"):
        await account.expunge(inbox.id, [1, 2, 3], force=True)
    monkeypatch.undo()
    after = (await account.snapshot(inbox.id), await account.usage(), account.change_seq)
    assert after == before and await account.expunged_since(inbox.id, 0) == []
    for rec in await account.fetch(inbox.id, [1, 2, 3]):
        with account.open_message(rec) as fh:
            assert fh.read().startswith(b"From: Alice")
    assert await account.expunge(inbox.id, [1, 2, 3], force=True) == [1, 2, 3]


async def test_closed_store_raises_store_closed(tmp_path: Path) -> None:
    store = await MailStore.open(tmp_path / "s")
    acct = await store.account("closing")
    inbox = await acct.mailbox("INBOX")
    await store.close()
    with pytest.raises(StoreClosed):
        await store.account("closing")  # opened before
    with pytest.raises(StoreClosed):
        await store.account("another")
    with pytest.raises(StoreClosed):
        await acct.snapshot(inbox.id)
    with pytest.raises(StoreClosed):
        await acct.append(inbox.id, message("late"))


async def test_small_fetches_read_on_the_loop_and_fall_back_when_busy(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = await account.mailbox("INBOX")
    for i in range(6):
        await account.append(inbox.id, message(f"m{i}"))
    pooled = 0
    real_read = account._read

    async def counting(fn: Any) -> Any:
        nonlocal pooled
        pooled += 1
        return await real_read(fn)

    monkeypatch.setattr(account, "_read", counting)
    # no connection is ever opened on the event loop's thread
    opened_on: list[int] = []
    real_connect = schema.connect

    def recording_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened_on.append(threading.get_ident())
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(schema, "connect", recording_connect)
    account._core.release()  # cold: no connection open at all
    (first,) = await account.fetch(inbox.id, [2], parsed=False)
    assert first.uid == 2 and pooled == 1  # not warm yet: read on a reader thread…
    assert account._core._inline is not None  # …which opened and warmed the inline one
    (one,) = await account.fetch(inbox.id, [3], parsed=False)
    assert one.uid == 3 and pooled == 1  # no hand-over to a reader thread
    assert threading.get_ident() not in opened_on and opened_on
    assert [r.uid for r in await account.fetch(inbox.id, [1, 2, 3, 4, 5, 6])] == [1, 2, 3, 4, 5, 6]
    assert pooled == 2  # larger fetches go to the reader threads

    @contextlib.contextmanager
    def locked(self: AccountCore) -> Iterator[sqlite3.Connection]:
        raise sqlite3.OperationalError("database is locked")
        yield  # pragma: no cover

    monkeypatch.setattr(AccountCore, "inline_reader", locked)
    (again,) = await account.fetch(inbox.id, [3])
    assert (again.uid, again.file_id, again.size) == (3, one.file_id, one.size)
    assert pooled == 3 and again.parsed is not None


async def test_large_appends_are_parsed_off_the_event_loop(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailcore.mailstore import account as account_module

    parsed_on: list[bool] = []  # True: on the event loop's thread
    real_parse = account_module.parse
    loop_thread = threading.get_ident()

    def recording(data: bytes) -> Any:
        parsed_on.append(threading.get_ident() == loop_thread)
        return real_parse(data)

    monkeypatch.setattr(account_module, "parse", recording)
    inbox = await account.mailbox("INBOX")
    await account.append(inbox.id, message("small"))
    big = message("big", body=("z" * 78 + "\n") * 40_000)  # ~3 MiB, bare LFs for to_crlf
    res = await account.append(inbox.id, big)
    assert parsed_on == [True, False]
    (rec,) = await account.fetch(inbox.id, [res.uid])
    assert rec.size == len(big) + 40_000  # every bare LF became CRLF
    assert rec.parsed is not None and rec.parsed.envelope.subject == "big"


async def test_keyword_limits(account: Account) -> None:
    from mailcore.mailstore import TooManyKeywords
    from mailcore.mailstore.keywords import MAX_PER_MAILBOX, MAX_PER_MESSAGE

    inbox = await account.mailbox("INBOX")
    uids = [(await account.append(inbox.id, message(f"k{i}"))).uid for i in range(12)]
    many = [f"$k{i}" for i in range(MAX_PER_MESSAGE)]
    await account.store_flags(inbox.id, [uids[0]], FlagOp.ADD, many)
    # one more on that message: refused, and the whole STORE with it
    with pytest.raises(TooManyKeywords):
        await account.store_flags(inbox.id, uids[:2], FlagOp.ADD, ["$one-more"])
    snap = await account.snapshot(inbox.id)
    assert "$one-more" not in snap.flags[1]
    with pytest.raises(TooManyKeywords):
        await account.append(inbox.id, message("x"), flags=[*many, "$extra"])
    # case-insensitive: an existing keyword in another spelling is no new one
    await account.store_flags(inbox.id, [uids[0]], FlagOp.ADD, ["$K1"])
    # the mailbox: fill it up to the limit with distinct keywords, 90 per message
    n = MAX_PER_MESSAGE - 10
    for j, start in enumerate(range(MAX_PER_MESSAGE, MAX_PER_MAILBOX, n)):
        names = [f"$k{i}" for i in range(start, min(start + n, MAX_PER_MAILBOX))]
        await account.store_flags(inbox.id, [uids[1 + j]], FlagOp.REPLACE, names)
    with pytest.raises(TooManyKeywords):
        await account.store_flags(inbox.id, [uids[-1]], FlagOp.ADD, ["$brand-new"])
    with pytest.raises(TooManyKeywords):
        await account.append(inbox.id, message("y"), flags=["$brand-new"])
    # keywords the mailbox has are still fine anywhere, and removing is always allowed
    await account.store_flags(inbox.id, [uids[-1]], FlagOp.ADD, ["$k5", "$k999"])
    await account.store_flags(inbox.id, [uids[-1]], FlagOp.REMOVE, ["$k5"])
    # another mailbox has its own budget; a copy into it counts there
    other = await account.create_mailbox("Other")
    await account.copy(inbox.id, [uids[0]], other.id)
    fresh = await account.append(other.id, message("fresh"), flags=["$brand-new"])
    await account.store_flags(other.id, [fresh.uid], FlagOp.ADD, ["$newer"])


async def test_snapshots_are_kept_for_the_busiest_mailboxes_only(account: Account) -> None:
    from mailcore.mailstore.snapshots import MAX_MAILBOXES

    ids = [(await account.create_mailbox(f"box{i}")).id for i in range(MAX_MAILBOXES + 8)]
    for mb in ids:
        await account.append(mb, message(f"in {mb}"))
        await account.snapshot(mb)
    cache = account._snapshots
    assert len(cache) == MAX_MAILBOXES
    assert cache.get(ids[0]) is None and cache.get(ids[-1]) is not None
    reads = cache.full_reads
    await account.snapshot(ids[-1])  # kept: replayed, not read afresh
    assert cache.full_reads == reads
