"""THREAD algorithms (mailcore.mailstore.mailthreads, RFC 5256 §4) on thread rows: the
REFERENCES steps one by one, and, by Hypothesis, that any graph of references (loops,
duplicate and missing ids included) threads every message exactly once; threads far
deeper than Python's recursion limit (a chain of 20,000 replies)."""

from __future__ import annotations

import random
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from mailcore.mailstore.mailthreads import (
    ThreadRow,
    normal_id,
    ordered_subject,
    references,
    render,
    rows_of,
)


def row(
    uid: int,
    subject: str = "S",
    sent: float | None = None,
    msg_id: str | None = None,
    refs: tuple[str, ...] = (),
    *,
    reply: bool = False,
) -> ThreadRow:
    return ThreadRow(uid, subject, reply, float(uid) if sent is None else sent, msg_id, refs)


def test_references_chain_with_a_missing_middle_message() -> None:
    rows = [
        row(1, msg_id="a"),
        row(2, msg_id="c", refs=("a", "b")),
        row(3, msg_id="d", refs=("a",)),
    ]
    # b is missing: a dummy under 1 holding 2; the dummy is not at the top, so 2 is
    # promoted to be 1's child beside 3
    assert render(references(rows)) == b"(1 (2)(3))"


def test_top_level_dummy_with_several_children_stays() -> None:
    rows = [row(1, "A", msg_id="x", refs=("p",)), row(2, "B", msg_id="y", refs=("p",))]
    assert render(references(rows)) == b"((1)(2))"


def test_duplicate_message_ids_and_missing_ids_are_separate_messages() -> None:
    rows = [
        row(1, "A", msg_id="a"),
        row(2, "B", msg_id="a"),
        row(3, "C", msg_id=None, refs=("a",)),
    ]
    assert render(references(rows)) == b"(1 3)(2)"


def test_loops_are_not_made() -> None:
    rows = [row(1, "A", msg_id="a", refs=("b",)), row(2, "B", msg_id="b", refs=("a",))]
    out = render(references(rows))
    assert sorted(map(int, re.findall(rb"\d+", out))) == [1, 2]


def test_subject_merge_rules() -> None:
    rows = [
        row(1, "X", 10.0, "a", reply=True),  # "Re: x" before the original
        row(2, "X", 20.0, "b"),
        row(3, "Y", 5.0, "c"),
        row(4, "Y", 6.0, "d"),  # neither a reply: a dummy holds both
        row(5, "", 1.0, "e"),
        row(6, "", 2.0, "f"),  # empty subjects are never merged
    ]
    assert render(references(rows)) == b"(5)(6)((3)(4))(2 1)"


def test_threads_and_siblings_are_ordered_by_sent_date_then_uid() -> None:
    rows = [
        row(1, "A", 50.0, "a"),
        row(2, "A", 30.0, "b", ("a",)),
        row(3, "A", 30.0, "c", ("a",)),
        row(4, "B", 40.0, "d"),
    ]
    assert render(references(rows)) == b"(4)(1 (2)(3))"
    assert render(references(rows), {1: 10, 2: 20, 3: 30, 4: 40}) == b"(40)(10 (20)(30))"


def test_ordered_subject() -> None:
    rows = [row(1, "B", 3.0), row(2, "A", 2.0), row(3, "B", 1.0), row(4, "A", 4.0), row(5, "C", 9)]
    assert render(ordered_subject(rows)) == b"(3 1)(2 4)(5)"
    assert render(ordered_subject([])) == b""


_IDS = st.sampled_from(["a", "b", "c", "d", "e"])


@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), _IDS),
            st.lists(_IDS, max_size=4).map(tuple),
            st.sampled_from(["", "S", "T"]),
            st.booleans(),
            st.integers(0, 3),
        ),
        max_size=12,
    )
)
def test_every_message_is_threaded_exactly_once(
    spec: list[tuple[str | None, tuple[str, ...], str, bool, int]],
) -> None:
    rows = [
        ThreadRow(uid, subject, reply, float(day), msg_id, refs)
        for uid, (msg_id, refs, subject, reply, day) in enumerate(spec, start=1)
    ]
    for threads in (references(rows), ordered_subject(rows)):
        out = render(threads)
        assert sorted(map(int, re.findall(rb"\d+", out))) == list(range(1, len(rows) + 1))
        assert out.count(b"(") == out.count(b")")
        assert b"()" not in out


# --- RFC 5256 §4 REFERENCES on the cases that are easy to get wrong ---------------------


def test_a_reply_joins_its_original_by_subject_and_two_originals_get_a_dummy() -> None:
    # (5)(C): "Re: X" goes below "X"; a second "X" that is no reply shares a dummy with it
    rows = [row(1, "X", msg_id="a"), row(2, "X", msg_id="b", reply=True), row(3, "X", msg_id="c")]
    assert render(references(rows)) == b"((1 2)(3))"
    # two replies: neither is the original, a dummy holds both
    rows = [row(1, "X", msg_id="a", reply=True), row(2, "X", msg_id="b", reply=True)]
    assert render(references(rows)) == b"((1)(2))"


def test_a_dummy_takes_the_subject_table_and_messages_join_it() -> None:
    # (5)(B): a dummy (missing parent of 2 and 3) replaces the message 1 in the table,
    # (5)(C): 1 becomes one more child of the dummy, ordered by date among them
    rows = [
        row(1, "X", msg_id="a"),
        row(2, "X", msg_id="b", refs=("p",)),
        row(3, "X", msg_id="c", refs=("p",)),
    ]
    assert render(references(rows)) == b"((1)(2)(3))"
    # two dummies with one subject: their children become siblings under one
    rows += [row(4, "X", msg_id="d", refs=("q",)), row(5, "X", msg_id="e", refs=("q",))]
    assert render(references(rows)) == b"((1)(2)(3)(4)(5))"


