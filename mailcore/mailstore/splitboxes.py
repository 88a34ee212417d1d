"""Split brain, mailboxes: a peer's record about a mailbox that collides with what this
store did to its mailboxes while the link was cut. Called first by splitbrain.intercept
(UIDs and flags come after), with the same two roles: the *resolver* (the node whose
name sorts first) decides, the *deferring* store sets its own mailbox aside until the
resolver's verdict comes and then follows it; neither ever drops a message.

Outcomes (docs/mirror.md "Split brain"):

* **One name, one mailbox.** A mailbox created on both sides under one name, or renamed
  on one side onto a name the other side gave a mailbox, ends as the resolver's mailbox
  (its id and UIDVALIDITY) holding both: the other mailbox's messages move into it under
  new UIDs at its end, on both sides. The deferring side's clients see its copy go (and
  its messages come again in the resolver's mailbox): a UIDVALIDITY change for them.
* **Two mailboxes, one id** (created on both sides under different names): the
  deferring side's mailbox gets a new id and UIDVALIDITY from the resolver, its messages
  new UIDs.
* **Deleted on one side, written on the other**: the messages the deleting side knew of
  (the UIDs its delete record lists) go; what it never saw stays: if the resolver took
  it, the mailbox lives on (same id and UIDVALIDITY: it is sent again to the deleting
  peer); if the deferring side took it, it comes back in a mailbox of the old name
  (made by the resolver when no mailbox has that name any more).

How: the resolver decides (splitmerge.py) and says so in its own records, among them a
``mailbox-merge`` verdict; the deferring store sets its colliding mailbox aside until the
verdict and then drains it into the merged one (splitpark.py).

Each resolution is noted (kinds ``mailbox``, ``deleted``, ``parked``, ``moved``) for the
mirror to log and count.
"""

from __future__ import annotations

from mailcore.mailstore import splitmerge, splitpark
from mailcore.mailstore.core import Txn
from mailcore.mailstore.records import Record
from mailcore.mailstore.resolution import Resolution


def intercept(t: Txn, rec: Record, data: bytes | None, res: Resolution) -> Record | bool | None:
    """Before the UID-level settling: the outcome when the record collides on a mailbox
    (True/False), or None to go on (side effects done: a mailbox set aside)."""
    if res.resolver:
        return splitmerge.resolve(t, rec, data, res)
    return splitpark.defer(t, rec, res)


drain = splitpark.drain
drain_copy = splitpark.drain_copy
merged_uid = splitpark.merged_uid
renumbered = splitmerge.renumbered
PARKED = splitpark.PARKED
RECOVERED = splitmerge.RECOVERED

__all__ = ["PARKED", "RECOVERED", "drain", "drain_copy", "intercept", "merged_uid", "renumbered"]
