"""The pure IMAP parser: grammar, limits, and Hypothesis checks that it raises nothing but
its own ParseError subclasses."""

from __future__ import annotations

import datetime
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.store.imap import commands as c
from services.store.imap import utf7
from services.store.imap.lexer import MAX_DEPTH
from services.store.imap.parser import (
    BadCharset,
    BadSyntax,
    ParseError,
    TooDeep,
    UnknownCommand,
    literal_suffix,
    parse,
    tag_of,
)


def test_login_quoted_and_literal() -> None:
    assert parse(b'a LOGIN alice "p w\\"x"').args == c.Login("alice", 'p w"x')
    assert parse(b"a LOGIN {5}\r\nalice {3+}\r\npwd").args == c.Login("alice", "pwd")


def test_uid_fetch_items() -> None:
    r = parse(b"t UID FETCH 1:*,4 (UID FLAGS BODY.PEEK[1.2.MIME] BODY[]<10.20> RFC822.SIZE)")
    assert r.name == "UID FETCH"
    assert isinstance(r.args, c.Fetch)
    assert r.args.seqs.resolve(9) == [(1, 9), (4, 4)]
    atts = r.args.atts
    assert atts[2] == c.FetchAtt("BODY", c.Section((1, 2), "MIME"), None, peek=True)
    assert atts[3] == c.FetchAtt("BODY", c.Section(), (10, 20))


def test_fetch_macros_and_modifiers() -> None:
    r = parse(b"t FETCH 1 FULL")
    assert isinstance(r.args, c.Fetch)
    assert [a.name for a in r.args.atts] == [
        "FLAGS",
        "INTERNALDATE",
        "RFC822.SIZE",
        "ENVELOPE",
        "BODY",
    ]
    r = parse(b"t UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12 VANISHED)")
    assert isinstance(r.args, c.Fetch) and r.args.changed_since == 12 and r.args.vanished
    with pytest.raises(BadSyntax):
        parse(b"t FETCH 1 (FLAGS) (VANISHED)")  # only UID FETCH, and only with CHANGEDSINCE


def test_seqset_star_and_reverse() -> None:
    s = c.SeqSet(((None, 3), (7, 7)))
    assert s.resolve(5) == [(3, 5), (7, 7)]
    assert s.resolve(0) == [(0, 3), (7, 7)]
    assert s.contains(4, 5) and not s.contains(6, 5)
    with pytest.raises(BadSyntax):
        parse(b"t FETCH 0 FLAGS")


def test_search_keys() -> None:
    r = parse(b"a SEARCH NOT (SEEN FLAGGED) SINCE 1-Feb-2024 LARGER 10 HEADER X-Foo bar")
    assert isinstance(r.args, c.Search)
    assert r.args.key == c.SAnd(
        (
            c.SNot(c.SAnd((c.SFlag("\\Seen", True), c.SFlag("\\Flagged", True)))),
            c.SDate(False, "since", datetime.date(2024, 2, 1)),
            c.SSize(True, 10),
            c.SHeader("X-FOO", "bar"),
        )
    )
    r = parse(b"a UID SEARCH CHARSET UTF-8 SUBJECT {3}\r\n\xc3\xa9t")
    assert isinstance(r.args, c.Search) and r.args.key == c.SHeader("SUBJECT", "ét")
    with pytest.raises(BadCharset):
        parse(b"a SEARCH CHARSET X-NOPE ALL")
    r = parse(b"a SEARCH RETURN (MIN COUNT) UNSEEN")
    assert isinstance(r.args, c.Search) and r.args.returns == {"MIN", "COUNT"}


def test_append_with_flags_and_date() -> None:
    r = parse(b'a APPEND Sent (\\Seen $Label) "05-Mar-2021 08:09:10 -0130" {3}\r\nx\r\n')
    assert isinstance(r.args, c.Append)
    assert r.args.flags == ("\\Seen", "$Label")
    assert r.args.data == b"x\r\n"
    assert r.args.date is not None
    assert r.args.date.utcoffset() == datetime.timedelta(hours=-1, minutes=-30)


