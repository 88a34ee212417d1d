"""What one session asked NOTIFY (RFC 5465) to tell it, and the delivery of those events
from the account's journal (typed records, mailcore.mailstore.records).

The selected mailbox is still followed by :class:`~services.store.imap.selected.Selected`
(EXISTS, FETCH, EXPUNGE/VANISHED); a SELECTED filter with events makes those updates come
as soon as they are committed, also between commands (§6), and SELECTED-DELAYED holds
expunges back for a command that may carry them (§6, RFC 3501 §7.4.1). Other mailboxes
are reported with STATUS responses (§5.2–§5.4), mailbox creation, deletion and renaming
with LIST (§5.5 MailboxName), subscription changes with LIST (§5.6 SubscriptionChange).
When the journal no longer reaches back to this session's last look, the session gets
``* OK [NOTIFICATIONOVERFLOW]`` and NOTIFY is switched off (§5.8).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailcore.mailstore import ChangeLogTruncated, MailstoreError
from mailcore.mailstore.records import (
    AppendRecord,
    ExpungeRecord,
    FlagsRecord,
    MailboxCreateRecord,
    MailboxDeleteRecord,
    MailboxRenameRecord,
    SubscribeRecord,
    UnsubscribeRecord,
)
from services.store.imap import commands as c
from services.store.imap.errors import Refused

if TYPE_CHECKING:
    from mailcore.mailstore import MailboxStatus
    from services.store.imap.session import Session

SEP = "/"
# §5: the events this server delivers (NO [BADEVENT] names them for anything else)
SUPPORTED = ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName", "SubscriptionChange")


@dataclass
class Watch:
    groups: tuple[c.NotifyGroup, ...]
    seen: int  # the last journal record looked at
    names: dict[int, str]  # mailbox id → name, kept current from the journal
    subscribed: set[str]
    selected_group: c.NotifyGroup | None = field(init=False)

    def __post_init__(self) -> None:
        self.selected_group = next((g for g in self.groups if g.kind in c.NOTIFY_SELECTED), None)

    # --- filters (§6) -------------------------------------------------------------------
    @property
    def pushes_selected(self) -> bool:
        """The selected mailbox's changes are sent as they happen (§6 SELECTED)."""
        g = self.selected_group
        return g is not None and bool(g.events)

    @property
    def delayed(self) -> bool:
        """§6 SELECTED-DELAYED: expunges wait for a command that may report them."""
        g = self.selected_group
        return g is None or g.kind == "SELECTED-DELAYED"

    @property
    def fetch_atts(self) -> tuple[c.FetchAtt, ...]:
        g = self.selected_group
        return g.fetch_atts if g is not None else ()

    def matches(self, g: c.NotifyGroup, name: str) -> bool:
        if g.kind == "PERSONAL":
            return True  # one personal namespace, "" (docs/imap.md)
        if g.kind == "INBOXES":
            return name == "INBOX"  # delivery only ever files into INBOX here
        if g.kind == "SUBSCRIBED":
            return name in self.subscribed
        if g.kind == "MAILBOXES":
            return name in g.mailboxes
        if g.kind == "SUBTREE":
            return any(name == m or name.startswith(m + SEP) for m in g.mailboxes)
        return False

    def events_for(self, name: str) -> set[str]:
        """The events asked for ``name`` as a mailbox other than the selected one."""
        out: set[str] = set()
        for g in self.groups:
            if g.kind not in c.NOTIFY_SELECTED and self.matches(g, name):
                out.update(g.events)
        return out

    def watched(self) -> list[tuple[int, str]]:
        """The existing mailboxes some non-selected filter names (for NOTIFY SET STATUS)."""
        return sorted(
            ((i, n) for i, n in self.names.items() if self.events_for(n)),
            key=lambda x: (x[1] != "INBOX", x[1]),
        )

    # --- delivery -----------------------------------------------------------------------
    def position(self, s: Session) -> int:
        """The journal position to wait beyond for something this session is owed."""
        sel = s.selected
        if sel is not None and self.pushes_selected:
            return min(self.seen, sel.seen)
        return self.seen

    async def deliver(self, s: Session, *, selected: bool, expunge_ok: bool) -> None:
        """Queue every owed notification. ``selected``: report the selected mailbox's
        changes too (a command ends, IDLE, or a SELECTED filter between commands)."""
        sel = s.selected
        if sel is not None and selected:
            before = sel.uids[-1] if sel.uids else 0
            await sel.sync(s, expunge_ok=expunge_ok)
            if self.fetch_atts and sel.uids and sel.uids[-1] > before:
                await self._fetch_new(s, before)
        await self._others(s)

    async def _fetch_new(self, s: Session, after: int) -> None:
        """§5.2: MessageNew with fetch attributes sends a FETCH for each new message of
        the selected mailbox after its EXISTS."""
        from services.store.imap.handlers.fetch import fetch

        seqs = c.SeqSet(((after + 1, None),))
        req = c.Request("*", "UID FETCH", c.Fetch(True, seqs, self.fetch_atts))
        try:
            await fetch(s, req)
        except (MailstoreError, Refused):
            # gone meanwhile (the EXPUNGE follows), or an item this message cannot give
            # (BINARY of an unknown encoding): the EXISTS stands, the client can FETCH
            pass

    async def _others(self, s: Session) -> None:
        acct = s.account
        assert acct is not None
        upto = acct.change_seq
        if upto <= self.seen:
            return
        try:
            records = await acct.changes_since(self.seen)
        except ChangeLogTruncated:
            # §5.8: what happened in between can no longer be told; NOTIFY ends
            s.untagged("OK [NOTIFICATIONOVERFLOW] Too many changes; NOTIFY is off")
            s.notify = None
            return
        self.seen = max(self.seen, upto)
        sel_id = s.selected.mailbox_id if s.selected is not None else None
        touched: dict[int, set[str]] = {}
        for rec in records:
            if isinstance(rec, AppendRecord | ExpungeRecord | FlagsRecord):
                if rec.mailbox_id == sel_id:
                    continue  # the selected mailbox reports its own (Selected.sync)
                event = {
                    AppendRecord: "MessageNew",
                    ExpungeRecord: "MessageExpunge",
                    FlagsRecord: "FlagChange",
                }[type(rec)]
                touched.setdefault(rec.mailbox_id, set()).add(event)
            elif isinstance(rec, MailboxCreateRecord):
                self.names[rec.mailbox_id] = rec.name
                if "MailboxName" in self.events_for(rec.name):
                    s.send(self._list(s, rec.name, ""))  # §5.5
            elif isinstance(rec, MailboxDeleteRecord):
                self.names.pop(rec.mailbox_id, None)
                touched.pop(rec.mailbox_id, None)
                if "MailboxName" in self.events_for(rec.name):
                    s.send(self._list(s, rec.name, "\\NonExistent"))  # §5.5
            elif isinstance(rec, MailboxRenameRecord):
                self.names[rec.mailbox_id] = rec.new_name
                if "MailboxName" in self.events_for(rec.new_name) | self.events_for(rec.old_name):
                    # §5.5: the new name, with the old one as OLDNAME extended data
                    old = b' ("OLDNAME" (%s))' % s.mbox(rec.old_name)
                    s.send(self._list(s, rec.new_name, "", old))
            elif isinstance(rec, SubscribeRecord | UnsubscribeRecord):
                sub = isinstance(rec, SubscribeRecord)
                if sub:
                    self.subscribed.add(rec.name)
                else:
                    self.subscribed.discard(rec.name)
                if "SubscriptionChange" in self.events_for(rec.name):
                    # §5.6: a LIST response with or without \Subscribed
                    s.send(self._list(s, rec.name, "\\Subscribed" if sub else ""))
        for mailbox_id, events in touched.items():
            name = self.names.get(mailbox_id)
            if name is None:
                continue
            asked = events & self.events_for(name)
            if not asked:
                continue
            try:
                st = await acct.status(mailbox_id)
            except MailstoreError:
                continue  # deleted meanwhile: its LIST (\NonExistent) follows
            s.send(status_line(s, name, st, asked))

    @staticmethod
    def _list(s: Session, name: str, attrs: str, extra: bytes = b"") -> bytes:
        return b'* LIST (%s) "/" %s%s\r\n' % (attrs.encode(), s.mbox(name), extra)


def status_line(s: Session, name: str, st: MailboxStatus, events: set[str] | None) -> bytes:
    """A STATUS response for a mailbox other than the selected one: §5.2 MessageNew and
    §5.3 MessageExpunge give MESSAGES and UIDNEXT, §5.4 FlagChange UNSEEN (a new or
    expunged message may change it too), HIGHESTMODSEQ once CONDSTORE is on (RFC 7162
    §3.1). ``events`` None: the NOTIFY SET STATUS answer (§3), UIDVALIDITY included."""
    items = []
    if events is None or events & {"MessageNew", "MessageExpunge"}:
        items += [f"MESSAGES {st.messages}", f"UIDNEXT {st.uidnext}"]
    if events is None:
        items.append(f"UIDVALIDITY {st.uidvalidity}")
    items.append(f"UNSEEN {st.unseen}")
    if s.condstore:
        items.append(f"HIGHESTMODSEQ {st.highestmodseq}")
    return b"* STATUS %s (%s)\r\n" % (s.mbox(name), " ".join(items).encode())


__all__ = ["SUPPORTED", "Watch", "status_line"]
