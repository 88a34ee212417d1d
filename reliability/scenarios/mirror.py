"""The mirror (docs/mirror.md) under load: its link to the peer cut and restored, the link
flapping, and one side SIGKILLed during a ``mailctl mirror resync``. Each runs a mirrored
pair (reliability/pair.py: store A, the master, takes the filter's mail; store B is the
slave on its own NATS and data) and ends when both stores converged: the checker reads
every mailbox on *both* stores and reports lost, duplicated, phantom and UID violations on
each, and every mailbox that differs between them (divergence)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator

from reliability.appender import Appender
from reliability.checker import Report
from reliability.cluster import HOST, ROOT
from reliability.ledger import Outcome
from reliability.linkproxy import LinkState
from reliability.pair import NODE_A, MirrorPair, resync_progress, side_a_env
from reliability.scenarios import scenario
from reliability.scenarios.common import Context, Run, cluster_run

SETTLE = 180.0  # seconds both stores get to converge once the load stopped
APPEND_PAUSE = 0.5  # seconds between one account's APPENDs on store B
RESYNC_EXIT = 5.0  # seconds a resync gets to fail on its own after a side died
RESYNC_LOAD_RATE = 5.0  # messages per second per sender while the resyncs run


@contextlib.asynccontextmanager
async def pair_run(ctx: Context, name: str) -> AsyncIterator[tuple[Run, MirrorPair]]:
    """A scenario's cluster as side A of a mirrored pair, side B and the mirrors started,
    every account opened on A and replicated to B; the run reads both stores."""
    async with cluster_run(ctx, name, extra_env=side_a_env()) as run:
        pair = MirrorPair(run.cluster)
        try:
            await pair.start()
            run.stores = pair.imap()
            run.settle = lambda: pair.wait_settled(SETTLE)
            run.settle_what = f"the two stores did not converge within {SETTLE:.0f} s"
            await run.take_snapshot([NODE_A])  # logins on A open the accounts there
            if not await pair.wait_settled(120, opened=True):
                raise RuntimeError("the accounts opened on store A never reached store B")
            yield run, pair
        finally:
            await pair.stop()


async def _closing(run: Run, pair: MirrorPair, report: Report) -> Report:
    """What every mirror scenario adds to the checker's report."""
    final = run.snapshots[-1] if run.snapshots else []
    held = {store: 0 for store, _ in run.endpoints()}
    for view in final:
        held[view.store] = held.get(view.store, 0) + len(view.messages)
    report.note("final snapshot: " + ", ".join(f"{s} {n} messages" for s, n in held.items()))
    for line in await pair.status():
        report.note(f"mirror {line}")
    for name, link in pair.links.items():
        st = link.stats
        report.note(
            f"link of {name}: {st.cuts} cuts, {st.cut} connections cut, {st.refused} refused, "
            f"{st.connections} made"
        )
    for name in ("store", "store-b", "mirror-a", "mirror-b"):
        if not run.cluster.alive(name):
            report.fail(f"{name} not running at the end")
    return report


def _appended(run: Run) -> int:
    return sum(1 for e in run.ledger if e.step == "APPEND" and e.outcome is Outcome.ACKED)


@scenario(
    "mirror-link-cut",
    "mirror",
    "the mirror link cut both ways (connections reset) under load, with mail delivered on "
    "A and APPENDs on B meanwhile, then restored",
)
async def link_cut(ctx: Context) -> Report:
    async with pair_run(ctx, "mirror-link-cut") as (run, pair):
        appender = Appender(HOST, pair.imap_b, run.ledger, run.accounts(), pause=APPEND_PAUSE)
        run.start_load()
        appender.start()
        try:
            await run.load_for(ctx.duration / 3, snapshot=True)
            for link in pair.links.values():
                link.cut(LinkState.RESET)
            await run.load_for(ctx.duration / 3, snapshot=True)  # a snapshot mid-cut
            a, b = await pair.buses()
            try:
                queued = await pair.queued(a, b)
            finally:
                await a.close()
                await b.close()
            for link in pair.links.values():
                link.restore()
            await asyncio.sleep(ctx.duration / 3)
        finally:
            await asyncio.to_thread(appender.stop)
        report = await run.finish()
        report.note(
            f"{_appended(run)} messages appended on store B; at the end of the cut "
            f"{queued[0]} records waited for B, {queued[1]} for A"
        )
        if queued[0] == 0 or queued[1] == 0:
            report.fail("nothing queued on one side while the link was down: the cut did not bite")
        if _appended(run) == 0:
            report.fail("no IMAP APPEND on store B succeeded")
        return await _closing(run, pair, report)


