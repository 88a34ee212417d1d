"""Parser property tests for SORT / THREAD (RFC 5256 §5, RFC 5957 §4), ESORT's RETURN
(RFC 5267 §3.2) and the SAVEDATE search keys and fetch item (RFC 8514)."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.store.imap import commands as c
from services.store.imap.parse_sort import SORT_KEYS, THREAD_ALGORITHMS
from services.store.imap.parser import BadCharset, BadSyntax, parse

_CRITERIA = st.lists(st.tuples(st.sampled_from(sorted(SORT_KEYS)), st.booleans()), min_size=1)
_CASE = st.sampled_from([str.upper, str.lower, str.title])


@given(_CRITERIA, st.booleans(), _CASE, st.sets(st.sampled_from(["MIN", "MAX", "ALL", "COUNT"])))
def test_sort_criteria_round_trip(
    criteria: list[tuple[str, bool]], uid: bool, case: Callable[[str], str], returns: set[str]
) -> None:
    words = " ".join(("REVERSE " if rev else "") + case(k) for k, rev in criteria)
    ret = f"RETURN ({' '.join(sorted(returns))}) " if returns else ""
    line = f"a {'UID ' if uid else ''}SORT {ret}({words}) utf-8 UNSEEN SUBJECT x"
    r = parse(line.encode())
    assert isinstance(r.args, c.Sort)
    assert r.name == ("UID SORT" if uid else "SORT")
    assert r.args.keys == tuple(criteria)
    assert r.args.charset == "UTF-8"
    assert r.args.returns == (frozenset(returns) if returns else None)
    assert r.args.key == c.SAnd((c.SFlag("\\Seen", False), c.SHeader("SUBJECT", "x")))


@given(st.sampled_from(THREAD_ALGORITHMS), st.booleans())
def test_thread(algorithm: str, uid: bool) -> None:
    r = parse(f"a {'UID ' if uid else ''}THREAD {algorithm.lower()} US-ASCII ALL".encode())
    assert r.args == c.Thread(uid, algorithm, c.SAll(), "US-ASCII")


@pytest.mark.parametrize(
    "line",
    [
        b"a SORT",
        b"a SORT () UTF-8 ALL",
        b"a SORT (DATE) ALL",
        b"a SORT (REVERSE) UTF-8 ALL",
        b"a SORT (DATE UTF-8 ALL",
        b"a SORT (ARRIVAL) UTF-8",
        b"a SORT RETURN (PARTIAL 0:10) (DATE) UTF-8 ALL",  # RFC 9394: nz-number
        b"a THREAD ALL UTF-8 ALL",
        b"a THREAD REFERENCES",
    ],
)
def test_bad_sort_and_thread(line: bytes) -> None:
    with pytest.raises(BadSyntax):
        parse(line)


def test_unknown_charset() -> None:
    with pytest.raises(BadCharset):
        parse(b"a SORT (DATE) X-NO-SUCH-CHARSET ALL")


@given(st.dates(datetime.date(1900, 1, 1), datetime.date(2999, 12, 31)))
def test_saved_date_keys(day: datetime.date) -> None:
    text = day.strftime("%d-%b-%Y").encode()
    for word, op in ((b"SAVEDBEFORE", "before"), (b"SAVEDON", "on"), (b"SAVEDSINCE", "since")):
        r = parse(b"a SEARCH " + word + b" " + text)
        assert isinstance(r.args, c.Search) and r.args.key == c.SSaved(op, day)  # type: ignore[arg-type]
    r = parse(b"a UID SEARCH SAVEDATESUPPORTED")
    assert isinstance(r.args, c.Search) and r.args.key == c.SAll()
    r = parse(b"a FETCH 1:* (UID SAVEDATE)")
    assert isinstance(r.args, c.Fetch) and c.FetchAtt("SAVEDATE") in r.args.atts
