"""THREAD algorithms (mailcore.mailstore.mailthreads, RFC 5256 §4) on thread rows: the
REFERENCES steps one by one, and, by Hypothesis, that any graph of references (loops,
duplicate and missing ids included) threads every message exactly once."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from mailcore.mailstore.mailthreads import ThreadRow, ordered_subject, references, render


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
