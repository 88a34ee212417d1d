"""Line ends: stored messages use CRLF throughout, as on the wire.

RFC 5322 §2.3: CR and LF occur only together as CRLF. Mail from SMTP is CRLF already (the
filter refuses bare LF), but IMAP APPEND literals and imported files may carry bare LF or
bare CR. Normalising them once when a message is stored makes the stored size the size on
the wire: RFC 3501 §7.4.2 RFC822.SIZE equals the length of BODY[], and RFC 1939 LIST/STAT
octets equal what RETR sends.
"""

from __future__ import annotations


def is_crlf_clean(data: bytes) -> bool:
    """True when every CR and every LF of ``data`` belongs to a CRLF pair."""
    pairs = data.count(b"\r\n")
    return data.count(b"\n") == pairs and data.count(b"\r") == pairs


def to_crlf(data: bytes) -> bytes:
    """``data`` with every bare LF and bare CR turned into CRLF (CRLF stays as it is).

    Three ``bytes.count`` passes (no copy) when the data is clean already, which is the
    case for everything that came through SMTP.
    """
    if is_crlf_clean(data):
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


__all__ = ["is_crlf_clean", "to_crlf"]
