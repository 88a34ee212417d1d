"""The relay's SMTP reply parser (RFC 5321 §4.2): pipelined replies fed in pieces of any
size come out whole and in order; garbage is refused, never half-read."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.filter.relay.smtp_reply import (
    MAX_LINE,
    Reply,
    ReplyError,
    ReplyParser,
    extensions,
)

text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=0, max_size=60
)
replies = st.builds(
    Reply,
    code=st.integers(200, 599),
    lines=st.lists(text, min_size=1, max_size=5).map(tuple),
)


def wire(reply: Reply, newline: bytes = b"\r\n") -> bytes:
    out = b""
    for i, line in enumerate(reply.lines):
        sep = b" " if i == len(reply.lines) - 1 else b"-"
        out += str(reply.code).encode() + sep + line.encode() + newline
    return out


@given(st.lists(replies, min_size=1, max_size=8), st.data())
def test_replies_split_anywhere_come_out_whole_and_in_order(
    sent: list[Reply], data: st.DataObject
) -> None:
    stream = b"".join(wire(r) for r in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    parser = ReplyParser()
    got: list[Reply] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        got.extend(parser.feed(stream[last:cut]))
        last = cut
    assert got == sent
    assert not parser.partial


@given(st.lists(replies, min_size=1, max_size=4))
def test_bare_lf_line_endings_are_taken(sent: list[Reply]) -> None:
    parser = ReplyParser()
    assert parser.feed(b"".join(wire(r, b"\n") for r in sent)) == sent


@given(replies)
def test_nothing_comes_out_before_the_last_line(reply: Reply) -> None:
    raw = wire(reply)
    parser = ReplyParser()
    assert parser.feed(raw[:-1]) == []
    assert parser.partial
    assert parser.feed(raw[-1:]) == [reply]


@given(st.binary(max_size=300))
def test_any_bytes_give_replies_or_reply_error(raw: bytes) -> None:
    parser = ReplyParser()
    try:
        out = parser.feed(raw)
    except ReplyError:
        return
    for reply in out:
        assert 200 <= reply.code <= 599 and reply.lines


def test_code_alone_ends_a_reply() -> None:
    assert ReplyParser().feed(b"250\r\n") == [Reply(250, ("",))]


@pytest.mark.parametrize(
    "raw",
    [
        b"hello\r\n",  # no code
        b"25\r\n",  # too short
        b"250x OK\r\n",  # no separator
        b"650 OK\r\n",  # no such reply class
        b"250-first\r\n251 second\r\n",  # code changed mid-reply
    ],
)
def test_not_a_reply_is_refused(raw: bytes) -> None:
    with pytest.raises(ReplyError):
        ReplyParser().feed(raw)


def test_an_endless_line_is_refused_before_it_ends() -> None:
    parser = ReplyParser()
    with pytest.raises(ReplyError):
        parser.feed(b"250 " + b"x" * (MAX_LINE + 10))


def test_endless_continuation_lines_are_refused() -> None:
    with pytest.raises(ReplyError):
        ReplyParser().feed(b"250-x\r\n" * 1000)


@pytest.mark.parametrize(
    ("line", "code", "enhanced", "message"),
    [
        ("5.1.1 no such user", 550, "5.1.1", "no such user"),
        ("4.7.1 greylisted", 451, "4.7.1", "greylisted"),
        ("5.1.1 wrong class", 451, "", "5.1.1 wrong class"),  # RFC 3463: class must agree
        ("no enhanced code", 550, "", "no enhanced code"),
        ("2.0.0", 250, "2.0.0", ""),
    ],
)
def test_enhanced_status_code(line: str, code: int, enhanced: str, message: str) -> None:
    reply = Reply(code, (line,))
    assert (reply.enhanced, reply.message) == (enhanced, message)


def test_ehlo_extensions() -> None:
    (ehlo,) = ReplyParser().feed(
        b"250-mx.example greets you\r\n250-PIPELINING\r\n250-size 1000\r\n"
        b"250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n"
    )
    assert extensions(ehlo) == {
        "PIPELINING": "",
        "SIZE": "1000",
        "AUTH": "PLAIN LOGIN",
        "STARTTLS": "",
    }
