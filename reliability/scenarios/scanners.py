"""spamd and clamd refusing connections, hanging and answering garbage: the filter must
fail closed with 4xx (never 250 for unscreened mail, never 5xx) and stay responsive."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Literal

from reliability.checker import Report
from reliability.fakes import fake_scanner
from reliability.ledger import Outcome
from reliability.scenarios import scenario
from reliability.scenarios.common import Context, cluster_run
from services.ctl import daemons

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
