"""The selected mailbox as one session sees it: sequence numbers ↔ UIDs, flags, \\Recent,
and how other sessions' changes reach this one (RFC 3501 §5.2, §7.4.1; RFC 7162 §3.2.10).

The view is parallel arrays sorted by UID; the sequence number of ``uids[i]`` is ``i + 1``.
Changes come from the account's journal (typed records: mailcore.mailstore.records);
expunges by others wait in ``pending_expunge`` until a command that may report them (never
during FETCH, STORE or SEARCH). A selected mailbox deleted by another session ends the
session with BYE; mailbox ids are never reused, so a new one of the same name is another
mailbox.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, NoReturn

from mailcore.mailstore import SYSTEM_FLAGS, ChangeLogTruncated, NoSuchMailbox
from mailcore.mailstore.records import (
    AppendRecord,
    ExpungeRecord,
    FlagsRecord,
    MailboxDeleteRecord,
    MailboxRenameRecord,
    UidNextRecord,
    mailbox_of,
)
from services.store.imap import contexts, responses
from services.store.imap.commands import SeqSet
from services.store.imap.errors import bad

if TYPE_CHECKING:
    from collections.abc import Iterable

    from mailcore.mailstore import Snapshot
    from services.store.imap.contexts import Context
    from services.store.imap.session import Session

_SYSTEM = sorted(SYSTEM_FLAGS)
FLAG_LISTS = 1024  # distinct rendered flag lists kept per selected mailbox


class Selected:
    def __init__(self, mailbox_id: int, name: str, readonly: bool, snap: Snapshot) -> None:
        self.mailbox_id = mailbox_id
        self.name = name
        self.readonly = readonly
        self.uidvalidity = snap.uidvalidity
        self.uidnext = snap.uidnext
        self.highestmodseq = snap.highestmodseq
        self.seen = snap.change_seq
        self.uids: list[int] = list(snap.uids)
        self.flags: list[frozenset[str]] = list(snap.flags)
        self.modseqs: list[int] = list(snap.modseqs)
        self.recent: set[int] = set()
        # UIDs this session appended and claimed \Recent for (handlers/append.py): recent
        # here once they enter the view (so RECENT never exceeds EXISTS)
        self.claimed: set[int] = set()
        self.pending_expunge: set[int] = set()
        self.saved: list[int] = []  # RFC 5182 SEARCHRES: UIDs behind "$"
        # RFC 5267 §4 search contexts (SEARCH/SORT RETURN (UPDATE)) by tag: contexts.py
        self.contexts: dict[str, Context] = {}
        self.context_seen: tuple[int, int, int, int] = (0, 0, 0, 0)
        # keywords the client was told about in FLAGS / PERMANENTFLAGS, and those that
        # entered the view since and must be announced before a FETCH shows them
        self.keywords: set[str] = set()
        self.unannounced: set[str] = set()
        # wire form of each distinct (flags, \Recent) pair shown so far: flag sets are
        # few and shared, and FETCH FLAGS of a whole mailbox renders each of them often
        self._flag_lists: dict[tuple[frozenset[str], bool], bytes] = {}
        for f in set(self.flags):  # few distinct sets: the engine shares equal ones
            if f:
                self.keywords.update(k for k in f if not k.startswith("\\"))

    # --- FLAGS and PERMANENTFLAGS (RFC 3501 §7.2.6, §7.1) --------------------------------------
    def flags_lines(self, s: Session) -> None:
        """Queue ``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` for the keywords known so far."""
        self.keywords |= self.unannounced
        self.unannounced.clear()
        words = _SYSTEM + sorted(self.keywords)
        s.untagged(f"FLAGS ({' '.join(words)})")
        perm = "" if self.readonly else " ".join([*words, "\\*"])
        s.untagged(f"OK [PERMANENTFLAGS ({perm})] Flags permitted")

    def note_flags(self, flags: Iterable[str]) -> None:
        for k in flags:
            if k not in self.keywords and not k.startswith("\\"):
                self.unannounced.add(k)

    def announce(self, s: Session) -> None:
        """RFC 3501 §7.2.6: a keyword new to the mailbox is announced with an updated FLAGS
        (and PERMANENTFLAGS) before any FETCH FLAGS response uses it."""
        if self.unannounced:
            self.flags_lines(s)

    # --- \\Recent (RFC 3501 §2.3.2, §7.3.2) -------------------------------------------------
    async def take_recent(self, s: Session) -> None:
        """Add to ``recent`` the unclaimed recent messages of the view — only those this
        session has been told about, so RECENT never exceeds EXISTS. A read-only session
        (EXAMINE) reports them without claiming them (RFC 3501 §6.3.2)."""
        if s.rev2 or not self.uids:
            return
        if self.claimed:
            mine = {u for u in self.claimed if self.index_of(u) is not None}
            self.recent |= mine
            self.claimed -= mine
        acct = s.account
        assert acct is not None
        last = self.uids[-1]
        if self.readonly:
            got = await acct.peek_recent(self.mailbox_id, last)
        else:
            got = await acct.claim_recent(self.mailbox_id, last)
        self.recent.update(u for u in got if self.index_of(u) is not None)

    # --- look-ups ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.uids)

    def index_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        return i if i < len(self.uids) and self.uids[i] == uid else None

    def resolve(self, seqs: SeqSet, uid: bool) -> list[int]:
        """Indexes into the view for a sequence set (RFC 3501 §9 seq-number / uid)."""
        if seqs.saved:
            # RFC 5182 §2.1: "$" names the saved messages, whichever the command's numbering
            return sorted(i for u in self.saved if (i := self.index_of(u)) is not None)
        n = len(self.uids)
        if not uid:
            out: list[int] = []
            for (lo, hi), (a, b) in zip(seqs.resolve(n), seqs.ranges, strict=True):
                if (a is not None and a > n) or (b is not None and b > n):
                    raise bad("Invalid message sequence number")
                out.extend(range(max(lo, 1) - 1, min(hi, n)))
            return sorted(set(out)) if len(seqs.ranges) > 1 else out
        largest = self.uids[-1] if self.uids else 0
        idx: list[int] = []
        for lo, hi in seqs.resolve(largest):
            a = bisect.bisect_left(self.uids, lo)
            b = bisect.bisect_right(self.uids, hi)
            idx.extend(range(a, b))
        return sorted(set(idx)) if len(seqs.ranges) > 1 else idx

    # --- changes of our own -----------------------------------------------------------------
    def set_flags(self, i: int, flags: frozenset[str], modseq: int | None) -> None:
        self.flags[i] = flags
        if modseq is not None:
            self.modseqs[i] = modseq
            self.highestmodseq = max(self.highestmodseq, modseq)
        self.note_flags(flags)

    def remove(self, s: Session, uids: list[int]) -> None:
        """Drop expunged UIDs from the view and report them: EXPUNGE with sequence numbers
        from the highest down (RFC 3501 §7.4.1), or VANISHED under QRESYNC (RFC 7162 §3.2.10)."""
        gone = sorted(i for u in uids if (i := self.index_of(u)) is not None)
        if not gone:
            return
        if s.qresync:
            s.untagged(b"VANISHED " + responses.seq_set(self.uids[i] for i in gone))
        else:
            s.send(b"".join(b"* %d EXPUNGE\r\n" % (i + 1) for i in reversed(gone)))
        recent = len(self.recent)
        for i in reversed(gone):
            u = self.uids[i]
            self.recent.discard(u)
            self.pending_expunge.discard(u)
            del self.uids[i], self.flags[i], self.modseqs[i]
        if len(self.recent) != recent and not s.rev2:
            s.untagged(f"{len(self.recent)} RECENT")  # RFC 3501 §7.3.2: the new count

    # --- changes of others ------------------------------------------------------------------
    async def sync(self, s: Session, *, expunge_ok: bool) -> None:
        """Report what changed since our last look, as far as the current command allows."""
        acct = s.account
        assert acct is not None
        if acct.change_seq > self.seen:
            try:
                await self._pull(s)
            except ChangeLogTruncated:
                # the change log no longer reaches back to our last look (it keeps the
                # newest entries only): compare with a fresh snapshot instead
                await self._resync(s)
        if expunge_ok and self.pending_expunge:
            self.remove(s, sorted(self.pending_expunge))
        if self.contexts:
            await contexts.refresh(s, self)  # RFC 5267 §4.2: ADDTO / REMOVETO

    async def _resync(self, s: Session) -> None:
        """Bring the view up to date from :meth:`Account.snapshot` when the changes in
        between are no longer known one by one.

        What a client may be told without the change log (RFC 3501 §7.4.1, §5.2): the
        messages it knows that are gone are expunged (queued like other sessions'
        expunges, so never during FETCH, STORE or SEARCH; VANISHED under QRESYNC), new
        messages are announced with EXISTS, and every known message whose flags or
        MODSEQ differ gets a FETCH. A mailbox that disappeared, changed UIDVALIDITY or
        holds messages the view cannot place (UIDs below its newest that it never saw)
        cannot be shown consistently: the session ends with a BYE saying so."""
        from services.store.imap.session import CloseSession

        acct = s.account
        assert acct is not None
        try:
            snap = await acct.snapshot(self.mailbox_id)
        except NoSuchMailbox:
            self._gone(s)
        known = {u: i for i, u in enumerate(self.uids)}
        last = self.uids[-1] if self.uids else 0
        unplaceable = any(u <= last and u not in known for u in snap.uids)
        if snap.uidvalidity != self.uidvalidity or unplaceable:
            s.untagged("BYE [UNAVAILABLE] Mailbox changed too much while selected; select it again")
            raise CloseSession
        now = dict(zip(snap.uids, range(len(snap.uids)), strict=True))
        self.pending_expunge.update(u for u in self.uids if u not in now)
        flag_updates = []
        for u, i in known.items():
            j = now.get(u)
            if j is None:
                continue
            changed = snap.flags[j] != self.flags[i]
            if changed or (s.condstore and snap.modseqs[j] != self.modseqs[i]):
                self.set_flags(i, snap.flags[j], snap.modseqs[j])
                flag_updates.append(i)
        new = [j for j, u in enumerate(snap.uids) if u > last]
        for j in new:
            self.uids.append(snap.uids[j])
            self.flags.append(snap.flags[j])
            self.modseqs.append(snap.modseqs[j])
            self.note_flags(snap.flags[j])
        self.uidnext = max(self.uidnext, snap.uidnext)
        self.highestmodseq = max(self.highestmodseq, snap.highestmodseq)
        self.seen = max(self.seen, snap.change_seq)
        self.announce(s)
        if new:
            s.untagged(f"{len(self.uids)} EXISTS")
            if not s.rev2:
                await self.take_recent(s)
                s.untagged(f"{len(self.recent)} RECENT")
        for i in flag_updates:
            if self.uids[i] not in self.pending_expunge:
                s.send(self.flags_response(s, i))

    async def _pull(self, s: Session) -> None:
        acct = s.account
        assert acct is not None
        upto = acct.change_seq  # everything up to here is committed and will be returned
        changes = await acct.changes_since(self.seen, self.mailbox_id)
        # changes to other mailboxes count as seen too (else IDLE would spin on them)
        self.seen = max(self.seen, upto)
        appended = 0
        flag_updates: dict[int, None] = {}
        for ch in changes:
            self.seen = max(self.seen, ch.seq)
            if mailbox_of(ch) != self.mailbox_id:
                continue
            if isinstance(ch, MailboxDeleteRecord):
                # deleted (or deleted and replaced: ids are never reused) by another
                # session: nothing of it may be shown any more, as Dovecot does
                self._gone(s)
            modseq = getattr(ch, "modseq", None)
            if modseq is not None:
                self.highestmodseq = max(self.highestmodseq, modseq)
            if isinstance(ch, AppendRecord):
                if not self.uids or ch.uid > self.uids[-1]:
                    self.uids.append(ch.uid)
                    self.flags.append(ch.flags)
                    self.modseqs.append(ch.modseq)
                    self.uidnext = max(self.uidnext, ch.uid + 1)
                    self.note_flags(ch.flags or ())
                    appended += 1
            elif isinstance(ch, FlagsRecord):
                i = self.index_of(ch.uid)
                if i is not None and ch.flags != self.flags[i]:
                    self.set_flags(i, ch.flags, ch.modseq)
                    flag_updates[i] = None
                elif i is not None and s.condstore and ch.modseq > self.modseqs[i]:
                    self.modseqs[i] = ch.modseq
                    flag_updates[i] = None
            elif isinstance(ch, ExpungeRecord):
                self.pending_expunge.update(u for u in ch.uids if self.index_of(u) is not None)
            elif isinstance(ch, MailboxRenameRecord):
                self.name = ch.new_name  # same id, same UIDVALIDITY: the view stays valid
            elif isinstance(ch, UidNextRecord):
                self.uidnext = max(self.uidnext, ch.uidnext)
        self.announce(s)
        if appended:
            s.untagged(f"{len(self.uids)} EXISTS")
            if not s.rev2:
                await self.take_recent(s)
                s.untagged(f"{len(self.recent)} RECENT")
        for i in sorted(flag_updates):
            if self.uids[i] in self.pending_expunge:
                continue
            s.send(self.flags_response(s, i))

    def shown_flags(self, s: Session, i: int) -> list[str]:
        """The FLAGS of a message as this session shows them: \\Recent is session state
        (RFC 3501 §2.3.2) and does not exist under IMAP4rev2 (RFC 9051 Appendix E)."""
        self.announce(s)  # never a keyword the client was not told about (RFC 3501 §7.2.6)
        flags = self.flags[i]
        if self.uids[i] in self.recent and not s.rev2:
            flags = flags | {"\\Recent"}
        return sorted(flags)

    def flag_list(self, s: Session, i: int) -> bytes:
        """``responses.flag_list(self.shown_flags(s, i))``, rendered once per distinct
        flag set."""
        if self.unannounced:
            self.flags_lines(s)  # as announce(): a keyword is announced before it is shown
        flags = self.flags[i]
        key = (flags, self.uids[i] in self.recent and not s.rev2)
        out = self._flag_lists.get(key)
        if out is None:
            out = self._render_flags(key)
        return out

    def flag_lists(self, s: Session, idx: list[int]) -> list[bytes]:
        """:meth:`flag_list` of each message of ``idx``, in one loop (a flag sync of the
        whole mailbox: the per-message part of FETCH 1:* (FLAGS))."""
        if self.unannounced:
            self.flags_lines(s)  # as announce(): a keyword is announced before it is shown
        flags, uids, got = self.flags, self.uids, self._flag_lists.get
        recent = self.recent if not s.rev2 else ()
        out = []
        for i in idx:
            key = (flags[i], uids[i] in recent)
            line = got(key)
            out.append(line if line is not None else self._render_flags(key))
        return out

    def _render_flags(self, key: tuple[frozenset[str], bool]) -> bytes:
        flags, recent = key
        out = responses.flag_list(sorted(flags | {"\\Recent"} if recent else flags))
        if len(self._flag_lists) >= FLAG_LISTS:
            self._flag_lists.clear()
        self._flag_lists[key] = out
        return out

    def flags_response(self, s: Session, i: int) -> bytes:
        extra = b" MODSEQ (%d)" % self.modseqs[i] if s.condstore else b""
        return b"* %d FETCH (UID %d%s FLAGS %s)\r\n" % (
            i + 1,
            self.uids[i],
            extra,
            self.flag_list(s, i),
        )

    def _gone(self, s: Session) -> NoReturn:
        from services.store.imap.session import CloseSession

        s.untagged("BYE Selected mailbox no longer exists")
        raise CloseSession
