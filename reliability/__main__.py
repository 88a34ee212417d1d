"""``python -m reliability``: run the scenarios, the hostile-input probes, the fuzzers and
the mixed run; print the tables; write docs/reliability.md."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from mailcore.logging import setup_logging
from reliability.checker import Report
from reliability.report import Probe, findings, probe_table, scenario_table
from reliability.scenarios import select
from reliability.scenarios.common import Context

ROOT = Path(__file__).resolve().parent.parent


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m reliability", description=__doc__)
    p.add_argument("--only", help="comma-separated scenario names/prefixes or families")
    p.add_argument("--skip", help="comma-separated scenario names/prefixes or families")
    p.add_argument("--duration", type=float, default=15.0, help="seconds of load per scenario")
    p.add_argument("--senders", type=int, default=4, help="concurrent SMTP senders")
    p.add_argument("--mixed", type=float, default=300.0, help="mixed run seconds (0 = none)")
    p.add_argument("--fuzz", type=float, default=120.0, help="fuzzing seconds in all (0 = none)")
    p.add_argument("--no-hostile", action="store_true", help="skip the hostile-input probes")
    p.add_argument("--write", type=Path, default=ROOT / "docs" / "reliability.md", help="the page")
    p.add_argument("--no-write", action="store_true", help="do not write the page")
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="clusters' data and logs (default: a temp dir, removed after a clean run)",
    )
    return p.parse_args(argv)


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT).returncode != 0
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


async def _scenarios(
    args: argparse.Namespace, ctx: Context, progress: Callable[[list[Report]], None]
) -> list[Report]:
    only = args.only.split(",") if args.only else None
    skip = args.skip.split(",") if args.skip else None
    reports = []
    for sc in select(only, skip):
        started = time.monotonic()
        print(f"-- {sc.name}: {sc.what}", flush=True)
        try:
            report = await sc.run(ctx)
        except Exception as exc:
            report = Report(sc.name)
            report.fail(f"scenario crashed: {type(exc).__name__}: {exc}")
            traceback.print_exc()
        took = time.monotonic() - started
        print(
            f"   {'ok' if report.ok else 'FAIL'} in {took:.0f}s: acked {report.acked}, "
            f"lost {report.lost}, dup {report.duplicated}, phantom {report.phantom}, "
            f"uid {report.uid_violations}, bad answers {report.bad_answers}, "
            f"divergence {report.divergence}",
            flush=True,
        )
        for d in report.details[:5]:
            print(f"     {d}", flush=True)
        reports.append(report)
        progress(reports)
    return reports


async def _main(args: argparse.Namespace) -> int:
    setup_logging("reliability", level="warning", fmt="console")
    started, commit = time.monotonic(), _commit()  # the code that runs, not a later one
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="postern-reliability-"))
    ctx = Context(workdir, duration=args.duration, senders=args.senders)

    kept = hand_written(args.write.read_text()) if args.write.exists() else ""

    def progress(done: list[Report]) -> None:
        """Write what is done so far: a run cut short still leaves its figures."""
        if not args.no_write:
            partial = render(done, [], [], time.monotonic() - started, commit, kept)
            args.write.write_text(partial.replace("## Faults under load", PARTIAL, 1))

    reports = await _scenarios(args, ctx, progress)
    # The fuzzers (one core, pure CPU, a process of their own) run while the hostile
    # probes, which mostly wait on the servers' answers and login delays, use the other.
    fuzzing = asyncio.ensure_future(_fuzz(args.fuzz))
    probes: list[Probe] = []
    if not args.no_hostile:
        from reliability.hostile import run_probes

        probes = await run_probes(ctx)
    fuzz_lines = await fuzzing
    if args.mixed > 0:
        from reliability.mixed import mixed_run

        try:
            reports.append(await mixed_run(ctx, args.mixed))
        except Exception as exc:
            traceback.print_exc()
            crashed = Report(f"mixed-{args.mixed:.0f}s")
            crashed.fail(f"mixed run crashed: {type(exc).__name__}: {exc}")
            reports.append(crashed)
    elapsed = time.monotonic() - started
    text = render(reports, probes, fuzz_lines, elapsed, commit, kept)
    print(text)
    if not args.no_write:
        args.write.write_text(text)
        print(f"written to {args.write}")
    print(budget(elapsed), flush=True)
    failed = [r for r in reports if not r.ok] + [p for p in probes if not p.ok]
    if args.workdir is None and not failed:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"logs and data kept in {workdir}")
    return 1 if failed else 0


async def _fuzz(seconds: float) -> list[str]:
    if seconds <= 0:
        return []
    from reliability.fuzz import run_fuzzers

    spawn = multiprocessing.get_context("spawn")  # no fork of this process's threads
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        return await asyncio.get_running_loop().run_in_executor(pool, run_fuzzers, seconds)


BUDGET = 30 * 60.0  # issue 18: the whole run in under 30 minutes on 2 cores


def budget(elapsed: float) -> str:
    """The run's time against the issue's bound, one line."""
    verdict = "within" if elapsed < BUDGET else "OVER"
    return (
        f"budget: {elapsed / 60:.1f} of {BUDGET / 60:.0f} minutes "
        f"({100 * elapsed / BUDGET:.0f}%, {verdict} the bound)"
    )


# The hand-written section: render keeps whatever stands between these two lines.
KEEP_BEGIN = "<!-- hand-written: make reliability keeps what is between these lines -->"
KEEP_END = "<!-- end of the hand-written part -->"


def hand_written(page: str) -> str:
    """The hand-written part of an earlier page, markers included ("" if it has none)."""
    start = page.find(KEEP_BEGIN)
    end = page.find(KEEP_END, start + len(KEEP_BEGIN))
    if start < 0 or end < 0:
        return ""
    return page[start : end + len(KEEP_END)]


def render(
    reports: list[Report],
    probes: list[Probe],
    fuzz: list[str],
    elapsed: float,
    commit: str,
    kept: str = "",
) -> str:
    """The page; ``kept`` (see :func:`hand_written`) goes after the run's header."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# Reliability",
        "",
        f"Produced by `make reliability` on {now} from commit `{commit}` in "
        f"{elapsed / 60:.1f} minutes on a shared 2-core machine ({budget(elapsed)}). "
        "How it works and how to read it: see the end of this page.",
        "",
        *([kept, ""] if kept else []),
        "## Faults under load",
        "",
        scenario_table(reports),
        "",
    ]
    notes = findings(reports)
    if notes:
        parts += ["### Details", "", notes, ""]
    if probes:
        parts += ["## Hostile input", "", probe_table(probes), ""]
    if fuzz:
        parts += ["## Fuzzing", "", *fuzz, ""]
    parts += [ABOUT]
    return "\n".join(parts)


