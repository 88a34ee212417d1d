"""Fifty sessions on one mailbox (RFC 3501 §5.2, §7.2.6, §7.3.2, §7.4.1; RFC 6851 MOVE).

Every session selects INBOX and, until the workload's time is up, does random APPEND (with
keywords, some new to the mailbox), STORE, EXPUNGE, COPY, MOVE and FETCH. Each keeps its
view of the mailbox only from what the server sends and checks every response as a strict
client does:

* ``EXISTS`` never shrinks the view; ``EXPUNGE`` names a sequence number the view has and
  never comes during FETCH, STORE or SEARCH;
* ``RECENT`` never exceeds ``EXISTS``;
* a UID is never reused: a UID once expunged never shows up again, and the UIDs of the view
  stay strictly ascending;
* ``FETCH FLAGS`` never shows a keyword the session was not told about in ``* FLAGS``;
* no command fails (every tagged reply is OK) and nothing ends a session.

At the end, after one NOOP, every flag a session knows equals the store's final state
(those changes reached it unasked), and a full FETCH gives exactly the final UIDs.

The run lasts ``IMAP_STRESS_SECONDS`` (default 20 s, to keep the suite fast); the bench
README shows the longer run.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time

from tests.services.store.imap.conftest import ImapHarness, Line, message

SESSIONS = 50
SECONDS = float(os.environ.get("IMAP_STRESS_SECONDS", "20"))
NO_EXPUNGE = {b"FETCH", b"STORE", b"SEARCH"}  # RFC 3501 §7.4.1 (not their UID forms)
KEYWORDS = [b"$K%d" % i for i in range(12)]
FLAGS = [b"\\Seen", b"\\Flagged", b"\\Answered", *KEYWORDS]

_FETCH = re.compile(rb"^\* (\d+) FETCH \((.*)\)\r\n$")
_UID = re.compile(rb"UID (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_LIST = re.compile(rb"^\* FLAGS \(([^)]*)\)\r\n$")


class View:
    """One session's picture of INBOX, built only from server responses, checking each."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.uids: list[int | None] = []
        self.flags: dict[int, frozenset[bytes]] = {}
        self.gone: set[int] = set()  # UIDs this session saw expunged
        self.announced: set[bytes] = set()
        self.recent = 0

    def apply(self, line: bytes, command: bytes) -> None:
        where = (self.name, command, line)
        if m := _LIST.match(line):
            self.announced = set(m.group(1).split())
        elif m := re.match(rb"^\* (\d+) EXISTS\r\n$", line):
            n = int(m.group(1))
            assert n >= len(self.uids), where
            self.uids.extend([None] * (n - len(self.uids)))
        elif m := re.match(rb"^\* (\d+) RECENT\r\n$", line):
            self.recent = int(m.group(1))
            assert self.recent <= len(self.uids), (*where, len(self.uids))  # RFC 3501 §7.3.2
        elif m := re.match(rb"^\* (\d+) EXPUNGE\r\n$", line):
            assert command not in NO_EXPUNGE, where
            n = int(m.group(1))
            assert 1 <= n <= len(self.uids), (*where, len(self.uids))
            uid = self.uids.pop(n - 1)
            if uid is not None:
                self.gone.add(uid)
                self.flags.pop(uid, None)
        elif m := _FETCH.match(line):
            seq = int(m.group(1))
            assert 1 <= seq <= len(self.uids), (*where, len(self.uids))
            items = m.group(2)
            if u := _UID.search(items):
                uid = int(u.group(1))
                assert uid not in self.gone, (*where, "UID reused")
                assert self.uids[seq - 1] in (None, uid), (*where, self.uids[seq - 1])
                self.uids[seq - 1] = uid
                self._check_order(seq - 1, where)
                if f := _FLAGS.search(items):
                    flags = frozenset(f.group(1).split())
                    keywords = {k for k in flags if not k.startswith(b"\\")}
                    assert keywords <= self.announced, (*where, "keyword not announced")
                    self.flags[uid] = flags - {b"\\Recent"}
            elif f := _FLAGS.search(items):
                flags = frozenset(f.group(1).split())
                keywords = {k for k in flags if not k.startswith(b"\\")}
                assert keywords <= self.announced, (*where, "keyword not announced")
                if (uid := self.uids[seq - 1]) is not None:
                    self.flags[uid] = flags - {b"\\Recent"}
        elif line.startswith(b"* BYE") or line.startswith(b"* BAD"):
            raise AssertionError(where)

    def _check_order(self, i: int, where: tuple[object, ...]) -> None:
        uid = self.uids[i]
        assert uid is not None
        before = next((u for u in reversed(self.uids[:i]) if u is not None), 0)
        after = next((u for u in self.uids[i + 1 :] if u is not None), None)
        assert before < uid and (after is None or uid < after), (*where, before, uid, after)

    def known(self) -> list[int]:
        return [u for u in self.uids if u is not None]


