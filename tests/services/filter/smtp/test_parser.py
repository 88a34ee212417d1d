"""The SMTP command parser (RFC 5321 §4.1), with Hypothesis properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.filter.smtp.parser import (
    POSTMASTER,
    BadAddress,
    CommandSyntaxError,
    NonAsciiAddress,
    NotUtf8,
    UnsupportedParameter,
    parse_command,
    parse_hello,
    parse_mail,
    parse_params,
    parse_rcpt,
)


def test_verb_and_argument() -> None:
    cmd = parse_command(b"mail FROM:<a@b.test> SIZE=10")
    assert cmd.verb == "MAIL"
    assert cmd.arg == "FROM:<a@b.test> SIZE=10"
    assert parse_command(b"QUIT").arg == ""
    assert parse_command(b"\x01\x02 x").verb == ""
    with pytest.raises(NotUtf8):
        parse_command(b"MAIL FROM:<\xff@b.test>")


def test_mail_from_forms() -> None:
    assert parse_mail("FROM:<a@b.test>").address == "a@b.test"
    assert parse_mail("FROM: <a@b.test>").address == "a@b.test"  # lenient space
    assert parse_mail("from:a@b.test").address == "a@b.test"  # lenient brackets
    assert parse_mail("FROM:<>").address == ""  # null reverse-path
    assert parse_mail("FROM:<@relay.test:a@b.test>").address == "a@b.test"  # source route
    assert parse_mail('FROM:<"john doe"@b.test>').address == '"john doe"@b.test'


def test_mail_parameters() -> None:
    cmd = parse_mail("FROM:<a@b.test> SIZE=1234 BODY=8BITMIME SMTPUTF8 AUTH=<>")
    assert (cmd.size, cmd.body, cmd.smtputf8) == (1234, "8BITMIME", True)
    with pytest.raises(UnsupportedParameter):
        parse_mail("FROM:<a@b.test> RET=FULL")
    with pytest.raises(UnsupportedParameter):
        parse_mail("FROM:<a@b.test> BODY=BINARYMIME")
    with pytest.raises(CommandSyntaxError):
        parse_mail("FROM:<a@b.test> SIZE=lots")
    with pytest.raises(CommandSyntaxError):
        parse_mail("FROM:<a@b.test>SIZE=1")


def test_bad_paths() -> None:
    for bad in ["FROM:<a>", "FROM:<a@>", "FROM:<@b.test>", "FROM:<a b@c.test>", "FROM:<a@b..c>"]:
        with pytest.raises(BadAddress):
            parse_mail(bad)
    with pytest.raises(CommandSyntaxError):
        parse_mail("TO:<a@b.test>")
    with pytest.raises(CommandSyntaxError):
        parse_mail("FROM:<a@b.test")
    with pytest.raises(BadAddress):
        parse_mail("FROM:<" + "a" * 65 + "@b.test>")


def test_rcpt() -> None:
    assert parse_rcpt("TO:<Alice@Example.TEST>", smtputf8=False).address == "Alice@Example.TEST"
    assert parse_rcpt("TO:<Postmaster>", smtputf8=False).address == POSTMASTER
    with pytest.raises(BadAddress):
        parse_rcpt("TO:<>", smtputf8=False)
    with pytest.raises(UnsupportedParameter):
        parse_rcpt("TO:<a@b.test> NOTIFY=NEVER", smtputf8=False)


def test_utf8_addresses_need_smtputf8() -> None:
    with pytest.raises(NonAsciiAddress):
        parse_rcpt("TO:<jörg@b.test>", smtputf8=False)
    assert parse_rcpt("TO:<jörg@b.test>", smtputf8=True).address == "jörg@b.test"
    with pytest.raises(NonAsciiAddress):
        parse_mail("FROM:<jörg@b.test>")
    assert parse_mail("FROM:<jörg@b.test> SMTPUTF8").address == "jörg@b.test"


def test_hello() -> None:
    assert parse_hello("client.test") == "client.test"
    assert parse_hello("[192.0.2.1]") == "[192.0.2.1]"
    for bad in ["", "two words"]:
        with pytest.raises(CommandSyntaxError):
            parse_hello(bad)


def test_params() -> None:
    assert parse_params("") == {}
    assert parse_params(" A=1 b") == {"A": "1", "B": None}
    with pytest.raises(CommandSyntaxError):
        parse_params(" =1")
    with pytest.raises(CommandSyntaxError):
        parse_params(" A=")


# --- properties ------------------------------------------------------------------------
_atom = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~-", min_size=1)
_local = st.lists(_atom, min_size=1, max_size=3).map(".".join).filter(lambda s: len(s) <= 64)
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_domain = st.lists(_label, min_size=1, max_size=4).map(".".join)


@given(_local, _domain, st.integers(min_value=0, max_value=10**12))
def test_valid_mailboxes_round_trip(local: str, domain: str, size: int) -> None:
    address = f"{local}@{domain}"
    cmd = parse_mail(f"FROM:<{address}> SIZE={size}")
    assert cmd.address == address
    assert cmd.size == size
    assert parse_rcpt(f"TO:<{address}>", smtputf8=False).address == address


@given(st.text(max_size=200))
def test_any_argument_parses_or_raises_a_syntax_error(arg: str) -> None:
    for parse in (parse_mail, lambda a: parse_rcpt(a, smtputf8=True)):
        try:
            parse(arg)
        except CommandSyntaxError:
            pass


@given(st.binary(max_size=200))
def test_any_line_splits_or_is_not_utf8(line: bytes) -> None:
    try:
        cmd = parse_command(line)
    except NotUtf8:
        return
    assert cmd.verb == cmd.verb.upper()
