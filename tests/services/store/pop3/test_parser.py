"""The POP3 command parser: every command, every refusal, and Hypothesis: it never raises
anything but its own ParseError."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.store.pop3 import parser as p
from services.store.pop3.parser import ErrorKind, ParseError


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"CAPA\r\n", p.Capa()),
        (b"capa\r\n", p.Capa()),
        (b"STLS\r\n", p.Stls()),
        (b"QUIT\r\n", p.Quit()),
        (b"STAT\r\n", p.Stat()),
        (b"NOOP\n", p.Noop()),  # a bare LF is tolerated
        (b"RSET", p.Rset()),
        (b"LIST\r\n", p.List(None)),
        (b"LIST 3\r\n", p.List(3)),
        (b"UIDL\r\n", p.Uidl(None)),
        (b"uidl 12\r\n", p.Uidl(12)),
        (b"RETR 1\r\n", p.Retr(1)),
        (b"RETR 0\r\n", p.Retr(0)),  # parsed; the maildrop says "no such message"
        (b"RETR 007\r\n", p.Retr(7)),
        (b"DELE 2\r\n", p.Dele(2)),
        (b"TOP 1 0\r\n", p.Top(1, 0)),
        (b"TOP 1 10\r\n", p.Top(1, 10)),
        (b"USER alice@example.com\r\n", p.User("alice@example.com")),
        (b"USER j\xc3\xb6rg@example.com\r\n", p.User("jörg@example.com")),
        (b"PASS secret\r\n", p.Pass("secret")),
        (b"PASS with spaces  in it\r\n", p.Pass("with spaces  in it")),
        (b"AUTH\r\n", p.Auth(None, None)),
        (b"AUTH plain\r\n", p.Auth("PLAIN", None)),
        (b"AUTH PLAIN =\r\n", p.Auth("PLAIN", b"")),
        (b"AUTH PLAIN AGEAYg==\r\n", p.Auth("PLAIN", b"\x00a\x00b")),
    ],
)
def test_commands(line: bytes, expected: p.Command) -> None:
    assert p.parse_command(line) == expected


def test_huge_numbers_are_clamped_not_errors() -> None:
    assert p.parse_command(b"RETR 99999999999999999999999\r\n") == p.Retr(p.MAX_NUMBER)
    assert p.parse_command(b"RETR 4294967296\r\n") == p.Retr(p.MAX_NUMBER)
    assert p.parse_command(b"TOP 1 123456789012345678901234567890\r\n") == p.Top(1, p.MAX_NUMBER)


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (b"", ErrorKind.UNKNOWN),
        (b"\r\n", ErrorKind.UNKNOWN),
        (b"XYZZY\r\n", ErrorKind.UNKNOWN),
        (b"FOO\r\n", ErrorKind.UNKNOWN),
        (b"AP\r\n", ErrorKind.UNKNOWN),
        (b"APOP alice 0123456789abcdef\r\n", ErrorKind.UNKNOWN),  # not offered
        (b"\xff\xfe\xfd\r\n", ErrorKind.UNKNOWN),
        (b"RE\xc3\xa9T 1\r\n", ErrorKind.UNKNOWN),
        (b" STAT\r\n", ErrorKind.UNKNOWN),
        (b"STAT 1\r\n", ErrorKind.SYNTAX),
        (b"RETR\r\n", ErrorKind.SYNTAX),
        (b"RETR -1\r\n", ErrorKind.SYNTAX),
        (b"RETR +1\r\n", ErrorKind.SYNTAX),
        (b"RETR 1 2\r\n", ErrorKind.SYNTAX),
        (b"RETR one\r\n", ErrorKind.SYNTAX),
        (b"RETR \xd9\xa3\r\n", ErrorKind.SYNTAX),  # Arabic-Indic digit three
        (b"DELE\r\n", ErrorKind.SYNTAX),
        (b"LIST 1 2\r\n", ErrorKind.SYNTAX),
        (b"TOP 1\r\n", ErrorKind.SYNTAX),
        (b"TOP 1 -5\r\n", ErrorKind.SYNTAX),
        (b"USER\r\n", ErrorKind.SYNTAX),
        (b"USER a b\r\n", ErrorKind.SYNTAX),
        (b"USER \xff\r\n", ErrorKind.SYNTAX),
        (b"PASS\r\n", ErrorKind.SYNTAX),
        (b"PASS \r\n", ErrorKind.SYNTAX),
        (b"PASS a\x00b\r\n", ErrorKind.SYNTAX),
        (b"AUTH PLAIN not*base64\r\n", ErrorKind.SYNTAX),
        (b"AUTH PL/AIN\r\n", ErrorKind.SYNTAX),
        (b"AUTH PLAIN a b\r\n", ErrorKind.SYNTAX),
        (b"NOOP " + b"x" * 2000 + b"\r\n", ErrorKind.TOO_LONG),
    ],
)
def test_refusals(line: bytes, kind: ErrorKind) -> None:
    with pytest.raises(ParseError) as exc:
        p.parse_command(line)
    assert exc.value.kind is kind
    assert exc.value.message  # every refusal has a fixed text for the reply


def test_syntax_errors_name_the_command() -> None:
    with pytest.raises(ParseError) as exc:
        p.parse_command(b"retr x\r\n")
    assert exc.value.command == "RETR"


def test_sasl_responses() -> None:
    assert p.parse_sasl_response(b"*\r\n") == p.SaslCancel()
    assert p.parse_sasl_response(b"\r\n") == b""
    assert p.parse_sasl_response(b"=\r\n") == b""
    token = base64.b64encode(b"\x00alice\x00pw")
    assert p.parse_sasl_response(token + b"\r\n") == b"\x00alice\x00pw"
    with pytest.raises(ParseError):
        p.parse_sasl_response(b"!!!\r\n")
    with pytest.raises(ParseError) as exc:
        p.parse_sasl_response(b"A" * (p.MAX_SASL_LINE + 1))
    assert exc.value.kind is ErrorKind.TOO_LONG


def test_plain_credentials() -> None:
    assert p.decode_plain(b"\x00alice\x00pw") == p.PlainCredentials("", "alice", "pw")
    assert p.decode_plain("z\x00jörg\x00pä ss".encode()) == p.PlainCredentials("z", "jörg", "pä ss")
    for bad in (b"", b"alice", b"\x00alice", b"\x00\x00pw", b"\x00alice\x00", b"a\x00b\x00c\x00d"):
        with pytest.raises(ParseError):
            p.decode_plain(bad)
    with pytest.raises(ParseError):
        p.decode_plain(b"\x00\xff\x00pw")


# --- Hypothesis: no input makes the parser raise anything but ParseError -----------------

_keywords = st.sampled_from(
    [b"USER", b"PASS", b"AUTH", b"CAPA", b"STLS", b"QUIT", b"STAT", b"NOOP", b"RSET",
     b"LIST", b"UIDL", b"RETR", b"DELE", b"TOP", b"APOP", b"retr", b"top"]
)  # fmt: skip


@settings(deadline=None)  # no timing assertions: CI machines are slow
@given(st.binary(max_size=2048))
def test_any_bytes_parse_or_refuse(line: bytes) -> None:
    try:
        cmd = p.parse_command(line)
    except ParseError as exc:
        assert isinstance(exc.kind, ErrorKind)
    else:
        assert isinstance(cmd, p.Command)


_eols = st.sampled_from([b"\r\n", b"\n", b""])


@settings(deadline=None)  # no timing assertions: CI machines are slow
@given(_keywords, st.lists(st.binary(max_size=40), max_size=4), _eols)
def test_commands_with_any_arguments(kw: bytes, args: list[bytes], eol: bytes) -> None:
    line = b" ".join([kw, *args]) + eol
    try:
        cmd = p.parse_command(line)
    except ParseError:
        return
    if isinstance(cmd, p.Retr | p.Dele | p.Top):
        assert 0 <= cmd.msg <= p.MAX_NUMBER
    if isinstance(cmd, p.Top):
        assert 0 <= cmd.lines <= p.MAX_NUMBER


@settings(deadline=None)  # no timing assertions: CI machines are slow
@given(st.text(max_size=60).map(str.encode), st.integers(min_value=0, max_value=10**30))
def test_numbers_round_trip(noise: bytes, n: int) -> None:
    assert p.parse_command(b"RETR %d\r\n" % n) == p.Retr(min(n, p.MAX_NUMBER))
    try:
        p.parse_command(b"RETR " + noise + b"\r\n")
    except ParseError:
        pass


@settings(deadline=None)  # no timing assertions: CI machines are slow
@given(st.binary(max_size=300))
def test_sasl_never_raises_foreign_errors(line: bytes) -> None:
    try:
        answer = p.parse_sasl_response(line)
    except ParseError:
        return
    if isinstance(answer, bytes):
        try:
            p.decode_plain(answer)
        except ParseError:
            pass
