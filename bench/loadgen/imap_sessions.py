"""W4b's IMAP load generator: every session on its own small mailbox, kept logged in.

``python -m bench.loadgen.imap_sessions --port P --user-format 'own{n}@bench.test'
--password W --first 0 --sessions 25 --duration 60 --mailbox-size 200`` prints one JSON
object, as :mod:`bench.loadgen.imap_mix` does (its :class:`Generator` and tally are
reused), plus the latency histogram of every LOGIN.

Session ``n`` logs in to account ``first + n`` once, SELECTs INBOX and then sends
commands drawn from :data:`MIX` back to back until the run ends, as a desktop client that
stays connected does; it logs in again only if the connection breaks. The measuring window
opens ``--warmup`` seconds after every session has logged in (the logins are timed apart).
Commands use the pre-loaded UIDs (1..mailbox-size) and never delete them: APPEND adds a
message flagged \\Deleted (1–50 KiB) and EXPUNGE removes such messages; each session
expunges its leftovers before LOGOUT, so every mailbox keeps its size from run to run.
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
from collections.abc import Callable

from bench.corpus import date_of, imap_date, message, mixed_size
from bench.loadgen.imap_mix import CONNECTION_ERRORS, Generator
from bench.loadgen.wire import Imap, ProtocolError
from bench.stats import latency_bucket

# Command type -> weight. LOGIN comes once per session (again only after a broken one).
MIX: dict[str, int] = {
    "LIST": 5,  # LIST "" "*"
    "STATUS": 10,  # STATUS INBOX (MESSAGES RECENT UIDNEXT UNSEEN)
    "SELECT": 10,  # SELECT INBOX again (a client resynchronising)
    "FETCH-FLAGS": 15,  # UID FETCH 1:* (UID FLAGS): the flag sync of a whole mailbox
    "FETCH-ENVELOPE": 10,  # UID FETCH a:a+24 (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)
    "FETCH-HEADERS": 10,  # UID FETCH a:a+9 (BODY.PEEK[HEADER.FIELDS (FROM TO ...)])
    "FETCH-BODY": 15,  # UID FETCH u BODY.PEEK[]
    "STORE-FLAGS": 10,  # UID STORE u ±FLAGS (\Seen, \Flagged or \Answered)
    "STORE-KEYWORD": 5,  # UID STORE u ±FLAGS ($Work, $Todo or Project7)
    "APPEND": 5,  # APPEND INBOX (\Deleted) {1–50 KiB}
    "EXPUNGE": 5,  # EXPUNGE (removes the appended messages)
}
KINDS = ["LOGIN", *MIX]
ENVELOPE_RANGE = 25
HEADERS_RANGE = 10
SYSTEM_FLAGS = (b"\\Seen", b"\\Flagged", b"\\Answered")
KEYWORDS = (b"$Work", b"$Todo", b"Project7")
APPEND_BODIES = 8  # distinct APPEND messages per process (sizes drawn like the mailbox's)


def command_for(kind: str, rng: random.Random, size: int) -> bytes:
    """The command line (without tag) of one command of type ``kind`` on a mailbox whose
    pre-loaded messages have UIDs 1..size."""
    if kind == "LIST":
        return b'LIST "" "*"'
    if kind == "STATUS":
        return b"STATUS INBOX (MESSAGES RECENT UIDNEXT UNSEEN)"
    if kind == "SELECT":
        return b"SELECT INBOX"
    if kind == "FETCH-FLAGS":
        return b"UID FETCH 1:* (UID FLAGS)"
    if kind == "FETCH-ENVELOPE":
        lo = rng.randint(1, max(1, size - ENVELOPE_RANGE + 1))
        hi = min(size, lo + ENVELOPE_RANGE - 1)
        return b"UID FETCH %d:%d (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)" % (lo, hi)
    if kind == "FETCH-HEADERS":
        lo = rng.randint(1, max(1, size - HEADERS_RANGE + 1))
        hi = min(size, lo + HEADERS_RANGE - 1)
        return (
            b"UID FETCH %d:%d (UID BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)])"
            % (lo, hi)
        )
    if kind == "FETCH-BODY":
        return b"UID FETCH %d BODY.PEEK[]" % rng.randint(1, size)
    if kind in ("STORE-FLAGS", "STORE-KEYWORD"):
        op = rng.choice((b"+FLAGS.SILENT", b"-FLAGS.SILENT", b"+FLAGS", b"-FLAGS"))
        flag = rng.choice(SYSTEM_FLAGS if kind == "STORE-FLAGS" else KEYWORDS)
        return b"UID STORE %d %s (%s)" % (rng.randint(1, size), op, flag)
    if kind == "APPEND":
        return b'APPEND INBOX (\\Deleted) "%s"' % imap_date(date_of(size)).encode()
    if kind == "EXPUNGE":
        return b"EXPUNGE"
    raise ValueError(kind)


class SessionGenerator(Generator):
    """Long-lived sessions, one account each (see the module's docstring)."""

    mix = MIX

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.login_hist: dict[int, int] = {}
        self.logins = 0
        self.append_bodies = [
            message(args.mailbox_size + k, mixed_size(args.mailbox_size + k))
            for k in range(APPEND_BODIES)
        ]

    def user(self, n: int) -> str:
        return str(self.args.user_format).format(n=self.args.first + n)

    def command(self, kind: str, rng: random.Random) -> bytes:
        return command_for(kind, rng, self.args.mailbox_size)

    async def open(self, n: int) -> Imap | None:
        """Connect, LOGIN (timed from the connect: greeting included) and SELECT INBOX."""
        t0 = time.monotonic()
        try:
            conn = await Imap.connect(self.args.host, self.args.port)
        except (*CONNECTION_ERRORS, ProtocolError):
            self.tally.error("LOGIN", time.monotonic())
            return None
        try:
            await conn.login(self.user(n), self.args.password)
            t1 = time.monotonic()
            self.tally.record("LOGIN", t0, t1)
            b = latency_bucket(t1 - t0)
            self.login_hist[b] = self.login_hist.get(b, 0) + 1
            self.logins += 1
            await self.timed("SELECT", lambda: conn.select("INBOX"))
        except ProtocolError:
            self.tally.error("LOGIN", time.monotonic())
            conn.close()
            return None
        except CONNECTION_ERRORS:
            self.broken += 1
            conn.close()
            return None
        return conn

    async def keep(self, n: int, conn: Imap | None) -> None:
        """Session ``n``: commands back to back until the window closes."""
        rng = random.Random(self.args.seed * 1000 + n)
        while self.running():
            if conn is None:
                conn = await self.open(n)
                if conn is None:
                    await asyncio.sleep(0.05)
                    continue
            kind = rng.choices(self.kinds, self.weights)[0]
            cmd = self.command(kind, rng)
            body = rng.choice(self.append_bodies) if kind == "APPEND" else None
            try:
                await self.timed(kind, functools.partial(conn.command, cmd, body))
            except CONNECTION_ERRORS:
                self.broken += 1
                conn.close()
                conn = None
        if conn is not None:
            with contextlib.suppress(*CONNECTION_ERRORS, ProtocolError):
                await asyncio.wait_for(conn.command(b"EXPUNGE"), 30)
            await conn.logout()
        self.visits += 1

    async def run(self) -> dict[str, object]:
        a = self.args
        conns = await asyncio.gather(*(self.open(n) for n in range(a.sessions)))
        start = time.monotonic() + a.warmup
        self.tally.start, self.tally.end = start, start + a.duration
        await asyncio.gather(*(self.keep(n, c) for n, c in enumerate(conns)))
        out = self.results()
        out["login_hist"] = {str(b): n for b, n in self.login_hist.items()}
        out["logins"] = self.logins
        return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen.imap_sessions", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user-format", required=True, help="account of session n, e.g. u{n}@x")
    p.add_argument("--password", required=True)
    p.add_argument("--first", type=int, default=0, help="account number of session 0")
    p.add_argument("--sessions", type=int, default=10)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--mailbox-size", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if "{n}" not in args.user_format:
        p.error("--user-format must contain {n}")
    args.message_size = 1024  # Generator's W4 APPEND body (unused here)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.host.startswith("127."):
        print("imap_sessions: load tests talk to 127.0.0.0/8 only", file=sys.stderr)
        return 2
    runner: Callable[..., object] = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    result = runner(SessionGenerator(args).run())
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
