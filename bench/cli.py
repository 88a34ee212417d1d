"""``python -m bench``: run the workloads, write the report.

python -m bench                  every workload, 3 runs each → bench/results/latest.md
python -m bench --only W4        one workload (the others keep their last figures)
python -m bench --only W4b --duration 20   W4b with 20 measured seconds per run
python -m bench --quick          small sizes, 1 run, report under bench/results/runs/
python -m bench --report-only    rebuild latest.md and the plots from latest.json
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from bench.machine import describe, load_average, now
from bench.report import write_report
from bench.results import Report, WorkloadResult
from bench.workloads import WORKLOAD_IDS, all_workloads
from bench.workloads.base import Context, run_workload
from bench.workloads.mailboxes import ACCOUNTS_KEY

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Side-by-side benchmarks of Postern against Postfix and Dovecot.",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="W1[,W4]",
        help=f"run only these workloads ({', '.join(WORKLOAD_IDS)})",
    )
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="measured seconds per run of the timed workloads (W4b; default 60, quick 5)",
    )
    p.add_argument("--runs", type=int, default=None, help="runs per side (default 3, quick 1)")
    p.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: new)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample Postern's services with py-spy (profiles in the run's directory)",
    )
    p.add_argument("--out", type=Path, default=None, help="where the report goes")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from JSON")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    args = p.parse_args(argv)
    ids = {w.upper(): w for w in WORKLOAD_IDS}  # --only w4b names W4b
    wanted = [w.strip().upper() for item in args.only for w in item.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in ids]
    if unknown:
        p.error(f"unknown workload {', '.join(unknown)} (known: {', '.join(WORKLOAD_IDS)})")
    args.only = [ids[w] for w in wanted]
    if args.duration is not None and args.duration <= 0:
        p.error("--duration must be positive")
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def _stop_on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for w in all_workloads():
            print(f"{w.id}  {w.title}  (peer: {w.peer_name})")
        return 0
    out = args.out or RESULTS
    if args.report_only:
        report = Report.load(out / "latest.json")
        log(f"wrote {write_report(report, out)}")
        return 0
    from mailcore.logging import setup_logging

    setup_logging("bench", "warning", "console")
    signal.signal(signal.SIGTERM, _stop_on_term)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rundir = RESULTS / "runs" / stamp
    rundir.mkdir(parents=True, exist_ok=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="postern-bench-", dir="/var/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o755)  # the peers' unprivileged users must reach their files
    selected = [w for w in all_workloads() if not args.only or w.id in args.only]
    machine = describe()
    log(
        f"{machine.cpu_model}, {machine.cores} cores, load {machine.load_start}; "
        f"workdir {workdir}; raw results {rundir}"
    )
    ctx = Context(
        workdir=workdir,
        rundir=rundir,
        quick=args.quick,
        runs=args.runs,
        profile=args.profile,
        duration=args.duration,
        log=log,
    )
    accounts: dict[str, int] = {}
    for w in selected:
        accounts |= w.mailbox_accounts(ctx)
    ctx.shared[ACCOUNTS_KEY] = accounts
    merge_into_latest = not args.quick and args.out is None
    report = Report(machine=machine)
    if merge_into_latest and (out / "latest.json").exists():
        with contextlib.suppress(Exception):
            report.workloads = Report.load(out / "latest.json").workloads
    status = 0
    ran: list[WorkloadResult] = []
    try:
        with ctx.cleanups:
            needs_boxes = [w.id for w in selected if w.mailbox_accounts(ctx)]
            for w in selected:
                result = run_workload(w, ctx)
                report.workloads[w.id] = result
                ran.append(result)
                report.save(rundir / "report.json")
                if needs_boxes and w.id == needs_boxes[-1]:
                    ctx.cleanups.close()  # stop the shared mailboxes' servers now
    except KeyboardInterrupt:
        log("interrupted: stopping every daemon the harness started")
        status = 130
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    machine.load_end = load_average()
    machine.finished_at = now()
    if merge_into_latest:
        path = write_report(report, out)
    else:
        path = write_report(report, args.out or rundir, name="report")
    log(f"report: {path}")
    failed = [f"{w.id} {r.side} run {r.run + 1}" for w in ran for r in w.errors()]
    if failed and status == 0:
        log(f"!! failed runs (see the report): {', '.join(failed)}")
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
