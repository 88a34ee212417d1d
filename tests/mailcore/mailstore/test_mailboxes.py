"""Mailboxes on real SQLite: defaults, hierarchy, rename, subscriptions, hostile names."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mailcore.mailstore import (
    Account,
    InvalidMailboxName,
    MailboxExists,
    MailboxNotAllowed,
    MailStore,
    NoSuchMailbox,
)
from tests.mailcore.mailstore.conftest import message


async def test_new_account_has_special_use_mailboxes_all_subscribed(account: Account) -> None:
    boxes = {m.name: m for m in await account.list_mailboxes()}
    assert set(boxes) == {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}
    assert boxes["INBOX"].special_use is None
    assert {boxes[n].special_use for n in ("Sent", "Drafts", "Trash", "Junk", "Archive")} == {
        "\\Sent",
        "\\Drafts",
        "\\Trash",
        "\\Junk",
        "\\Archive",
    }
    assert all(m.subscribed for m in boxes.values())
    assert len({m.uidvalidity for m in boxes.values()}) == 6
    junk = await account.mailbox_by_role("\\junk")
    assert junk is not None and junk.name == "Junk"


async def test_inbox_is_case_insensitive(account: Account) -> None:
    a = await account.mailbox("inbox")
    b = await account.mailbox("InBoX")
    assert a == b and a.name == "INBOX"
    child = await account.create_mailbox("inbox/Receipts")
    assert child.name == "INBOX/Receipts"


async def test_create_makes_parents_and_refuses_duplicates(account: Account) -> None:
    await account.create_mailbox("Work/2024/Q1")
    names = [m.name for m in await account.list_mailboxes()]
    assert {"Work", "Work/2024", "Work/2024/Q1"} <= set(names)
    with pytest.raises(MailboxExists):
        await account.create_mailbox("Work/2024")
    with pytest.raises(NoSuchMailbox):
        await account.mailbox("Nope")


async def test_delete_keeps_children_and_refuses_inbox(account: Account) -> None:
    await account.create_mailbox("Projects/Alpha")
    await account.delete_mailbox("Projects")
    names = {m.name for m in await account.list_mailboxes()}
    assert "Projects" not in names and "Projects/Alpha" in names
    with pytest.raises(MailboxNotAllowed):
        await account.delete_mailbox("inbox")
    with pytest.raises(NoSuchMailbox):
        await account.delete_mailbox("Projects")


async def test_uidvalidity_never_repeats_for_a_name(account: Account) -> None:
    first = await account.create_mailbox("Reused")
    await account.delete_mailbox("Reused")
    second = await account.create_mailbox("Reused")
    assert second.uidvalidity != first.uidvalidity
    assert second.uidvalidity > first.uidvalidity


async def test_rename_moves_children_and_subscriptions(account: Account) -> None:
    await account.create_mailbox("Old/Child/Grandchild")
    await account.set_subscribed("Old/Child", True)
    before = await account.mailbox("Old/Child")
    await account.rename_mailbox("Old", "New/Place")
    names = {m.name for m in await account.list_mailboxes()}
    assert {"New", "New/Place", "New/Place/Child", "New/Place/Child/Grandchild"} <= names
    assert not any(n.startswith("Old") for n in names)
    moved = await account.mailbox("New/Place/Child")
    assert moved.id == before.id and moved.uidvalidity == before.uidvalidity
    assert "New/Place/Child" in await account.subscriptions()
    assert "Old/Child" not in await account.subscriptions()
    with pytest.raises(MailboxExists):
        await account.rename_mailbox("New", "Sent")
    with pytest.raises(MailboxNotAllowed):
        await account.rename_mailbox("New", "New/Place/Child/Deeper")


async def test_rename_inbox_moves_messages_and_leaves_inbox_empty(account: Account) -> None:
    inbox = await account.mailbox("INBOX")
    for i in range(3):
        await account.append(inbox.id, message(f"m{i}"))
    await account.rename_mailbox("INBOX", "Old Mail")
    old = await account.mailbox("Old Mail")
    assert (await account.status(old.id)).messages == 3
    assert (await account.status(inbox.id)).messages == 0
    assert (await account.mailbox("INBOX")).id == inbox.id


async def test_subscriptions_may_name_missing_mailboxes(account: Account) -> None:
    await account.set_subscribed("Not/There", True)
    assert "Not/There" in await account.subscriptions()
    await account.set_subscribed("Sent", False)
    assert "Sent" not in await account.subscriptions()
    assert not (await account.mailbox("Sent")).subscribed


@pytest.mark.parametrize(
    "name",
    [
        "../../etc",
        "INBOX/../x",
        "..",
        "a/./b",
        "/etc/passwd".lstrip("/"),
        "C:\\Windows",
        "ünïcødé/名前",
    ],
)
async def test_hostile_names_are_rows_not_paths(
    store: MailStore, account: Account, tmp_path: Path, name: str
) -> None:
    before = _tree(tmp_path)
    box = await account.create_mailbox(name)
    uid = (await account.append(box.id, message("hostile"))).uid
    assert (await account.mailbox(name)).id == box.id
    recs = await account.fetch(box.id, [uid])
    with account.open_message(recs[0]) as fh:
        assert fh.read() == message("hostile")
    created = _tree(tmp_path) - before
    account_dir = store.account_dir(account.id)
    # Only message files below the account directory appeared; nothing named after the box.
    for path in created:
        assert Path(path).is_relative_to(account_dir), path
        assert _ENGINE_PATH.fullmatch(str(Path(path).relative_to(account_dir))), path
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a\0b",
        "a\nb",
        "a\x7fb",
        "x" * 1001,
        "a//b",
        "/lead",
        "trail/",
        "wild*",
        "per%cent",
        " / ",
    ],
)
async def test_unusable_names_are_refused(account: Account, name: str) -> None:
    with pytest.raises(InvalidMailboxName):
        await account.create_mailbox(name)


async def test_long_names_within_limits_are_stored(account: Account) -> None:
    long_level = "é" * 127  # 254 bytes of UTF-8
    box = await account.create_mailbox(f"{long_level}/{long_level}")
    assert (await account.mailbox(f"{long_level}/{long_level}")).id == box.id
    with pytest.raises(InvalidMailboxName):
        await account.create_mailbox("x" * 256)


async def test_special_use_on_create(account: Account) -> None:
    box = await account.create_mailbox("Everything", special_use="\\all")
    assert box.special_use == "\\All"
    with pytest.raises(InvalidMailboxName):
        await account.create_mailbox("Bad", special_use="\\Bogus")


_ENGINE_PATH = re.compile(r"msgs|msgs/[0-9a-f]{6}|msgs/[0-9a-f]{6}/\d+|index\.sqlite(-wal|-shm)?")


def _tree(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.add(os.path.join(dirpath, n))
    return out


async def test_mailbox_ids_are_never_reused(account: Account) -> None:
    # the newest mailbox deleted: SQLite's rowid would give its id to the next one
    first = await account.create_mailbox("Newest")
    await account.delete_mailbox("Newest")
    second = await account.create_mailbox("Newest")
    third = await account.create_mailbox("Other")
    ids = {first.id, second.id, third.id}
    assert len(ids) == 3
    assert len({first.uidvalidity, second.uidvalidity, third.uidvalidity}) == 3


async def test_rename_keeps_id_and_uidvalidity(account: Account) -> None:
    box = await account.create_mailbox("A/B")
    await account.rename_mailbox("A/B", "C/D")
    moved = await account.mailbox("C/D")
    assert (moved.id, moved.uidvalidity) == (box.id, box.uidvalidity)


async def test_mailbox_reads_stay_on_the_loop_once_warm_and_see_other_writes(
    account: Account, store: MailStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LIST and the mailbox look-ups of SELECT/STATUS read on the event loop's connection
    (no reader thread) once it is warm, see what was committed just before, raise the
    same errors, and go to a reader thread while the index is locked."""
    import contextlib
    import sqlite3
    from collections.abc import Iterator
    from typing import Any

    from mailcore.mailstore.core import AccountCore

    pooled = 0
    real_read = account._read

    async def counting(fn: Any) -> Any:
        nonlocal pooled
        pooled += 1
        return await real_read(fn)

    monkeypatch.setattr(account, "_read", counting)
    account._core.release()  # cold: nothing open
    assert (await account.mailbox("INBOX")).name == "INBOX"
    assert pooled == 1  # not warm yet: a reader thread, which warms the inline connection
    assert account._core._inline is not None
    await account.create_mailbox("Projects")
    await account.set_subscribed("Projects", False)
    names = {m.name: m.subscribed for m in await account.list_mailboxes()}
    assert names["Projects"] is False  # the commit just made is seen
    box = await account.mailbox("Projects")
    assert (await account.mailbox_by_id(box.id)).name == "Projects"
    assert "Projects" not in await account.subscriptions()
    with pytest.raises(NoSuchMailbox):
        await account.mailbox("Nowhere")
    with pytest.raises(NoSuchMailbox):
        await account.mailbox_by_id(10_000)
    assert pooled == 1  # every read above stayed on the loop

    @contextlib.contextmanager
    def locked(self: AccountCore) -> Iterator[sqlite3.Connection]:
        raise sqlite3.OperationalError("database is locked")
        yield  # pragma: no cover

    monkeypatch.setattr(AccountCore, "inline_reader", locked)
    assert (await account.mailbox("Projects")).id == box.id
    assert "Projects" in {m.name for m in await account.list_mailboxes()}
    assert pooled == 3  # a locked index: reader threads, same answers
