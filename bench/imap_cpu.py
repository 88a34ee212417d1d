"""The store's CPU per IMAP command, two source trees side by side (issue 20).

``python -m bench.imap_cpu --tree-a /work/main --tree-b . --sessions 10 --rounds 4``

W4b's throughput moves by 2x between runs on a shared machine; the CPU a store spends per
command does not, so levers are judged by it. Two Postern stores (each with its own
nats-server, started as :class:`bench.postern.Postern` starts them, from tree A and tree
B) get the same accounts, filled through MAIL_INBOUND -> delivery with W4b's corpus
(``--mailbox-size`` messages of 1-50 KiB). Each round logs ``--sessions`` sessions in to
each store, SELECTs INBOX, then every session sends the same seeded sequence of
``--commands`` W4b commands (:func:`bench.loadgen.imap_sessions.command_for`, W4b's mix or
one ``--only`` type) back to back. The figure is the store's CPU time (psutil, user +
system, every thread and process of it: IMAP workers included) over the command phase
only, divided by the commands (after one unmeasured round of 100 commands per session, so
caches are warm). The stores take turns, the one that goes first alternating
by round, so both see the same machine; compare B / A per round, not absolute figures.
``--env-a``/``--env-b KEY=VALUE`` set a store's environment (a setting against another);
``--profile DIR`` samples each command phase with ``py-spy record --gil`` (folded stacks).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from bench.corpus import message, mixed_size
from bench.loadgen.imap_sessions import APPEND_BODIES, MIX, command_for
from bench.loadgen.populate import corpus, imap_count, wait_for_count
from bench.loadgen.wire import Imap
from bench.postern import Postern, inbound_backlog, publish_messages
from bench.workloads.base import DOMAIN, PASSWORD

FILL_TIMEOUT = 600.0


@dataclass
class Cpu:
    user: float
    system: float
    commands: int
    seconds: float

    @property
    def ms_per_command(self) -> float:
        return 1000 * (self.user + self.system) / max(1, self.commands)


def store_cpu(p: Postern) -> tuple[float, float]:
    """User and system seconds of the store process and its children (IMAP workers)."""
    root = psutil.Process(p.procs["store"].pid)
    user = system = 0.0
    for proc in (root, *root.children(recursive=True)):
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        user, system = user + t.user, system + t.system
    return user, system


def plan(args: argparse.Namespace, round_no: int) -> list[list[tuple[bytes, bytes | None]]]:
    """Each session's commands of one round (the same for both stores)."""
    kinds, weights = ([args.only], [1]) if args.only else (list(MIX), list(MIX.values()))
    bodies = [
        message(args.mailbox_size + k, mixed_size(args.mailbox_size + k))
        for k in range(APPEND_BODIES)
    ]
    out = []
    for n in range(args.sessions):
        rng = random.Random(args.seed * 1_000_003 + round_no * 1000 + n)
        cmds = []
        for _ in range(args.commands):
            kind = rng.choices(kinds, weights)[0]
            body = rng.choice(bodies) if kind == "APPEND" else None
            cmds.append((command_for(kind, rng, args.mailbox_size), body))
        out.append(cmds)
    return out


