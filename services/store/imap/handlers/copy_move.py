"""COPY / UID COPY (RFC 3501 §6.4.7, RFC 4315 COPYUID) and MOVE / UID MOVE (RFC 6851)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.store.imap import responses as r
from services.store.imap.commands import CopyCmd, Request
from services.store.imap.handlers.common import account, quota, selected, target, writable

if TYPE_CHECKING:
    from mailcore.mailstore import CopyResult
    from services.store.imap.session import Session


def _copyuid(res: CopyResult) -> str:
    src = r.seq_set(u for u, _ in res.mapping).decode()
    dst = r.seq_set(u for _, u in res.mapping).decode()
    # RFC 4315 §3: the two sets pair up in order; seq_set keeps order for ascending UIDs
    if [u for _, u in res.mapping] != sorted(u for _, u in res.mapping):
        dst = ",".join(str(u) for _, u in res.mapping)
    return f"COPYUID {res.uidvalidity} {src} {dst}"


async def copy(s: Session, req: Request) -> str:
    a = req.args
    assert isinstance(a, CopyCmd)
    if a.move:
        return await move(s, req)
    sel = selected(s)
    idx = sel.resolve(a.seqs, a.uid)
    dst = await target(s, a.mailbox)
    uids = [sel.uids[i] for i in idx]
    if not uids:
        return f"{req.name} completed"
    res = await account(s).copy(sel.mailbox_id, uids, dst.id, quota=quota(s))
    if not res.mapping:
        return f"{req.name} completed"
    return f"[{_copyuid(res)}] {req.name} completed"


async def move(s: Session, req: Request) -> str:
    a = req.args
    assert isinstance(a, CopyCmd)
    sel = writable(s)
    idx = sel.resolve(a.seqs, a.uid)
    dst = await target(s, a.mailbox)
    uids = [sel.uids[i] for i in idx]
    if not uids:
        return f"{req.name} completed"
    res = await account(s).move(sel.mailbox_id, uids, dst.id, quota=quota(s))
    if res.mapping:
        # RFC 6851 §4.3: COPYUID in an untagged OK before the expunges
        s.untagged(f"OK [{_copyuid(res)}] Moved")
        sel.remove(s, [src for src, _ in res.mapping])
    return f"{req.name} completed"
