"""nats-server in a container, with the watch ``mailctl up`` keeps over its own: JetStream
that a full disk switched off is brought back once the disk has room (services.ctl.natswatch:
a SIGHUP, then a restart of nats-server). Docker's restart policy only acts when a process
exits and an unhealthy HEALTHCHECK restarts nothing, so the compose ``nats`` service runs
nats-server under this (issue 17; hardening, issue 19 #1)::

    python -m services.ctl.natsrun --store-dir /var/lib/postern/nats -- nats-server -c CONF

The watch starts once the probe stream has taken a first write (the filters declare it),
so a fresh server is never restarted for want of streams. Stopping the runner (SIGTERM,
``docker stop``) stops nats-server and exits with its status.

The runner connects with the credentials of its settings (``POSTERN_NATS_USER``, …: the
administrator ``mailctl`` when the server has users). With ``--declare`` it declares every
stream and bucket once the server answers: services connected as their own NATS users may
not, they wait for it (docs/security.md).

With ``--ops-port`` it serves ``/metrics`` there (on ``POSTERN_OPS_HOST``): the server's
own figures from its monitoring port (services.ctl.natsmetrics; Debian packages no NATS
exporter), streams' depths and consumers' backlogs among them, for the compose Prometheus.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from mailcore.bus import credentials
from mailcore.bus.connect import connect
from mailcore.bus.probe import can_store
from mailcore.bus.setup import BusLimits, SetupError, declare_all
from mailcore.config import StoreSettings, load_settings
from mailcore.logging import get_logger
from mailcore.metrics import OpsServer
from services.ctl.natsmetrics import NatsMetrics
from services.ctl.natswatch import GRACE, INTERVAL, MIN_FREE, NatsWatch

log = get_logger("natsrun")


class NatsRunner:
    """Keeps one nats-server process running; the watch may restart it."""

    def __init__(
        self,
        command: list[str],
        url: str,
        store_dir: Path,
        *,
        interval: float = INTERVAL,
        grace: float = GRACE,
        min_free: int = MIN_FREE,
        auth: credentials.NatsAuth | None = None,
        declare: BusLimits | None = None,
    ) -> None:
        self.command = command
        self.auth = auth
        self.declare = declare
        self.url = url
        self.store_dir = store_dir
        self.interval = interval
        self.grace = grace
        self.min_free = min_free
        self.proc: asyncio.subprocess.Process | None = None
        self.watch: NatsWatch | None = None
        self._swap = asyncio.Lock()  # held while the watch replaces the process

    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    async def _start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(*self.command)

    async def _stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
        return await self.proc.wait()

    async def restart(self) -> None:
        async with self._swap:
            log.warning("restarting nats-server: JetStream still stores nothing")
            await self._stop()
            await self._start()

    async def _watch(self, stopping: asyncio.Event) -> None:
        bus = await connect(self.url, "natsrun-watch", auth=self.auth, wait=120)
        try:
            while self.declare is not None and not stopping.is_set():
                try:
                    await declare_all(bus.js, self.declare)
                    log.info("streams and buckets declared")
                    break
                except (SetupError, Exception) as exc:  # JetStream may still be starting
                    log.warning("declaring streams failed, retrying", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self.interval)
            while not await can_store(bus.js, timeout=max(1.0, self.interval)):
                with contextlib.suppress(TimeoutError):  # streams not declared yet
                    await asyncio.wait_for(stopping.wait(), self.interval)
                if stopping.is_set():
                    return
            self.watch = NatsWatch(
                bus.js,
                self.store_dir,
                pid=self.pid,
                restart=self.restart,
                echo=log.warning,
                interval=self.interval,
                grace=self.grace,
                min_free=self.min_free,
            )
            await self.watch.run(stopping)
        finally:
            await bus.close()

    async def run(self, stopping: asyncio.Event) -> int:
        """Until ``stopping`` is set; nats-server's exit status then (or when it died by
        itself, which ends the runner too: the container's restart policy takes over)."""
        await self._start()
        watching = asyncio.create_task(self._watch(stopping))
        try:
            while not stopping.is_set():
                assert self.proc is not None
                proc = self.proc
                exited = asyncio.create_task(proc.wait())
                stop = asyncio.create_task(stopping.wait())
                await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                if not exited.done():
                    exited.cancel()
                    continue
                async with self._swap:
                    if self.proc is proc:  # it died by itself, not a restart by the watch
                        log.error("nats-server exited", status=proc.returncode)
                        return proc.returncode or 1
        finally:
            stopping.set()
            # The watch ends at once when told, unless it is still connecting to a server
            # that has died: then it is cancelled (wait_for's timeout) rather than awaited.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(watching, 3)
        return await self._stop()


async def _main(args: argparse.Namespace) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    settings = load_settings(StoreSettings)  # the store's delivery_max_deliver too
    runner = NatsRunner(
        args.command,
        args.url,
        Path(args.store_dir),
        auth=credentials.from_settings(settings),
        declare=(
            BusLimits.from_settings(settings, settings.delivery_max_deliver)
            if args.declare
            else None
        ),
    )
    if not args.ops_port:
        return await runner.run(stopping)
    figures = NatsMetrics(args.monitor_url)
    ops = OpsServer(settings.ops_host, args.ops_port)
    ops.add_check("monitor", lambda: figures.up)
    await ops.start()
    reading = asyncio.create_task(figures.run(stopping), name="nats-metrics")
    try:
        return await runner.run(stopping)
    finally:
        stopping.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reading, 10)
        await ops.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.ctl.natsrun", description=__doc__)
    parser.add_argument("--url", default="nats://127.0.0.1:4222", help="the server's client URL")
    parser.add_argument("--store-dir", required=True, help="JetStream's store_dir")
    parser.add_argument(
        "--declare",
        action="store_true",
        help="declare every stream and bucket as soon as the server answers",
    )
    parser.add_argument(
        "--ops-port",
        type=int,
        default=0,
        help="serve the server's figures on /metrics here (0: not at all)",
    )
    parser.add_argument(
        "--monitor-url",
        default="http://127.0.0.1:8222",
        help="nats-server's monitoring port (its `http` setting), read for --ops-port",
    )
    parser.add_argument("command", nargs="+", help="nats-server and its arguments (after --)")
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
