"""ENVELOPE for a client that did not enable UTF8=ACCEPT (RFC 6855 §7): a message whose
header fields hold raw UTF-8 (RFC 6532) is described in what IMAP4rev1 and RFC 5322
allow, as RFC 6857 downgrades it: text in RFC 2047 encoded words, a non-ASCII domain in
IDNA A-labels, and an address whose local part is not ASCII as an empty group whose
display name is the encoded address (RFC 6857 §3.1.5)."""

from __future__ import annotations

import base64
import dataclasses

from mailcore.message import Address, Envelope

_WORD_CHARS = 30  # characters per encoded word: well under RFC 2047 §2's 75 octets


def _ascii(value: str) -> bool:
    return value.isascii()


def encoded_words(value: str) -> str:
    """``value`` as RFC 2047 §4.1 "B" encoded words in UTF-8, separated by spaces."""
    raw = value.encode("utf-8", "surrogateescape")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "replace")  # not UTF-8 at all: replaced, still ASCII out
    words = []
    for i in range(0, len(text), _WORD_CHARS):
        chunk = base64.b64encode(text[i : i + _WORD_CHARS].encode("utf-8")).decode("ascii")
        words.append(f"=?UTF-8?B?{chunk}?=")
    return " ".join(words)


def _text(value: str | None) -> str | None:
    return value if value is None or _ascii(value) else encoded_words(value)


def _host(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return encoded_words(host)


def _addresses(addrs: list[Address]) -> list[Address]:
    out: list[Address] = []
    for a in addrs:
        if a.mailbox is not None and a.host is not None and not _ascii(a.mailbox):
            # RFC 6857 §3.1.5: "name <local@host>" becomes the group "=?UTF-8?…?= :;"
            whole = f"{a.mailbox}@{a.host}"
            label = f"{a.name} <{whole}>" if a.name else whole
            out.append(Address(None, None, encoded_words(label), None))
            out.append(Address(None, None, None, None))
            continue
        out.append(
            Address(
                _text(a.name),
                a.adl,
                a.mailbox,
                a.host if a.host is None or _ascii(a.host) else _host(a.host),
            )
        )
    return out


def envelope(e: Envelope) -> Envelope:
    """``e`` with every non-ASCII value downgraded; ``e`` itself when it is all ASCII."""
    fields = (e.subject, e.date, e.in_reply_to, e.message_id)
    lists = (e.from_, e.sender, e.reply_to, e.to, e.cc, e.bcc)
    if all(v is None or _ascii(v) for v in fields) and all(
        all(v is None or _ascii(v) for v in (a.name, a.mailbox, a.host)) for al in lists for a in al
    ):
        return e
    return dataclasses.replace(
        e,
        date=_text(e.date),
        subject=_text(e.subject),
        from_=_addresses(e.from_),
        sender=_addresses(e.sender),
        reply_to=_addresses(e.reply_to),
        to=_addresses(e.to),
        cc=_addresses(e.cc),
        bcc=_addresses(e.bcc),
        in_reply_to=_text(e.in_reply_to),
        message_id=_text(e.message_id),
    )