def test_mailbox_names_are_modified_utf7() -> None:
    r = parse(b"a SELECT inbox")
    assert isinstance(r.args, c.Select) and r.args.mailbox == "INBOX"
    r = parse(b"a CREATE Entw&APw-rfe/&ZeVnLIqe-")
    assert isinstance(r.args, c.Create) and r.args.mailbox == "Entwürfe/日本語"
    # not canonical: still a well-formed astring, naming no mailbox (never BAD)
    r = parse(b"a CREATE Entw&AP-")
    assert isinstance(r.args, c.Create) and isinstance(r.args.mailbox, utf7.Undecodable)
    assert r.args.mailbox.wire == "Entw&AP-"
    with pytest.raises(BadSyntax):
        parse("a CREATE Entwürfe".encode())  # raw 8-bit


def test_store_and_copy() -> None:
    r = parse(b"a UID STORE 1:3 (UNCHANGEDSINCE 5) -FLAGS.SILENT \\Seen \\Flagged")
    assert r.args == c.StoreCmd(
        True, c.SeqSet(((1, 3),)), "remove", True, ("\\Seen", "\\Flagged"), 5
    )
    r = parse(b'a UID MOVE 4 "Trash"')
    assert r.args == c.CopyCmd(True, c.SeqSet(((4, 4),)), "Trash", move=True)


def test_errors_carry_the_tag() -> None:
    with pytest.raises(UnknownCommand) as e:
        parse(b"x1 FROB")
    assert e.value.tag == "x1"
    with pytest.raises(BadSyntax) as e2:
        parse(b"x2 LOGIN onlyuser")
    assert e2.value.tag == "x2"
    with pytest.raises(BadSyntax) as e3:
        parse(b"+bad NOOP")
    assert e3.value.tag is None
    assert tag_of(b"a1 NOOP") == "a1" and tag_of(b"(x NOOP") is None


def test_literal_suffix() -> None:
    assert literal_suffix(b"a APPEND INBOX {310}") == (310, True)
    assert literal_suffix(b"a APPEND INBOX {310+}") == (310, False)
    assert literal_suffix(b'a LOGIN "x{3}"') is None
    with pytest.raises(BadSyntax):
        parse(b"a LOGIN {10}\r\nabc")  # literal shorter than announced


def test_deep_nesting_refused_without_memory_growth() -> None:
    ok = b"a SEARCH " + b"(" * MAX_DEPTH + b"ALL" + b")" * MAX_DEPTH
    assert isinstance(parse(ok).args, c.Search)
    deep = b"a SEARCH " + b"(" * 30000 + b"ALL" + b")" * 30000
    tracemalloc.start()
    with pytest.raises(TooDeep):
        parse(deep)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 256 * 1024  # the nesting limit stops before any structure is built
    with pytest.raises(TooDeep):
        parse(b"a SEARCH " + b"NOT " * 1000 + b"ALL")


def test_status_and_list_extended() -> None:
    r = parse(
        b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("*" "%") '
        b"RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN))"
    )
    assert isinstance(r.args, c.ListCmd)
    assert r.args.select == {"SUBSCRIBED", "RECURSIVEMATCH"}
    assert r.args.status == ("MESSAGES", "UNSEEN")
    with pytest.raises(BadSyntax):
        parse(b"a STATUS INBOX (MESSAGES BOGUS)")


# --- Hypothesis ---------------------------------------------------------------------------

TOKENS = [
    b"a1",
    b" ",
    b"UID",
    b"FETCH",
    b"SEARCH",
    b"STORE",
    b"LOGIN",
    b"APPEND",
    b"LIST",
    b"SELECT",
    b"(",
    b")",
    b"[",
    b"]",
    b"<",
    b">",
    b"{",
    b"}",
    b"{3}\r\n",
    b"{2+}\r\n",
    b'"',
    b"\\",
    b"*",
    b":",
    b",",
    b"1",
    b"0",
    b"99999999999999999999999",
    b"BODY",
    b"BODY.PEEK",
    b"HEADER.FIELDS",
    b"NOT",
    b"OR",
    b"ALL",
    b"FLAGS",
    b"+FLAGS",
    b"\\Seen",
    b"INBOX",
    b"&",
    b"-",
    b"&AOk-",
    b"CHARSET",
    b"UTF-8",
    b"RETURN",
    b"STATUS",
    b"\r\n",
    b"\x00",
    b"\xff",
    b"NIL",
    b"1-Jan-2020",
    b'"01-Jan-2020 00:00:00 +0000"',
    b"MIME",
    b"TEXT",
    b".",
    b"ID",
    b"ENABLE",
    b"QRESYNC",
    b"$",
    b"~{2}\r\n",
    b"BINARY",
    b"BINARY.PEEK",
    b"BINARY.SIZE",
    b"SAVE",
    "é".encode(),
]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_token_soup_raises_only_parse_errors(parts: list[bytes]) -> None:
    for utf8 in (False, True):
        try:
            parse(b"".join(parts), utf8=utf8)
        except ParseError:
            pass


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_parse_errors(data: bytes) -> None:
    try:
        parse(b"t " + data)
    except ParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.booleans())
