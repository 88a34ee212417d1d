"""W5: POP3 retrieval of every message of a 3,000- and a 10,000-message maildrop
(peer: Dovecot POP3); see :mod:`bench.loadgen.pop3_fetch`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from bench.results import MetricDef, Side, WorkloadResult
from bench.workloads.base import (
    DOMAIN,
    PASSWORD,
    Context,
    Driver,
    Sample,
    Workload,
    python_module,
    run_json,
)
from bench.workloads.mailboxes import shared_mailboxes


def address(n: int) -> str:
    return f"pop{n}@{DOMAIN}"


class Pop3Fetch(Driver):
    def __init__(self, port: int, pids: Callable[[], list[int]], drops: list[int]) -> None:
        self.port = port
        self._pids = pids
        self.drops = drops

    def pids(self) -> list[int]:
        return self._pids()

    def run_once(self, run: int) -> Sample:
        values: dict[str, float] = {}
        cpu = 0.0
        for n in self.drops:
            out, done = run_json(
                python_module(
                    "bench.loadgen.pop3_fetch",
                    "--port",
                    str(self.port),
                    "--user",
                    address(n),
                    "--password",
                    PASSWORD,
                ),
                timeout=900,
            )
            if out["messages"] != n:
                raise RuntimeError(f"maildrop {address(n)} has {out['messages']}, wanted {n}")
            values[f"drop{n}"] = out["messages"] / out["seconds"]
            values[f"mbps{n}"] = out["bytes"] / out["seconds"] / 1e6
            cpu += done.cpu_s
        return Sample(values=values, loadgen_cpu=cpu)


class Pop3Workload(Workload):
    id = "W5"
    title = "POP3 retrieval of every message of a maildrop"
    peer_name = "Dovecot POP3"

    def drops(self, ctx: Context) -> list[int]:
        return [300, 1000] if ctx.quick else [3000, 10_000]

    def metric_defs(self, ctx: Context) -> list[MetricDef]:
        drops = self.drops(ctx)
        return [
            *(
                MetricDef(f"drop{n}", f"RETR of all {n:,} messages", "msg/s", True, 0.5)
                for n in drops
            ),
            *(
                MetricDef(f"mbps{n}", f"RETR of all {n:,} messages", "MB/s", True, main=False)
                for n in drops
            ),
        ]

    def params(self, ctx: Context) -> dict[str, Any]:
        return {"drops": self.drops(ctx), "size": 10 * 1024}

    def mailbox_accounts(self, ctx: Context) -> dict[str, int]:
        return {address(n): n for n in self.drops(ctx)}

    def setup(
        self, ctx: Context, result: WorkloadResult, stack: contextlib.ExitStack
    ) -> dict[Side, Driver]:
        p = result.params
        boxes = shared_mailboxes(ctx, result, p["size"])
        result.unavailable.update(boxes.unavailable)
        drivers: dict[Side, Driver] = {}
        if boxes.postern is not None:
            why = boxes.postern.why_not("pop3")
            if why is None:
                drivers["postern"] = Pop3Fetch(
                    boxes.postern.pop3_port, boxes.postern.pids, p["drops"]
                )
            else:
                result.unavailable["postern"] = f"not available yet: {why}"
        if boxes.dovecot is not None:
            d = boxes.dovecot
            drivers["peer"] = Pop3Fetch(d.ports.pop3, lambda: [d.pid] if d.pid else [], p["drops"])
        result.notes.append(
            "one lock-step session per maildrop (USER, PASS, STAT, UIDL, RETR 1..n, QUIT), "
            "messages of 10 KiB, nothing deleted"
        )
        return drivers
