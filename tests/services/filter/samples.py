"""Test messages: clean mail, GTUBE, EICAR as a MIME attachment."""

from __future__ import annotations

import base64

# The EICAR test file (68 bytes) and SpamAssassin's GTUBE string.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

CLEAN = (
    b"From: Carol <carol@remote.test>\r\n"
    b"To: Alice <alice@example.test>\r\n"
    b"Subject: lunch on Thursday\r\n"
    b"Date: Mon, 23 Nov 2026 12:00:00 +0000\r\n"
    b"Message-ID: <lunch-1@remote.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hi Alice,\r\n\r\nshall we have lunch on Thursday at noon?\r\n\r\nCarol\r\n"
)


def gtube_message() -> bytes:
    return CLEAN.replace(b"shall we", GTUBE + b"\r\n\r\nshall we")


def with_attachment(payload: bytes, name: str = "invoice.com") -> bytes:
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return (
        b"From: Carol <carol@remote.test>\r\n"
        b"To: Alice <alice@example.test>\r\n"
        b"Subject: your invoice\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n'
        b"\r\n"
        b"--b1\r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
        b"Please see the attachment.\r\n"
        b"--b1\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="' + name.encode() + b'"\r\n'
        b"\r\n" + encoded + b"--b1--\r\n"
    )
