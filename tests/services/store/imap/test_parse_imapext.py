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


# --- CATENATE (RFC 4469) and IMAP URLs (RFC 5092, RFC 5550 URL-PARTIAL) ------------------

_NAME = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)


@given(
    _NAME.filter(lambda n: n.upper() != "INBOX"),
    st.none() | st.integers(1, 2**32 - 1),
    st.integers(1, 2**32 - 1),
    st.sampled_from([None, "1", "1.2.MIME", "HEADER", "TEXT", "2.HEADER.FIELDS (SUBJECT)"]),
    st.none() | st.tuples(st.integers(0, 2**32 - 1), st.none() | st.integers(1, 2**32 - 1)),
    st.booleans(),
)
def test_imap_url_round_trip(
    name: str,
    uidvalidity: int | None,
    uid: int,
    section: str | None,
    partial: tuple[int, int | None] | None,
    absolute: bool,
) -> None:
    from urllib.parse import quote

    from services.store.imap import imapurl

    url = "/" + quote(name, safe="")
    if uidvalidity is not None:
        url += f";UIDVALIDITY={uidvalidity}"
    url += f"/;UID={uid}"
    if section is not None:
        url += "/;SECTION=" + quote(section, safe=".()")
    if partial is not None:
        url += f"/;PARTIAL={partial[0]}" + ("" if partial[1] is None else f".{partial[1]}")
    if absolute:
        url = "imap://alice%40example.com@mail.example" + url
    ref = imapurl.parse(url)
    assert ref.mailbox == name and ref.uid == uid and ref.uidvalidity == uidvalidity
    assert ref.user == ("alice@example.com" if absolute else None)
    assert ref.partial == partial
    if section is None:
        assert ref.section is None
    else:
        assert ref.section is not None and ref.section.spec() == section


@pytest.mark.parametrize(
    "url",
    [
        "",
        "INBOX/;UID=1",
        "//x/INBOX/;UID=1",
        "/INBOX/;UID=0",
        "/INBOX/;UID=x",
        "/INBOX",
        "/INBOX/;UID=1/;SECTION=NOPE",
        "/%FF/;UID=1",
        "/a%2/;UID=1",
        "/INBOX/;UID=4294967296",
        "/INBOX/;UID=1/;PARTIAL=1.0",
        "imap://host",
    ],
)
def test_imap_url_refused(url: str) -> None:
    from services.store.imap import imapurl

    with pytest.raises(imapurl.BadUrl):
        imapurl.parse(url)


@given(
    st.lists(
        st.one_of(st.binary(min_size=0, max_size=20), st.just("/INBOX/;UID=1")),
        min_size=1,
        max_size=5,
    )
)
def test_catenate_parts_in_order(parts: list[bytes | str]) -> None:
    wire = b"a APPEND INBOX (\\Seen) CATENATE ("
    for i, p in enumerate(parts):
        wire += b" " if i else b""
        if isinstance(p, str):
            wire += b'URL "' + p.encode() + b'"'
        else:
            wire += b"TEXT {%d+}\r\n" % len(p) + p
    r = parse(wire + b")")
    assert isinstance(r.args, c.Append)
    (m,) = r.args.messages
    assert m.flags == ("\\Seen",) and m.data == b""
    want = [c.CatPart(url=p) if isinstance(p, str) else c.CatPart(text=p) for p in parts]
    assert list(m.catenate) == want


@pytest.mark.parametrize(
    "wire",
    [
        b"a APPEND INBOX CATENATE ()",
        b"a APPEND INBOX CATENATE (URL)",
        b"a APPEND INBOX CATENATE (FOO x)",
        b'a APPEND INBOX CATENATE (URL "/INBOX/;UID=1"',
        b"a APPEND INBOX CATENATE (TEXT x)",
    ],
)
def test_catenate_malformed(wire: bytes) -> None:
    with pytest.raises(BadSyntax):
        parse(wire)
