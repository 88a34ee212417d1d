"""Received:, Authentication-Results:, and removal of forged screening headers."""

from __future__ import annotations

import email
import email.policy

from services.filter import headers


def test_protocol_names() -> None:
    name = headers.protocol_name
    assert name(esmtp=False, tls=False, authenticated=False, smtputf8=False) == "SMTP"
    assert name(esmtp=True, tls=False, authenticated=False, smtputf8=False) == "ESMTP"
    assert name(esmtp=True, tls=True, authenticated=True, smtputf8=False) == "ESMTPSA"
    assert name(esmtp=True, tls=True, authenticated=False, smtputf8=True) == "UTF8SMTPS"


def test_received_parses_and_sanitises() -> None:
    field = headers.received(
        helo="evil\r\nX-Injected: yes",
        ip="2001:db8::1",
        hostname="mx.example.test",
        protocol="ESMTPS",
        message_id="01ABC",
        recipient="alice@example.test",
        tls_version="TLSv1.3",
        when=0,
    )
    raw = headers.render([field])
    assert b"\nX-Injected" not in raw  # no field of its own: it stays inside Received
    msg = email.message_from_bytes(raw + b"\r\nbody\r\n", policy=email.policy.default)
    value = str(msg["Received"])
    assert "from evil??X-Injected:?yes" in value
    assert "([IPv6:2001:db8::1])" in value
    assert "by mx.example.test (Postern) with ESMTPS (TLSv1.3) id 01ABC" in value
    assert "for <alice@example.test>;" in value
    assert value.endswith("Thu, 01 Jan 1970 00:00:00 +0000")


def test_authentication_results() -> None:
    assert headers.authentication_results("mx.example.test", None) == (
        "Authentication-Results",
        "mx.example.test; none",
    )
    _, value = headers.authentication_results("mx.example.test", "alice@example.test")
    assert value.replace("\r\n\t", " ") == "mx.example.test; auth=pass smtp.auth=alice@example.test"


def test_strip_untrusted_removes_forgeries_only() -> None:
    message = (
        b"X-Spam-Flag: NO\r\n"
        b"Authentication-Results: mx.example.test;\r\n\tdkim=pass\r\n"
        b"Authentication-Results: other.test; spf=pass\r\n"
        b"Subject: hi\r\n"
        b"X-Postern-Unscanned: nothing\r\n"
        b"x-spam-score: -100\r\n"
        b"\r\n"
        b"X-Spam-Flag: NO in the body stays\r\n"
    )
    out = headers.strip_untrusted(message, "mx.example.test")
    assert out == (
        b"Authentication-Results: other.test; spf=pass\r\n"
        b"Subject: hi\r\n"
        b"\r\n"
        b"X-Spam-Flag: NO in the body stays\r\n"
    )


def test_strip_untrusted_leaves_clean_messages_untouched() -> None:
    message = b"Subject: hi\r\n\r\nbody\r\n"
    assert headers.strip_untrusted(message, "mx.example.test") is message
    assert headers.strip_untrusted(b"\r\nno headers\r\n", "mx") == b"\r\nno headers\r\n"


def test_stamp_puts_our_fields_on_top_of_the_client_bytes() -> None:
    fields = [("Received", "from a (b)"), ("X-Spam-Score", "0.1")]
    clean = b"Subject: hi\r\n\r\nbody\r\n"
    assert headers.stamp(fields, clean, "mx.example.test") == (
        b"Received: from a (b)\r\nX-Spam-Score: 0.1\r\n" + clean
    )
    forged = b"X-Spam-Score: -100\r\nSubject: hi\r\n\r\nX-Spam-Score: body\r\n"
    assert headers.stamp(fields, forged, "mx.example.test") == (
        b"Received: from a (b)\r\nX-Spam-Score: 0.1\r\nSubject: hi\r\n\r\nX-Spam-Score: body\r\n"
    )
    assert headers.stamp([], b"\r\nno headers\r\n", "mx") == b"\r\nno headers\r\n"
