"""The benchmark messages: exact sizes, deterministic, valid MIME, dot-stuffing."""

from __future__ import annotations

import email

from bench.corpus import BASE_DATE, dot_stuff, imap_date, message


def test_every_message_has_the_exact_size_and_is_reproducible() -> None:
    for i in range(12):
        m = message(i)
        assert len(m) == 10 * 1024
        assert m == message(i)
        assert b"\n" not in m.replace(b"\r\n", b"")  # CRLF only
    assert len(message(7, 2000)) == 2000


def test_messages_vary_and_parse() -> None:
    plain = email.message_from_bytes(message(0))
    multi = email.message_from_bytes(message(3))
    assert plain.get_content_type() == "text/plain"
    assert [p.get_content_type() for p in multi.walk()] == [
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]
    assert plain["From"] != email.message_from_bytes(message(1))["From"]
    assert plain["Message-ID"] == "<bench.0@example.org>"


def test_dot_stuffing() -> None:
    assert dot_stuff(b".a\r\nb\r\n.c\r\n") == b"..a\r\nb\r\n..c\r\n"


def test_imap_date() -> None:
    assert imap_date(BASE_DATE) == "05-Jan-2026 08:00:00 +0000"
