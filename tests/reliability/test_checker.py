"""The checker must be able to fail: each violation kind, fed a crafted case, is caught."""

from __future__ import annotations

from reliability.checker import LOST_SHOWN, MailboxView, check
from reliability.ledger import Entry, Outcome

A = "a@t.test"


def acked(rid: str) -> Entry:
    return Entry(rid, (A,), Outcome.ACKED, 250, "END")


def refused(rid: str, code: int = 451) -> Entry:
    return Entry(rid, (A,), Outcome.REFUSED, code, "END")


def unknown(rid: str) -> Entry:
    return Entry(rid, (A,), Outcome.UNKNOWN, None, "END")


def box(*msgs: tuple[int, str | None], uidnext: int | None = None, v: int = 7) -> MailboxView:
    nxt = uidnext if uidnext is not None else max((u for u, _ in msgs), default=0) + 1
    return MailboxView("s1", A, "INBOX", v, nxt, tuple(msgs))


def test_clean_run_is_ok() -> None:
    r = check("x", [acked("m1"), acked("m2"), refused("m3")], [[box((1, "m1"), (2, "m2"))]])
    assert r.ok and r.acked == 2 and (r.lost, r.phantom, r.duplicated) == (0, 0, 0)
    assert r.answers == {"250": 2, "451": 1}


def test_lost_acked_message_fails() -> None:
    r = check("x", [acked("m1"), acked("m2")], [[box((1, "m1"))]])
    assert r.lost == 1 and not r.ok
    assert any("lost: m2" in d for d in r.details)


def test_many_lost_are_all_counted_few_named_and_the_scenarios_notes_still_fit() -> None:
    r = check("x", [acked(f"m{i}") for i in range(200)], [[box()]])
    assert r.lost == 200 and not r.ok
    assert sum("lost: m" in d for d in r.details) == LOST_SHOWN
    assert any("and 195 more lost" in d for d in r.details)
    r.note("mirror store-a->store-b: sent 10")  # what a scenario adds after the checker
    assert r.details[-1].startswith("mirror ")


def test_lost_in_another_users_mailbox_still_lost() -> None:
    other = MailboxView("s1", "b@t.test", "INBOX", 1, 2, ((1, "m1"),))
    r = check("x", [acked("m1")], [[other]])
    assert r.lost == 1 and not r.ok


def test_message_in_junk_counts_as_delivered() -> None:
    junk = MailboxView("s1", A, "Junk", 9, 2, ((1, "m1"),))
    assert check("x", [acked("m1")], [[box(), junk]]).ok


def test_phantom_refused_message_fails() -> None:
    r = check("x", [acked("m1"), refused("m2")], [[box((1, "m1"), (2, "m2"))]])
    assert r.phantom == 1 and not r.ok


def test_message_never_sent_is_phantom() -> None:
    r = check("x", [acked("m1")], [[box((1, "m1"), (2, "zz"))]])
    assert r.phantom == 1 and not r.ok


def test_unanswered_delivered_once_is_fine() -> None:
    r = check("x", [unknown("m1")], [[box((1, "m1"))]])
    assert r.ok and r.unknown_delivered == 1 and r.phantom == 0


def test_duplicate_of_single_ack_fails() -> None:
    r = check("x", [acked("m1")], [[box((1, "m1"), (2, "m1"))]])
    assert r.duplicated == 1 and r.explained_duplicates == 0 and not r.ok


def test_duplicate_after_unanswered_attempt_is_counted_and_explained() -> None:
    r = check("x", [unknown("m1"), acked("m1")], [[box((1, "m1"), (2, "m1"))]])
    assert r.duplicated == 1 and r.explained_duplicates == 1 and r.ok


def test_one_uid_for_two_messages() -> None:
    r = check("x", [acked("m1"), acked("m2")], [[box((1, "m1"), (1, "m2"), uidnext=3)]])
    assert r.uid_violations == 1 and not r.ok


def test_uid_at_or_above_uidnext() -> None:
    r = check("x", [acked("m1")], [[box((5, "m1"), uidnext=5)]])
    assert r.uid_violations == 1 and not r.ok


def test_uidnext_going_backwards() -> None:
    snaps = [[box((1, "m1"), uidnext=10)], [box((1, "m1"), uidnext=4)]]
    r = check("x", [acked("m1")], snaps)
    assert r.uid_violations == 1 and not r.ok


def test_uid_reused_for_another_message() -> None:
    snaps = [[box((1, "m1"), uidnext=2)], [box((1, "m2"), uidnext=2)]]
    r = check("x", [acked("m1"), acked("m2")], snaps)
    assert r.uid_violations >= 1 and not r.ok
    assert any("reused" in d for d in r.details)


def test_new_message_below_earlier_uidnext() -> None:
    snaps = [[box((5, "m1"), uidnext=6)], [box((3, "m2"), (5, "m1"), uidnext=6)]]
    r = check("x", [acked("m1"), acked("m2")], snaps)
    assert r.uid_violations == 1 and not r.ok


def test_new_uidvalidity_starts_afresh() -> None:
    snaps = [[box((5, "m1"), uidnext=6, v=1)], [box((1, "m1"), uidnext=2, v=2)]]
    assert check("x", [acked("m1")], snaps).ok


def test_expunge_is_not_a_violation() -> None:
    snaps = [[box((1, "m1"), (2, "m2"), uidnext=3)], [box((2, "m2"), (3, "m3"), uidnext=4)]]
    r = check("x", [acked("m2"), acked("m3"), refused("m1")], snaps)
    assert r.uid_violations == 0


def test_valid_message_answered_5xx_is_a_bad_answer() -> None:
    r = check("x", [acked("m1"), refused("m2", 554)], [[box((1, "m1"))]])
    assert r.bad_answers == 1 and not r.ok


def test_policy_5xx_on_invalid_message_is_fine() -> None:
    poison = Entry("m2", (A,), Outcome.REFUSED, 554, "END", valid=False)
    assert check("x", [acked("m1"), poison], [[box((1, "m1"))]]).ok


def test_every_store_is_checked() -> None:
    s2 = MailboxView("s2", A, "INBOX", 7, 1, ())
    r = check("x", [acked("m1")], [[box((1, "m1")), s2]])
    assert r.lost == 1 and any("[s2]" in d for d in r.details)


def test_extra_failure_fails() -> None:
    r = check("x", [acked("m1")], [[box((1, "m1"))]])
    r.fail("scanner hang made the filter stop answering")
    assert not r.ok


def _side(store: str, *msgs: tuple[int, str | None], v: int = 7) -> MailboxView:
    return MailboxView(store, A, "INBOX", v, 10, tuple(msgs))


def test_identical_mirror_sides_are_ok() -> None:
    snap = [_side("primary", (1, "m1")), _side("replica", (1, "m1"))]
    r = check("x", [acked("m1")], [snap], stores=["primary", "replica"])
    assert r.ok and r.divergence == 0


def test_mirror_divergence_in_uids_uidvalidity_or_presence_fails() -> None:
    cases = [
        [_side("primary", (1, "m1")), _side("replica", (2, "m1"))],  # another UID
        [_side("primary", (1, "m1")), _side("replica", (1, "m1"), v=8)],  # UIDVALIDITY
        [_side("primary", (1, "m1"))],  # mailbox missing on the replica
    ]
    for snap in cases:
        r = check("x", [acked("m1")], [snap], stores=["primary", "replica"])
        assert r.divergence == 1 and not r.ok, snap
