"""The store service: wires the engine, delivery, IMAP and POP3 together."""

from __future__ import annotations

import asyncio
import contextlib

from mailcore.config import StoreSettings
from mailcore.directory import Directory
from mailcore.logging import get_logger
from mailcore.logincache import SharedLoginCache
from mailcore.loginguard import LoginGuard, Policy
from mailcore.mailstore.diskuse import report_forever
from mailcore.service import ServiceContext
from mailcore.tls import ensure_certificate, server_context
from services.store import mirror_sync as sync_wait
from services.store.admin import serve_admin
from services.store.auth import ConnectionLimiter, LoginThrottle
from services.store.auth_rpc import AuthResponder
from services.store.delivery import DeliveryConsumer
from services.store.imap.server import ImapServer
from services.store.imap_workers import ImapWorkers
from services.store.mirror_changed import ChangedNotices
from services.store.pop3.server import Pop3Server
from services.store.replica_rpc import serve_replica
from services.store.role import RoleGate
from services.store.storeopen import open_store

log = get_logger("store")


async def serve(ctx: ServiceContext[StoreSettings]) -> None:
    s = ctx.settings
    # /healthz is not ok before IMAP and POP3 listen: checks added along the way would
    # otherwise let an early probe see only the first ones pass (mailctl up's "is up")
    listening = asyncio.Event()
    ctx.ops.add_check("listeners", listening.is_set)
    bus = await ctx.connect_bus(max_deliver=s.delivery_max_deliver)
    directory = await Directory.open(bus.js, passwords=True)
    bus.on_reconnect(directory.restart_watch)
    ctx.on_cleanup(directory.close)
    ctx.ops.add_check("directory", lambda: directory.synced)
    # the filters' SMTP AUTH and the webmail's password changes (the hashes are ours only)
    auth_responder = AuthResponder(bus, directory)
    await auth_responder.start()
    ctx.on_cleanup(auth_responder.stop)
    # The mail storage engine and the delivery consumer (issue 3).
    store = await open_store(s)
    ctx.on_cleanup(store.close)
    login_cache = None
    if s.imap_workers > 1:
        # IMAP worker processes share the account files: every process tells the
        # others of its commits (IDLE and selected sessions stay current everywhere)
        store.enable_notices()
        # and successful password checks: a user's first login in each process costs no
        # second argon2id (made afresh at each start, with a new key: mailcore/logincache)
        login_cache = SharedLoginCache.create(store.root)
        ctx.on_cleanup(login_cache.aclose)
        directory.share_logins(login_cache)
    mirror_sync = await sync_wait.start(ctx, bus.nc, bus.js)  # synchronous mirroring
    consumer = DeliveryConsumer(
        bus,
        directory,
        store,
        batch=s.delivery_batch,
        max_deliver=s.delivery_max_deliver,
        unknown_attempts=s.delivery_unknown_attempts,
        max_requeues=s.delivery_max_requeues,
        min_free=s.delivery_min_free_bytes,
        mirror_sync=mirror_sync,
    )
    # only the master of a mirrored pair takes inbound mail (services/store/role.py); a
    # read-only follower never does (its mail comes from the journal it follows)
    gate = RoleGate(bus.js, s.mirror_role, s.hostname, consumer.run)
    if s.mirror_follower:
        gate.role = "follower"
        delivery_task = asyncio.create_task(_until(ctx.stopping), name="delivery-none")
    else:
        delivery_task = asyncio.create_task(gate.run(ctx.stopping), name="delivery-role")
    disk_task = asyncio.create_task(report_forever(store.root), name="disk-use")

    async def stop_delivery() -> None:
        ctx.stopping.set()
        disk_task.cancel()
        for task in (delivery_task, disk_task):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    admin = await serve_admin(bus, directory, store)
    ctx.on_cleanup(admin.unsubscribe)
    # its mirror ships a commit at once; only once a mirror asked (mirror_changed.py)
    changed = ChangedNotices.for_store(store, bus.nc, s.mirror_changed_notices)
    ctx.on_cleanup(changed.stop)
    # for its mirror process (services/mirror)
    for sub in await serve_replica(bus, store, on_mirror=changed.mirror_seen):
        ctx.on_cleanup(sub.unsubscribe)
    ctx.on_cleanup(stop_delivery)  # runs before store.close (reverse order)
    ctx.ops.add_check("delivery", lambda: consumer.running or gate.role != "master")
    ctx.ops.add_check("storage", consumer.storage_ok)
    # IMAP (issue 4): plain port with STARTTLS, IMAPS with implicit TLS.
    ensure_certificate(s.cert_path, s.key_path, s.hostname)
    tls = server_context(s.cert_path, s.key_path)
    # One connection cap and one failed-login throttle for IMAP and POP3 together.
    limiter = ConnectionLimiter(
        s.max_connections_per_ip, s.max_connections_per_user, s.max_connections
    )
    throttle = LoginThrottle(s.auth_fail_delay)
    # the failed-login policy shared with the filters' SMTP AUTH, kept in NATS
    guard = await LoginGuard.open(bus.js, Policy.from_settings(s, s.auth_fail_delay))
    imap = ImapServer.from_settings(
        s,
        store=store,
        directory=directory,
        tls_context=tls,
        limiter=limiter,
        throttle=throttle,
        guard=guard,
    )
    imap.rt.mirror_sync = mirror_sync
    await imap.start()
    ctx.on_cleanup(imap.stop)  # runs before the store closes (reverse order)
    if login_cache is not None:
        # issue 20: the other cores serve IMAP too, on the same ports (SO_REUSEPORT)
        workers = ImapWorkers(
            s.imap_workers - 1,
            lock_fd=store.lock_fd,
            ports=imap.bound_ports(),
            login_key=login_cache.key,
        )
        await workers.start()
        ctx.on_cleanup(workers.stop)  # before this process's IMAP and the store stop
    # POP3 (issue 5): plain port with STLS, POP3S with implicit TLS.
    pop3 = Pop3Server.from_settings(
        s,
        store=store,
        directory=directory,
        tls_context=tls,
        limiter=limiter,
        throttle=throttle,
        guard=guard,
    )
    await pop3.start()
    ctx.on_cleanup(pop3.stop)
    listening.set()
    log.info("store ready")
    await ctx.stopping.wait()


async def _until(stopping: asyncio.Event) -> None:
    await stopping.wait()
