"""The filter service: SMTP listeners, screening, hand-off to JetStream.

A filter node keeps no state of its own: the directory comes from the DIRECTORY KV bucket,
accepted mail goes to JetStream, and taking mail needs no store (invariant 5); only SMTP
AUTH asks the store, which alone may read the password hashes (auth_check.py). Run as
many as you like on one NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import ssl

from mailcore.bus import names
from mailcore.bus.connect import Bus
from mailcore.config import FilterSettings
from mailcore.directory import Directory
from mailcore.logging import get_logger
from mailcore.loginguard import LoginGuard
from mailcore.loginguard import Policy as LoginPolicy
from mailcore.service import ServiceContext
from mailcore.tls import ensure_certificate, server_context
from services.filter import inbound_gauges
from services.filter.auth_check import StorePasswordCheck
from services.filter.context import FilterContext
from services.filter.delivered import DeliveredWaiter
from services.filter.dkim_verify import DkimVerifier, TxtLookup, dns_txt
from services.filter.handoff import FILL_REFRESH, FillGate, Handoff
from services.filter.listeners import Listeners, ListenerSpec, listener_specs
from services.filter.policy import Policy
from services.filter.proxy import TrustedNetworks
from services.filter.screening.verdict import Screening
from services.filter.smtp.session import Session, session_factory
from services.filter.throttle import AuthThrottle, ConnectionLimiter

log = get_logger("filter")

# At stop, how long messages in progress may finish; within mailctl's 15 s cleanup budget.
DRAIN_SECONDS = 10.0
DKIM_DNS_TIMEOUT = 5.0


def tls_context(s: FilterSettings) -> ssl.SSLContext:
    """The node's certificate (self-signed on first run). Two nodes sharing a data
    directory take turns creating it; an existing certificate (a read-only mount in
    compose) is only read."""
    if not (s.cert_path.exists() and s.key_path.exists()):
        lock_path = s.cert_path.parent / ".cert.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                ensure_certificate(s.cert_path, s.key_path, s.hostname)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    return server_context(s.cert_path, s.key_path)


class FilterNode:
    """Everything one filter process runs; ``serve`` and the tests start it the same way."""

    def __init__(
        self,
        settings: FilterSettings,
        bus: Bus,
        *,
        fill_refresh: float = FILL_REFRESH,
        dkim_lookup: TxtLookup | None = None,
    ) -> None:
        self.settings = settings
        self.dkim_lookup = dkim_lookup
        self.bus = bus
        self.fill_refresh = fill_refresh
        self.directory: Directory | None = None
        self.gate: FillGate | None = None
        self.delivered: DeliveredWaiter | None = None
        self.ctx: FilterContext | None = None
        self.listeners: Listeners | None = None
        self.listening = False
        self._sessions: set[Session] = set()
        self._no_sessions = asyncio.Event()

    async def start(self) -> None:
        s = self.settings
        # aiosmtpd logs every connection at INFO on "mail.log": far too chatty at 600/s.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        logging.getLogger("mail.debug").setLevel(logging.WARNING)
        tls = await asyncio.to_thread(tls_context, s)
        self.directory = await Directory.open(self.bus.js)
        self.bus.on_reconnect(self.directory.restart_watch)
        bodies = await self.bus.js.object_store(names.OBJ_BODIES)
        self.gate = FillGate(self.bus.js, s.inbound_high_water, self.fill_refresh)
        await self.gate.start()
        if s.handoff_sync_timeout > 0:  # synchronous mirroring (services/filter/delivered.py)
            self.delivered = DeliveredWaiter(s.handoff_sync_timeout)
            await self.delivered.start(self.bus.nc)
        handoff = Handoff(
            self.bus.js,
            bodies,
            self.gate,
            inline_max=s.inline_body_max,
            timeout=s.handoff_timeout,
            patience=s.handoff_patience,
            delivered=self.delivered,
        )
        self.ctx = FilterContext(
            settings=s,
            hostname=s.hostname,
            directory=self.directory,
            policy=Policy(self.directory),
            screening=Screening.from_settings(s),
            handoff=handoff,
            connections=ConnectionLimiter(s.max_connections_per_ip),
            auth_throttle=AuthThrottle(
                s.auth_max_failures_per_ip, s.auth_failure_window, s.auth_fail_delay
            ),
            tls=tls,
            trusted_proxies=TrustedNetworks(s.proxy_trusted_networks),
            passwords=StorePasswordCheck(self.bus.nc, self.directory, s.auth_timeout),
            login_guard=await LoginGuard.open(
                self.bus.js, LoginPolicy.from_settings(s, s.auth_fail_delay)
            ),
            dkim=(
                DkimVerifier(self.dkim_lookup or dns_txt(DKIM_DNS_TIMEOUT), s.scan_timeout)
                if s.dkim_verify
                else None
            ),
        )
        self._make_session = session_factory(self.ctx)
        self.listeners = Listeners(s.listen_host, tls, s.listen_backlog)
        await self.listeners.start(listener_specs(s), self._new_session)
        self.listening = True
        log.info(
            "filter ready",
            spamd=s.spamd_enabled,
            clamd=s.clamd_enabled,
            listeners=",".join(self.listeners.servers),
        )

    def _new_session(self, spec: ListenerSpec) -> Session:
        assert self.ctx is not None
        session = self._make_session(spec)
        self._sessions.add(session)
        self._no_sessions.clear()
        session.on_lost = self._forget
        return session

    def _forget(self, session: Session) -> None:
        self._sessions.discard(session)
        if not self._sessions:
            self._no_sessions.set()

    @property
    def open_sessions(self) -> int:
        """Connections this node is serving now (TLS handshakes in progress included)."""
        return len(self._sessions)

    @property
    def ready(self) -> bool:
        return self.directory is not None and self.directory.synced

    async def stop(self) -> None:
        """Stop accepting, let sessions in progress finish (bounded), then close."""
        if self.ctx is not None:
            self.ctx.stopping = True
        if self.listeners is not None:
            self.listeners.stop_accepting()
            for session in list(self._sessions):
                session.shutdown()
            if self._sessions:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._no_sessions.wait(), DRAIN_SECONDS)
            for session in list(self._sessions):
                session.abort()  # no waiting for a TLS close_notify
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self.listeners.wait_closed()
        if self.gate is not None:
            await self.gate.stop()
        if self.delivered is not None:
            await self.delivered.stop()
        if self.directory is not None:
            # Bounded: a cancel lost inside the client library must not hold up the stop.
            closing = asyncio.create_task(self.directory.close())
            if not (await asyncio.wait({closing}, timeout=5))[0]:
                log.warning("directory watch did not stop in time")


async def serve(ctx: ServiceContext[FilterSettings]) -> None:
    bus = await ctx.connect_bus()
    node = FilterNode(ctx.settings, bus)
    # registered before the start: /healthz is not ok until the SMTP ports listen (an early
    # probe would otherwise see only the bus connection and report ok)
    ctx.ops.add_check("listeners", lambda: node.listening)
    ctx.ops.add_check("directory", lambda: node.ready)
    await node.start()
    ctx.on_cleanup(node.stop)
    # false while JetStream cannot store (a full disk switched it off): a balancer stops
    # sending mail here, which would only get 451
    ctx.ops.add_check("bus", lambda: node.gate is not None and node.gate.bus_available)
    gauges = asyncio.create_task(inbound_gauges.run(bus, ctx.stopping), name="inbound-gauges")
    await ctx.stopping.wait()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(gauges, 5)
