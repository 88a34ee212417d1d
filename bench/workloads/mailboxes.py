"""Pre-loaded mailboxes on both sides, shared by W4 (IMAP) and W5 (POP3).

Filling 23,000 messages per side takes a while, so the first of W4/W5 to run starts a
Dovecot and a Postern store, fills every account the selected workloads need with the same
corpus messages, and both stay up until the last of them is done (the CLI closes
``ctx.cleanups`` at the end). The workloads never delete a pre-loaded message. W4b fills
its own pair of servers the same way (:func:`start_filled`), as its accounts differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.loadgen.populate import (
    Size,
    corpus,
    imap_append,
    imap_count,
    lmtp_deliver,
    maildir_write,
    pop3_count,
    wait_for_count,
)
from bench.peers.dovecot import Dovecot
from bench.peers.mailuser import PeerSetupError
from bench.postern import Postern, inbound_backlog, publish_messages
from bench.results import Side, WorkloadResult
from bench.workloads.base import PASSWORD, Context, Driver
from bench.workloads.common import start_dovecot, start_postern

SHARED_KEY = "mailboxes"
ACCOUNTS_KEY = "mailbox_accounts"  # address -> message count, filled in by the CLI
FILL_TIMEOUT = 1800.0
# An account this large is written into Dovecot's maildir directly (populate.maildir_write)
# rather than delivered over LMTP: 100,000 LMTP deliveries took over half an hour on a
# busy machine (W9). Smaller ones (W4, W5) keep the LMTP fill their figures were taken on.
BULK_FROM = 50_000


@dataclass
class Mailboxes:
    accounts: dict[str, int]
    size: Size
    dovecot: Dovecot | None = None
    postern: Postern | None = None
    unavailable: dict[str, str] = field(default_factory=dict)
    fill_seconds: dict[str, float] = field(default_factory=dict)
    postern_fill: str = ""


def imap_drivers(
    boxes: Mailboxes,
    result: WorkloadResult,
    make: Callable[[int, Callable[[], list[int]]], Driver],
) -> dict[Side, Driver]:
    """One IMAP driver per side that came up, ``make(port, pids)``; a side that cannot
    serve IMAP yet is named in ``result.unavailable``."""
    result.unavailable.update(boxes.unavailable)
    drivers: dict[Side, Driver] = {}
    if boxes.postern is not None:
        why = boxes.postern.why_not("imap")
        if why is None:
            drivers["postern"] = make(boxes.postern.imap_port, boxes.postern.pids)
        else:
            result.unavailable["postern"] = f"not available yet: {why}"
    if boxes.dovecot is not None:
        d = boxes.dovecot
        drivers["peer"] = make(d.ports.imap, lambda: [d.pid] if d.pid else [])
    return drivers


def shared_mailboxes(ctx: Context, result: WorkloadResult, size: int) -> Mailboxes:
    """The running, filled mailboxes (set up on first use)."""
    found = ctx.shared.get(SHARED_KEY)
    if isinstance(found, Mailboxes):
        return found
    accounts: dict[str, int] = ctx.shared.get(ACCOUNTS_KEY) or {}
    boxes = start_filled(ctx, ctx.cleanups, "mailboxes", accounts, size)
    ctx.shared[SHARED_KEY] = boxes
    return boxes


def start_filled(
    ctx: Context, stack: contextlib.ExitStack, name: str, accounts: dict[str, int], size: Size
) -> Mailboxes:
    """A Dovecot and a Postern store under ``<workdir>/<name>``, each account filled with
    the same corpus messages (both stopped by ``stack``); a side that cannot run is left
    out, with the reason in ``unavailable``."""
    boxes = Mailboxes(accounts=dict(accounts), size=size)
    users = dict.fromkeys(accounts, PASSWORD)
    total = sum(accounts.values())
    try:
        boxes.dovecot = start_dovecot(ctx, stack, ctx.dir(name, "dovecot"), users)
    except PeerSetupError as exc:
        boxes.unavailable["peer"] = str(exc)
    if boxes.dovecot is not None:
        bulk = sum(n for n in accounts.values() if n >= BULK_FROM)
        ctx.log(
            f"   filling Dovecot: {total - bulk} messages over LMTP, {bulk} written into"
            " the maildir"
        )
        t0 = time.monotonic()
        asyncio.run(_fill_dovecot(boxes.dovecot, accounts, size))
        boxes.fill_seconds["peer"] = time.monotonic() - t0
    probe = WorkloadResult(id="mailboxes", title="", peer_name="", metrics=[])
    postern = start_postern(ctx, stack, ctx.workdir / name / "postern", users, probe, needs=())
    if postern is not None:
        reason = _fill_postern(ctx, boxes, postern, accounts, size)
        if reason is None:
            boxes.postern = postern
        else:
            boxes.unavailable["postern"] = reason
            postern.stop()
    return boxes


async def _fill_dovecot(d: Dovecot, accounts: dict[str, int], size: Size) -> None:
    for address, count in accounts.items():
        if count >= BULK_FROM:
            owner = (d.user.uid, d.user.gid) if os.geteuid() == 0 else None
            await asyncio.to_thread(
                maildir_write, d.maildir(address), address, count, size, owner=owner
            )
        else:
            await lmtp_deliver(d.ports.lmtp, address, count, size)
        got = await imap_count(d.ports.imap, address, PASSWORD)
        if got != count:
            raise RuntimeError(f"Dovecot has {got} messages for {address}, wanted {count}")


def _fill_postern(
    ctx: Context, boxes: Mailboxes, p: Postern, accounts: dict[str, int], size: Size
) -> str | None:
    """Fill Postern's mailboxes; None on success, else why it could not."""
    total = sum(accounts.values())
    t0 = time.monotonic()
    if p.why_not("delivery") is None:
        ctx.log(f"   filling Postern through MAIL_INBOUND → delivery: {total} messages")
        boxes.postern_fill = "published to MAIL_INBOUND, delivered by the store"
        asyncio.run(_publish_all(p, accounts, size))
    elif p.why_not("imap") is None:
        ctx.log(f"   filling Postern by IMAP APPEND: {total} messages")
        boxes.postern_fill = "IMAP APPEND (no delivery consumer yet)"
        for address, count in accounts.items():
            asyncio.run(imap_append(p.imap_port, address, PASSWORD, count, size))
    else:
        return f"not available yet: cannot fill mailboxes ({p.why_not('delivery')})"
    if p.why_not("imap") is not None and p.why_not("pop3") is not None:
        return f"not available yet: cannot read the mailboxes back ({p.why_not('imap')})"
    for address, count in accounts.items():
        got = asyncio.run(_postern_count(p, address, count))
        if got != count:
            return f"Postern has {got} messages for {address} after filling, wanted {count}"
    boxes.fill_seconds["postern"] = time.monotonic() - t0
    return None


async def _publish_all(p: Postern, accounts: dict[str, int], size: Size) -> None:
    bus = await p.bus()
    try:
        for address, count in accounts.items():
            await publish_messages(bus, address, corpus(count, size, address))
        deadline = time.monotonic() + FILL_TIMEOUT
        while await inbound_backlog(bus) > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
    finally:
        await bus.close()


async def _postern_count(p: Postern, address: str, want: int) -> int:
    if p.why_not("imap") is None:
        return await wait_for_count(
            lambda: imap_count(p.imap_port, address, PASSWORD), want, timeout=120, interval=1
        )
    if p.why_not("pop3") is None:
        return await wait_for_count(
            lambda: pop3_count(p.pop3_port, address, PASSWORD), want, timeout=120, interval=1
        )
    return -1
