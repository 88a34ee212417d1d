"""The journal: exactly the records each engine operation should write (one table over
every kind), dense numbering, row round trip, the same transaction as the change."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailcore.mailstore import Account, Delivery, FlagOp, MailStore, Quota, journal
from mailcore.mailstore.core import Txn
from mailcore.mailstore.records import (
    RECORD_TYPES,
    AccountRemovedRecord,
    AppendRecord,
    ExpungeRecord,
    FlagsRecord,
    MailboxCreateRecord,
    MailboxDeleteRecord,
    MailboxMergeRecord,
    MailboxRenameRecord,
    QuotaRecord,
    Record,
    SubscribeRecord,
    UidMergeRecord,
    UidMoveRecord,
    UidNextRecord,
    UnsubscribeRecord,
)
from tests.mailcore.mailstore.conftest import message

MSG = message("journal")
SHA = hashlib.sha256(MSG).hexdigest()


@dataclass
class Ctx:
    store: MailStore
    acct: Account
    inbox: int
    box: int  # "Box", with messages 1 (\Seen) and 2 (\Deleted)


Op = Callable[[Ctx], Awaitable[Any]]


async def _deliver(c: Ctx, role: str = "inbox", quota: Quota | None = None) -> None:
    d = Delivery("key-1", c.acct.id, role, MSG, 1700000000.0, quota=quota or Quota())
    (r,) = await c.store.deliver([d])
    assert r.outcome == "delivered"


# (name, operation, expected records: (type, fields that must be equal))
CASES: list[tuple[str, Op, list[tuple[type[Record], dict[str, Any]]]]] = [
    (
        "append",
        lambda c: c.acct.append(c.box, MSG, flags=["\\Seen", "$k"], internal_date=5.0),
        [
            (
                AppendRecord,
                {
                    "uid": 3,
                    "internal_date": 5.0,
                    "size": len(MSG),
                    "sha256": SHA,
                    "flags": {"\\Seen", "$k"},
                    "delivery_key": None,
                },
            )
        ],
    ),
    (
        "delivery",
        lambda c: _deliver(c),
        [(AppendRecord, {"uid": 1, "delivery_key": "key-1", "sha256": SHA})],
    ),
    (
        "delivery to junk with a new quota",
        lambda c: _deliver(c, "junk", Quota(10**9, 500)),
        [
            (QuotaRecord, {"bytes": 10**9, "messages": 500}),
            (AppendRecord, {"mailbox_id": 5, "delivery_key": "key-1"}),  # 5: Junk
        ],
    ),
    (
        "store flags",
        lambda c: c.acct.store_flags(c.box, [1, 2], FlagOp.ADD, ["\\Flagged"]),
        [
            (FlagsRecord, {"uid": 1, "flags": {"\\Seen", "\\Flagged"}}),
            (FlagsRecord, {"uid": 2, "flags": {"\\Deleted", "\\Flagged"}}),
        ],
    ),
    (
        "store that changes nothing",
        lambda c: c.acct.store_flags(c.box, [1], FlagOp.ADD, ["\\Seen"]),
        [],
    ),
    ("expunge", lambda c: c.acct.expunge(c.box), [(ExpungeRecord, {"uids": (2,)})]),
    (
        "forced expunge (POP3)",
        lambda c: c.acct.expunge(c.box, [1, 2], force=True),
        [(ExpungeRecord, {"uids": (1, 2)})],
    ),
    (
        "copy",
        lambda c: c.acct.copy(c.box, [1, 2], c.inbox),
        [
            (AppendRecord, {"uid": 1, "flags": {"\\Seen"}, "delivery_key": None}),
            (AppendRecord, {"uid": 2, "flags": {"\\Deleted"}}),
        ],
    ),
    (
        "move",
        lambda c: c.acct.move(c.box, [2], c.inbox),
        [(AppendRecord, {"uid": 1}), (ExpungeRecord, {"uids": (2,)})],
    ),
    (
        "create with a parent",
        lambda c: c.acct.create_mailbox("P/Q"),
        [
            (MailboxCreateRecord, {"name": "P", "uidnext": 1}),
            (MailboxCreateRecord, {"name": "P/Q"}),
        ],
    ),
    ("delete", lambda c: c.acct.delete_mailbox("Box"), [(MailboxDeleteRecord, {"name": "Box"})]),
    (
        "rename a subscribed mailbox",
        lambda c: c.acct.rename_mailbox("Box", "Renamed"),
        [
            (MailboxRenameRecord, {"old_name": "Box", "new_name": "Renamed"}),
            (UnsubscribeRecord, {"name": "Box"}),
            (SubscribeRecord, {"name": "Renamed"}),
        ],
    ),
    (
        "rename INBOX",
        lambda c: c.acct.rename_mailbox("INBOX", "Old"),
        [(MailboxCreateRecord, {"name": "Old"})],
    ),
    (
        "subscribe a missing name",
        lambda c: c.acct.set_subscribed("Nowhere", True),
        [(SubscribeRecord, {"name": "Nowhere"})],
    ),
    (
        "unsubscribe",
        lambda c: c.acct.set_subscribed("Box", False),
        [(UnsubscribeRecord, {"name": "Box"})],
    ),
    ("subscribe again", lambda c: c.acct.set_subscribed("Box", True), []),
    (
        "raise uidnext",
        lambda c: c.acct.replication.raise_uidnext(c.box, 10),
        [(UidNextRecord, {"uidnext": 10})],
    ),
    ("claim recent", lambda c: c.acct.claim_recent(c.box), []),
    (
        "append with the same quota twice",
        lambda c: c.acct.append(c.box, MSG, quota=Quota(5 * 10**6, 0)),
        [(QuotaRecord, {"bytes": 5 * 10**6}), (AppendRecord, {"uid": 3})],
    ),
]


@pytest.mark.parametrize(("name", "op", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_each_operation_writes_exactly_its_records(
    store: MailStore,
    account: Account,
    name: str,
    op: Op,
    expected: list[tuple[type[Record], dict[str, Any]]],
) -> None:
    inbox = (await account.mailbox("INBOX")).id
    box = await account.create_mailbox("Box")
    await account.set_subscribed("Box", True)
    await account.append(box.id, MSG, flags=["\\Seen"])
    await account.append(box.id, MSG, flags=["\\Deleted"])
    ctx = Ctx(store, account, inbox, box.id)
    start = account.change_seq
    await op(ctx)
    if name == "append with the same quota twice":
        await op(ctx)  # the quota is journalled once, when it changes
        expected = [*expected, (AppendRecord, {"uid": 4})]
    got = await account.changes_since(start)
    assert [type(r) for r in got] == [cls for cls, _ in expected], got
    for rec, (_, fields) in zip(got, expected, strict=True):
        for key, value in fields.items():
            assert getattr(rec, key) == value, (rec, key)
    assert [r.seq for r in got] == list(range(start + 1, start + 1 + len(got)))
    assert account.change_seq == start + len(got)
    # the index holds the same records (nothing parsed from rows by the caller)
    assert await account.replication.read(start) == got


async def test_append_record_names_the_stored_file_and_mailbox(account: Account) -> None:
    inbox = await account.mailbox("INBOX")
    start = account.change_seq
    res = await account.append(inbox.id, b"Subject: x\n\nbare LF\n", internal_date=7.0)
    (rec,) = await account.changes_since(start)
    assert isinstance(rec, AppendRecord)
    stored = account.replication.message_bytes(rec.file_id)
    assert stored == b"Subject: x\r\n\r\nbare LF\r\n"  # what was stored: CRLF
    assert rec.sha256 == hashlib.sha256(stored).hexdigest() and rec.size == len(stored)
    assert (rec.mailbox_id, rec.uidvalidity, rec.uid) == (inbox.id, inbox.uidvalidity, res.uid)
    assert rec.modseq == res.modseq and rec.keywords == frozenset()


async def test_new_account_journal_starts_with_its_mailboxes(account: Account) -> None:
    got = await account.replication.read(0)
    assert [type(r) for r in got[:2]] == [MailboxCreateRecord, SubscribeRecord]
    names = [r.name for r in got if isinstance(r, MailboxCreateRecord)]
    assert names == ["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"]
    assert [r.seq for r in got] == list(range(1, len(got) + 1))


async def test_account_removal_is_the_last_record(store: MailStore, account: Account) -> None:
    head = account.change_seq
    rec = await store.remove_account(account.id)
    assert isinstance(rec, AccountRemovedRecord)
    assert (rec.seq, rec.account_id) == (head + 1, account.id)
    assert await store.remove_account("never-used") is None


async def test_failed_operation_writes_no_record(account: Account) -> None:
    start = account.change_seq
    with pytest.raises(Exception, match="exists"):
        await account.create_mailbox("INBOX")
    big = Quota(bytes=10)
    with pytest.raises(Exception, match="quota"):
        await account.append((await account.mailbox("INBOX")).id, MSG, quota=big)
    assert account.change_seq == start
    assert await account.replication.read(start) == []


@pytest.mark.parametrize("cls", RECORD_TYPES, ids=lambda c: c.kind)
def test_rows_round_trip(cls: type[Record]) -> None:
    samples: dict[type[Record], Record] = {
        AppendRecord: AppendRecord(
            1, 2.5, 3, 4, 5, 6, 7.5, 8, "ab" * 32, 9, frozenset({"\\Seen", "$a"}), "k"
        ),
        ExpungeRecord: ExpungeRecord(1, 2.0, 3, (4, 5), 6),
        FlagsRecord: FlagsRecord(1, 2.0, 3, 4, 5, frozenset()),
        MailboxCreateRecord: MailboxCreateRecord(1, 2.0, 3, "A/B", "\\Sent", 4, 1, 5),
        MailboxDeleteRecord: MailboxDeleteRecord(1, 2.0, 3, "ä", 4, (5, 9)),
        MailboxRenameRecord: MailboxRenameRecord(1, 2.0, 3, "a", "b", 4),
        MailboxMergeRecord: MailboxMergeRecord(1, 2.0, 3, 7, True),
        UidMoveRecord: UidMoveRecord(1, 2.0, 3, 4, 12),
        UidMergeRecord: UidMergeRecord(1, 2.0, 3, -7, True, 4, 12),
        SubscribeRecord: SubscribeRecord(1, 2.0, "x"),
        UnsubscribeRecord: UnsubscribeRecord(1, 2.0, "x"),
        UidNextRecord: UidNextRecord(1, 2.0, 3, 40, 5),
        QuotaRecord: QuotaRecord(1, 2.0, 0, 7),
        AccountRemovedRecord: AccountRemovedRecord(1, 2.0, "acct"),
    }
    rec = samples[cls]
    assert journal.decode(journal.encode(rec)) == rec


def test_a_uid_move_row_as_the_mirror_ships_it() -> None:
    """The row (and the mirror's header) of a ``uid-move``: the peer's old UID, then the
    new one; its mailbox in the row's own column."""
    rec = UidMoveRecord(7, 2.0, 3, 4, 12)
    assert journal.encode(rec) == (7, "uid-move", 3, 2.0, "[4,12]")
    assert journal.decode((7, "uid-move", 3, 2.0, "[4,12]")) == rec


def test_a_uid_merge_row_as_the_mirror_ships_it() -> None:
    """The row of a ``uid-merge``: the peer's mailbox (negated: its own, set aside off
    the id), whether it is the peer's own, the peer's UID there, the new UID here; the
    mailbox that took it in the row's own column."""
    rec = UidMergeRecord(7, 2.0, 3, -5, True, 4, 12)
    assert journal.encode(rec) == (7, "uid-merge", 3, 2.0, "[-5,true,4,12]")
    assert journal.decode((7, "uid-merge", 3, 2.0, "[-5,true,4,12]")) == rec


def test_a_row_written_before_a_field_was_added_gets_its_default() -> None:
    """mailbox-delete rows of older stores have no ``uids``."""
    rec = journal.decode((1, "mailbox-delete", 3, 2.0, '["old",4]'))
    assert rec == MailboxDeleteRecord(1, 2.0, 3, "old", 4, ())
    with pytest.raises(ValueError, match="fields"):
        journal.decode((1, "mailbox-delete", 3, 2.0, '["x",4,[],"more"]'))


async def test_journal_is_written_in_the_transaction_of_the_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await MailStore.open(tmp_path / "s", fsync=False)
    try:
        acct = await store.account("tx")
        inbox = (await acct.mailbox("INBOX")).id
        start = acct.change_seq
        real = Txn.flush

        def failing(self: Txn) -> None:
            real(self)
            raise OSError("crash before COMMIT")

        monkeypatch.setattr(Txn, "flush", failing)
        with pytest.raises(OSError):
            await acct.append(inbox, MSG)
        monkeypatch.setattr(Txn, "flush", real)
        assert await acct.replication.read(start) == []
        assert (await acct.snapshot(inbox)).uids == []
    finally:
        await store.close()


_text = st.text(max_size=40)
_flags = st.frozensets(st.sampled_from(["\\Seen", "\\Deleted", "$a", "Work", "ü"]), max_size=5)
_int = st.integers(min_value=0, max_value=2**62)
_hex = st.text("0123456789abcdef", min_size=64, max_size=64)


@given(
    st.one_of(
        st.builds(
            AppendRecord,
            _int,
            st.floats(0, 4e9),
            _int,
            _int,
            _int,
            _int,
            st.floats(-1e10, 1e10),
            _int,
            _hex,
            _int,
            _flags,
            st.none() | _text,
        ),
        st.builds(ExpungeRecord, _int, st.floats(0, 4e9), _int, st.lists(_int).map(tuple), _int),
        st.builds(MailboxRenameRecord, _int, st.floats(0, 4e9), _int, _text, _text, _int),
        st.builds(SubscribeRecord, _int, st.floats(0, 4e9), _text),
        st.builds(AccountRemovedRecord, _int, st.floats(0, 4e9), _text),
    )
)
def test_any_record_survives_its_row(rec: Record) -> None:
    assert journal.decode(journal.encode(rec)) == rec
