"""Building messages from form fields; reply and forward prefills."""

from __future__ import annotations

import pytest

from services.webmail.compose import ComposeError, Draft, Upload, build, forward, reply
from services.webmail.mime_view import view

ORIGINAL = (
    b"From: Carol <carol@remote.test>\r\nTo: alice@example.com, Dan <dan@example.org>\r\n"
    b"Cc: erin@example.org\r\nSubject: Plans\r\nMessage-ID: <p1@remote.test>\r\n"
    b"References: <p0@remote.test>\r\nDate: Mon, 7 Dec 2026 06:00:00 +0000\r\n\r\nsee you\r\n"
)


@pytest.mark.parametrize("field", ["to", "cc", "bcc", "subject", "in_reply_to", "references"])
@pytest.mark.parametrize("brk", ["\r\n", "\n", "\r"])
def test_line_breaks_refused(field: str, brk: str) -> None:
    d = Draft(to="bob@example.com")
    setattr(d, field, getattr(d, field) + f"x{brk}Bcc: victim@example.org")
    with pytest.raises(ComposeError, match="contains a line break"):
        build(d, sender="alice@example.com", sender_name="", hostname="h.test")


def test_build_with_attachment_and_name() -> None:
    d = Draft(
        to="Bob <bob@example.com>",
        subject="hi",
        body="text",
        attachments=[Upload("a.txt", "text/plain", b"abc")],
    )
    msg = build(d, sender="alice@example.com", sender_name="Alice A", hostname="h.test")
    assert msg["From"] == "Alice A <alice@example.com>"
    assert msg["Message-ID"].endswith("@h.test>")
    names = [p.get_filename() for p in msg.iter_attachments()]
    assert names == ["a.txt"]


def test_bad_address() -> None:
    with pytest.raises(ComposeError, match="not an e-mail address"):
        build(Draft(to="bob at example"), sender="a@x.test", sender_name="", hostname="h")


def test_reply_all_and_forward() -> None:
    v = view(ORIGINAL)
    r = reply(v, me="alice@example.com", everyone=True)
    assert r.to == "Carol <carol@remote.test>"
    assert "alice@example.com" not in r.cc and "dan@example.org" in r.cc
    assert "erin@example.org" in r.cc
    assert r.subject == "Re: Plans" and r.in_reply_to == "<p1@remote.test>"
    assert r.references == "<p0@remote.test> <p1@remote.test>"
    assert "> see you" in r.body
    assert reply(v, me="alice@example.com", everyone=False).cc == ""
    f = forward(v, ORIGINAL)
    assert f.subject == "Fwd: Plans" and f.forward == ORIGINAL
    msg = build(f, sender="alice@example.com", sender_name="", hostname="h")
    assert any(p.get_content_type() == "message/rfc822" for p in msg.iter_attachments())
