"""ENVELOPE, BODY/BODYSTRUCTURE and section ranges (RFC 3501 §6.4.5, §7.4.2)."""

from __future__ import annotations

from mailcore.message import parse
from services.store.imap import render
from services.store.imap import responses as r
from services.store.imap.commands import Section

MSG = (
    b'From: "Doe, J" <j@x.test>, undisclosed-recipients:;\r\n'
    b"To: Team: a@x.test, b@x.test;\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="B"\r\n\r\npreamble\r\n'
    b"--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n"
    b"--B\r\nContent-Type: message/rfc822\r\n"
    b'Content-Disposition: attachment; filename="f.eml"\r\n\r\n'
    b"From: c@y.test\r\nSubject: inner\r\n\r\ninner body\r\n"
    b"--B\r\nContent-Type: application/pdf; name=x.pdf\r\nContent-Transfer-Encoding: base64\r\n"
    b"\r\nQUJD\r\n--B--\r\n"
)


def test_envelope_with_groups() -> None:
    env = render.envelope(parse(MSG).envelope)
    frm = b'(("Doe, J" NIL "j" "x.test")(NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))'
    to = b'((NIL NIL "Team" NIL)(NIL NIL "a" "x.test")(NIL NIL "b" "x.test")(NIL NIL NIL NIL))'
    # sender and reply-to default to from (RFC 3501 §7.4.2)
    assert env == b'(NIL "hi" ' + frm + b" " + frm + b" " + frm + b" " + to + b" NIL NIL NIL NIL)"


def test_bodystructure_multipart_with_message_part() -> None:
    s = parse(MSG).structure
    inner_env = (
        b'(NIL "inner" ((NIL NIL "c" "y.test")) ((NIL NIL "c" "y.test")) '
        b'((NIL NIL "c" "y.test")) NIL NIL NIL NIL NIL)'
    )
    assert render.body_structure(s, extended=True) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 5 1 NIL NIL NIL NIL)'
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 44 ' + inner_env + b" "
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 1 NIL NIL NIL NIL) 4 '
        b'NIL ("ATTACHMENT" ("FILENAME" "f.eml")) NIL NIL)'
        b'("APPLICATION" "PDF" ("NAME" "x.pdf") NIL NIL "BASE64" 4 NIL NIL NIL NIL) '
        b'"MIXED" ("BOUNDARY" "B") NIL NIL NIL)'
    )
    assert render.body_structure(s, extended=False).endswith(b'"BASE64" 4) "MIXED")')


def _section(sec: Section) -> bytes | None:
    rng = render.section_range(parse(MSG).structure, sec, len(MSG))
    return None if rng is None else MSG[rng[0] : rng[1]]


def test_section_numbering() -> None:
    assert _section(Section((1,))) == b"hello"
    assert _section(Section((2,))) == b"From: c@y.test\r\nSubject: inner\r\n\r\ninner body"
    assert _section(Section((2,), "HEADER")) == b"From: c@y.test\r\nSubject: inner\r\n\r\n"
    assert _section(Section((2,), "TEXT")) == b"inner body"
    assert _section(Section((2, 1))) == b"inner body"
    assert _section(Section((3,), "MIME")) == (
        b"Content-Type: application/pdf; name=x.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    assert _section(Section((3,))) == b"QUJD"
    assert _section(Section((), "HEADER")) == MSG[: MSG.index(b"\r\n\r\n") + 4]
    assert _section(Section((4,))) is None
    assert _section(Section((1,), "HEADER")) is None  # not a message/rfc822 part


def test_header_fields_filter_keeps_folding() -> None:
    head = b"Subject: a\r\n b\r\nX-A: 1\r\nx-a: 2\r\nTo: t\r\n\r\n"
    assert render.header_fields(head, ("X-A", "SUBJECT"), False) == (
        b"Subject: a\r\n b\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
    )
    assert render.header_fields(head, ("X-A", "SUBJECT"), True) == b"To: t\r\n\r\n"


def test_internal_date_and_strings() -> None:
    assert render.internal_date(1709546400) == b'"04-Mar-2024 10:00:00 +0000"'
    assert r.string(b'a"b\\c') == b'"a\\"b\\\\c"'
    assert r.string("é".encode()) == b"{2}\r\n\xc3\xa9"
    assert r.string(b"a\r\nb") == b"{4}\r\na\r\nb"
    assert r.mailbox("Entwürfe") == b"Entw&APw-rfe"
    assert r.mailbox("with space") == b'"with space"'
    assert r.mailbox("") == b'""'
    assert r.seq_set([1, 2, 3, 5, 7, 8]) == b"1:3,5,7:8"
