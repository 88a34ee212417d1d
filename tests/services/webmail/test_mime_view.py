"""Sanitizing and taking messages apart."""

from __future__ import annotations

from services.webmail.mime_view import part_by_index, safe_html, view

MAIL = (
    b"From: A <a@example.net>\r\nTo: b@example.com\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=R\r\n\r\n"
    b"--R\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b'<img src="cid:pic"><img src="http://remote.example/t.gif"><a href="data:text/html,x">d</a>'
    b'<a href="javascript:alert(1)">j</a><img src="data:image/svg+xml,<svg/>">\r\n'
    b"--R\r\nContent-Type: image/gif\r\nContent-ID: <pic>\r\nContent-Transfer-Encoding: base64"
    b"\r\n\r\nR0lGODlhAQABAAAAACw=\r\n"
    b"--R\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf"
    b"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--R--\r\n"
)


def test_view_parts() -> None:
    v = view(MAIL)
    assert v.subject == "café"
    assert v.html is not None and v.has_remote_images
    assert [(a.filename, a.content_type, a.size) for a in v.attachments] == [
        ("a.pdf", "application/pdf", 4)
    ]
    found = part_by_index(MAIL, v.attachments[0].index)
    assert found is not None and found[0] == b"%PDF"


def test_safe_html_blocks_and_inlines() -> None:
    v = view(MAIL)
    assert v.html is not None
    out = safe_html(MAIL, v.html, remote_images=False)
    assert 'src="data:image/gif;base64,R0lGODlhAQABAAAAACw="' in out
    assert "remote.example" not in out
    assert "javascript:" not in out and "data:text/html" not in out and "svg" not in out
    shown = safe_html(MAIL, v.html, remote_images=True)
    assert 'src="http://remote.example/t.gif"' in shown


def test_plain_text_only() -> None:
    v = view(b"Subject: hi\r\n\r\nline one\r\n")
    assert v.text is not None and v.text.splitlines() == ["line one"]
    assert v.html is None and v.attachments == []
