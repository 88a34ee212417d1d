"""Deletes mirrored as a move to Trash (``POSTERN_MIRROR_TRASH``, SurgeMail's
``g_mirror_trash``): a peer's expunge of messages outside the Trash mailbox first copies
them into this store's Trash (RFC 6154 ``\\Trash``), then applies the expunge.

The copies are this store's own records, so they travel back to the peer: both stores end
with the messages in Trash, whichever side deleted them. Not copied: expunges in Trash
itself (a delete there is final), messages whose bytes are still in the mailbox under
another UID (a split-brain renumbering, not a delete: splitbrain.py), and everything when
the account has no Trash mailbox.
"""

from __future__ import annotations

from mailcore.mailstore import mailboxes
from mailcore.mailstore.core import Txn
from mailcore.mailstore.messages import copy, select_uids
from mailcore.mailstore.records import ExpungeRecord

TRASH = "\\Trash"


def keep(t: Txn, rec: ExpungeRecord) -> list[int]:
    """Copy the messages ``rec`` removes into Trash (before it is applied); the UIDs
    copied."""
    trash = mailboxes.by_role(t.conn, TRASH)
    if trash is None or trash.id == rec.mailbox_id:
        return []
    src = mailboxes.by_id(t.conn, rec.mailbox_id)
    rows = select_uids(t.conn, "uid, sha256", src.id, list(rec.uids))
    uids = []
    for uid, sha in rows:
        twin = t.conn.execute(
            "SELECT 1 FROM messages WHERE mailbox_id = ? AND sha256 = ? AND uid != ?",
            (src.id, sha, uid),
        ).fetchone()
        if twin is None:
            uids.append(uid)
    if uids:
        copy(t, src, uids, trash, move=False, quota=None)
    return uids


__all__ = ["keep"]
