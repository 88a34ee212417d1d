"""W8: outbound — mail submitted for a remote domain until it reaches that domain's MX.

Postern: submission (AUTH PLAIN on loopback) → filter → MAIL_OUTBOUND → relay → the sink,
by a static route (``POSTERN_RELAY_ROUTES``). Peer: Postfix 3.7 relaying for 127.0.0.0/8
to the same sink by a transport table. The sink is Postfix's ``smtp-sink`` (one dump file
per message; its modification time is the arrival). Same generator, sessions, message and
count on both sides; see :mod:`bench.loadgen.submit_flow`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from bench.loadgen.submit_flow import run_submit
from bench.peers.mailuser import PeerSetupError
from bench.peers.postfix import Postfix, PostfixLayout
from bench.peers.sink import SmtpSink
from bench.results import MetricDef, Side, WorkloadResult
from bench.workloads.base import DOMAIN, PASSWORD, Context, Driver, Sample, Workload
from bench.workloads.common import start_postern, write_message_files
from services.ctl.daemons import free_port

REMOTE = "sink.example"
SENDER = f"w8sender@{DOMAIN}"
# Postfix's default_destination_concurrency_limit; Postern's relay is given the same.
DESTINATION_CONCURRENCY = 20


class SubmitDriver(Driver):
    def __init__(
        self,
        pids: Any,
        port: int,
        sink: SmtpSink,
        params: dict[str, Any],
        body: bytes,
        login: tuple[str, str] | None,
    ) -> None:
        self._pids = pids
        self.port = port
        self.sink = sink
        self.params = params
        self.body = body
        self.login = login

    def pids(self) -> list[int]:
        return list(self._pids())

    def run_once(self, run: int) -> Sample:
        p = self.params
        result = asyncio.run(
            run_submit(
                port=self.port,
                sink=self.sink,
                run=run,
                messages=p["messages"],
                sessions=p["sessions"],
                body=self.body,
                sender=SENDER,
                rcpt=f"someone@{REMOTE}",
                login=self.login,
                timeout=p["timeout"],
            )
        )
        notes = [f"{len(result.latencies)} messages timed"]
        if result.arrived_s is None:
            notes.append(f"only {result.arrived} messages reached the sink in {p['timeout']}s")
        return Sample(values=result.values(p["messages"]), notes=notes)


class OutboundRelay(Workload):
    id = "W8"
    title = "outbound: submission → relay → remote MX (smtp-sink)"
    peer_name = "Postfix relaying to the same sink"
    metrics = [
        MetricDef("e2e", "throughput, submitted until at the sink", "msg/s", True, 1.5),
        MetricDef("latency_p99", "submission → sink, p99", "ms", False),
        MetricDef("latency_p50", "submission → sink, median", "ms", False, main=False),
        MetricDef("submit", "submission accept rate", "msg/s", True, main=False),
    ]

    def params(self, ctx: Context) -> dict[str, Any]:
        return {
            "messages": 200 if ctx.quick else 1000,
            "sessions": 10,
            "size": 10 * 1024,
            "timeout": 300,
        }

    def setup(
        self, ctx: Context, result: WorkloadResult, stack: contextlib.ExitStack
    ) -> dict[Side, Driver]:
        p = result.params
        where = ctx.dir(self.id)
        _, body = write_message_files(where, p["size"], f"someone@{REMOTE}")
        drivers: dict[Side, Driver] = {}
        try:
            postern_sink = SmtpSink(ctx.dir(self.id, "sink-postern"))
            stack.callback(postern_sink.stop)
            postern_sink.start()
            peer_sink = SmtpSink(ctx.dir(self.id, "sink-peer"))
            stack.callback(peer_sink.stop)
            peer_sink.start()
        except PeerSetupError as exc:
            result.unavailable["postern"] = result.unavailable["peer"] = str(exc)
            return drivers
        postern = start_postern(
            ctx,
            stack,
            where / "postern",
            {SENDER: PASSWORD},
            result,
            needs=("smtp",),
            with_filter=True,
            relay_routes={REMOTE: postern_sink.address},
            relay_env={
                "POSTERN_RELAY_DESTINATION_CONCURRENCY": str(DESTINATION_CONCURRENCY),
                "POSTERN_RELAY_DKIM": "false",
            },
        )
        if postern is not None:
            drivers["postern"] = SubmitDriver(
                lambda: [*postern.pids(), *postern_sink.pids()],
                postern.submission_port,
                postern_sink,
                p,
                body,
                (SENDER, PASSWORD),
            )
        why = Postfix.available()
        if why is not None:
            result.unavailable["peer"] = why
        else:
            postfix = Postfix(
                PostfixLayout(ctx.dir(self.id, "postfix")),
                free_port(),
                free_port(),  # no LMTP: nothing is delivered locally in W8
                DOMAIN,
                [SENDER],
                routes={REMOTE: peer_sink.address},
            )
            stack.callback(postfix.stop)
            try:
                postfix.start()
            except PeerSetupError as exc:
                result.unavailable["peer"] = str(exc)
            else:

                def peer_pids() -> list[int]:
                    pid = postfix.pid
                    return ([pid] if pid is not None else []) + peer_sink.pids()

                drivers["peer"] = SubmitDriver(
                    peer_pids, postfix.smtp_port, peer_sink, p, body, None
                )
        result.notes.append(
            f"{p['messages']} messages of {p['size']} bytes per run over {p['sessions']} "
            f"connections (one transaction after another); Postern's submissions log in "
            f"(AUTH PLAIN), Postfix relays for 127.0.0.0/8; both relay to their own "
            f"smtp-sink by a static route with {DESTINATION_CONCURRENCY} connections per "
            "destination; latency from MAIL FROM to the sink's dump file (mtime: a few ms "
            "of file-system timestamp granularity)"
        )
        return drivers
