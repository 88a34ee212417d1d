"""W4c's IMAP load generator: many long-lived sessions on one mailbox changing it at once.

``python -m bench.loadgen.imap_shared --port P --user U --password W --sessions 50
--duration 20 --mailbox-size 1000`` prints one JSON object: completed commands per type
inside the measuring window, errors per type, and latency percentiles (p50, p99) per type
and over all commands.

Unlike W4's visits, every session logs in once, selects INBOX and stays: the server has to
keep 50 views of one mailbox up to date while they all change it. Each session draws from
:data:`MIX`: APPEND (with a keyword), UID STORE, UID FETCH, expunge (UID STORE \\Deleted +
UID EXPUNGE), UID COPY within INBOX and UID MOVE to ``Other``. It changes only messages it
appended or copied itself (their UIDs come from APPENDUID / COPYUID, RFC 4315), so the
pre-loaded messages stay; FETCH also reads the pre-loaded ones. Appended messages that
are still there at the end carry \\Deleted and are expunged by the harness.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field

from bench.corpus import message
from bench.loadgen.imap_mix import load_args, run_load
from bench.loadgen.wire import Imap, ProtocolError
from bench.stats import percentile

MIX: dict[str, int] = {
    "APPEND": 20,  # APPEND INBOX (\Deleted $Kn) {10240}
    "STORE": 25,  # UID STORE u +FLAGS/-FLAGS (\Seen or \Flagged or $Kn)
    "FETCH": 25,  # UID FETCH a:a+9 (UID FLAGS ENVELOPE) of the pre-loaded, or own u
    "EXPUNGE": 10,  # UID STORE u +FLAGS.SILENT (\Deleted), UID EXPUNGE u (timed together)
    "COPY": 10,  # UID COPY u INBOX
    "MOVE": 10,  # UID MOVE u Other
}
KEYWORDS = 8
CONNECTION_ERRORS = (OSError, asyncio.IncompleteReadError, ConnectionError, TimeoutError)
_UIDS = re.compile(rb"\[(?:APPENDUID|COPYUID) \d+ (?:[\d:,]+ )?([\d:,]+)\]")


def new_uids(status: bytes, untagged: list[bytes]) -> list[int]:
    """The UIDs an APPEND or COPY created, from its APPENDUID / COPYUID (RFC 4315 §3)."""
    for line in (status, *untagged):
        if m := _UIDS.search(line):
            out: list[int] = []
            for part in m.group(1).split(b","):
                lo, _, hi = part.partition(b":")
                out.extend(range(int(lo), int(hi or lo) + 1))
            return out
    return []


@dataclass
class Tally:
    start: float
    end: float
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def record(self, kind: str, t0: float, t1: float) -> None:
        if self.start <= t1 < self.end:
            self.counts[kind] += 1
            self.latencies[kind].append(t1 - t0)

    def error(self, kind: str, t1: float) -> None:
        if self.start <= t1 < self.end:
            self.errors[kind] += 1


class Generator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        now = time.monotonic()
        self.tally = Tally(start=now + args.warmup, end=now + args.warmup + args.duration)
        self.kinds = list(MIX)
        self.weights = [MIX[k] for k in self.kinds]
        self.body = message(args.mailbox_size + 1, args.message_size)
        self.broken = 0

    def running(self) -> bool:
        return time.monotonic() < self.tally.end

    async def step(self, conn: Imap, rng: random.Random, own: list[int]) -> None:
        kind = rng.choices(self.kinds, self.weights)[0]
        if kind != "APPEND" and kind != "FETCH" and not own:
            kind = "APPEND"
        t0 = time.monotonic()
        try:
            if kind == "APPEND":
                kw = b"$K%d" % rng.randrange(KEYWORDS)
                st, un = await conn.command(b"APPEND INBOX (\\Deleted %s)" % kw, self.body)
                own.extend(new_uids(st, un))
            elif kind == "STORE":
                op = rng.choice((b"+FLAGS", b"-FLAGS"))
                flag = rng.choice((b"\\Seen", b"\\Flagged", b"$K%d" % rng.randrange(KEYWORDS)))
                await conn.command(b"UID STORE %d %s (%s)" % (rng.choice(own), op, flag))
            elif kind == "FETCH":
                if own and rng.random() < 0.5:
                    await conn.command(b"UID FETCH %d (UID FLAGS ENVELOPE)" % rng.choice(own))
                else:
                    lo = rng.randint(1, max(1, self.args.mailbox_size - 9))
                    await conn.command(b"UID FETCH %d:%d (UID FLAGS ENVELOPE)" % (lo, lo + 9))
            elif kind == "EXPUNGE":
                uid = own.pop(rng.randrange(len(own)))
                await conn.command(b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
                await conn.command(b"UID EXPUNGE %d" % uid)
            elif kind == "COPY":
                st, un = await conn.command(b"UID COPY %d INBOX" % rng.choice(own))
                own.extend(new_uids(st, un))
            else:
                uid = own.pop(rng.randrange(len(own)))
                await conn.command(b"UID MOVE %d Other" % uid)
        except ProtocolError:
            self.tally.error(kind, time.monotonic())
            return
        self.tally.record(kind, t0, time.monotonic())

    async def session(self, n: int) -> None:
        a = self.args
        rng = random.Random(a.seed * 1000 + n)
        conn = await Imap.connect(a.host, a.port)
        try:
            await conn.login(a.user, a.password)
            await conn.select("INBOX")
            own: list[int] = []
            while self.running():
                await self.step(conn, rng, own)
            with contextlib.suppress(ProtocolError, *CONNECTION_ERRORS):
                await conn.command(b"LOGOUT")
        except CONNECTION_ERRORS:
            self.broken += 1
        finally:
            conn.close()

    async def run(self) -> dict[str, object]:
        a = self.args
        conn = await Imap.connect(a.host, a.port)
        try:
            await conn.login(a.user, a.password)
            with contextlib.suppress(ProtocolError):
                await conn.command(b"CREATE Other")  # exists after the first run
        finally:
            conn.close()
        await asyncio.gather(*(self.session(i) for i in range(a.sessions)))
        t = self.tally
        every = [x for v in t.latencies.values() for x in v]

        def ms(v: list[float], q: float) -> float:
            return round((percentile(v, q) or 0) * 1000, 3)

        return {
            "seconds": t.end - t.start,
            "sessions": a.sessions,
            "broken_connections": self.broken,
            "counts": dict(t.counts),
            "errors": dict(t.errors),
            "latency_ms": {k: {"p50": ms(v, 50), "p99": ms(v, 99)} for k, v in t.latencies.items()},
            "all_ms": {"p50": ms(every, 50), "p99": ms(every, 99), "max": ms(every, 100)},
        }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return load_args("imap_shared", __doc__, 50, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_load("imap_shared", args, Generator(args).run)


if __name__ == "__main__":
    sys.exit(main())
