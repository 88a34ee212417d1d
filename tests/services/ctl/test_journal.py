"""``mailctl journal tail`` and ``mailctl journal readers`` on a real store's data
directory (issue 11), by account id and by address (the directory on a real
nats-server)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from mailcore.bus.connect import Bus
from mailcore.mailstore import FlagOp, MailStore, store_root
from mailcore.mailstore import readers as journal_readers
from services.cli import main
from tests.support.daemons import NatsServer

MSG = b"From: a@example.org\r\nSubject: hi there\r\n\r\nbody\r\n"


def _run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.output


async def _fill(data: Path, account_id: str) -> int:
    store = await MailStore.open(store_root(data), fsync=False, exclusive=False)
    try:
        acct = await store.account(account_id)
        inbox = (await acct.mailbox("INBOX")).id
        await acct.append(inbox, MSG, flags=["$Work"], internal_date=1700000000.0)
        await acct.store_flags(inbox, [1], FlagOp.ADD, ["\\Seen"])
        await acct.rename_mailbox("Sent", "Sent Items")
        await acct.replication.register_reader("mirror:store-b", position=3)
        await acct.replication.register_reader("audit")
        return acct.change_seq
    finally:
        await store.close()


async def test_tail_by_account_id(tmp_path: Path) -> None:
    head = await _fill(tmp_path, "acct-1")
    code, out = _run("journal", "tail", "acct-1", "-n", "5", "--data", str(tmp_path))
    assert code == 0, out
    lines = out.splitlines()
    assert [int(ln.split()[0]) for ln in lines] == list(range(head - 4, head + 1))
    assert [ln.split()[2] for ln in lines[3:]] == ["unsubscribe", "subscribe"]
    assert lines[0].split()[2] == "append" and "flags=($Work)" in lines[0]
    assert "sha256=" in lines[0] and "internal_date=1700000000.0" in lines[0]
    assert lines[1].split()[2] == "flags" and "flags=($Work \\Seen)" in lines[1]
    assert lines[2].split()[2] == "mailbox-rename"
    assert 'old_name=Sent new_name="Sent Items"' in lines[2]
    code, out = _run(
        "journal", "tail", "acct-1", "--after", "0", "-n", "2", "--json", "--data", str(tmp_path)
    )
    first, second = (json.loads(ln) for ln in out.splitlines())
    assert (first["seq"], first["kind"], first["name"]) == (1, "mailbox-create", "INBOX")
    assert (second["seq"], second["kind"], second["name"]) == (2, "subscribe", "INBOX")


async def test_tail_of_missing_account_is_one_line(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["journal", "tail", "nobody", "--data", str(tmp_path)])
    assert r.exit_code == 1
    assert r.output.strip().startswith("mailctl: no mail for account nobody")


async def test_index_not_upgraded_yet_is_one_line(tmp_path: Path) -> None:
    path = store_root(tmp_path) / "accounts" / "old"
    path.mkdir(parents=True)
    sqlite3.connect(path / "index.sqlite").executescript(
        "CREATE TABLE state (id INTEGER PRIMARY KEY, change_seq INTEGER);"
        "INSERT INTO state VALUES (1, 5);"
    )
    r = CliRunner().invoke(main, ["journal", "tail", "old", "--data", str(tmp_path)])
    assert r.exit_code == 1
    assert r.output.startswith("mailctl: cannot read the journal of old: no such table")
    r = CliRunner().invoke(main, ["journal", "readers", "--data", str(tmp_path)])
    assert r.exit_code == 1 and "cannot read the journal readers of old" in r.output


async def test_readers_lists_positions_and_resync(tmp_path: Path) -> None:
    head = await _fill(tmp_path, "acct-1")
    await _fill(tmp_path, "acct-2")
    code, out = _run("journal", "readers", "--data", str(tmp_path))
    assert code == 0, out
    lines = out.splitlines()
    assert [ln.split()[:2] for ln in lines] == [
        ["acct-1", "audit"],
        ["acct-1", "mirror:store-b"],
        ["acct-2", "audit"],
        ["acct-2", "mirror:store-b"],
    ]
    assert f"position=3 behind={head - 3}" in lines[1] and lines[1].endswith(" ok")
    assert "behind=0" in lines[0]
    # beyond the ceiling: the next prune marks the reader, readers says RESYNC
    store = await MailStore.open(store_root(tmp_path), fsync=False, exclusive=False)
    old = journal_readers.MAX_BEHIND
    journal_readers.MAX_BEHIND = 1
    try:
        await (await store.account("acct-1")).replication.prune()
    finally:
        journal_readers.MAX_BEHIND = old
        await store.close()
    code, out = _run("journal", "readers", "acct-1", "--data", str(tmp_path))
    one, two = out.splitlines()
    assert one.endswith(" ok") and two.endswith(" RESYNC")


def test_tail_by_address(bus: Bus, nats_server: NatsServer, tmp_path: Path) -> None:
    url = nats_server.url
    for args, stdin in (
        (["domain", "add", "journal.test"], None),
        (["user", "add", "j@journal.test", "--password-stdin"], "password-journal\n"),
    ):
        r = CliRunner().invoke(main, [*args, "--nats", url], input=stdin)
        assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["path", "j@journal.test", "--data", str(tmp_path), "--nats", url])
    account_id = Path(r.output.strip()).name
    head = asyncio.run(_fill(tmp_path, account_id))
    args = ["journal", "tail", "J@journal.test", "-n", "1", "--data", str(tmp_path)]
    r = CliRunner().invoke(main, [*args, "--nats", url])
    assert r.exit_code == 0, r.output
    assert r.output.split()[0] == str(head)
    r = CliRunner().invoke(main, ["journal", "tail", "x@journal.test", "--nats", url])
    assert r.exit_code == 1 and "no user" in r.output
