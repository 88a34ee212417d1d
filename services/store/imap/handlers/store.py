"""STORE / UID STORE (RFC 3501 §6.4.6; RFC 7162 §3.1.3 UNCHANGEDSINCE)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailcore.mailstore import FlagOp
from services.store.imap import responses as r
from services.store.imap.commands import Request, StoreCmd
from services.store.imap.handlers.common import account, enable_condstore, writable

if TYPE_CHECKING:
    from services.store.imap.session import Session

_OPS = {"add": FlagOp.ADD, "remove": FlagOp.REMOVE, "replace": FlagOp.REPLACE}


async def store(s: Session, req: Request) -> str:
    a = req.args
    assert isinstance(a, StoreCmd)
    sel = writable(s)
    idx = sel.resolve(a.seqs, a.uid)
    if a.unchanged_since is not None:
        enable_condstore(s)  # RFC 7162 §3.1: CONDSTORE enabling command
    flags = [f for f in a.flags if f.lower() != "\\recent"]
    uids = [sel.uids[i] for i in idx]
    modified: list[int] = []
    if uids:
        res = await account(s).store_flags(
            sel.mailbox_id, uids, _OPS[a.op], flags, unchanged_since=a.unchanged_since
        )
        for uid, modseq, new in res.changed:
            i = sel.index_of(uid)
            if i is not None:
                sel.set_flags(i, new, modseq)
        modified = res.modified
        sel.announce(s)  # a new keyword: FLAGS and PERMANENTFLAGS first (RFC 3501 §7.2.6)
    if not a.silent:
        failed = set(modified)
        s.send(b"".join(_fetch_line(s, i, a.uid) for i in idx if sel.uids[i] not in failed))
    text = f"{req.name} completed"
    if modified:
        # RFC 7162 §3.1.3: MODIFIED lists what failed UNCHANGEDSINCE (UIDs or sequence numbers)
        if a.uid:
            ids = sorted(modified)
        else:
            ids = sorted(i + 1 for u in modified if (i := sel.index_of(u)) is not None)
        text = f"[MODIFIED {r.seq_set(ids).decode()}] Conditional STORE failed for some messages"
    return text


def _fetch_line(s: Session, i: int, uid_cmd: bool) -> bytes:
    sel = writable(s)
    parts = [b"FLAGS " + sel.flag_list(s, i)]
    if uid_cmd:
        parts.insert(0, b"UID %d" % sel.uids[i])
    if s.condstore:
        parts.append(b"MODSEQ (%d)" % sel.modseqs[i])
    return b"* %d FETCH (%s)\r\n" % (i + 1, b" ".join(parts))
