"""Parser property tests for PARTIAL (RFC 9394 §3 and §4; RFC 5267 §4.4): the range comes
back as sent in SEARCH and SORT RETURN options and the FETCH modifier; a zero, mixed-sign
or missing range, or PARTIAL with ALL, is BAD."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.store.imap import commands as c
from services.store.imap.parser import BadSyntax, parse

_NZ = st.integers(1, 2**32 - 1)
_RANGE = st.tuples(_NZ, _NZ, st.booleans()).map(lambda t: (-t[0], -t[1]) if t[2] else t[:2])
_OTHERS = st.sets(st.sampled_from(["MIN", "MAX", "COUNT"]))


def _wire(rng: tuple[int, int]) -> str:
    return f"{rng[0]}:{rng[1]}"


@given(_RANGE, _OTHERS, st.booleans(), st.booleans())
def test_search_and_sort_partial(
    rng: tuple[int, int], others: set[str], uid: bool, sort: bool
) -> None:
    opts = " ".join([*sorted(others), f"partial {_wire(rng)}"])
    prefix = "UID " if uid else ""
    if sort:
        r = parse(f"a {prefix}SORT RETURN ({opts}) (DATE) UTF-8 ALL".encode())
        assert isinstance(r.args, c.Sort)
    else:
        r = parse(f"a {prefix}SEARCH RETURN ({opts}) ALL".encode())
        assert isinstance(r.args, c.Search)
    assert r.args.partial == rng
    assert r.args.returns == frozenset({*others, "PARTIAL"})


@given(_RANGE, st.booleans())
def test_fetch_partial_modifier(rng: tuple[int, int], changed: bool) -> None:
    mods = (["CHANGEDSINCE 5"] if changed else []) + [f"PARTIAL {_wire(rng)}"]
    r = parse(f"a UID FETCH 1:* (FLAGS) ({' '.join(mods)})".encode())
    assert isinstance(r.args, c.Fetch)
    assert r.args.partial == rng
    assert r.args.changed_since == (5 if changed else None)


@given(
    st.sampled_from(
        ["0:1", "1:0", "-1:2", "1:-2", "-0:-1", "1", ":2", "1:2:3", "a:b", "", "1:2 PARTIAL 3:4"]
    ),
    st.sampled_from(["SEARCH RETURN ({}) ALL", "SORT RETURN ({}) (DATE) UTF-8 ALL"]),
)
def test_bad_ranges(rng: str, form: str) -> None:
    try:
        parse(("a " + form.format(f"PARTIAL {rng}".strip())).encode())
    except BadSyntax:
        return
    raise AssertionError(rng)


def test_partial_excludes_all() -> None:
    for line in (
        b"a SEARCH RETURN (ALL PARTIAL 1:2) ALL",
        b"a SORT RETURN (PARTIAL 1:2 ALL) (DATE) UTF-8 ALL",
    ):
        try:
            parse(line)
        except BadSyntax:
            continue
        raise AssertionError(line)
