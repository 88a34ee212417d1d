"""A read-only follower (``POSTERN_MIRROR_FOLLOWER=true``) through the real store process:
IMAP and POP3 clients read what it holds, and every change they try is refused with a
reply that says why (RFC 3501 §6.3.1 ``[READ-ONLY]`` on SELECT, RFC 5530 ``[CANNOT]``,
RFC 3206 ``[SYS/PERM]``) — never accepted, so the follower never drifts from the store it
follows, and never a ``[SERVERBUG]``."""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import poplib
from pathlib import Path

import pytest

from mailcore.bus.connect import Bus
from mailcore.directory import Directory
from mailcore.mailstore import MailStore, store_root
from mailcore.tls import client_context_trusting
from services.ctl.daemons import free_port, wait_for_port
from tests.services.store.imap.conftest import ALICE, PASSWORD, message
from tests.services.store.imap.test_process import StoreProcess, store_env
from tests.support.daemons import NatsServer

HOST = "127.0.0.1"


@pytest.fixture
def follower(nats_server: NatsServer, tmp_path: Path) -> StoreProcess:
    env = store_env(nats_server.url, tmp_path) | {
        "POSTERN_MIRROR_FOLLOWER": "true",
        "POSTERN_POP3S_PORT": str(free_port()),
    }
    return StoreProcess(env, tmp_path / "store.log")


async def held(data: Path, account: str) -> dict[str, list[tuple[int, list[str]]]]:
    """Per mailbox name: (UID, flags) of each message, read from the stopped store."""
    store = await MailStore.open(store_root(data))
    try:
        acct = await store.account(account, replica=True)
        out = {}
        for box in await acct.list_mailboxes():
            snap = await acct.snapshot(box.id)
            out[box.name] = [(u, sorted(f)) for u, f in zip(snap.uids, snap.flags, strict=True)]
        return out
    finally:
        await store.close()


def imap_tries(port: int, tls: object) -> list[tuple[str, bytes]]:
    """Read, then try every kind of change: (command, tagged reply text)."""
    c = imaplib.IMAP4_SSL(HOST, port, ssl_context=tls, timeout=60)  # type: ignore[arg-type]
    try:
        c.login(ALICE, PASSWORD)
        with pytest.raises(imaplib.IMAP4.readonly):  # imaplib: SELECT answered [READ-ONLY]
            c.select("INBOX")
        c.is_readonly = True  # (as after c.select("INBOX", readonly=True))
        typ, data = c.uid("FETCH", "1", "(BODY[])")  # reads, and sets no \Seen here
        assert typ == "OK" and b"Subject: m1" in data[0][1]  # type: ignore[index]
        replies = []
        for args in (
            ("UID", "STORE", "1", "+FLAGS", "(\\Flagged)"),
            ("EXPUNGE",),
            ("UID", "COPY", "1", "Work"),
            ("CREATE", "Foo"),
            ("RENAME", "Work", "Other"),
            ("DELETE", "Work"),
            ("SUBSCRIBE", "Foo"),
        ):
            typ, data = c._simple_command(*args)
            replies.append((args[0] if args[0] != "UID" else args[1], typ, data[-1]))
        typ, data = c.append("INBOX", "", "", message(9))
        replies.append(("APPEND", typ, data[-1]))
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            c.logout()
    for command, typ, text in replies:
        assert typ == "NO", (command, typ, text)
    return [(command, text) for command, _, text in replies]


def pop3_tries(port: int, tls: object) -> tuple[int, bytes]:
    p = poplib.POP3_SSL(HOST, port, context=tls, timeout=60)  # type: ignore[arg-type]
    try:
        p.user(ALICE)
        p.pass_(PASSWORD)
        count, _ = p.stat()
        p.retr(1)
        with pytest.raises(poplib.error_proto) as refused:
            p.dele(1)
        p.quit()
    finally:
        p.close()
    return count, refused.value.args[0]


async def test_a_follower_refuses_every_change_from_imap_and_pop3(
    bus: Bus, follower: StoreProcess, tmp_path: Path
) -> None:
    directory = await Directory.open(bus.js)
    await directory.add_domain("example.com")
    user = await directory.add_user(ALICE, PASSWORD)
    await directory.close()
    data = Path(follower.env["POSTERN_DATA"])
    store = await MailStore.open(store_root(data))  # what the follower holds already
    acct = await store.account(user.account_id)
    inbox = await acct.mailbox("INBOX")
    for n in (1, 2):
        await acct.append(inbox.id, message(n, subject=f"m{n}"))
    await acct.create_mailbox("Work")
    await store.close()
    before = await held(data, user.account_id)
    await asyncio.to_thread(follower.start)
    pop3s = int(follower.env["POSTERN_POP3S_PORT"])
    assert await asyncio.to_thread(wait_for_port, HOST, pop3s, 60)
    tls = client_context_trusting(Path(follower.env["POSTERN_TLS_CERT"]))
    try:
        replies = await asyncio.to_thread(imap_tries, follower.imaps_port, tls)
        count, dele = await asyncio.to_thread(pop3_tries, pop3s, tls)
    finally:
        follower.stop()
    by_command = dict(replies)
    for command in ("STORE", "EXPUNGE"):  # the selected mailbox is read-only
        assert by_command[command].startswith(b"[READ-ONLY] "), by_command[command]
    for command in ("COPY", "CREATE", "RENAME", "DELETE", "SUBSCRIBE", "APPEND"):
        assert by_command[command].startswith(b"[CANNOT] "), by_command[command]
    for _, text in replies:
        assert b"read-only replica" in text and b"SERVERBUG" not in text
    assert count == 2
    assert dele.startswith(b"-ERR [SYS/PERM] ") and b"read-only replica" in dele
    assert await held(data, user.account_id) == before  # nothing changed, not even \Seen
