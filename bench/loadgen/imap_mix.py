"""W4's IMAP load generator: many concurrent sessions on one mailbox, a mix of commands.

``python -m bench.loadgen.imap_mix --port P --user U --password W --sessions 12
--duration 20 --mailbox-size 10000`` prints one JSON object: completed commands per
type inside the measuring window, errors per type and latency percentiles.

Each session is a sequence of visits, as a mail client makes them: connect, LOGIN,
SELECT INBOX, a random number of commands drawn from :data:`MIX`, LOGOUT. Commands use
UIDs of the pre-loaded messages (1..mailbox-size, which both servers allocate the same
way for a fresh mailbox) and never delete them: APPEND adds a message already flagged
\\Deleted and EXPUNGE removes such messages, so the mailbox stays at its size however
long the run. One asyncio process (uvloop when installed) drives all its sessions; the
harness starts several processes when one would be the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import random
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench.corpus import SENDERS, SUBJECT_WORDS, date_of, imap_date, message
from bench.loadgen.wire import Imap, ProtocolError
from bench.stats import latency_bucket, percentile

# Command type -> weight in a visit. LOGIN, SELECT and LOGOUT come once per visit.
MIX: dict[str, int] = {
    "FETCH-ENVELOPE": 30,  # UID FETCH a:a+49 (UID FLAGS ENVELOPE)
    "FETCH-BODY": 30,  # UID FETCH u BODY.PEEK[]
    "STORE": 15,  # UID STORE u +FLAGS/-FLAGS (\Seen or \Flagged)
    "SEARCH": 10,  # UID SEARCH UNSEEN / FLAGGED / FROM / SUBJECT / SINCE
    "APPEND": 8,  # APPEND INBOX (\Deleted) {10240}
    "EXPUNGE": 7,  # EXPUNGE (removes the appended messages)
}
FETCH_RANGE = 50
VISIT_COMMANDS = (5, 30)
CONNECTION_ERRORS = (OSError, asyncio.IncompleteReadError, ConnectionError, TimeoutError)


@dataclass
class Tally:
    """Commands completed inside the window [start, end), per type."""

    start: float
    end: float
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    # Every latency of the window, bucketed (bench.stats.latency_bucket): processes add up.
    hists: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    done: int = 0  # commands completed at any time, warm-up and wind-down included

    def record(self, kind: str, t0: float, t1: float) -> None:
        self.done += 1
        if self.start <= t1 < self.end:
            self.counts[kind] += 1
            lat = self.latencies[kind]
            if len(lat) < 20000:
                lat.append(t1 - t0)
            hist = self.hists[kind]
            b = latency_bucket(t1 - t0)
            hist[b] = hist.get(b, 0) + 1

    def error(self, kind: str, t1: float) -> None:
        self.done += 1  # a NO or BAD is work the server did too
        if self.start <= t1 < self.end:
            self.errors[kind] += 1


def command_for(kind: str, rng: random.Random, size: int) -> bytes:
    """The command line (without tag) of one command of type ``kind``."""
    if kind == "FETCH-ENVELOPE":
        lo = rng.randint(1, max(1, size - FETCH_RANGE + 1))
        return b"UID FETCH %d:%d (UID FLAGS ENVELOPE)" % (lo, min(size, lo + FETCH_RANGE - 1))
    if kind == "FETCH-BODY":
        return b"UID FETCH %d BODY.PEEK[]" % rng.randint(1, size)
    if kind == "STORE":
        op = rng.choice((b"+FLAGS.SILENT", b"-FLAGS.SILENT", b"+FLAGS", b"-FLAGS"))
        flag = rng.choice((b"\\Seen", b"\\Flagged"))
        return b"UID STORE %d %s (%s)" % (rng.randint(1, size), op, flag)
    if kind == "SEARCH":
        choice = rng.randrange(5)
        if choice == 0:
            return b"UID SEARCH UNSEEN"
        if choice == 1:
            return b"UID SEARCH FLAGGED"
        if choice == 2:
            return b'UID SEARCH FROM "sender%d@"' % rng.randrange(SENDERS)
        if choice == 3:
            return b'UID SEARCH SUBJECT "%s"' % rng.choice(SUBJECT_WORDS).encode()
        since = date_of(rng.randint(0, max(0, size - 1)))
        return b"UID SEARCH SINCE %s" % since.strftime("%d-%b-%Y").encode()
    if kind == "APPEND":
        return b'APPEND INBOX (\\Deleted) "%s"' % imap_date(date_of(size)).encode()
    if kind == "EXPUNGE":
        return b"EXPUNGE"
    raise ValueError(kind)


class Generator:
    mix = MIX

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        now = time.monotonic()
        self.tally = Tally(start=now + args.warmup, end=now + args.warmup + args.duration)
        self.kinds = list(self.mix)
        self.weights = [self.mix[k] for k in self.kinds]
        self.append_body = message(args.mailbox_size + 1, args.message_size)
        self.visits = 0
        self.broken = 0

    def running(self) -> bool:
        return time.monotonic() < self.tally.end

    async def timed(self, kind: str, call: Callable[[], Awaitable[object]]) -> None:
        t0 = time.monotonic()
        try:
            await call()
        except ProtocolError:
            self.tally.error(kind, time.monotonic())
            return
        self.tally.record(kind, t0, time.monotonic())

    async def visit(self, rng: random.Random) -> None:
        a = self.args
        t0 = time.monotonic()
        try:
            conn = await Imap.connect(a.host, a.port)
        except (*CONNECTION_ERRORS, ProtocolError):
            self.tally.error("LOGIN", time.monotonic())
            await asyncio.sleep(0.05)
            return
        try:
            try:
                await conn.login(a.user, a.password)
            except ProtocolError:
                self.tally.error("LOGIN", time.monotonic())
                return
            self.tally.record("LOGIN", t0, time.monotonic())  # connect + greeting + LOGIN
            await self.timed("SELECT", lambda: conn.select("INBOX"))
            for _ in range(rng.randint(*VISIT_COMMANDS)):
                if not self.running():
                    return
                kind = rng.choices(self.kinds, self.weights)[0]
                cmd = self.command(kind, rng)
                body = self.append_body if kind == "APPEND" else None
                await self.timed(kind, functools.partial(conn.command, cmd, body))
            await self.timed("LOGOUT", lambda: conn.command(b"LOGOUT"))
        except CONNECTION_ERRORS:
            self.broken += 1
        finally:
            conn.close()
            self.visits += 1

    def command(self, kind: str, rng: random.Random) -> bytes:
        return command_for(kind, rng, self.args.mailbox_size)

    async def session(self, n: int) -> None:
        rng = random.Random(self.args.seed * 1000 + n)
        while self.running():
            await self.visit(rng)

    async def run(self) -> dict[str, object]:
        await asyncio.gather(*(self.session(i) for i in range(self.args.sessions)))
        return self.results()

    def results(self) -> dict[str, object]:
        t = self.tally
        return {
            "seconds": t.end - t.start,
            "sessions": self.args.sessions,
            "visits": self.visits,
            "broken_connections": self.broken,
            "counts": dict(t.counts),
            "errors": dict(t.errors),
            "latency_ms": {
                k: {
                    "p50": round((percentile(v, 50) or 0) * 1000, 3),
                    "p95": round((percentile(v, 95) or 0) * 1000, 3),
                    "p99": round((percentile(v, 99) or 0) * 1000, 3),
                }
                for k, v in t.latencies.items()
            },
            "latency_hist": {k: {str(b): n for b, n in h.items()} for k, h in t.hists.items()},
            "commands_done": t.done,
        }


def load_args(
    prog: str, doc: str | None, sessions: int, argv: list[str] | None = None
) -> argparse.Namespace:
    """The command line every IMAP load generator here takes."""
    p = argparse.ArgumentParser(prog=f"python -m bench.loadgen.{prog}", description=doc)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--sessions", type=int, default=sessions)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--mailbox-size", type=int, required=True)
    p.add_argument("--message-size", type=int, default=10 * 1024)
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


def run_load(prog: str, args: argparse.Namespace, run: Callable[[], Awaitable[object]]) -> int:
    """Loopback only; the result as one JSON line on stdout (uvloop when installed)."""
    if not args.host.startswith("127."):
        print(f"{prog}: load tests talk to 127.0.0.0/8 only", file=sys.stderr)
        return 2
    runner: Callable[..., object] = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    result = runner(run())
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return load_args("imap_mix", __doc__, 12, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_load("imap_mix", args, Generator(args).run)


if __name__ == "__main__":
    sys.exit(main())
