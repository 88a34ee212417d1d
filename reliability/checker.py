"""The checker: the ledger against what every store's mailboxes hold.

It reads snapshots (what IMAP showed, mailbox by mailbox, at a moment) and reports, per
store:

* **lost** — a copy acked with 250 that is in no mailbox of its recipient;
* **phantom** — a message present that was never acked and whose every attempt was
  refused (an attempt with no answer may have been delivered: that is not a phantom);
* **duplicated** — extra copies of one message for one recipient. Extra copies are
  *explained* when an attempt broke before its answer and the sender tried again (the
  duplicate RFC 1047 describes: the sender cannot tell, so it must retry), and counted
  either way;
* **UID violations** — one UID for two messages in one snapshot, a UID at or above
  UIDNEXT, UIDNEXT going backwards, a UID reused for another message, or a new message
  given a UID below one already handed out (all within one UIDVALIDITY; RFC 9051 §2.3.1.1);
* **bad answers** — a valid message answered 5xx (internal failures must answer 4xx);
* **divergence** — with more than one store (the two sides of a mirror): a mailbox missing
  on one side, another UIDVALIDITY, or another UID -> message map.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from reliability.ledger import Entry, Outcome

LOST_SHOWN = 5  # lost messages named one by one per store; the rest are counted


@dataclass(frozen=True, slots=True)
class MailboxView:
    """One mailbox as IMAP showed it: ``messages`` are ``(uid, reliability id or None)``."""

    store: str
    user: str
    mailbox: str
    uidvalidity: int
    uidnext: int
    messages: tuple[tuple[int, str | None], ...]


Snapshot = Sequence[MailboxView]


@dataclass
class Report:
    scenario: str
    acked: int = 0
    lost: int = 0
    duplicated: int = 0
    explained_duplicates: int = 0
    phantom: int = 0
    unknown_delivered: int = 0  # no answer, delivered once: allowed
    uid_violations: int = 0
    bad_answers: int = 0
    divergence: int = 0  # mailboxes that differ between stores (mirror sides)
    answers: dict[str, int] = field(default_factory=dict)  # final reply code -> attempts
    details: list[str] = field(default_factory=list)
    extra_failures: list[str] = field(default_factory=list)  # scenario-specific checks

    @property
    def ok(self) -> bool:
        unexplained = self.duplicated - self.explained_duplicates
        return not (
            self.lost
            or self.phantom
            or self.uid_violations
            or self.bad_answers
            or self.divergence
            or unexplained
            or self.extra_failures
        )

    def note(self, text: str) -> None:
        if len(self.details) < 50:
            self.details.append(text)

    def fail(self, text: str) -> None:
        self.extra_failures.append(text)
        self.note(text)


@dataclass
class _Attempts:
    acked: int = 0
    unknown: int = 0
    refused: int = 0
    recipients: tuple[str, ...] = ()


def _by_rid(ledger: Iterable[Entry]) -> dict[str, _Attempts]:
    out: dict[str, _Attempts] = defaultdict(_Attempts)
    for e in ledger:
        a = out[e.rid]
        a.recipients = a.recipients or e.recipients
        if e.outcome is Outcome.ACKED:
            a.acked += 1
        elif e.outcome is Outcome.UNKNOWN:
            a.unknown += 1
        else:
            a.refused += 1
    return out


def check(
    scenario: str,
    ledger: Iterable[Entry],
    snapshots: Sequence[Snapshot],
    stores: Sequence[str] | None = None,
) -> Report:
    """``snapshots`` in time order; the last one is the final state that counts for loss,
    phantoms and duplicates; all of them count for UID monotonicity."""
    entries = list(ledger)
    report = Report(scenario)
    attempts = _by_rid(entries)
    report.acked = sum(1 for a in attempts.values() if a.acked)
    report.answers = dict(
        sorted(Counter("-" if e.code is None else str(e.code) for e in entries).items())
    )
    for e in entries:
        if e.bad_answer:
            report.bad_answers += 1
            report.note(f"{e.rid}: valid message answered {e.code} at {e.step}: {e.text!r}")
    final = list(snapshots[-1]) if snapshots else []
    names = list(stores) if stores is not None else sorted({v.store for v in final})
    for store in names:
        _check_store(report, store, attempts, [v for v in final if v.store == store])
    _check_uids(report, snapshots)
    if len(names) > 1:
        _check_divergence(report, names, final)
    return report


def _check_divergence(report: Report, stores: Sequence[str], views: list[MailboxView]) -> None:
    """Mirror sides must hold the same mailboxes, UIDVALIDITY and UID -> message map."""
    by_store: dict[str, dict[tuple[str, str], MailboxView]] = {s: {} for s in stores}
    for v in views:
        if v.store in by_store:
            by_store[v.store][(v.user.lower(), v.mailbox)] = v
    first, *others = stores
    for other in others:
        a, b = by_store[first], by_store[other]
        for key in sorted(set(a) | set(b)):
            va, vb = a.get(key), b.get(key)
            where = f"{key[0]}/{key[1]}"
            if va is None or vb is None:
                missing = first if va is None else other
                report.divergence += 1
                report.note(f"divergence: {where} missing on {missing}")
            elif va.uidvalidity != vb.uidvalidity:
                report.divergence += 1
                report.note(
                    f"divergence: {where} UIDVALIDITY {va.uidvalidity} on {first}, "
                    f"{vb.uidvalidity} on {other}"
                )
            elif sorted(va.messages) != sorted(vb.messages):
                report.divergence += 1
                only_a = sorted(set(va.messages) - set(vb.messages))[:3]
                only_b = sorted(set(vb.messages) - set(va.messages))[:3]
                report.note(
                    f"divergence: {where} only on {first}: {only_a}, only on {other}: {only_b}"
                )


def _check_store(
    report: Report, store: str, attempts: dict[str, _Attempts], views: list[MailboxView]
) -> None:
    copies: Counter[tuple[str, str]] = Counter()  # (rid, user) -> copies
    for view in views:
        for _, rid in view.messages:
            if rid is not None:
                copies[(rid, view.user.lower())] += 1
    lost_before = report.lost
    for rid, a in attempts.items():
        for rcpt in a.recipients:
            n = copies.get((rid, rcpt.lower()), 0)
            if a.acked and n == 0:
                report.lost += 1
                if report.lost - lost_before <= LOST_SHOWN:
                    report.note(f"[{store}] lost: {rid} for {rcpt} (acked {a.acked}x)")
            if n > 1:
                report.duplicated += n - 1
                # Each attempt that got no answer (or each extra ack of a resent
                # message) may legitimately leave one more copy.
                allowed = max(0, a.acked + a.unknown - 1)
                report.explained_duplicates += min(n - 1, allowed)
                report.note(
                    f"[{store}] {n} copies of {rid} for {rcpt} "
                    f"(acked {a.acked}, unanswered {a.unknown}, refused {a.refused})"
                )
            if n and not a.acked:
                if a.unknown:
                    report.unknown_delivered += 1
                else:
                    report.phantom += 1
                    report.note(f"[{store}] phantom: {rid} for {rcpt}, refused {a.refused}x")
    if report.lost - lost_before > LOST_SHOWN:  # room left for what the scenario notes
        report.note(f"[{store}] … and {report.lost - lost_before - LOST_SHOWN} more lost")
    for (rid, user), _n in copies.items():
        if rid not in attempts:
            report.phantom += 1
            report.note(f"[{store}] phantom: {rid} in {user}'s mail was never sent")


def _check_uids(report: Report, snapshots: Sequence[Snapshot]) -> None:
    # (store, user, mailbox, uidvalidity) -> uid -> rid, and the highest UIDNEXT seen
    known: dict[tuple[str, str, str, int], dict[int, str | None]] = {}
    high: dict[tuple[str, str, str, int], int] = {}

    def violation(text: str) -> None:
        report.uid_violations += 1
        report.note(text)

    for n, snap in enumerate(snapshots):
        for v in snap:
            key = (v.store, v.user, v.mailbox, v.uidvalidity)
            where = f"[{v.store}] {v.user}/{v.mailbox} uidvalidity {v.uidvalidity} snap {n}"
            uids = [uid for uid, _ in v.messages]
            shared = {uid for uid, times in Counter(uids).items() if times > 1}
            for uid in sorted(shared):
                violation(f"{where}: UID {uid} given to {uids.count(uid)} messages")
            if uids and max(uids) >= v.uidnext:
                violation(f"{where}: UID {max(uids)} >= UIDNEXT {v.uidnext}")
            prev_next = high.get(key)
            if prev_next is not None and v.uidnext < prev_next:
                violation(f"{where}: UIDNEXT went back from {prev_next} to {v.uidnext}")
            seen = known.setdefault(key, {})
            for uid, rid in v.messages:
                if uid in shared:
                    continue
                if uid in seen:
                    old = seen[uid]
                    if old is not None and rid is not None and old != rid:
                        violation(f"{where}: UID {uid} reused: was {old}, now {rid}")
                    continue
                if prev_next is not None and uid < prev_next:
                    violation(
                        f"{where}: new message {rid} got UID {uid} below UIDNEXT {prev_next}"
                        " seen before"
                    )
                seen[uid] = rid
            high[key] = max(prev_next or 0, v.uidnext)
