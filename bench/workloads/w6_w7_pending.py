"""W6 (mirror lag and catch-up, peer: ``doveadm sync``): not built yet, because the mirror
does not exist yet. It is listed so the report's table says so instead of leaving it out."""

from __future__ import annotations

import contextlib

from bench.results import MetricDef, Side, WorkloadResult
from bench.workloads.base import Context, Driver, Workload


class Pending(Workload):
    reason = ""

    def setup(
        self, ctx: Context, result: WorkloadResult, stack: contextlib.ExitStack
    ) -> dict[Side, Driver]:
        result.unavailable = {"postern": self.reason, "peer": self.reason}
        return {}


class MirrorWorkload(Pending):
    id = "W6"
    title = "mirror lag and catch-up"
    peer_name = "doveadm sync"
    metrics = [MetricDef("lag", "replication lag under W1 load", "ms", False)]
    reason = "not built yet: the mirror service does not exist yet"