@scenario(
    "mirror-link-flap",
    "mirror",
    "the mirror link flapping under load: down 0.5-2 s (reset or stalled, in turn), up 1-2 s",
)
async def link_flap(ctx: Context) -> Report:
    rng = random.Random(18)
    async with pair_run(ctx, "mirror-link-flap") as (run, pair):
        run.start_load()
        await asyncio.sleep(ctx.duration / 4)
        deadline = time.monotonic() + ctx.duration
        flaps = 0
        snap: asyncio.Task[bool] | None = None
        while time.monotonic() < deadline:
            how = LinkState.RESET if flaps % 2 == 0 else LinkState.STALL
            for link in pair.links.values():
                link.cut(how)
            await asyncio.sleep(rng.uniform(0.5, 2))
            for link in pair.links.values():
                link.restore()
            flaps += 1
            if flaps == 2:  # one mid-run snapshot of both stores for the UID checks,
                snap = asyncio.create_task(run.take_snapshot())  # read while it flaps on
            await asyncio.sleep(rng.uniform(1, 2))
        if snap is not None:
            await snap
        report = await run.finish()
        report.note(f"{flaps} flaps (reset and stall in turn)")
        if sum(link.stats.cut for link in pair.links.values()) == 0:
            report.fail("no connection was cut: the flaps did not bite")
        return await _closing(run, pair, report)


async def _start_resync(pair: MirrorPair) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *pair.resync_argv(),
        cwd=ROOT,
        env=pair.c.env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def _keep(pair: MirrorPair, n: int, text: str) -> None:
    """A resync's output, beside the processes' logs."""
    path = pair.c.log(f"resync-{n}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


async def _progress(proc: asyncio.subprocess.Process, seen: list[str]) -> tuple[int, int] | None:
    """Read the resync's progress until a line shows messages copied by *this* run (past
    what its first line showed: a resumed run starts at what the last one did); None when
    it ended first."""
    assert proc.stderr is not None
    first: int | None = None
    while raw := await proc.stderr.readline():
        line = raw.decode(errors="replace").rstrip()
        seen.append(line)
        got = resync_progress(line)
        if got is None:
            continue
        if first is None:
            first = got[0]
        elif got[0] > first:
            return got
    return None


async def _end(proc: asyncio.subprocess.Process, timeout: float) -> tuple[int | None, str]:
    """The resync's exit code (None: it did not end within ``timeout`` and was killed, as
    an operator would interrupt it) and its last output."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        return None, (out + err).decode(errors="replace")
    return proc.returncode, (out + err).decode(errors="replace")


def _last(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


@scenario(
    "mirror-resync-kill",
    "mirror",
    "store B wiped and refilled by `mailctl mirror resync` under load; B SIGKILLed during "
    "the first run, A during the second (both restarted), the third completes",
)
async def resync_kill(ctx: Context) -> Report:
    async with pair_run(ctx, "mirror-resync-kill") as (run, pair):
        run.start_load()
        await run.load_for(ctx.duration / 4, snapshot=True)
        # B's disk replaced: its store starts empty; its mirror stays off until the resync
        # is done (it would apply queued records into mailboxes B does not have yet)
        pair.kill_side("b")
        pair.wipe_b()
        await asyncio.to_thread(pair.start_process, "store-b")
        # lighter load from here: the resyncs copy while mail keeps arriving, and end
        await run.stop_load()
        run.start_load(rate=RESYNC_LOAD_RATE)
        await asyncio.sleep(ctx.duration / 4)
        notes: list[str] = []
        failures: list[str] = []
        for n, side in enumerate(("b", "a"), 1):
            seen: list[str] = []
            proc = await _start_resync(pair)
            at = await _progress(proc, seen)
            if at is None:
                code, text = await _end(proc, 60)
                _keep(pair, n, "\n".join(seen) + "\n" + text)
                failures.append(
                    f"the resync ended (exit {code}) before store {side.upper()} could be "
                    f"killed during it: {_last(chr(10).join(seen) + chr(10) + text)}"
                )
                continue
            pair.kill_side(side)
            code, text = await _end(proc, RESYNC_EXIT)
            _keep(pair, n, "\n".join(seen) + "\n" + text)
            how = "interrupted" if code is None else f"exit {code}"
            notes.append(
                f"resync: store {side.upper()} SIGKILLed at {at[0]}/{at[1]} messages; "
                f"the resync {how}: {_last(text)}"
            )
            if code == 0:
                failures.append(f"the resync reported success with store {side.upper()} dead")
            if side == "a":
                await pair.start_side("a")
            else:  # its mirror stays off until the resync is done
                await asyncio.to_thread(pair.start_process, "store-b")
        proc = await _start_resync(pair)
        code, text = await _end(proc, 300)
        _keep(pair, 3, text)
        summary = next((ln for ln in text.splitlines() if "full resync to" in ln), _last(text))
        notes.append(f"last resync: exit {code}: {summary}")
        if code != 0 or "done" not in summary:
            failures.append(f"the last resync did not complete: {_last(text)}")
        await asyncio.to_thread(pair.start_process, "mirror-b")
        await asyncio.sleep(ctx.duration / 4)
        report = await run.finish()
        for note in notes:
            report.note(note)
        for failure in failures:
            report.fail(failure)
        return await _closing(run, pair, report)
