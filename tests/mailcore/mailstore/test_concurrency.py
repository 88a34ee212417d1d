"""Concurrent writers never allocate a UID twice: tasks on one store, several stores in
threads, and several processes writing one account directory."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from pathlib import Path

from mailcore.mailstore import Delivery, MailStore
from tests.mailcore.mailstore.conftest import message


async def _check_dense(root: Path, account_id: str, expected: set[bytes]) -> None:
    store = await MailStore.open(root)
    try:
        acct = await store.account(account_id)
        inbox = await acct.mailbox("INBOX")
        snap = await acct.snapshot(inbox.id)
        assert snap.uids == list(range(1, len(expected) + 1))
        assert snap.uidnext == len(expected) + 1
        bodies = set()
        for rec in await acct.fetch(inbox.id, snap.uids):
            with acct.open_message(rec) as fh:
                bodies.add(fh.read())
        assert bodies == expected
        assert await acct.usage() == (sum(len(b) for b in expected), len(expected))
    finally:
        await store.close()


async def test_concurrent_tasks_get_unique_ascending_uids(tmp_path: Path) -> None:
    store = await MailStore.open(tmp_path / "s")
    acct = await store.account("busy")
    inbox = await acct.mailbox("INBOX")
    datas = [message(f"task{i}") for i in range(60)]
    appends = [acct.append(inbox.id, d) for d in datas[:40]]
    deliveries = [
        store.deliver([Delivery(f"k{i}", "busy", "inbox", d, 0.0)])
        for i, d in enumerate(datas[40:])
    ]
    results = await asyncio.gather(*appends, *deliveries)
    uids = [r.uid for r in results[:40]] + [r[0].uid for r in results[40:]]  # type: ignore[union-attr,index]
    assert sorted(uids) == list(range(1, 61))
    await store.close()
    await _check_dense(tmp_path / "s", "busy", set(datas))


def _thread_writer(root: Path, n: int, tag: str, errors: list[BaseException]) -> None:
    async def run() -> None:
        store = await MailStore.open(root, exclusive=False)
        try:
            acct = await store.account("shared")
            inbox = await acct.mailbox("INBOX")
            for i in range(n):
                await acct.append(inbox.id, message(f"{tag}-{i}"))
        finally:
            await store.close()

    try:
        asyncio.run(run())
    except BaseException as exc:
        errors.append(exc)


async def test_several_stores_in_threads_share_one_account(tmp_path: Path) -> None:
    root = tmp_path / "s"
    # Create the account first so the threads race on appends, not on creation.
    store = await MailStore.open(root, exclusive=False)
    await store.account("shared")
    await store.close()
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_thread_writer, args=(root, 25, f"t{k}", errors)) for k in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    expected = {message(f"t{k}-{i}") for k in range(4) for i in range(25)}
    await _check_dense(root, "shared", expected)


def _process_writer(root: str, n: int, tag: str) -> None:
    async def run() -> None:
        store = await MailStore.open(Path(root), exclusive=False)
        try:
            acct = await store.account("multi")
            inbox = await acct.mailbox("INBOX")
            for i in range(n):
                if i % 2:
                    await acct.append(inbox.id, message(f"{tag}-{i}"))
                else:
                    (r,) = await store.deliver(
                        [Delivery(f"{tag}-{i}", "multi", "inbox", message(f"{tag}-{i}"), 0.0)]
                    )
                    assert r.outcome == "delivered", r
        finally:
            await store.close()

    asyncio.run(run())


async def test_several_processes_share_one_account(tmp_path: Path) -> None:
    root = tmp_path / "s"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_writer, args=(str(root), 30, f"p{k}")) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        await asyncio.to_thread(p.join, 180)
        assert p.exitcode == 0
    expected = {message(f"p{k}-{i}") for k in range(3) for i in range(30)}
    await _check_dense(root, "multi", expected)


async def test_second_exclusive_store_is_refused(tmp_path: Path) -> None:
    from mailcore.mailstore import StoreLocked

    store = await MailStore.open(tmp_path / "s")
    try:
        try:
            await MailStore.open(tmp_path / "s")
        except StoreLocked as exc:
            assert "in use" in str(exc)
        else:
            raise AssertionError("a second exclusive store opened the same root")
    finally:
        await store.close()
