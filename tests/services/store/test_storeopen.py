"""The store service's engine settings (issue 20): POSTERN_STORE_WRITERS writer threads,
and writes to accounts on different writers commit side by side — one account's slow
commit (a held writer thread stands in for a long fsync) does not hold up another's."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from mailcore.config import StoreSettings
from mailcore.mailstore import FlagOp
from services.store.storeopen import open_store
from tests.mailcore.mailstore.conftest import message


def test_four_writers_by_default() -> None:
    assert StoreSettings(data=Path("x")).store_writers == 4


async def test_writes_to_accounts_on_other_writers_do_not_queue_behind_one(
    tmp_path: Path,
) -> None:
    store = await open_store(StoreSettings(data=tmp_path, store_writers=3, fsync=False))
    try:
        assert len(store._writers) == 3
        # accounts spread over the writers (by their id)
        ids = [f"acct-{i}" for i in range(40)]
        by_writer: dict[int, str] = {}
        for a in ids:
            by_writer.setdefault(id(store._writer_for(a)), a)
        assert len(by_writer) == 3
        slow, *others = by_writer.values()
        accts = {a: await store.account(a) for a in by_writer.values()}
        inboxes = {a: (await acct.mailbox("INBOX")).id for a, acct in accts.items()}
        gate, busy = threading.Event(), threading.Event()

        def hold() -> None:  # the slow account's writer, stuck in a long commit
            busy.set()
            gate.wait(120)

        accts[slow]._writer.post(hold)
        await asyncio.to_thread(busy.wait, 60)
        queued = asyncio.ensure_future(accts[slow].append(inboxes[slow], message("late")))
        try:
            # the others write (APPEND, STORE, EXPUNGE) while that writer is held; the
            # limit only keeps a regression from hanging the suite
            for a in others:
                acct, box = accts[a], inboxes[a]
                res = await asyncio.wait_for(acct.append(box, message(a)), 60)
                await asyncio.wait_for(
                    acct.store_flags(box, [res.uid], FlagOp.ADD, ["\\Deleted"]), 60
                )
                assert await asyncio.wait_for(acct.expunge(box), 60) == [res.uid]
            assert not queued.done()  # still behind its own account's writer
        finally:
            gate.set()
        assert (await queued).uid == 1
    finally:
        await store.close()
