"""Search criteria evaluated by the engine (RFC 3501 §6.4.4 semantics)."""

from __future__ import annotations

import base64
import datetime

from mailcore.mailstore import Account, FlagOp
from mailcore.mailstore import search as s

PLAIN = (
    b"From: =?utf-8?q?J=C3=B6rg?= <joerg@example.org>\r\nTo: team@example.net\r\n"
    b"Cc: boss@example.net\r\nSubject: =?utf-8?B?UXVhcnRlcmx5IHLDqXN1bHRz?=\r\n"
    b"Date: Tue, 3 Dec 2024 23:30:00 -0800\r\nX-Priority: 1 (Highest)\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
    b"\r\nThe numbers are in: caf=C3=A9 revenue doubled.\r\n"
)
MULTI = (
    b"From: carol@example.com\r\nTo: joerg@example.org\r\nSubject: lunch\r\n"
    b"Date: Wed, 4 Dec 2024 12:00:00 +0000\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b"--b1\r\nContent-Type: text/html; charset=iso-8859-1\r\n\r\n"
    + "<p>Smörgåsbord</p>\r\n".encode("latin-1")
    + b"--b1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.b64encode(b"secret attachment words")
    + b"\r\n--b1\r\nContent-Type: application/octet-stream\r\n\r\nneedle-in-binary\r\n--b1--\r\n"
)


async def _setup(account: Account) -> int:
    inbox = await account.mailbox("INBOX")
    await account.append(
        inbox.id, PLAIN, flags=["\\Seen", "$Important"], internal_date=1733270400.0
    )
    await account.append(inbox.id, MULTI, internal_date=1733356800.0)
    await account.append(inbox.id, b"Subject: tiny\r\n\r\nx\r\n", internal_date=1733443200.0)
    return inbox.id


async def test_flags_sizes_uids_modseq(account: Account) -> None:
    box = await _setup(account)
    assert await account.search(box, s.All()) == [1, 2, 3]
    assert await account.search(box, s.Flag("\\seen")) == [1]
    assert await account.search(box, s.Flag("\\Seen", present=False)) == [2, 3]
    assert await account.search(box, s.Flag("$important")) == [1]
    assert await account.search(box, s.Smaller(40)) == [3]
    assert await account.search(box, s.Larger(len(PLAIN) - 1)) == [1, 2]
    assert await account.search(box, s.UidIn(((2, 3),))) == [2, 3]
    assert await account.search(box, s.All(), uids=[1, 3, 77]) == [1, 3]
    r = await account.store_flags(box, [3], FlagOp.ADD, ["\\Flagged"])
    assert await account.search(box, s.ModSeq(r.changed[0][1])) == [3]
    key = s.Or(s.Flag("\\Flagged"), s.And((s.Flag("\\Seen"), s.Not(s.Smaller(10)))))
    assert await account.search(box, key) == [1, 3]


async def test_dates(account: Account) -> None:
    box = await _setup(account)
    day = datetime.date(2024, 12, 5)
    assert await account.search(box, s.InternalDate("on", day)) == [2]
    assert await account.search(box, s.InternalDate("before", day)) == [1]
    assert await account.search(box, s.InternalDate("since", day)) == [2, 3]
    # The Date header's own day, time zone disregarded: 3 Dec even though it is 4 Dec UTC.
    assert await account.search(box, s.SentDate("on", datetime.date(2024, 12, 3))) == [1]
    assert await account.search(box, s.SentDate("since", datetime.date(2024, 12, 4))) == [2]
    assert await account.search(box, s.SentDate("before", datetime.date(2024, 12, 4))) == [1]


async def test_headers_decoded_case_insensitive(account: Account) -> None:
    box = await _setup(account)
    assert await account.search(box, s.Header("from", "jörg")) == [1]
    assert await account.search(box, s.Header("To", "JOERG@")) == [2]
    assert await account.search(box, s.Header("subject", "résults")) == [1]
    assert await account.search(box, s.Header("x-priority", "highest")) == [1]
    assert await account.search(box, s.Header("cc", "")) == [1]  # present
    assert await account.search(box, s.Header("bcc", "")) == []
    assert await account.search(box, s.Header("x-missing", "")) == []


async def test_body_and_text_decode_transfer_encodings_and_charsets(account: Account) -> None:
    box = await _setup(account)
    assert await account.search(box, s.Body("café")) == [1]
    assert await account.search(box, s.Body("SMÖRGÅSBORD")) == [2]
    assert await account.search(box, s.Body("attachment words")) == [2]
    assert await account.search(box, s.Body("needle-in-binary")) == []  # not a text part
    assert await account.search(box, s.Body("lunch")) == []  # only in the header
    assert await account.search(box, s.Text("lunch")) == [2]
    assert await account.search(box, s.Text("revenue")) == [1]
