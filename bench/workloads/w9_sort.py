"""W9: SORT and THREAD on a 100,000-message mailbox (RFC 5256; peer: Dovecot).

A few sessions, each logged in once with INBOX selected, send SORT and THREAD commands
one after another in a fixed rotation: the clients that sort or thread server-side (a
webmail's message list, a desktop client's threaded view) on a large mailbox. Reported:
commands per second and each command's median latency. Postern orders from indexed
columns filled when a message is stored; Dovecot from its index cache, which it builds
on the first sort (every session sends each command once before the clock starts, then
the warm-up: steady state is compared).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from bench.loadgen.wire import Imap
from bench.results import MetricDef, Side, WorkloadResult
from bench.workloads.base import DOMAIN, PASSWORD, Context, Driver, Sample, Workload
from bench.workloads.mailboxes import imap_drivers, shared_mailboxes

ADDRESS = f"sort@{DOMAIN}"
COMMANDS = {
    "SORT-DATE": b"SORT (DATE) UTF-8 ALL",
    "SORT-REVERSE-ARRIVAL": b"SORT (REVERSE ARRIVAL) UTF-8 ALL",
    "SORT-SUBJECT": b"SORT (SUBJECT) UTF-8 ALL",
    "SORT-FROM-DATE": b"UID SORT (FROM DATE) UTF-8 ALL",
    "SORT-SIZE-UNSEEN": b"SORT (SIZE) UTF-8 UNSEEN",
    "THREAD-REFERENCES": b"UID THREAD REFERENCES UTF-8 ALL",
    "THREAD-ORDEREDSUBJECT": b"THREAD ORDEREDSUBJECT UTF-8 ALL",
}


class SortThread(Driver):
    def __init__(self, port: int, pids: Any, params: dict[str, Any]) -> None:
        self.port = port
        self._pids = pids
        self.params = params

    def pids(self) -> list[int]:
        return list(self._pids())

    def run_once(self, run: int) -> Sample:
        p = self.params
        started = time.process_time()
        outs = asyncio.run(_drive(self.port, p["sessions"], p["warmup"], p["duration"], run))
        lats: dict[str, list[float]] = {k: [] for k in COMMANDS}
        errors = 0
        for session_lats, session_errors in outs:
            errors += session_errors
            for k, v in session_lats.items():
                lats[k].extend(v)
        count = sum(len(v) for v in lats.values())
        values = {"cmds": count / p["duration"]}
        for k, v in lats.items():
            if v:
                values[f"p50.{k}"] = sorted(v)[len(v) // 2]
        notes = [f"{count} commands"] + ([f"{errors} errors"] if errors else [])
        return Sample(values=values, loadgen_cpu=time.process_time() - started, notes=notes)


async def _drive(
    port: int, sessions: int, warmup: float, duration: float, run: int
) -> list[tuple[dict[str, list[float]], int]]:
    conns = [await Imap.connect("127.0.0.1", port, timeout=900.0) for _ in range(sessions)]
    try:
        for conn in conns:
            await conn.login(ADDRESS, PASSWORD)
            await conn.select("INBOX")
        # every command once per session before the clock starts: Dovecot builds its
        # sort cache on first use (a minute or more on 100,000 messages), so the first
        # pass is not timed whatever it takes, and the warm-up then runs on warm caches
        await asyncio.gather(*(_prime(conn) for conn in conns))
        start = time.monotonic()
        return list(
            await asyncio.gather(
                *(
                    _session(conn, start + warmup, start + warmup + duration, run + i)
                    for i, conn in enumerate(conns)
                )
            )
        )
    finally:
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.logout()


async def _prime(conn: Imap) -> None:
    for command in COMMANDS.values():
        await conn.command(command)


async def _session(
    conn: Imap, measure_from: float, end: float, offset: int
) -> tuple[dict[str, list[float]], int]:
    lats: dict[str, list[float]] = {k: [] for k in COMMANDS}
    errors = 0
    names = list(COMMANDS)
    i = offset
    while True:
        now = time.monotonic()
        if now >= end:
            break
        name = names[i % len(names)]
        i += 1
        try:
            await conn.command(COMMANDS[name])
        except Exception:  # counted; the run goes on
            errors += 1
            continue
        done = time.monotonic()
        if now >= measure_from and done <= end:
            lats[name].append((done - now) * 1000)
    return lats, errors


class SortThreadWorkload(Workload):
    id = "W9"
    title = "SORT and THREAD on a 100,000-message mailbox"
    peer_name = "Dovecot"
    metrics = [
        MetricDef("cmds", "SORT/THREAD commands per second", "cmd/s", True, 1.0),
        *(MetricDef(f"p50.{k}", f"{k} median latency", "ms", False, main=False) for k in COMMANDS),
    ]

    def params(self, ctx: Context) -> dict[str, Any]:
        return {
            "mailbox": 10_000 if ctx.quick else 100_000,
            "size": 2 * 1024,
            "sessions": 2,
            "duration": 5.0 if ctx.quick else 20.0,
            "warmup": 3.0 if ctx.quick else 10.0,
        }

    def mailbox_accounts(self, ctx: Context) -> dict[str, int]:
        return {ADDRESS: int(self.params(ctx)["mailbox"])}

    def setup(
        self, ctx: Context, result: WorkloadResult, stack: contextlib.ExitStack
    ) -> dict[Side, Driver]:
        p = result.params
        boxes = shared_mailboxes(ctx, result, p["size"])
        drivers = imap_drivers(boxes, result, lambda port, pids: SortThread(port, pids, p))
        if boxes.fill_seconds:
            result.notes.append(
                "mailbox filled in "
                + ", ".join(f"{s} {t:.0f}s" for s, t in boxes.fill_seconds.items())
                + " (Dovecot: written into its maildir as LMTP leaves messages"
                + (f"; Postern: {boxes.postern_fill})" if boxes.postern_fill else ")")
            )
        result.notes.append(
            f"{p['sessions']} sessions on one {p['mailbox']}-message mailbox, each command "
            "sent once per session before the clock starts, then "
            f"{p['duration']:.0f}s measured after {p['warmup']:.0f}s warm-up, commands in "
            "rotation: " + ", ".join(COMMANDS)
        )
        return drivers
