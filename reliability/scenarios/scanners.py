"""spamd and clamd refusing connections, hanging and answering garbage: the filter must
fail closed with 4xx (never 250 for unscreened mail, never 5xx) and stay responsive."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Literal

from reliability.checker import Report
from reliability.fakes import fake_scanner
from reliability.ledger import Outcome
from reliability.scenarios import scenario
from reliability.scenarios.common import Context, cluster_run
from services.ctl import daemons

if TYPE_CHECKING:
    from tests.support.daemons import Daemon

Kind = Literal["refusing", "hang", "garbage"]


@contextlib.asynccontextmanager
async def _scanner_port(kind: Kind) -> AsyncIterator[int]:
    if kind == "refusing":
        yield daemons.free_port()  # nothing listens there
        return
    async with fake_scanner(kind) as port:
        yield port


async def _broken(ctx: Context, which: str, kind: Kind) -> Report:
    name = f"{which}-{kind}"
    async with _scanner_port(kind) as port:
        args = {"spamd_port": port} if which == "spamd" else {"clamd_port": port}
        async with cluster_run(ctx, name, **args) as run:
            run.start_load(max_attempts=1)
            await asyncio.sleep(ctx.duration / 2)
            report = await run.finish()
            answered = [e for e in run.ledger if e.code is not None and e.step == "END"]
            temp = [e for e in answered if e.code is not None and 400 <= e.code < 500]
            if not answered:
                report.fail("no transaction got an answer: the filter hung with the scanner")
            elif len(temp) != len(answered):
                report.fail(f"{len(answered) - len(temp)} of {len(answered)} not answered 4xx")
            acked = [e for e in run.ledger if e.outcome is Outcome.ACKED]
            if acked:
                report.fail(f"{len(acked)} unscreened messages answered 250 (fail-open)")
            report.note(f"answers: {sorted({e.code or 0 for e in answered})}")
            return report


def _register(which: str, kind: Kind) -> None:
    @scenario(f"{which}-{kind}", "scanners", f"{which} {kind}: filter must answer 4xx")
    async def run(ctx: Context) -> Report:
        return await _broken(ctx, which, kind)


KINDS: tuple[Kind, ...] = ("refusing", "hang", "garbage")
for _which in ("spamd", "clamd"):
    for _kind in KINDS:
        _register(_which, _kind)


def _kill_tree(daemon: Daemon) -> None:
    """SIGKILL the daemon and its children (spamd's children share its listening socket
    and would go on answering)."""
    import psutil  # type: ignore[import-untyped]

    if daemon.proc is not None:
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(daemon.proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
    daemon.kill()


@scenario(
    "scanners-real-killed",
    "scanners",
    "real spamd and clamd under load; clamd then spamd SIGKILLed and restarted",
)
async def real_killed(ctx: Context) -> Report:
    """With the real daemons: mail is screened and acked; a dead scanner turns answers into
    4xx (fail closed), never 250 unscreened or 5xx; after its restart mail flows again."""
    from tests.support.daemons import Clamd, Spamd

    spamd_bin, clamd_bin = daemons.spamd_binary(), daemons.clamd_binary()
    if spamd_bin is None or clamd_bin is None:
        report = Report("scanners-real-killed")
        report.fail("spamd or clamd is not installed (scripts/system-deps test)")
        return report
    spamd = Spamd(ctx.workdir / "real-spamd", spamd_bin)
    clamd = Clamd(ctx.workdir / "real-clamd", clamd_bin)
    await asyncio.gather(
        asyncio.to_thread(spamd.start, 180.0), asyncio.to_thread(clamd.start, 180.0)
    )
    try:
        async with cluster_run(
            ctx, "scanners-real-killed", spamd_port=spamd.port, clamd_port=clamd.port
        ) as run:
            run.start_load()
            phases: dict[str, int] = {}
            for name, daemon in (("clamd", clamd), ("spamd", spamd)):
                await asyncio.sleep(ctx.duration / 3)
                phases[f"before {name} kill"] = run.ledger.count(Outcome.ACKED)
                _kill_tree(daemon)
                await asyncio.sleep(ctx.duration / 3)
                await asyncio.to_thread(daemon.start, 180.0)
                phases[f"{name} back"] = run.ledger.count(Outcome.ACKED)
            await asyncio.sleep(ctx.duration / 2)
            report = await run.finish()  # lets the messages in flight finish
            acked_end = run.ledger.count(Outcome.ACKED)
            report.note(f"acked at each phase: {phases}, at the end {acked_end}")
            if phases["before clamd kill"] == 0:
                report.fail("nothing was acked with both real scanners up")
            if acked_end <= phases["spamd back"]:
                report.fail("no mail acked after the scanners came back")
            return report
    finally:
        spamd.stop()
        clamd.stop()