class Session:
    def __init__(self, line: Line, name: str) -> None:
        self.c = line
        self.view = View(name)
        self.n = 0
        self.commands = 0

    async def cmd(self, text: bytes, literal: bytes | None = None) -> list[bytes]:
        self.n += 1
        self.commands += 1
        tag = b"t%d" % self.n
        words = text.split(b" ", 2)
        command = words[0].upper()
        if literal is None:
            await self.c.send(tag + b" " + text + b"\r\n")
        else:
            await self.c.send(tag + b" " + text + b"\r\n" + literal + b"\r\n")
        reply = await self.c.until_tagged(tag, timeout=300)
        for ln in reply[:-1]:
            self.view.apply(ln, command)
        assert reply[-1].startswith(tag + b" OK"), (self.view.name, text, reply[-1])
        return reply


async def work(s: Session, rng: random.Random, until: float) -> None:
    i = 0
    while time.monotonic() < until:
        i += 1
        known = s.view.known()
        n = len(s.view.uids)
        op = rng.choices(
            ["append", "store", "expunge", "copy", "move", "fetch", "uidfetch", "noop"],
            [3, 4, 2, 1, 1, 3, 1, 1],
        )[0]
        if op == "append":
            flags = b" ".join(rng.sample(FLAGS, rng.randint(0, 2)))
            body = message(i, subject=f"{s.view.name} {i}")
            await s.cmd(b"APPEND INBOX (%s) {%d+}" % (flags, len(body)), body)
        elif op == "store" and known:
            uid = rng.choice(known)
            sign = rng.choice([b"+", b"-"])
            await s.cmd(b"UID STORE %d %sFLAGS (%s)" % (uid, sign, rng.choice(FLAGS)))
        elif op == "expunge" and known:
            uid = rng.choice(known)
            await s.cmd(b"UID STORE %d +FLAGS (\\Deleted)" % uid)
            if rng.random() < 0.5:
                await s.cmd(b"UID EXPUNGE %d" % uid)
            else:
                await s.cmd(b"EXPUNGE")
        elif op == "copy" and known:
            await s.cmd(b"UID COPY %d %s" % (rng.choice(known), rng.choice([b"INBOX", b"Other"])))
        elif op == "move" and known:
            await s.cmd(b"UID MOVE %d Other" % rng.choice(known))
        elif op == "fetch" and n:
            a = rng.randint(1, n)
            await s.cmd(b"FETCH %d:%d (UID FLAGS)" % (a, min(n, a + 4)))
        elif op == "uidfetch":
            await s.cmd(b"UID FETCH 1:* (FLAGS)")
        else:
            await s.cmd(b"NOOP")


async def test_fifty_sessions_on_one_mailbox_stay_consistent(imap: ImapHarness) -> None:
    await imap.deliver(*[message(i) for i in range(1, 31)])
    acct, inbox = await imap.inbox()
    await acct.create_mailbox("Other")
    sessions: list[Session] = []
    for k in range(SESSIONS):
        s = Session(await imap.raw_login(), f"s{k}")
        await s.cmd(b"SELECT INBOX")
        sessions.append(s)
    until = time.monotonic() + SECONDS
    await asyncio.gather(*[work(s, random.Random(k), until) for k, s in enumerate(sessions)])

    snap = await acct.snapshot(inbox)
    final = {
        u: frozenset(f.encode() for f in fl) for u, fl in zip(snap.uids, snap.flags, strict=True)
    }
    for s in sessions:
        await s.cmd(b"NOOP")
        assert len(s.view.uids) == len(snap.uids), s.view.name
        # the UIDs it knows sit where the final state has them
        assert all(u in (None, f) for u, f in zip(s.view.uids, snap.uids, strict=True))
        # every flag change since the session last looked reached it unasked
        for uid, flags in s.view.flags.items():
            assert flags == final[uid], (s.view.name, uid, flags, final[uid])
        await s.cmd(b"FETCH 1:* (UID FLAGS)")
        assert s.view.uids == list(snap.uids), s.view.name
        assert s.view.flags.keys() == final.keys()
        assert not s.view.gone & final.keys(), s.view.name
    # \Recent went to one session per message at most (RFC 3501 §2.3.2)
    holders: dict[int, int] = {}
    for s in sessions:
        reply = await s.cmd(b"UID SEARCH RECENT")
        found = next(ln for ln in reply if ln.startswith(b"* SEARCH"))
        for uid in map(int, found.split()[2:]):
            holders[uid] = holders.get(uid, 0) + 1
    assert all(v == 1 for v in holders.values()), holders
    assert sum(s.commands for s in sessions) > SESSIONS * 3  # the mix really ran
    await asyncio.gather(*[s.c.close() for s in sessions])
