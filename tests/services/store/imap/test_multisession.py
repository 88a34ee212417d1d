"""Many sessions, one mailbox (RFC 3501 §5.2, §7.4.1): ten sessions FETCH, STORE, EXPUNGE,
APPEND and IDLE while mail is delivered; each tracks its view from the untagged responses
alone, and at the end every view agrees with the store's final state."""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from typing import Any

from mailcore.mailstore import Delivery
from tests.services.store.imap.conftest import Factory, ImapHarness, Line, message

_FETCH = re.compile(rb"^\* (\d+) FETCH \((.*)\)\r\n$")
_UID = re.compile(rb"UID (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
NO_EXPUNGE = {b"FETCH", b"STORE", b"SEARCH"}


class View:
    """A client's model of the selected mailbox, kept only from server responses."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.uids: list[int | None] = []
        self.flags: dict[int, frozenset[bytes]] = {}
        self.recent = 0

    def apply(self, line: bytes, command: bytes) -> None:
        if m := re.match(rb"^\* (\d+) EXISTS", line):
            n = int(m.group(1))
            assert n >= len(self.uids), (self.name, line, len(self.uids))
            self.uids.extend([None] * (n - len(self.uids)))
        elif m := re.match(rb"^\* (\d+) EXPUNGE", line):
            assert command not in NO_EXPUNGE, (self.name, command, line)
            n = int(m.group(1))
            assert 1 <= n <= len(self.uids), (self.name, line)
            del self.uids[n - 1]
        elif m := re.match(rb"^\* (\d+) RECENT", line):
            self.recent = int(m.group(1))
        elif m := _FETCH.match(line):
            seq = int(m.group(1))
            assert 1 <= seq <= len(self.uids), (self.name, line, len(self.uids))
            if u := _UID.search(m.group(2)):
                uid = int(u.group(1))
                known = self.uids[seq - 1]
                assert known in (None, uid), (self.name, seq, known, uid)
                self.uids[seq - 1] = uid
                if f := _FLAGS.search(m.group(2)):
                    self.flags[uid] = frozenset(f.group(1).split()) - {b"\\Recent"}


class Client:
    def __init__(self, line: Line, name: str) -> None:
        self.c = line
        self.view = View(name)
        self.n = 0

    async def cmd(self, text: bytes) -> list[bytes]:
        self.n += 1
        tag = b"t%d" % self.n
        command = text.split(b" ", 1)[0].upper()
        reply = await self.c.cmd(tag + b" " + text, timeout=120)
        for ln in reply[:-1]:
            self.view.apply(ln, command)
        assert reply[-1].startswith(tag + b" OK"), (self.view.name, text, reply[-1])
        return reply

    async def idle(self, seconds: float) -> None:
        self.n += 1
        tag = b"t%d" % self.n
        await self.c.send(tag + b" IDLE\r\n")
        assert (await self.c.line()).startswith(b"+ ")
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                ln = await asyncio.wait_for(self.c.reader.readline(), left)
            except TimeoutError:
                break
            self.view.apply(ln, b"IDLE")
        await self.c.send(b"DONE\r\n")
        for ln in await self.c.until_tagged(tag):
            if not ln.startswith(tag):
                self.view.apply(ln, b"IDLE")


async def worker(client: Client, rng: random.Random, rounds: int) -> None:
    for i in range(rounds):
        n = len(client.view.uids)
        op = rng.choice(["fetch", "store", "expunge", "append", "idle", "search", "uidfetch"])
        if op == "fetch" and n:
            a = rng.randint(1, n)
            await client.cmd(b"FETCH %d:%d (UID FLAGS)" % (a, min(n, a + 5)))
        elif op == "uidfetch":
            await client.cmd(b"UID FETCH 1:* (FLAGS)")
        elif op == "store" and n:
            seq = rng.randint(1, n)
            flag = rng.choice([b"\\Seen", b"\\Flagged", b"$Work"])
            sign = rng.choice([b"+", b"-"])
            await client.cmd(b"STORE %d %sFLAGS (%s)" % (seq, sign, flag))
        elif op == "expunge" and n:
            seq = rng.randint(1, n)
            await client.cmd(b"STORE %d +FLAGS.SILENT (\\Deleted)" % seq)
            await client.cmd(b"EXPUNGE")
        elif op == "append":
            body = message(1000 + i, subject=f"{client.view.name} {i}")
            await client.c.send(b"a%d APPEND INBOX {%d+}\r\n" % (i, len(body)) + body + b"\r\n")
            reply = await client.c.until_tagged(b"a%d" % i)
            assert reply[-1].startswith(b"a%d OK [APPENDUID" % i), reply
            for ln in reply[:-1]:
                client.view.apply(ln, b"APPEND")
        elif op == "idle":
            await client.idle(rng.uniform(0.05, 0.3))
        elif op == "search":
            reply = await client.cmd(b"SEARCH ALL")
            found = next(ln for ln in reply if ln.startswith(b"* SEARCH")).split()[2:]
            assert all(1 <= int(x) <= len(client.view.uids) for x in found)
        else:
            await client.cmd(b"NOOP")


async def test_ten_sessions_agree_with_final_state(imap: ImapHarness) -> None:
    await imap.deliver(*[message(i) for i in range(1, 21)])
    clients = []
    for k in range(10):
        line = await imap.raw_login()
        cl = Client(line, f"s{k}")
        await cl.cmd(b"SELECT INBOX")
        clients.append(cl)
    acct, inbox = await imap.inbox()

    async def deliveries() -> None:
        for j in range(30):
            user = imap.users["alice@example.com"]
            await imap.store.deliver(
                [
                    Delivery(
                        key=f"d{j}",
                        account_id=user.account_id,
                        mailbox_role="inbox",
                        data=message(500 + j),
                        internal_date=time.time(),
                    )
                ]
            )
            await asyncio.sleep(0.02)

    await asyncio.gather(
        deliveries(), *[worker(c, random.Random(k), 25) for k, c in enumerate(clients)]
    )
    snap = await acct.snapshot(inbox)
    final = dict(zip(snap.uids, snap.flags, strict=True))
    for cl in clients:
        await cl.cmd(b"NOOP")
        before = list(cl.view.uids)
        await cl.cmd(b"FETCH 1:* (UID FLAGS)")
        assert cl.view.uids == snap.uids, cl.view.name
        # what the view knew before the last FETCH was in the right places
        assert all(b in (None, a) for a, b in zip(snap.uids, before, strict=True))
        for uid, flags in final.items():
            assert cl.view.flags[uid] == frozenset(f.encode() for f in flags), (cl.view.name, uid)
    # \Recent went to exactly one session per message (RFC 3501 §2.3.2): every session
    # saw every message arrive (all selected INBOX read-write before any mail came, the
    # first 20 were claimed by the first SELECT), so each message still in the mailbox
    # is recent in exactly one session
    recent: dict[int, list[str]] = {uid: [] for uid in snap.uids}
    for cl in clients:
        reply = await cl.cmd(b"UID SEARCH RECENT")
        found = next(ln for ln in reply if ln.startswith(b"* SEARCH"))
        for uid in map(int, found.split()[2:]):
            recent[uid].append(cl.view.name)
    assert all(len(names) == 1 for names in recent.values()), {
        u: names for u, names in recent.items() if len(names) != 1
    }
    await asyncio.gather(*[c.c.close() for c in clients])


async def test_recent_goes_to_exactly_one_session(imap: ImapHarness) -> None:
    a = Client(await imap.raw_login(), "a")
    b = Client(await imap.raw_login(), "b")
    await a.cmd(b"SELECT INBOX")
    await b.cmd(b"SELECT INBOX")
    await imap.deliver(message(1), message(2))
    await a.cmd(b"NOOP")
    await b.cmd(b"NOOP")
    assert a.view.recent + b.view.recent == 2
    ra = await a.cmd(b"SEARCH RECENT")
    rb = await b.cmd(b"SEARCH RECENT")
    got = [ln.split()[2:] for ln in (ra[-2], rb[-2])]
    assert sorted(x for g in got for x in g) == [b"1", b"2"]
    await a.c.close()
    await b.c.close()


async def test_no_expunge_during_fetch_store_search(imap: ImapHarness) -> None:
    await imap.deliver(message(1), message(2), message(3))
    a = Client(await imap.raw_login(), "a")
    b = Client(await imap.raw_login(), "b")
    await a.cmd(b"SELECT INBOX")
    await b.cmd(b"SELECT INBOX")
    await b.cmd(b"STORE 1 +FLAGS (\\Deleted)")
    await b.cmd(b"EXPUNGE")
    # FETCH, STORE and SEARCH must not report the expunge; flags may be reported
    for cmd in (b"FETCH 1:3 (FLAGS)", b"STORE 3 +FLAGS (\\Seen)", b"SEARCH ALL"):
        reply = await a.cmd(cmd)
        assert not any(b"EXPUNGE" in ln for ln in reply), reply
    assert len(a.view.uids) == 3
    reply = await a.cmd(b"NOOP")
    assert reply[0] == b"* 1 EXPUNGE\r\n"
    assert len(a.view.uids) == 2
    # UID commands may carry it at once
    await b.cmd(b"STORE 1 +FLAGS (\\Deleted)")
    await b.cmd(b"EXPUNGE")
    reply = await a.cmd(b"UID FETCH 1:* (FLAGS)")
    assert b"* 1 EXPUNGE\r\n" in reply
    await a.c.close()
    await b.c.close()


async def test_flag_changes_reach_other_sessions(imap: ImapHarness) -> None:
    await imap.deliver(message(1))
    a = Client(await imap.raw_login(), "a")
    b = Client(await imap.raw_login(), "b")
    await a.cmd(b"SELECT INBOX")
    await b.cmd(b"SELECT INBOX")
    await a.cmd(b"STORE 1 +FLAGS (\\Flagged)")
    reply = await b.cmd(b"NOOP")
    assert reply[0] == b"* 1 FETCH (UID 1 FLAGS (\\Flagged))\r\n", reply
    await a.c.close()
    await b.c.close()


async def test_idle_ignores_other_mailboxes_without_spinning(imap: ImapHarness) -> None:
    acct, _ = await imap.inbox()
    calls = 0
    real = acct.changes_since

    async def counting(seq: int, mailbox_id: int | None = None) -> list[Any]:
        nonlocal calls
        calls += 1
        return await real(seq, mailbox_id)

    acct.changes_since = counting  # type: ignore[method-assign]
    c = await imap.raw_login()
    await c.cmd(b"s SELECT INBOX")
    await c.send(b"i IDLE\r\n")
    assert (await c.line()).startswith(b"+ ")
    sent = (await acct.mailbox("Sent")).id
    await acct.append(sent, message(1))  # a change elsewhere in the account
    await asyncio.sleep(0.5)
    before = calls
    await asyncio.sleep(0.5)
    assert calls - before <= 1, calls  # no busy loop on the foreign change
    await imap.deliver(message(2))  # a change here is still pushed
    assert (await c.line()) == b"* 1 EXISTS\r\n"
    await c.send(b"DONE\r\n")
    assert (await c.until_tagged(b"i"))[-1].startswith(b"i OK")
    await c.close()


async def test_append_into_the_selected_mailbox_is_recent_there_in_one_write(
    imap: ImapHarness,
) -> None:
    """RFC 3501 §6.3.11 (new message actions in the selected mailbox), §2.3.2, §7.3.2: the
    appending session announces the message with EXISTS and RECENT and shows \\Recent;
    another session with the mailbox selected sees it exist, not recent. The claim rides
    in the APPEND's transaction (one commit), and a SELECT with nothing recent writes
    nothing (issue 20: each write is a hand-over to the writer thread)."""
    await imap.deliver(message(1))
    acct = await imap.account()
    a = Client(await imap.raw_login(), "a")
    b = Client(await imap.raw_login(), "b")
    await a.cmd(b"SELECT INBOX")  # claims message 1
    commits = acct._core._commits
    await b.cmd(b"SELECT INBOX")
    assert acct._core._commits == commits  # nothing left to claim: no write
    assert (a.view.recent, b.view.recent) == (1, 0)
    mail = message(2)
    reply = await a.cmd(b"APPEND INBOX (\\Seen) {%d+}\r\n%s" % (len(mail), mail))
    assert acct._core._commits == commits + 1  # the append and its claim together
    assert b"* 2 EXISTS\r\n" in reply and b"* 2 RECENT\r\n" in reply
    assert a.view.recent <= len(a.view.uids)
    got = await a.cmd(b"FETCH 2 FLAGS")
    assert any(b"\\Recent" in ln for ln in got if ln.startswith(b"* 2 FETCH"))
    await b.cmd(b"NOOP")
    assert len(b.view.uids) == 2 and b.view.recent == 0
    rb = await b.cmd(b"SEARCH RECENT")
    assert rb[-2] == b"* SEARCH\r\n"
    await a.c.close()
    await b.c.close()


async def test_a_store_committed_on_the_event_loop_reaches_an_idle_session(
    make_imap: Factory,
) -> None:
    """POSTERN_FSYNC_FLAGS=false (issue 20): a STORE commits on the event loop's thread,
    without the writer thread, and another session in IDLE is told at once, the new
    keyword announced with FLAGS first (RFC 3501 §7.2.6)."""
    imap = await make_imap(fsync_flags=False)
    await imap.deliver(message(1))
    acct = await imap.account()
    a = Client(await imap.raw_login(), "a")
    b = Client(await imap.raw_login(), "b")
    await a.cmd(b"SELECT INBOX")
    await b.cmd(b"SELECT INBOX")
    commits: list[int] = []

    def note(sql: str) -> None:
        if sql.upper().startswith("COMMIT"):
            commits.append(threading.get_ident())

    def trace() -> None:
        assert acct._core.wconn is not None
        acct._core.wconn.set_trace_callback(note)

    await acct._writer.submit(trace)
    await b.c.send(b"i IDLE\r\n")
    assert (await b.c.line()).startswith(b"+ ")
    await a.cmd(b"STORE 1 +FLAGS ($Work)")
    assert commits == [threading.get_ident()]  # the server's loop is the test's
    pushed = []
    while not pushed or b"FETCH" not in pushed[-1]:
        pushed.append(await b.c.line())
    assert pushed[0].startswith(b"* FLAGS (") and b"$Work" in pushed[0], pushed
    assert pushed[-1] == b"* 1 FETCH (UID 1 FLAGS ($Work))\r\n", pushed
    await b.c.send(b"DONE\r\n")
    assert (await b.c.until_tagged(b"i"))[-1].startswith(b"i OK")
    await a.c.close()
    await b.c.close()
