"""Parser property tests for the second set of issue 15 extensions: MULTIAPPEND
(RFC 3502), the UTF8 APPEND data item (RFC 6855) and COMPRESS (RFC 4978)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.store.imap import commands as c
from services.store.imap.parser import BadSyntax, parse

_FLAGS = st.lists(st.sampled_from(["\\Seen", "\\Flagged", "$Work", "\\Draft"]), unique=True)
_MESSAGE = st.tuples(_FLAGS, st.booleans(), st.binary(min_size=1, max_size=40), st.booleans())


@given(st.lists(_MESSAGE, min_size=1, max_size=5))
def test_multiappend_keeps_every_message_in_order(msgs: list[tuple]) -> None:  # type: ignore[type-arg]
    wire = b"a APPEND INBOX"
    for flags, dated, data, binary in msgs:
        wire += b" "
        if flags:
            wire += b"(" + " ".join(flags).encode() + b") "
        if dated:
            wire += b'"07-Feb-1994 22:43:04 -0800" '
        wire += b"%s{%d+}\r\n" % (b"~" if binary else b"", len(data)) + data
    r = parse(wire)
    assert isinstance(r.args, c.Append)
    got = r.args.messages
    assert len(got) == len(msgs)
    for m, (flags, dated, data, binary) in zip(got, msgs, strict=True):
        assert m.data == data and m.binary == binary
        assert m.flags == tuple(flags)
        assert (m.date is not None) == dated


@pytest.mark.parametrize(
    "tail",
    [b" ", b" (\\Seen)", b' "07-Feb-1994 22:43:04 -0800"', b" x"],
)
def test_multiappend_needs_a_literal_after_every_space(tail: bytes) -> None:
    with pytest.raises(BadSyntax):
        parse(b"a APPEND INBOX {1+}\r\nx" + tail)


@given(st.binary(min_size=1, max_size=64), st.booleans())
def test_utf8_append_data_item(data: bytes, second: bool) -> None:
    # RFC 6855 §4: append-data =/ "UTF8" SP "(" literal8 ")", also within a MULTIAPPEND
    item = b"UTF8 (~{%d+}\r\n" % len(data) + data + b")"
    wire = b"a APPEND INBOX " + (b"{1+}\r\nx " + item if second else item)
    r = parse(wire)
    assert isinstance(r.args, c.Append)
    m = r.args.messages[-1]
    assert m.utf8 and m.data == data and not m.binary


@pytest.mark.parametrize(
    "wire",
    [
        b"a APPEND INBOX UTF8 ({1+}\r\nx)",
        b"a APPEND INBOX UTF8 (~{1+}\r\nx",
        b"a APPEND INBOX UTF8 ~{1+}\r\nx",
    ],
)
def test_utf8_append_needs_a_parenthesised_literal8(wire: bytes) -> None:
    with pytest.raises(BadSyntax):
        parse(wire)


@given(st.sampled_from(["DEFLATE", "deflate", "Deflate", "GZIP", "X-1"]))
def test_compress_takes_one_atom(mechanism: str) -> None:
    r = parse(b"a COMPRESS " + mechanism.encode())
    assert r.args == c.Compress(mechanism.upper())


@pytest.mark.parametrize("wire", [b"a COMPRESS", b"a COMPRESS ", b"a COMPRESS DEFLATE X"])
def test_compress_needs_exactly_one_mechanism(wire: bytes) -> None:
    with pytest.raises(BadSyntax):
        parse(wire)
