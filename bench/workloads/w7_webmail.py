"""W7: webmail page latency — Postern's webmail beside Debian's Roundcube (PHP's built-in
server, SQLite) on a private Dovecot holding the same mailbox.

Browsers (1, 10, 50 at once, each with its own session on the same account) alternately
open the Inbox (first page, 50 rows) and a random message (:mod:`bench.loadgen.web_pages`).
Reported per level: p95 (and p50) of each page kind. Postern's message page is /read (a
plain-text corpus message: no iframe to load); Roundcube's is ``_action=show``; Roundcube's
list is its AJAX ``_action=list`` (what the browser fetches after the frame page).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.peers.mailuser import PeerSetupError
from bench.peers.roundcube import Roundcube
from bench.postern import Postern
from bench.procs import die_with_parent
from bench.results import MetricDef, Side, WorkloadResult
from bench.workloads.base import (
    DOMAIN,
    PASSWORD,
    ROOT,
    Context,
    Driver,
    Sample,
    Workload,
    python_module,
    run_json,
)
from bench.workloads.mailboxes import shared_mailboxes
from services.ctl.daemons import free_port, wait_for_port
from services.webmail.workers import worker_count

ADDRESS = f"webmail@{DOMAIN}"
LEVELS = (1, 10, 50)
SESSION_KEY = "YmVuY2gtdzctc2Vzc2lvbi1rZXktMzItYnl0ZXMhISE="


class Pages(Driver):
    def __init__(self, kind: str, port: int, pids: Any, params: dict[str, Any]) -> None:
        self.kind, self.port, self._pids, self.params = kind, port, pids, params

    def pids(self) -> list[int]:
        return list(self._pids())

    def run_once(self, run: int) -> Sample:
        from bench.meter import cpu_delta, cpu_snapshot  # psutil: only when measuring

        p = self.params
        values: dict[str, float] = {}
        errors = 0
        loadgen_cpu = 0.0
        for n in p["levels"]:
            # one load generator per level, between two readings of the server's CPU
            argv = python_module(
                "bench.loadgen.web_pages",
                *("--kind", self.kind, "--base", f"http://127.0.0.1:{self.port}"),
                *("--user", ADDRESS, "--password", PASSWORD, "--levels", str(n)),
                *("--duration", str(p["duration"]), "--uids", str(p["messages"])),
                *("--seed", str(run + 1)),
            )
            before = cpu_snapshot(self.pids())
            out, done = run_json(argv, timeout=p["duration"] + 180)
            server_cpu = cpu_delta(before, cpu_snapshot(self.pids()))
            loadgen_cpu += done.cpu_s
            errors += out["errors"]
            kinds = dict(out["levels"][str(n)])
            requests = int(kinds.pop("requests", 0))
            for kind, stats in kinds.items():
                values[f"{kind}_p95_{n}"] = stats["p95"]
                values[f"detail.{kind}_p50_{n}"] = stats["p50"]
                values[f"detail.{kind}_n_{n}"] = stats["n"]
            if requests:
                # logins included: every browser of the level logs in once
                values[f"cpu_ms_{n}"] = 1000 * server_cpu / requests
        notes = [f"{errors} failed requests"] if errors else []
        return Sample(values=values, loadgen_cpu=loadgen_cpu, notes=notes)


class WebmailNode:
    """``python -m services.webmail`` against a bench Postern's store."""

    def __init__(self, postern: Postern, where: Path) -> None:
        self.postern = postern
        self.where = where
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = self.postern.env() | {
            "POSTERN_DATA": str(self.where),
            "POSTERN_HTTP_PORT": str(self.port),
            "POSTERN_WEBMAIL_OPS_PORT": str(free_port()),
            "POSTERN_WEBMAIL_SESSION_KEY": SESSION_KEY,
            "POSTERN_WEBMAIL_SPAMD_ENABLED": "false",
            "POSTERN_WEBMAIL_LOGIN_MAX_PER_IP": "100000",
            "POSTERN_WEBMAIL_LOGIN_MAX_PER_USER": "100000",
        }
        self.where.mkdir(parents=True, exist_ok=True)
        with open(self.where / "webmail.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.webmail"],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=ROOT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        proc = self.proc
        if not wait_for_port("127.0.0.1", self.port, 30, lambda: proc.poll() is None):
            self.stop()
            raise RuntimeError("the webmail did not start (see webmail.log)")

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class WebmailWorkload(Workload):
    id = "W7"
    title = "webmail page latency"
    peer_name = "Roundcube (php -S) + Dovecot"

    def params(self, ctx: Context) -> dict[str, Any]:
        quick = ctx.quick
        return {
            "messages": 200 if quick else 1000,
            "size": 4 * 1024,
            "levels": list(LEVELS),
            "duration": 4.0 if quick else 15.0,
        }

    def metric_defs(self, ctx: Context) -> list[MetricDef]:
        out = []
        for n in LEVELS:
            out.append(
                MetricDef(
                    f"list_p95_{n}",
                    f"Inbox page (50 rows) p95, {n} users",
                    "ms",
                    False,
                    target=2.0 if n == 10 else None,
                    main=n == 10,
                )
            )
            out.append(
                MetricDef(
                    f"message_p95_{n}",
                    f"message view p95, {n} users",
                    "ms",
                    False,
                    target=2.0 if n == 10 else None,
                    main=n == 10,
                )
            )
            out.append(
                MetricDef(
                    f"cpu_ms_{n}",
                    f"server CPU per page, {n} users (webmail + IMAP server)",
                    "ms/page",
                    False,
                )
            )
        return out

    def mailbox_accounts(self, ctx: Context) -> dict[str, int]:
        return {ADDRESS: self.params(ctx)["messages"]}

    def setup(
        self, ctx: Context, result: WorkloadResult, stack: contextlib.ExitStack
    ) -> dict[Side, Driver]:
        p = result.params
        boxes = shared_mailboxes(ctx, result, p["size"])
        result.unavailable.update(boxes.unavailable)
        drivers: dict[Side, Driver] = {}
        if boxes.postern is not None:
            postern = boxes.postern
            node = WebmailNode(postern, ctx.dir("w7", "webmail"))
            stack.callback(node.stop)
            node.start()
            ctx.log(f"   postern webmail up: http {node.port}")
            drivers["postern"] = Pages(
                "postern", node.port, lambda: [*postern.pids(), *node.pids()], p
            )
        if boxes.dovecot is not None:
            d = boxes.dovecot
            rc = Roundcube(
                ctx.dir("w7", "roundcube"), d.ports.imap, free_port(), workers=os.cpu_count() or 2
            )
            try:
                rc.start()
            except PeerSetupError as exc:
                result.unavailable["peer"] = str(exc)
            else:
                stack.callback(rc.stop)
                ctx.log(f"   roundcube up: http {rc.port} -> dovecot imap {d.ports.imap}")
                drivers["peer"] = Pages(
                    "roundcube", rc.port, lambda: [*rc.pids(), *([d.pid] if d.pid else [])], p
                )
        result.notes.append(
            f"{p['messages']} messages of {p['size'] // 1024} KiB in one Inbox per side; "
            "each browser has its own session; levels run one after the other; "
            "targets: p95 < 150 ms at 10 users and at most 0.5x Roundcube's p95; "
            f"webmail processes: {worker_count(0)} (POSTERN_WEBMAIL_WORKERS default: one per "
            f"core, at most 4), Roundcube's php -S workers: {os.cpu_count() or 2}"
        )
        return drivers
