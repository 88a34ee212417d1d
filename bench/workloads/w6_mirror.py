"""W6: mirror lag and catch-up (issue 12).

Postern: two complete stores, each with its own nats-server, data directory and mirror
process (docs/mirror.md), started by the harness as an operator runs them. Each run:

* **capacity**: ``capacity_messages`` published at once to the master's MAIL_INBOUND; the
  master's delivery rate (first publish → last ``EXISTS`` on the master) is the 100 %
  the lag levels are a share of;
* **lag** at 25 %, 50 % and 90 % of that rate, ``duration`` seconds each, paced: per
  message, the time from its arrival on the master to its arrival on the mirror, both seen
  by an IMAP IDLE session (``bench/loadgen/mirror_lag.py``); p50 and p99;
* **catch-up**: the mirror's process on the second store is stopped, ``catchup_messages``
  are delivered to the master and queued for it (``MIRROR_TO_STORE_B``), then it is
  started again: queued records ÷ seconds from its start until the queue is empty (the
  mirror's process start-up included), and the same from its first applied record.

Peer: two private Dovecot instances; the first holds the same number of messages
(delivered by LMTP), the second runs a doveadm server (TCP), and ``doveadm sync -u USER
tcp:127.0.0.1:PORT`` (dsync, as Dovecot's replicator runs it) is timed into the second's
emptied maildir. Dovecot has no live replication to measure lag against (its replicator
is gone in 2.4), so the lag figures are Postern's alone, against the issue's absolute
target (p99 < 1 s at 50 %).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.loadgen.populate import corpus, imap_count, lmtp_deliver, wait_for_count
from bench.peers.dovecot import Dovecot, DovecotLayout, DovecotPorts
from bench.peers.mailuser import PeerSetupError, chown_tree, mail_user
from bench.postern import MirrorLink, Postern, publish_messages
from bench.procs import run_metered
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
from mailcore.bus import mirror as queue
from mailcore.bus import names
from mailcore.bus.connect import connect
from mailcore.directory_records import record_key
from services.ctl.daemons import free_port

LEVELS = (25, 50, 90)  # per cent of the master's delivery rate
NODE_A, NODE_B, NODE_C = "store-a", "store-b", "store-c"
QUEUE_WAIT = 600.0  # seconds: hang guards, not assertions
DOVEADM = "/usr/bin/doveadm"
# The warm-up message's corpus number: never one of the measured ones (the store drops a
# message whose Message-ID it delivered to the mailbox before, services/store/duplicates.py).
WARM = 1_000_000


def users(runs: int) -> dict[str, str]:
    """Every account W6 writes to, in the order the probes log in (the first: the
    login probe's, which stays each store's own)."""
    out = {f"w6login@{DOMAIN}": PASSWORD}
    for r in range(1, runs + 1):
        out[f"w6cap{r}@{DOMAIN}"] = PASSWORD
        out |= {f"w6lag{r}x{level}@{DOMAIN}": PASSWORD for level in LEVELS}
        out[f"w6catch{r}@{DOMAIN}"] = PASSWORD
    return out


async def copy_users(src_url: str, dst_url: str, addresses: list[str]) -> None:
    """The mirror does not replicate the directory yet (docs/mirror.md): give the second
    store the same users with the same account ids, so IMAP logins work on both."""
    src = await connect(src_url, "postern-bench-w6", wait=20)
    dst = await connect(dst_url, "postern-bench-w6", wait=20)
    try:
        # the user records and their password hashes (mailcore/credentials.py)
        for bucket in (names.KV_DIRECTORY, names.KV_CREDENTIALS):
            kv_src = await src.js.key_value(bucket)
            kv_dst = await dst.js.key_value(bucket)
            for address in addresses:
                entry = await kv_src.get(record_key("user", address))
                assert entry.value is not None
                await kv_dst.put(record_key("user", address), entry.value)
    finally:
        await src.close()
        await dst.close()


class MirrorPair(Driver):
    def __init__(self, ctx: Context, a: Postern, b: Postern, params: dict[str, Any]) -> None:
        self.ctx, self.a, self.b, self.params = ctx, a, b, params

    def pids(self) -> list[int]:
        return self.a.pids() + self.b.pids()

    def _loadgen(self, mode: str, user: str, **opts: float | int) -> dict[str, Any]:
        argv = python_module(
            "bench.loadgen.mirror_lag",
            "--mode",
            mode,
            "--nats",
            self.a.nats_url,
            "--imap-master",
            str(self.a.imap_port),
            "--imap-mirror",
            str(self.b.imap_port),
            "--user",
            user,
            "--password",
            PASSWORD,
            "--size",
            str(self.params["size"]),
        )
        for key, value in opts.items():
            argv += [f"--{key}", str(value)]
        out, done = run_json(argv, timeout=QUEUE_WAIT)
        self._loadgen_cpu += done.cpu_s
        return out

    def _warm(self, user: str) -> None:
        """One message first: both stores then hold the account and its mailboxes."""
        asyncio.run(_publish(self.a.nats_url, user, 1, self.params["size"], start=WARM))
        for port in (self.a.imap_port, self.b.imap_port):

            def count(port: int = port) -> Any:
                return imap_count(port, user, PASSWORD)

            got = asyncio.run(wait_for_count(count, 1, timeout=120))
            if got < 1:
                raise RuntimeError(f"{user}'s first message never showed on port {port}")

    def run_once(self, run: int) -> Sample:
        p = self.params
        self._loadgen_cpu = 0.0
        values: dict[str, float] = {}
        notes: list[str] = []
        cap_user = f"w6cap{run + 1}@{DOMAIN}"
        self._warm(cap_user)
        cap = self._loadgen("capacity", cap_user, messages=p["capacity_messages"])
        capacity = float(cap["delivery_rate"])
        values["capacity"] = capacity
        values["mirror_at_capacity"] = float(cap["mirror_rate"])
        for level in LEVELS:
            user = f"w6lag{run + 1}x{level}@{DOMAIN}"
            self._warm(user)
            rate = capacity * level / 100
            out = self._loadgen("lag", user, rate=rate, duration=p["duration"])
            values[f"lag_p50_{level}"] = 1000 * float(out["lag_p50"])
            values[f"lag_p99_{level}"] = 1000 * float(out["lag_p99"])
            notes.append(
                f"{level} %: offered {rate:.1f} msg/s ({out['messages']} messages, "
                f"achieved {out['offered_rate']:.1f}), lag p50 {out['lag_p50'] * 1000:.0f} ms "
                f"p99 {out['lag_p99'] * 1000:.0f} ms max {out['lag_max'] * 1000:.0f} ms"
            )
        if not p["catchup_messages"]:  # W6s/W6f: lag only (bench/workloads/w6_modes.py)
            return Sample(values=values, loadgen_cpu=self._loadgen_cpu, notes=notes)
        queued, seconds, link_seconds, cpu = self._catch_up(run)
        values["catchup"] = queued / seconds
        values["catchup_link"] = queued / link_seconds
        notes.append(
            f"catch-up: {queued} records queued, {seconds:.2f} s from the mirror's start "
            f"({link_seconds:.2f} s from its first applied record)"
        )
        notes.append(catchup_cpu_note(cpu, queued))
        return Sample(values=values, loadgen_cpu=self._loadgen_cpu, notes=notes)

    def _catch_up(self, run: int) -> tuple[int, float, float, dict[str, float]]:
        p = self.params
        user = f"w6catch{run + 1}@{DOMAIN}"
        self._warm(user)
        self.b.stop_process("mirror")  # the second store's sink: nothing is applied there
        asyncio.run(_publish(self.a.nats_url, user, p["catchup_messages"], p["size"]))
        got = asyncio.run(
            wait_for_count(
                lambda: imap_count(self.a.imap_port, user, PASSWORD),
                p["catchup_messages"] + 1,
                timeout=QUEUE_WAIT,
                interval=1,
            )
        )
        if got < p["catchup_messages"] + 1:
            raise RuntimeError(f"the master delivered {got} of {p['catchup_messages'] + 1}")
        queued = asyncio.run(_queued_settled(self.a.nats_url, p["catchup_messages"]))
        pairs = {"a": self.a, "b": self.b}
        before = process_cpu(pairs)
        t0 = time.monotonic()
        self.b.start_mirror()
        first = asyncio.run(_drained(self.a.nats_url, queued))
        end = time.monotonic()
        after = process_cpu(pairs)  # the new mirror's from 0: its start-up counts
        cpu = {k: v - before.get(k, 0.0) for k, v in after.items()}
        want = p["catchup_messages"] + 1
        got = asyncio.run(imap_count(self.b.imap_port, user, PASSWORD))
        if got != want:
            raise RuntimeError(f"the mirror holds {got} of {want} messages after catch-up")
        return queued, end - t0, end - first, cpu


def process_cpu(pairs: dict[str, Postern]) -> dict[str, float]:
    """CPU seconds (user + system) so far of each process of the pair, by
    ``<service>-<side>`` (``store-b``: the mirror's store)."""
    out: dict[str, float] = {}
    for side, pair in pairs.items():
        for name, proc in pair.procs.items():
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(proc.pid).cpu_times()
                out[f"{name}-{side}"] = float(t.user + t.system)
    return out


def catchup_cpu_note(cpu: dict[str, float], records: int) -> str:
    """The catch-up's CPU per process (the load-insensitive side of its rate)."""
    total = sum(cpu.values())
    parts = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
    per = 1000 * total / max(records, 1)
    return f"catch-up CPU: {total:.2f} s in all ({per:.2f} ms a record): {parts}"


async def _publish(url: str, user: str, count: int, size: int, start: int = 0) -> None:
    bus = await connect(url, "postern-bench-w6", wait=20)
    try:
        await publish_messages(bus, user, corpus(count, size, user, start))
    finally:
        await bus.close()


async def _queued_settled(url: str, at_least: int) -> int:
    """Wait until the master's source queued every record for the peer (the count stops
    growing, at or above ``at_least``); the count."""
    bus = await connect(url, "postern-bench-w6", wait=20)
    try:
        deadline = time.monotonic() + QUEUE_WAIT
        last = -1
        while time.monotonic() < deadline:
            count, _ = await queue.queue(bus.js, NODE_B)
            if count >= at_least and count == last:
                return count
            last = count
            await asyncio.sleep(1.0)
        raise RuntimeError(f"only {last} records queued for the mirror, wanted {at_least}")
    finally:
        await bus.close()


async def _drained(url: str, queued: int) -> float:
    """Poll the peer's queue until it is empty; the monotonic time it first shrank."""
    bus = await connect(url, "postern-bench-w6", wait=20)
    first: float | None = None
    try:
        deadline = time.monotonic() + QUEUE_WAIT
        while time.monotonic() < deadline:
            count, _ = await queue.queue(bus.js, NODE_B)
            now = time.monotonic()
            if first is None and count < queued:
                first = now
            if count == 0:
                return first if first is not None else now
            await asyncio.sleep(0.05)
        raise RuntimeError("the mirror did not empty its queue")
    finally:
        await bus.close()


def lag_metrics(*, capacity_main: bool) -> list[MetricDef]:
    """The capacity burst's and the lag levels' figures (W6, W6s, W6f)."""
    rate = "msg/s"
    out = [
        MetricDef("capacity", "master's delivery rate, mirror on", rate, True, main=capacity_main),
        MetricDef("mirror_at_capacity", "mirror's rate in that burst", rate, True, main=False),
    ]
    for level in LEVELS:
        p50, p99 = f"lag_p50_{level}", f"lag_p99_{level}"
        out.append(MetricDef(p50, f"lag p50 at {level} %", "ms", False, main=False))
        out.append(MetricDef(p99, f"lag p99 at {level} %", "ms", False, main=level == 50))
    return out


def start_pair(
    ctx: Context,
    stack: contextlib.ExitStack,
    where: Any,
    p: dict[str, Any],
    runs: int,
    *,
    master_env: dict[str, str] | None = None,
    follower: bool = False,
) -> MirrorPair:
    """The mirrored pair (store-a master, store-b its mirror), W6's users on both;
    ``master_env``: more settings for store-a and its mirror (synchronous mode);
    ``follower``: a third store, ``store-c``, following store-a read-only."""
    accounts = users(runs)
    a = Postern(where / NODE_A, DOMAIN, accounts, mirror_env=dict(master_env or {}))
    b = Postern(where / NODE_B, DOMAIN, {f"w6login-b@{DOMAIN}": PASSWORD})
    a.mirror = MirrorLink(NODE_A, NODE_B, b.nats_url)
    b.mirror = MirrorLink(NODE_B, NODE_A, a.nats_url)
    sides = [a, b]
    if follower:
        c = Postern(where / NODE_C, DOMAIN, {f"w6login-c@{DOMAIN}": PASSWORD})
        c.mirror = MirrorLink(NODE_C, NODE_A, a.nats_url)
        c.mirror_env = {"POSTERN_MIRROR_FOLLOWER": "true"}
        a.mirror_env["POSTERN_MIRROR_FOLLOWERS"] = NODE_C
        sides.append(c)
    for side in reversed(sides):
        stack.callback(side.stop)
    # the master last: in synchronous mode its start-up probe delivery waits for store-b
    for side in reversed(sides):
        side.start()
    for side in (a, b):  # a follower takes no inbound mail: no delivery to wait for
        why = side.why_not("imap", "delivery")
        if why is not None:
            raise RuntimeError(why)
    shared = [u for u in accounts if not u.startswith("w6login@")]
    for other in sides[1:]:
        asyncio.run(copy_users(a.nats_url, other.nats_url, shared))
    ctx.log(f"   postern pair up: imap {a.imap_port} (master), {b.imap_port} (mirror)")
    return MirrorPair(ctx, a, b, p)


class DoveadmSync(Driver):
    def __init__(self, a: Dovecot, b: Dovecot, user: str, params: dict[str, Any]) -> None:
        self.a, self.b, self.user, self.params = a, b, user, params

    def pids(self) -> list[int]:
        return [pid for pid in (self.a.pid, self.b.pid) if pid]

    def run_once(self, run: int) -> Sample:
        target = self.b.maildir(self.user)
        shutil.rmtree(target, ignore_errors=True)  # a new, empty replica each run
        chown_tree(self.b.layout.mail_root, self.b.user)
        argv = [DOVEADM, "-c", str(self.a.layout.config), "sync", "-u", self.user]
        argv.append(f"tcp:127.0.0.1:{self.b.doveadm_port}")
        done = run_metered(argv, timeout=QUEUE_WAIT)
        if done.returncode != 0:
            raise RuntimeError(f"doveadm sync exited with {done.returncode}: {done.stderr[-400:]}")
        want = self.params["catchup_messages"]
        got = asyncio.run(imap_count(self.b.ports.imap, self.user, PASSWORD))
        if got != want:
            raise RuntimeError(f"the second Dovecot holds {got} of {want} after doveadm sync")
        return Sample(values={"catchup": want / done.wall_s}, side_cpu=done.cpu_s)


class MirrorWorkload(Workload):
    id = "W6"
    title = "mirror lag and catch-up"
    peer_name = "doveadm sync"

    def params(self, ctx: Context) -> dict[str, Any]:
        return {
            "capacity_messages": 300 if ctx.quick else 2000,
            "duration": 5.0 if ctx.quick else (ctx.duration or 20.0),
            "catchup_messages": 1000 if ctx.quick else 10_000,
            "size": 10 * 1024,
        }

    def metric_defs(self, ctx: Context) -> list[MetricDef]:
        rate = "msg/s"
        return [
            MetricDef("catchup", "catch-up of a queue (from the mirror's start)", rate, True, 2.0),
            MetricDef("catchup_link", "catch-up from its first record", rate, True, main=False),
            *lag_metrics(capacity_main=False),
        ]

    def setup(
        self, ctx: Context, result: WorkloadResult, stack: contextlib.ExitStack
    ) -> dict[Side, Driver]:
        p = result.params
        drivers: dict[Side, Driver] = {}
        runs = self.runs(ctx)
        try:
            drivers["postern"] = self._postern(ctx, stack, p, runs)
        except Exception as exc:  # a failed start: the peer can still run
            result.unavailable["postern"] = f"the mirrored pair did not start: {exc}"[:300]
        try:
            drivers["peer"] = self._dovecots(ctx, stack, p)
        except PeerSetupError as exc:
            result.unavailable["peer"] = str(exc)
        result.notes.append(
            f"Postern: two stores, each with its own nats-server and mirror process; "
            f"messages of {p['size']} bytes published to the master's MAIL_INBOUND; lag = "
            "arrival on the mirror − arrival on the master (IMAP IDLE on both), at 25/50/90 % "
            f"of the master's measured delivery rate for {p['duration']:.0f} s each; "
            f"catch-up: {p['catchup_messages']} messages queued while the second store's "
            "mirror process was stopped, timed from its start until the queue was empty"
        )
        result.notes.append(
            f"Dovecot: doveadm sync of the same {p['catchup_messages']} messages from one "
            "private instance to a second one's doveadm server over TCP (dsync), into an "
            "emptied maildir each run; lag targets are absolute (p99 < 1 s at 50 %), "
            "Dovecot has no live replication to compare"
        )
        return drivers

    def _postern(
        self, ctx: Context, stack: contextlib.ExitStack, p: dict[str, Any], runs: int
    ) -> MirrorPair:
        return start_pair(ctx, stack, ctx.dir(self.id, "postern"), p, runs)

    def _dovecots(
        self, ctx: Context, stack: contextlib.ExitStack, p: dict[str, Any]
    ) -> DoveadmSync:
        why = Dovecot.available()
        if why is not None:
            raise PeerSetupError(why)
        if not os.path.exists(DOVEADM):
            raise PeerSetupError("doveadm is not installed (dovecot-core)")
        user = f"w6sync@{DOMAIN}"
        pair = []
        for name, port in (("dovecot-a", 0), ("dovecot-b", free_port())):
            ports = DovecotPorts(imap=free_port(), pop3=free_port(), lmtp=free_port())
            d = Dovecot(
                DovecotLayout(ctx.dir(self.id, name)),
                ports,
                mail_user(),
                DOMAIN,
                {user: PASSWORD},
                doveadm_port=port,
            )
            stack.callback(d.stop)
            d.start()
            pair.append(d)
        a, b = pair
        ctx.log(f"   dovecot pair up: doveadm server on {b.doveadm_port}; filling the first")
        asyncio.run(lmtp_deliver(a.ports.lmtp, user, p["catchup_messages"], p["size"]))
        got = asyncio.run(imap_count(a.ports.imap, user, PASSWORD))
        if got != p["catchup_messages"]:
            raise PeerSetupError(f"the first Dovecot holds {got} of {p['catchup_messages']}")
        return DoveadmSync(a, b, user, p)


__all__ = ["MirrorWorkload"]
