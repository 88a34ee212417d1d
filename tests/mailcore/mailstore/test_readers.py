"""Journal readers (issue 11): named positions, pruning never drops a record a reader in
good standing has not confirmed, and a reader beyond the size or age ceiling is told to
resync (and counted)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from mailcore.mailstore import Account, ChangeLogTruncated, MailStore, core, readers
from mailcore.mailstore.errors import ResyncRequired, UnknownReader
from tests.mailcore.mailstore.conftest import message


async def _appends(acct: Account, n: int) -> None:
    inbox = (await acct.mailbox("INBOX")).id
    for i in range(n):
        await acct.append(inbox, message(f"m{i}"))


def _resyncs(name: str) -> float:
    value = REGISTRY.get_sample_value("postern_journal_reader_resync_total", {"reader": name})
    return value or 0.0


async def test_register_read_confirm(account: Account) -> None:
    rep = account.replication
    pos = await rep.register_reader("mirror:store-b", position=0)
    assert (pos.name, pos.position, pos.resync) == ("mirror:store-b", 0, False)
    assert pos.behind == account.change_seq
    first = await rep.read_for("mirror:store-b", limit=3)
    assert [r.seq for r in first] == [1, 2, 3]
    await rep.confirm("mirror:store-b", 3)
    assert [r.seq for r in await rep.read_for("mirror:store-b", limit=1)] == [4]
    await rep.confirm("mirror:store-b", 2)  # positions never go back
    (only,) = await rep.readers()
    assert only.position == 3
    # registering again keeps the position; reset moves it
    assert (await rep.register_reader("mirror:store-b")).position == 3
    moved = await rep.register_reader("mirror:store-b", reset=True)
    assert moved.position == account.change_seq and moved.behind == 0
    with pytest.raises(UnknownReader):
        await rep.confirm("nobody", 1)
    with pytest.raises(ValueError, match="does not exist yet"):
        await rep.confirm("mirror:store-b", account.change_seq + 1)
    await rep.unregister_reader("mirror:store-b")
    assert await rep.readers() == []


@pytest.mark.parametrize("seed", range(5))
async def test_pruning_never_drops_what_a_reader_has_not_confirmed(
    account: Account, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    monkeypatch.setattr(core, "CHANGES_KEPT", 3)
    monkeypatch.setattr(core, "PRUNE_EVERY", 1)  # prune after every commit
    rnd = random.Random(seed)
    rep = account.replication
    names = ["mirror:a", "mirror:b", "audit"]
    for name in names:
        await rep.register_reader(name, position=0)
    applied = dict.fromkeys(names, 0)
    for _ in range(60):
        await _appends(account, rnd.randint(0, 2))
        name = rnd.choice(names)
        batch = await rep.read_for(name, limit=rnd.randint(1, 4))
        # the reader gets exactly the records after its position, none missing
        assert [r.seq for r in batch] == list(
            range(applied[name] + 1, applied[name] + 1 + len(batch))
        )
        if batch and rnd.random() < 0.7:
            applied[name] = batch[-1].seq
            await rep.confirm(name, applied[name])
        first = await rep.first_kept()
        assert first is not None and first <= min(applied.values()) + 1
    # the laggard confirms everything: the journal shrinks to the newest 3
    for name in names:
        await rep.confirm(name, account.change_seq)
    await _appends(account, 1)
    assert await rep.first_kept() == account.change_seq - 2


async def test_reader_beyond_the_size_ceiling_must_resync(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core, "CHANGES_KEPT", 2)
    monkeypatch.setattr(readers, "MAX_BEHIND", 5)
    rep = account.replication
    await rep.register_reader("slow", position=account.change_seq)
    await rep.register_reader("keeping-up", position=account.change_seq)
    before = _resyncs("slow")
    await _appends(account, 6)
    await rep.confirm("keeping-up", account.change_seq)
    await rep.prune()
    assert _resyncs("slow") == before + 1
    up, slow = await rep.readers()  # by name
    assert (slow.name, slow.resync, up.resync) == ("slow", True, False)
    with pytest.raises(ResyncRequired):
        await rep.read_for("slow")
    with pytest.raises(ResyncRequired):
        await rep.confirm("slow", account.change_seq)
    # no longer held back by the slow reader: only the newest 2 are kept
    assert await rep.first_kept() == account.change_seq - 1
    with pytest.raises(ChangeLogTruncated):
        await rep.read(slow.position)
    # after a full copy it starts again from the head
    again = await rep.register_reader("slow", reset=True)
    assert (again.resync, again.behind) == (False, 0)
    await rep.prune()
    assert _resyncs("slow") == before + 1


async def test_reader_beyond_the_age_ceiling_must_resync(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "MAX_AGE", 0.0)  # any wait with records pending is too long
    rep = account.replication
    await rep.register_reader("idle-but-current")
    await rep.register_reader("stale", position=0)
    await rep.prune()
    current, stale = await rep.readers()
    assert (current.name, current.resync) == ("idle-but-current", False)  # nothing pending
    assert (stale.name, stale.resync) == ("stale", True)


async def test_store_wide_ceiling_setting(tmp_path: Path) -> None:
    # POSTERN_JOURNAL_READER_MAX_BEHIND reaches the engine as MailStore.open(reader_max_behind)
    store = await MailStore.open(tmp_path / "s", fsync=False, reader_max_behind=3)
    try:
        acct = await store.account("limits")
        await acct.replication.register_reader("r")
        await _appends(acct, 3)
        await acct.replication.prune()
        assert not (await acct.replication.readers())[0].resync  # 3 behind: at the ceiling
        await _appends(acct, 1)
        await acct.replication.prune()
        assert (await acct.replication.readers())[0].resync
    finally:
        await store.close()
