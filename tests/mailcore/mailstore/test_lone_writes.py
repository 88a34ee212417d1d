"""The write path with fewer hand-overs (issue 20): a write with nothing else waiting
commits in its own transaction without a savepoint, and a failure rolls it back whole
(SQL, counters, message files); the writer answers a write and wakes the account's
waiters (IDLE) with one wake-up of the event loop; several writer threads per store
never hand out a UID twice."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from mailcore.mailstore import Account, FlagOp, MailStore, NoSuchMailbox, TooManyKeywords
from tests.mailcore.mailstore.conftest import message


def _files(account: Account) -> list[Path]:
    return sorted(p for p in (Path(account.path) / "msgs").rglob("*") if p.is_file())


async def _trace(account: Account) -> list[str]:
    statements: list[str] = []

    def start() -> None:
        assert account._core.wconn is not None
        account._core.wconn.set_trace_callback(statements.append)

    await account._writer.submit(start)
    return statements


async def test_a_lone_write_takes_no_savepoint(account: Account) -> None:
    inbox = (await account.mailbox("INBOX")).id
    statements = await _trace(account)
    res = await account.append(inbox, message("one"))
    await account.store_flags(inbox, [res.uid], FlagOp.ADD, ["\\Seen"])
    assert statements and not [s for s in statements if "SAVEPOINT" in s.upper()]
    assert sum(s.upper().startswith("COMMIT") for s in statements) == 2


async def test_a_lone_write_that_fails_leaves_nothing_behind(account: Account) -> None:
    inbox = (await account.mailbox("INBOX")).id
    first = await account.append(inbox, message("first"))
    files, seq = _files(account), account.change_seq
    state = await account._writer.submit(
        lambda: account._core.wconn.execute(  # type: ignore[union-attr]
            "SELECT next_file_id, modseq, change_seq, usage_bytes, usage_messages FROM state"
        ).fetchone()
    )
    # fails after its message file was written and its files row inserted
    too_many = [f"$k{i}" for i in range(101)]
    with pytest.raises(TooManyKeywords):
        await account.append(inbox, message("refused"), flags=too_many)
    with pytest.raises(NoSuchMailbox):
        await account.store_flags(9999, [1], FlagOp.ADD, ["\\Seen"])
    assert _files(account) == files  # the refused message's file is gone
    assert account.change_seq == seq
    after = await account._writer.submit(
        lambda: account._core.wconn.execute(  # type: ignore[union-attr]
            "SELECT next_file_id, modseq, change_seq, usage_bytes, usage_messages FROM state"
        ).fetchone()
    )
    assert after == state
    nxt = await account.append(inbox, message("next"))
    assert nxt.uid == first.uid + 1  # no UID skipped, none reused
    seqs = [c.seq for c in await account.changes_since(0)]
    assert seqs == list(range(1, len(seqs) + 1))  # the journal has no hole
    assert (await account.snapshot(inbox)).uids == [first.uid, nxt.uid]


async def test_one_wake_up_of_the_loop_per_write(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    inbox = (await account.mailbox("INBOX")).id
    await account.append(inbox, message("warm"))
    loop_thread = threading.get_ident()
    from_threads: list[Any] = []
    real = loop.call_soon_threadsafe

    def counting(fn: Any, *args: Any, **kw: Any) -> Any:
        if threading.get_ident() != loop_thread:
            from_threads.append(fn)
        return real(fn, *args, **kw)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
    seq = account.change_seq
    waiter = asyncio.ensure_future(account.wait_for_change(seq))  # an IDLE session
    await asyncio.sleep(0)
    res = await account.append(inbox, message("one"))
    assert await waiter > seq  # woken
    assert len(from_threads) == 1  # the answer and the wake-up together
    from_threads.clear()
    await account.store_flags(inbox, [res.uid], FlagOp.ADD, ["\\Seen"])
    assert len(from_threads) == 1


async def test_several_writers_never_reuse_a_uid(tmp_path: Path) -> None:
    store = await MailStore.open(tmp_path / "s", writers=4)
    try:
        accts = [await store.account(f"a{i}") for i in range(8)]
        assert len({id(store._writer_for(a.id)) for a in accts}) > 1
        boxes = [(await a.mailbox("INBOX")).id for a in accts]

        async def session(a: Account, box: int, n: int) -> list[int]:
            got = []
            for i in range(12):
                res = await a.append(box, message(f"{n}-{i}"), flags=["\\Deleted"] if i % 2 else [])
                got.append(res.uid)
                if i % 4 == 3:
                    await a.expunge(box)
            return got

        runs = await asyncio.gather(
            *(session(a, box, n) for n in range(3) for a, box in zip(accts, boxes, strict=True))
        )
        for k, a in enumerate(accts):
            mine = [u for j, r in enumerate(runs) if j % len(accts) == k for u in r]
            assert sorted(mine) == list(range(1, 37))  # 36 appends: UIDs 1–36, each once
            snap = await a.snapshot(boxes[k])
            assert snap.uids == sorted(set(snap.uids))
    finally:
        await store.close()
