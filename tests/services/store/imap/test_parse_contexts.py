"""Parser property tests for RFC 5267 §4 (CONTEXT=SEARCH / CONTEXT=SORT): UPDATE and
CONTEXT return options on SEARCH and SORT, CANCELUPDATE with one or more tag strings."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.store.imap import commands as c
from services.store.imap.parser import BadSyntax, parse

_TAG = st.text("abcXYZ0189.-+", min_size=1, max_size=10)


@given(st.sets(st.sampled_from(["ALL", "COUNT", "CONTEXT", "SAVE"])), st.booleans())
def test_search_update(others: set[str], uid: bool) -> None:
    opts = " ".join(["UPDATE", *sorted(others)]).lower()
    r = parse(f"a {'UID ' if uid else ''}SEARCH RETURN ({opts}) UNSEEN".encode())
    assert isinstance(r.args, c.Search)
    assert r.args.returns == frozenset({"UPDATE", *others})


@given(st.sets(st.sampled_from(["ALL", "COUNT", "CONTEXT"])))
def test_sort_update(others: set[str]) -> None:
    opts = " ".join(["UPDATE", *sorted(others)])
    r = parse(f"a UID SORT RETURN ({opts}) (DATE) UTF-8 ALL".encode())
    assert isinstance(r.args, c.Sort)
    assert r.args.returns == frozenset({"UPDATE", *others})


@given(st.lists(_TAG, min_size=1, max_size=4))
def test_cancelupdate_tags(tags: list[str]) -> None:
    wire = " ".join(f'"{t}"' for t in tags)
    assert parse(f"a CANCELUPDATE {wire}".encode()).args == c.CancelUpdate(tuple(tags))


@given(
    st.sampled_from(
        [
            b"a CANCELUPDATE",
            b"a CANCELUPDATE ",
            b"a CANCELUPDATE t1",  # tag-string is a string: quoted or literal
            b"a SEARCH RETURN (UPDATE MIN) ALL",
            b"a SEARCH RETURN (MAX UPDATE) ALL",
            b"a SORT RETURN (UPDATE PARTIAL 1:5) (DATE) UTF-8 ALL",
        ]
    )
)
def test_refused(line: bytes) -> None:
    try:
        parse(line)
    except BadSyntax:
        return
    raise AssertionError(line)
