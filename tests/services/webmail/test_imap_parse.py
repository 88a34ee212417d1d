"""The IMAP response parser: values round-trip, literals are taken by count, aioimaplib's
split lines are joined back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.webmail.imap_parse import ParseError, Value, join_responses, pairs, parse
from services.webmail.imap_records import flatten

atoms = st.from_regex(rb"\A[A-Za-z0-9\\.+-]{1,12}\Z")
strings = st.binary(max_size=40)
values: st.SearchStrategy[Value] = st.recursive(
    st.one_of(atoms, strings, st.none()),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=20,
)


def render(v: Value) -> bytes:
    if v is None:
        return b"NIL"
    if isinstance(v, list):
        return b"(" + b" ".join(render(x) for x in v) + b")"
    if (
        v
        and all(c not in v for c in b' ()"\\{}[]\r\n\x00%*')
        and v.upper() != b"NIL"
        and (v.isascii())
    ):
        return v
    return b"{%d}\r\n" % len(v) + v


@given(st.lists(values, max_size=6))
def test_round_trip(vs: list[Value]) -> None:
    assert parse(b" ".join(render(v) for v in vs)) == vs


def test_quoted_and_sections() -> None:
    got = parse(b'(UID 7 FLAGS (\\Seen) BODY[HEADER.FIELDS (FROM SUBJECT)] "a \\"q\\"" NIL)')
    assert got == [
        [b"UID", b"7", b"FLAGS", [b"\\Seen"], b"BODY[HEADER.FIELDS (FROM SUBJECT)]", b'a "q"', None]
    ]
    assert pairs(got[0])[b"BODY[HEADER.FIELDS (FROM SUBJECT)]"] == b'a "q"'


@pytest.mark.parametrize("bad", [b"(a", b"a)", b'"open', b"{5}\r\nab", b"{x}\r\n"])
def test_malformed(bad: bytes) -> None:
    with pytest.raises(ParseError):
        parse(bad)


def test_join_responses_puts_literals_back() -> None:
    lines = [
        b"1 FETCH (UID 3 BODY[] {5}",
        bytearray(b"ab{2}"),  # a literal that itself ends like a literal marker
        b" FLAGS (\\Seen))",
        b"2 FETCH (UID 4 FLAGS ())",
    ]
    joined = join_responses(lines)
    assert joined == [
        b"1 FETCH (UID 3 BODY[] {5}\r\nab{2} FLAGS (\\Seen))",
        b"2 FETCH (UID 4 FLAGS ())",
    ]
    assert parse(joined[0].split(b" ", 2)[2]) == [
        [b"UID", b"3", b"BODY[]", b"ab{2}", b"FLAGS", [b"\\Seen"]]
    ]


quotable = st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)


@given(st.lists(quotable, min_size=1, max_size=6))
def test_quoted_strings_round_trip(vs: list[bytes]) -> None:
    # RFC 3501 §4.3: a quoted string escapes only backslash and double quote
    wire = b" ".join(b'"' + v.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"' for v in vs)
    assert parse(wire) == vs


sections = st.from_regex(rb"\A[A-Z0-9.]{0,12}( \([A-Z -]{0,20}\))?\Z")


@given(atoms, sections, atoms)
def test_atoms_keep_bracketed_sections(head: bytes, section: bytes, tail: bytes) -> None:
    atom = head + b"[" + section + b"]<" + tail + b">"
    assert parse(b"(" + atom + b" NIL)") == [[atom, None]]


def test_deep_nesting_needs_no_recursion() -> None:
    """A THREAD answer nests as deep as a conversation's branches: 50,000 levels parse
    (the recursive parser stopped near Python's limit of 1,000)."""
    depth = 50_000
    [top] = parse(b"(1 " * depth + b"2" + b")" * depth)
    level, seen = top, 0
    while isinstance(level, list):
        seen += 1
        assert level[0] == b"1"
        level = level[1] if isinstance(level[1], list) else None
    assert seen == depth
    assert flatten(top)[:3] == [1, 1, 1] and len(flatten(top)) == depth + 1
    with pytest.raises(ParseError):
        parse(b"(" * depth)