def py_spy(p: Postern, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the store's GIL holders (``--gil``) until SIGINT, folded stacks."""
    exe = Path(sys.executable).with_name("py-spy")
    argv = [str(exe), "record", "--gil", "--nonblocking", "-r", "200", "-f", "raw"]
    argv += ["-o", str(out), "--pid", str(p.procs["store"].pid)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the commands start
    return proc


async def one_round(
    p: Postern,
    users: list[str],
    cmds: list[list[tuple[bytes, bytes | None]]],
    profile: Path | None = None,
) -> Cpu:
    conns = []
    for user in users:  # logins and SELECT outside the measured phase
        conn = await Imap.connect("127.0.0.1", p.imap_port)
        await conn.login(user, PASSWORD)
        await conn.select("INBOX")
        conns.append(conn)

    async def session(conn: Imap, mine: list[tuple[bytes, bytes | None]]) -> None:
        for cmd, body in mine:
            await conn.command(cmd, body)

    spy = py_spy(p, profile) if profile is not None else None
    u0, s0 = store_cpu(p)
    t0 = time.monotonic()
    await asyncio.gather(*(session(c, m) for c, m in zip(conns, cmds, strict=True)))
    seconds = time.monotonic() - t0
    u1, s1 = store_cpu(p)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    for conn in conns:  # leave every mailbox at its size (APPENDs are \Deleted)
        await conn.command(b"EXPUNGE")
        await conn.logout()
    return Cpu(u1 - u0, s1 - s0, sum(map(len, cmds)), seconds)


async def fill(p: Postern, users: list[str], size: int) -> None:
    bus = await p.bus()
    try:
        for address in users:
            await publish_messages(bus, address, corpus(size, mixed_size, address))
        deadline = time.monotonic() + FILL_TIMEOUT
        while await inbound_backlog(bus) > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
    finally:
        await bus.close()
    for address in users:
        got = await wait_for_count(
            functools.partial(imap_count, p.imap_port, address, PASSWORD),
            size,
            timeout=120,
            interval=1,
        )
        if got != size:
            raise RuntimeError(f"{address}: {got} messages after the fill, wanted {size}")


def env_pairs(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.imap_cpu", description=__doc__)
    here = Path(__file__).resolve().parent.parent
    p.add_argument("--tree-a", type=Path, default=Path("/work/main"))
    p.add_argument("--tree-b", type=Path, default=here)
    p.add_argument("--env-a", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--env-b", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--sessions", type=int, default=10)
    p.add_argument("--commands", type=int, default=500, help="per session and round")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--mailbox-size", type=int, default=200)
    p.add_argument("--only", choices=list(MIX), help="one command type instead of W4b's mix")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, help="default: a temporary directory")
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy --gil each store's command phases into DIR (figures then perturbed)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    users = [f"own{n}@{DOMAIN}" for n in range(args.sessions)]
    with tempfile.TemporaryDirectory(prefix="imap-cpu-", dir=args.workdir) as tmp:
        stores = {
            name: Postern(
                Path(tmp) / name,
                DOMAIN,
                dict.fromkeys(users, PASSWORD),
                tree=tree.resolve(),
                extra_env=env_pairs(extra),
            )
            for name, tree, extra in (
                ("A", args.tree_a, args.env_a),
                ("B", args.tree_b, args.env_b),
            )
        }
        try:
            for name, p in stores.items():
                p.start()
                print(f"{name}: {p.tree} imap {p.imap_port}; filling", file=sys.stderr)
                asyncio.run(fill(p, users, args.mailbox_size))
            warm = plan(argparse.Namespace(**{**vars(args), "commands": 100}), -1)
            for p in stores.values():  # caches warm before the first measured round
                asyncio.run(one_round(p, users, warm))
            rows: dict[str, list[Cpu]] = {"A": [], "B": []}
            for r in range(args.rounds):
                cmds = plan(args, r)
                order = ["A", "B"] if r % 2 == 0 else ["B", "A"]
                for name in order:
                    spy = (
                        args.profile / f"store-{name}-round{r + 1}.folded" if args.profile else None
                    )
                    rows[name].append(asyncio.run(one_round(stores[name], users, cmds, spy)))
                a, b = rows["A"][-1], rows["B"][-1]
                print(
                    f"round {r + 1} ({'→'.join(order)}, load {psutil.getloadavg()[0]:.1f}): "
                    f"A {a.ms_per_command:.3f} ms/cmd (sys {1000 * a.system / a.commands:.3f}, "
                    f"{a.commands / a.seconds:.0f} cmd/s), B {b.ms_per_command:.3f} "
                    f"(sys {1000 * b.system / b.commands:.3f}, {b.commands / b.seconds:.0f} "
                    f"cmd/s), B/A {b.ms_per_command / a.ms_per_command:.2f}",
                    flush=True,
                )
            ratios = [
                b.ms_per_command / a.ms_per_command
                for a, b in zip(rows["A"], rows["B"], strict=True)
            ]
            print(
                f"mean ms/cmd A {statistics.mean(c.ms_per_command for c in rows['A']):.3f}, "
                f"B {statistics.mean(c.ms_per_command for c in rows['B']):.3f}; B/A per round "
                f"{', '.join(f'{x:.2f}' for x in ratios)} (median {statistics.median(ratios):.2f})"
            )
        finally:
            for p in stores.values():
                p.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