PARTIAL = "**Partial: the run was still going when this was written.**\n\n## Faults under load"

ABOUT = """## How it works

* Every test message carries a unique `X-Reliability-Id` header. The **ledger** records
  each SMTP attempt and its reply: 250 to the end of DATA is *acked*, a 4xx/5xx is
  *refused*, a connection that broke after the data and before any reply is *unknown*.
  The load generator retries 4xx and unknown attempts like a real MTA.
* After the load stops and the store has drained the inbound stream, the **checker** reads
  every mailbox of every account over IMAP (and takes snapshots during the run) and
  reports **lost** (acked, in no mailbox of the recipient), **phantom** (present, every
  attempt refused), **duplicated** (extra copies; *explained* when an attempt got no answer
  and the sender retried — RFC 1047's duplicate, counted, never hidden), **UID violations**
  (one UID for two messages, UID at/above UIDNEXT, UIDNEXT going back, a UID reused, a new
  message below an earlier UIDNEXT, all within one UIDVALIDITY) and **bad answers** (a
  valid message answered 5xx: internal failures must answer 4xx).
* Faults are real: processes on loopback, SIGKILL. Exact steps use crash points armed by
  `POSTERN_FAULT_POINT=name@n` (off by default; see `mailcore/faults.py`): the process
  SIGKILLs itself the n-th time it passes the point. Disk-full cases use a small tmpfs.
  The store's consumer ack wait is shortened to 3 s in these runs so what a killed store
  fetched comes back within the scenario (60 s in production).
* Scanner failures (refusing, hanging, garbage) use a closed port or a fake TCP server:
  those scenarios are about the filter's reaction (fail closed with 4xx, stay responsive).
  `scanners-real-killed` kills the real spamd and clamd.
* Hostile input runs against one live cluster; each login probe comes from its own
  127.0.x.y address so per-IP throttles of one probe do not colour the next. That cluster
  turns an address away after 4 failed logins for one account
  (`POSTERN_LOGIN_MAX_FAILURES=4`, 10 by default) so the brute-force rows see the delays
  grow (2, 4, 8, 16 s) and then the lockout in under a minute.
* Webmail rows: a webmail node (`services.webmail`) on that cluster. A mail with hostile
  HTML (script, event handlers, `javascript:` links, a remote image, an iframe) is
  delivered by SMTP and its shown body fetched: each construct must be gone and the body's
  Content-Security-Policy allow no script and no remote image. A logged-in browser's
  `POST /act` (flag a message) without the CSRF token, with a wrong one, and with the
  right one from a foreign `Origin` must answer 403 and leave the message unflagged (read
  over IMAP); the same POST done right flags it (the control). The login form and session
  cookies must be HttpOnly and SameSite=Lax, Secure over HTTPS (a TLS proxy on a trusted
  address saying `X-Forwarded-Proto: https`) and not over plain HTTP.
* Fuzzing: Hypothesis drives the SMTP, IMAP and POP3 command parsers and the MIME parser
  with random bytes and token-built input for a bounded time, in a process of its own
  while the hostile probes run (they mostly wait for answers); a parser may refuse input
  only with its own syntax error. A crash's shrunk input is kept under
  `tests/reliability/fuzz_regressions/` and replayed by `make test`.
* `relay-kill-mid-transaction`: submission load to another domain whose MX is an aiosmtpd
  sink on loopback (`POSTERN_RELAY_ROUTES`); the sink SIGKILLs the relay at RCPT and again
  after a DATA, before its 250 reaches the relay. Its ledger is what the sink received:
  lost = acked by submission, never at the sink. A copy the sink got twice with a relay kill
  between the two is RFC 5321 §6.1's duplicate (the remote said 250, the relay died before
  it could settle): counted and explained; a duplicate with no kill between fails.
* `webmail-kill-mid-request`: two webmail nodes behind a round-robin TCP balancer, every
  account reading its inbox through it; one node is SIGKILLed while the balancer holds a
  request of it unanswered. The requests cut are counted; every request begun after the
  kill must succeed on the other node with the same session, and the restarted node must
  serve the old sessions.
* Mirror scenarios (`--only mirror`) run a mirrored pair (docs/mirror.md): store A, the
  master, takes the filter's mail; store B, the slave, has its own nats-server, data and
  IMAP port; each mirror reaches the other side's NATS through a TCP link the scenario
  can cut. The checker reads every mailbox on *both* stores once they converged (nothing
  queued either way, equal mailbox digests; 180 s at most): lost, duplicated, phantom and
  UID violations count per store, and a mailbox that differs between them (missing, other
  UIDVALIDITY, other UID → message map) is a *divergence* and fails the row.
  - `mirror-link-cut`: both links reset (open connections dropped, new ones refused) for a
    third of the run while A takes mail and B takes IMAP APPENDs into the same INBOXes
    (a split brain: the UIDs both sides gave out are renumbered on healing); restored.
  - `mirror-link-flap`: the links go down for 0.5–2 s and up for 1–2 s, again and again,
    reset and stalled (a black hole: bytes and new connections held, then delivered) in
    turn.
  - `mirror-resync-kill`: store B's mail is wiped (a new disk) under load and refilled by
    `mailctl mirror resync` from A while mail keeps arriving (lighter load); B is SIGKILLed
    during the first run and A during the second (a resync that does not fail within 5 s
    of it is interrupted, as an operator would), each restarted; the third run resumes
    and completes, then B's mirror starts and applies what queued meanwhile.
* The mixed run puts load on one cluster and, every 10–20 s, kills the filter, the store or
  nats-server (SIGKILL, restarted) or freezes the filter or the store (SIGSTOP for 4 s).

## Running it

`make reliability` runs everything (under 30 minutes on 2 cores; its last line and this
page's header say the time against that bound) and rewrites this page, keeping the
hand-written findings between the `<!-- hand-written ... -->` and
`<!-- end of the hand-written part -->` lines. Mid-run snapshots are read while the load
runs on (not after it), the store and the filter start together, a fault point is armed
from a service's first start, and clusters stop all their services at once. Flags go in
`RELIABILITY_ARGS`, e.g.
`make reliability RELIABILITY_ARGS='--only baseline,filter-kill --mixed 60 --fuzz 30'`;
`--help` lists them (`--only`/`--skip` take scenario names, prefixes or families,
`--duration` is the load per scenario, `--mixed` the mixed run's length, `--no-write`
keeps this page). Disk-full scenarios mount a tmpfs and need root.

## Adding scenarios

A scenario is an async function decorated with
`@scenario(name, family, what)` in a module listed in `reliability.scenarios.MODULES`; it
starts a cluster with `cluster_run`, puts load on it, hurts it, and returns
`run.finish()` (the checker's report; `report.fail(...)` adds a scenario-specific
failure). Relay, webmail and mirror scenarios are families of their own; a run that
reads several stores sets `run.stores` (name, IMAP port) and `run.settle` (awaited before
the final snapshot, e.g. until a mirror converged): `reliability/scenarios/mirror.py`.
"""


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_main(_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
