"""The DSN's shape (RFC 3464, RFC 6522), read back with the email package."""

from __future__ import annotations

import email
import email.policy

from hypothesis import given
from hypothesis import strategies as st

from mailcore.bus.outcome import DeliveryError
from services.filter.relay.dsn import RecipientStatus, build_dsn, original_headers

BODY = b"From: a@x.test\r\nSubject: the plan\r\nMessage-ID: <1@x.test>\r\n\r\nsecret body\r\n"


def _dsn(action: str, err: DeliveryError, expires: float | None = None) -> email.message.Message:
    raw = build_dsn(
        reporting_mta="mx.x.test",
        sender="a@x.test",
        original_id="ID1",
        received_at=1_700_000_000.0,
        body=BODY,
        statuses=[RecipientStatus("b@y.test", err)],
        action=action,
        expires_at=expires,
    )
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_failed_dsn_parts() -> None:
    msg = _dsn("failed", DeliveryError(550, "no such user", enhanced="5.1.1", remote="mx.y.test"))
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["Auto-Submitted"] == "auto-replied"
    kinds = [p.get_content_type() for p in msg.iter_parts()]
    assert kinds == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    status = msg.get_payload()[1].get_payload()
    per_message, per_rcpt = status[0], status[1]
    assert per_message["Reporting-MTA"] == "dns; mx.x.test"
    assert per_rcpt["Final-Recipient"] == "rfc822; b@y.test"
    assert per_rcpt["Action"] == "failed" and per_rcpt["Status"] == "5.1.1"
    assert per_rcpt["Remote-MTA"] == "dns; mx.y.test"
    assert per_rcpt["Diagnostic-Code"] == "smtp; 550 no such user"
    headers = msg.get_payload()[2].get_payload()
    assert "Subject: the plan" in headers and "secret body" not in headers


def test_delayed_dsn_says_until_when() -> None:
    msg = _dsn("delayed", DeliveryError(451, "greylisted"), expires=1_700_400_000.0)
    per_rcpt = msg.get_payload()[1].get_payload()[1]
    assert per_rcpt["Action"] == "delayed" and per_rcpt["Status"] == "4.0.0"
    assert per_rcpt["Will-Retry-Until"]
    assert "need not send it again" in msg.get_payload()[0].get_content()


@given(st.lists(st.from_regex(r"[A-Za-z-]{1,20}: [ -~]{0,40}", fullmatch=True), max_size=10))
def test_original_headers_stop_at_the_body(lines: list[str]) -> None:
    head = "\r\n".join(lines).encode()
    body = head + b"\r\n\r\nthe body\r\n"
    out = original_headers(body)
    assert b"the body" not in out
    assert out == (head + b"\r\n" if lines else b"\r\n")
