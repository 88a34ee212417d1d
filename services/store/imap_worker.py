"""One IMAP worker process of the store (issue 20, ``imap_workers`` > 1):
``python -m services.store.imap_worker --lock-fd N --login-key-fd K --parent PID``,
started by the store process (services/store/imap_workers.py), never by hand.

It serves IMAP on the ports the store process bound (``POSTERN_IMAP_PORT`` and
``POSTERN_IMAPS_PORT`` as the store process passes them; SO_REUSEPORT, so the kernel
spreads new connections over every process), on the same account files (the store lock
inherited as descriptor N), and follows the other processes' commits through the
store's commit notices (mailcore/mailstore/notify.py). Its logins use the store's shared
cache of successful password checks (mailcore/logincache.py) with the key read from
descriptor K. Delivery, POP3, the admin and replica subjects stay in the store process.
It stops on SIGTERM, and by itself when the store process is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from functools import partial

from mailcore.config import StoreSettings
from mailcore.directory import Directory
from mailcore.logging import get_logger
from mailcore.logincache import KEY_SIZE, SharedLoginCache
from mailcore.loginguard import LoginGuard, Policy
from mailcore.mailstore import store_root
from mailcore.service import ServiceContext, run_service
from mailcore.tls import ensure_certificate, server_context
from services.store import mirror_sync as sync_wait
from services.store.auth import ConnectionLimiter, LoginThrottle
from services.store.imap.server import ImapServer
from services.store.storeopen import open_store

log = get_logger("store")

PARENT_CHECK = 1.0  # seconds between two looks for the store process


def read_key(fd: int) -> bytes:
    """The login cache's key from the pipe the store process wrote it to."""
    key = b""
    try:
        while len(key) < KEY_SIZE:
            chunk = os.read(fd, KEY_SIZE - len(key))
            if not chunk:
                raise RuntimeError("the store process sent no login cache key")
            key += chunk
    finally:
        os.close(fd)
    return key


async def serve_worker(
    ctx: ServiceContext[StoreSettings], *, lock_fd: int, login_key: bytes, parent: int
) -> None:
    s = ctx.settings
    bus = await ctx.connect_bus(max_deliver=s.delivery_max_deliver)
    directory = await Directory.open(bus.js, passwords=True)
    login_cache = SharedLoginCache.attach(store_root(s.data), login_key)
    ctx.on_cleanup(login_cache.aclose)
    directory.share_logins(login_cache)
    bus.on_reconnect(directory.restart_watch)
    ctx.on_cleanup(directory.close)
    store = await open_store(s, lock_fd=lock_fd)
    ctx.on_cleanup(store.close)
    store.enable_notices()
    ensure_certificate(s.cert_path, s.key_path, s.hostname)
    tls = server_context(s.cert_path, s.key_path)
    guard = await LoginGuard.open(bus.js, Policy.from_settings(s, s.auth_fail_delay))
    sync = await sync_wait.start(ctx, bus.nc, bus.js)  # synchronous mirroring: its own writes
    imap = ImapServer.from_settings(
        s,
        store=store,
        directory=directory,
        tls_context=tls,
        limiter=ConnectionLimiter(
            s.max_connections_per_ip, s.max_connections_per_user, s.max_connections
        ),
        throttle=LoginThrottle(s.auth_fail_delay),
        guard=guard,
    )
    imap.rt.mirror_sync = sync
    await imap.start()
    ctx.on_cleanup(imap.stop)
    orphan = asyncio.create_task(_stop_without(parent, ctx.stopping), name="parent-watch")
    log.info("imap worker ready", ports=imap.bound_ports())
    await ctx.stopping.wait()
    orphan.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await orphan


async def _stop_without(parent: int, stopping: asyncio.Event) -> None:
    """Stop once the store process is gone (killed without stopping its workers)."""
    while os.getppid() == parent:  # noqa: ASYNC110 (no event for a parent's end)
        await asyncio.sleep(PARENT_CHECK)
    log.warning("store process gone; imap worker stopping")
    stopping.set()


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--lock-fd", type=int, required=True)
    args.add_argument("--login-key-fd", type=int, required=True)
    args.add_argument("--parent", type=int, required=True)
    ns = args.parse_args()
    key = read_key(ns.login_key_fd)
    run_service(
        StoreSettings, partial(serve_worker, lock_fd=ns.lock_fd, login_key=key, parent=ns.parent)
    )


if __name__ == "__main__":
    main()