def test_literals_round_trip(data: bytes, sync: bool) -> None:
    plus = b"" if sync else b"+"
    r = parse(b"t APPEND INBOX {%d%s}\r\n" % (len(data), plus) + data)
    assert isinstance(r.args, c.Append) and r.args.data == data


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=30).filter(lambda s: "\x00" not in s))
def test_quoted_and_literal_passwords(password: str) -> None:
    raw = password.encode()
    r = parse(b"t LOGIN u {%d}\r\n" % len(raw) + raw)
    assert r.args == c.Login("u", password)
    if "\r" not in password and "\n" not in password:
        q = raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        assert parse(b't LOGIN u "' + q + b'"').args == c.Login("u", password)


def test_rev2_forms() -> None:
    r = parse('a CREATE "Entwürfe"'.encode(), utf8=True)
    assert isinstance(r.args, c.Create) and r.args.mailbox == "Entwürfe"
    r = parse(b"a CREATE Tom&Jerry", utf8=True)  # "&" is just a character in UTF-8 mode
    assert isinstance(r.args, c.Create) and r.args.mailbox == "Tom&Jerry"
    r = parse(b"a UID FETCH $ (BINARY.PEEK[1.2]<0.10> BINARY.SIZE[1])")
    assert isinstance(r.args, c.Fetch) and r.args.seqs.saved
    assert r.args.atts[0] == c.FetchAtt("BINARY", c.Section((1, 2)), (0, 10), peek=True)
    assert r.args.atts[1] == c.FetchAtt("BINARY.SIZE", c.Section((1,)), None, peek=True)
    r = parse(b"a APPEND INBOX ~{3}\r\na\x00b")
    assert isinstance(r.args, c.Append) and r.args.data == b"a\x00b"
    assert literal_suffix(b"a APPEND INBOX ~{3}") == (3, True)
    r = parse(b"a SEARCH RETURN (SAVE) $ UNSEEN")
    assert isinstance(r.args, c.Search) and r.args.returns == {"SAVE"}


def test_a_fetch_item_list_seen_before_is_not_parsed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parse of a FETCH item list is kept by its bytes (parse_items._ATTS): the next
    FETCH of other messages with the same items parses only its sequence set; what
    follows the list (a CHANGEDSINCE) still parses, and other bytes parse afresh."""
    from services.store.imap import parse_items

    monkeypatch.setattr(parse_items, "_ATTS", {})
    calls = [0]
    real = parse_items.fetch_att

    def counting(cur: object) -> c.FetchAtt:
        calls[0] += 1
        return real(cur)  # type: ignore[arg-type]

    monkeypatch.setattr(parse_items, "fetch_att", counting)
    items = b" (UID BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])"
    first = parse(b"a UID FETCH 1:10" + items)
    assert calls[0] == 2
    second = parse(b"b UID FETCH 11:20" + items)
    assert calls[0] == 2  # kept
    assert isinstance(first.args, c.Fetch) and isinstance(second.args, c.Fetch)
    assert first.args.atts == second.args.atts
    assert second.args.seqs.resolve(30) == [(11, 20)]
    with_mod = parse(b"c FETCH 1:* (FLAGS) (CHANGEDSINCE 7)")
    again = parse(b"d FETCH 2 (FLAGS) (CHANGEDSINCE 7)")
    assert isinstance(again.args, c.Fetch) and isinstance(with_mod.args, c.Fetch)
    assert calls[0] == 3
    assert again.args.changed_since == 7 and again.args.atts == (c.FetchAtt("FLAGS"),)
    other = parse(b"e FETCH 2 (FLAGS) (CHANGEDSINCE 8)")
    assert calls[0] == 4
    assert isinstance(other.args, c.Fetch) and other.args.changed_since == 8
    with pytest.raises(BadSyntax):
        parse(b"f FETCH 2 (FLAGS")  # an error is never kept
    with pytest.raises(BadSyntax):
        parse(b"g FETCH 2 (FLAGS")