def test_the_last_reference_replaces_a_parent_a_truncated_references_made() -> None:
    # 1 names a, b: b hangs below a; b itself (2) names only x: (1)(B) moves it below x
    rows = [row(1, "A", msg_id="c", refs=("a", "b")), row(2, "B", msg_id="b", refs=("x",))]
    assert render(references(rows)) == b"(2 1)"


def test_a_last_reference_that_would_loop_lets_the_old_parent_go() -> None:
    # 1 puts b below a; 2 is below a too. b (3) names 1, its own child: the link would be
    # a loop, so b has no parent at all (§4 (1)(B): break the link, make none)
    rows = [
        row(1, "A", msg_id="x", refs=("a", "b")),
        row(2, "C", msg_id="c", refs=("a",)),
        row(3, "B", msg_id="b", refs=("x",)),
    ]
    assert render(references(rows)) == b"(2)(3 1)"


def test_references_that_go_round_in_a_circle() -> None:
    rows = [
        row(1, "A", msg_id="a", refs=("c", "b")),
        row(2, "B", msg_id="b", refs=("a", "c")),
        row(3, "C", msg_id="c", refs=("b", "a")),
        row(4, "D", msg_id="d", refs=("d",)),  # itself
    ]
    assert render(references(rows)) == b"(3 2 1)(4)"


def test_a_duplicate_id_after_a_dummy_was_made_for_it() -> None:
    # 1 names a before any message has it: a dummy; 2 fills it; 3 has the same id and
    # is a message of its own that no reference reaches
    rows = [
        row(1, "A", msg_id="r", refs=("a",)),
        row(2, "B", msg_id="a"),
        row(3, "C", msg_id="a", refs=("r",)),
    ]
    assert render(references(rows)) == b"(2 1 3)"


def test_message_ids_are_compared_without_their_quoting() -> None:
    # §4: <"01KF8JCEOCBS0045PS"@xxx.yyy.com> and <01KF8JCEOCBS0045PS@xxx.yyy.com> are one
    assert normal_id('"01KF8JCEOCBS0045PS"@xxx.yyy.com') == "01KF8JCEOCBS0045PS@xxx.yyy.com"
    assert normal_id('"a\\"b"."c"@d') == 'a"b.c@d'
    assert normal_id("Case@Sensitive") == "Case@Sensitive"
    found = [
        (1, "A", 0, 1.0, '"01KF8JCEOCBS0045PS"@xxx.yyy.com', None),
        (2, "B", 0, 2.0, "m2@x", "01KF8JCEOCBS0045PS@xxx.yyy.com"),
        (3, "C", 0, 3.0, "m3@x", '"m2"@x'),
        (4, "D", 0, 4.0, "m4@x", "M3@x"),  # case-sensitive: no parent
    ]
    assert render(references(rows_of(found))) == b"(1 2 3)(4)"


# --- depth: nothing recurses -------------------------------------------------------------

DEPTH = 20_000


def _chain(uids: list[int]) -> list[ThreadRow]:
    """A chain of replies each answering the previous; ``uids[d]`` at depth d."""
    return [
        ThreadRow(uid, "S", d > 0, float(d), f"m{d}", (f"m{d - 1}",) if d else ())
        for d, uid in enumerate(uids)
    ]


def test_a_chain_of_20000_replies() -> None:
    forward = list(range(1, DEPTH + 1))
    shuffled = random.Random(15).sample(forward, DEPTH)
    for uids in (forward, forward[::-1], shuffled):  # any arrival order
        expected = "(" + " ".join(map(str, uids)) + ")"
        assert render(references(_chain(uids))).decode() == expected
    # References naming the last 20 ancestors, shuffled: the same chain
    rows = [
        ThreadRow(
            u, "S", d > 0, float(d), f"m{d}", tuple(f"m{k}" for k in range(max(0, d - 20), d))
        )
        for d, u in enumerate(shuffled)
    ]
    assert render(references(rows)).decode() == "(" + " ".join(map(str, shuffled)) + ")"
    # ORDEREDSUBJECT: one parent, 19,999 children
    out = render(ordered_subject(_chain(forward)))
    assert out == b"(1 " + b"".join(b"(%d)" % u for u in forward[1:]) + b")"


def test_a_tree_10000_levels_deep_with_a_branch_at_each() -> None:
    # spine s0 <- s1 <- ... and at each level a leaf reply l_i to s_i, sent before s_(i+1)
    levels = DEPTH // 2
    rows = []
    for i in range(levels):
        rows.append(ThreadRow(2 * i + 1, "S", i > 0, 2.0 * i, f"s{i}", (f"s{i - 1}",) if i else ()))
        if i < levels - 1:
            rows.append(ThreadRow(2 * i + 2, "S", True, 2.0 * i + 1, f"l{i}", (f"s{i}",)))
    expected = "(" + "".join(f"{2 * i + 1} ({2 * i + 2})(" for i in range(levels - 1))
    expected += f"{2 * levels - 1}" + ")" * levels
    assert render(references(rows)).decode() == expected


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3_000), st.randoms(use_true_random=False))
def test_deep_chains_in_any_arrival_order(depth: int, rnd: random.Random) -> None:
    uids = rnd.sample(range(1, depth + 1), depth)
    assert render(references(_chain(uids))).decode() == "(" + " ".join(map(str, uids)) + ")"
