"""W6s and W6f: W6's mirror lag in the two other shapes issue 13 asks for, each beside the
asynchronous pair as W6 runs it (the "peer" side here is that pair, not another product).

* **W6s, synchronous mode**: store-a with ``POSTERN_MIRROR_SYNC_PEER=store-b``
  (docs/mirror.md, Synchronous mode): a delivery is acked to the bus only once store-b
  committed it too. The master's delivery rate (capacity) then includes the peer's
  round trip, and the lag measured at the same shares of it shows what the wait costs.
* **W6f, a read-only follower attached**: a third store, store-c, follows store-a
  (``POSTERN_MIRROR_FOLLOWERS=store-c``; its own journal reader and queue): the pair's
  capacity and lag while store-a's journal also feeds the follower.

Each run: capacity (``capacity_messages`` at once), then lag p50/p99 at 25/50/90 % of it
for ``duration`` seconds each, arrival on store-a to arrival on store-b (IMAP IDLE on
both); no catch-up (W6 measures it). Both pairs run on this machine, one after the other
per run; lag ratios are asynchronous ÷ this mode, so below 1 means this mode lags more.
"""

from __future__ import annotations

import abc
import contextlib
from typing import Any

from bench.results import MetricDef, Side, WorkloadResult
from bench.workloads.base import Context, Driver, Workload
from bench.workloads.w6_mirror import NODE_B, MirrorWorkload, lag_metrics, start_pair

SYNC_TIMEOUT = "30"  # seconds: a guard; a timeout would fall back to asynchronous


class _ModeWorkload(Workload):
    mode_note = ""

    @abc.abstractmethod
    def mode(self) -> dict[str, Any]:
        """``start_pair``'s keywords for the mode under test."""

    def params(self, ctx: Context) -> dict[str, Any]:
        return MirrorWorkload().params(ctx) | {"catchup_messages": 0}

    def metric_defs(self, ctx: Context) -> list[MetricDef]:
        return lag_metrics(capacity_main=True)

    def setup(
        self, ctx: Context, result: WorkloadResult, stack: contextlib.ExitStack
    ) -> dict[Side, Driver]:
        p = result.params
        runs = self.runs(ctx)
        drivers: dict[Side, Driver] = {}
        modes: tuple[tuple[Side, dict[str, Any]], ...] = (("postern", self.mode()), ("peer", {}))
        for side, keywords in modes:
            try:
                where = ctx.dir(self.id, side)
                drivers[side] = start_pair(ctx, stack, where, p, runs, **keywords)
            except Exception as exc:  # a failed start: the other side can still run
                result.unavailable[side] = f"the mirrored pair did not start: {exc}"[:300]
        result.notes.append(
            f"Postern: {self.mode_note}; peer: the asynchronous pair (W6's set-up); "
            f"messages of {p['size']} bytes published to store-a's MAIL_INBOUND; lag = "
            f"arrival on {NODE_B} − arrival on store-a (IMAP IDLE on both) at 25/50/90 % "
            f"of each pair's own measured delivery rate, {p['duration']:.0f} s each"
        )
        return drivers


class SyncModeWorkload(_ModeWorkload):
    id = "W6s"
    title = "mirror lag, synchronous mode"
    peer_name = "the asynchronous pair"
    mode_note = f"store-a in synchronous mode towards {NODE_B} (timeout {SYNC_TIMEOUT} s)"

    def mode(self) -> dict[str, Any]:
        return {
            "master_env": {
                "POSTERN_MIRROR_SYNC_PEER": NODE_B,
                "POSTERN_MIRROR_SYNC_TIMEOUT": SYNC_TIMEOUT,
            }
        }


class FollowerWorkload(_ModeWorkload):
    id = "W6f"
    title = "mirror lag, a read-only follower attached"
    peer_name = "the pair alone"
    mode_note = "the asynchronous pair with a third store, store-c, following store-a"

    def mode(self) -> dict[str, Any]:
        return {"follower": True}


__all__ = ["FollowerWorkload", "SyncModeWorkload"]
