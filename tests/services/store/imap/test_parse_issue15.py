"""Parser property tests for what issue 15 added: WITHIN keys (RFC 5032), OBJECTID search
keys (RFC 8474), the PREVIEW fetch item and its modifiers (RFC 8970), literal8 APPEND
(RFC 3516) and mailbox names that are not canonical modified UTF-7."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.store.imap import commands as c
from services.store.imap import utf7
from services.store.imap.parser import BadSyntax, parse


@given(st.integers(min_value=1, max_value=2**32 - 1), st.booleans())
def test_older_younger_take_any_nonzero_seconds(n: int, older: bool) -> None:
    word = b"OLDER" if older else b"YOUNGER"
    r = parse(b"a SEARCH %s %d" % (word, n))
    assert isinstance(r.args, c.Search) and r.args.key == c.SWithin(older, n)


def test_older_zero_is_bad() -> None:
    with pytest.raises(BadSyntax):
        parse(b"a SEARCH OLDER 0")


@given(st.text(alphabet="abcXYZ019_-", min_size=1, max_size=255))
def test_objectid_keys(value: str) -> None:
    r = parse(b"a SEARCH EMAILID " + value.encode())
    assert isinstance(r.args, c.Search) and r.args.key == c.SObjectId("EMAILID", value)


@given(st.lists(st.just("LAZY"), min_size=0, max_size=3), st.booleans())
def test_preview_with_and_without_modifiers(mods: list[str], in_list: bool) -> None:
    item = "PREVIEW" + (f" ({' '.join(mods)})" if mods else "")
    text = f"(UID {item} FLAGS)" if in_list else item
    r = parse(b"a FETCH 1 " + text.encode())
    assert isinstance(r.args, c.Fetch)
    assert c.FetchAtt("PREVIEW") in r.args.atts


@given(st.binary(min_size=1, max_size=64))
def test_literal8_append_keeps_octets_and_says_so(data: bytes) -> None:
    r = parse(b"a APPEND INBOX ~{%d}\r\n" % len(data) + data)
    assert isinstance(r.args, c.Append) and r.args.data == data and r.args.binary
    r = parse(b"a APPEND INBOX {%d}\r\n" % len(data) + data)
    assert isinstance(r.args, c.Append) and not r.args.binary


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"


@given(st.text(alphabet=_B64, max_size=8))
def test_any_ampersand_run_parses_without_bad(chunk: str) -> None:
    wire = "x&" + chunk + "-"
    r = parse(b"a SELECT " + wire.encode())
    assert isinstance(r.args, c.Select)
    name = r.args.mailbox
    # canonical: the decoded name; otherwise a name that no mailbox can have
    assert not isinstance(name, utf7.Undecodable) or name.wire == wire
    if not isinstance(name, utf7.Undecodable):
        assert utf7.encode(name) == wire
