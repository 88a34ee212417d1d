"""Composing: form fields → a checked RFC 5322 message; reply, reply-all and forward
prefills; sending through the filters' submission port (aiosmtplib, STARTTLS + AUTH).

A header field with CR or LF in it is refused with a clear error (header injection), as
is an address that does not parse.
"""

from __future__ import annotations

import email.utils
import ssl
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage

import aiosmtplib

from services.webmail.mime_view import View

HEADER_FIELDS = ("to", "cc", "bcc", "subject", "in_reply_to", "references")


class ComposeError(ValueError):
    """A form field the message cannot be built from; the text is shown to the user."""


@dataclass(slots=True)
class Upload:
    filename: str
    content_type: str
    data: bytes


@dataclass(slots=True)
class Draft:
    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    body: str = ""
    in_reply_to: str = ""
    references: str = ""
    attachments: list[Upload] = field(default_factory=list)
    forward: bytes | None = None  # the original, attached as message/rfc822


def check_fields(fields: dict[str, str]) -> None:
    for name in HEADER_FIELDS:
        value = fields.get(name, "")
        if "\r" in value or "\n" in value or "\x00" in value:
            label = name.replace("_", "-").capitalize()
            raise ComposeError(f"The {label} field contains a line break, which is not allowed.")


def addresses(value: str, label: str) -> list[str]:
    """``"A <a@x>, b@y"`` → ``["A <a@x>", "b@y"]``; an address that does not parse is an error."""
    out: list[str] = []
    for name, addr in email.utils.getaddresses([value]):
        if not addr:
            continue
        local, at, domain = addr.rpartition("@")
        if not at or not local or not domain or " " in addr:
            raise ComposeError(f"{label}: “{addr}” is not an e-mail address.")
        out.append(email.utils.formataddr((name, addr)) if name else addr)
    return out


def build(draft: Draft, *, sender: str, sender_name: str, hostname: str) -> EmailMessage:
    check_fields({k: getattr(draft, k) for k in HEADER_FIELDS})
    to = addresses(draft.to, "To")
    cc = addresses(draft.cc, "Cc")
    addresses(draft.bcc, "Bcc")
    msg = EmailMessage()
    msg["From"] = Address(display_name=sender_name, addr_spec=sender) if sender_name else sender
    if to:
        msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = draft.subject
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = email.utils.make_msgid(domain=hostname)
    if draft.in_reply_to:
        msg["In-Reply-To"] = draft.in_reply_to
    if draft.references:
        msg["References"] = draft.references
    msg["User-Agent"] = "Postern webmail"
    msg.set_content(draft.body or "")
    for up in draft.attachments:
        maintype, _, subtype = (up.content_type or "application/octet-stream").partition("/")
        msg.add_attachment(
            up.data, maintype=maintype, subtype=subtype or "octet-stream", filename=up.filename
        )
    if draft.forward is not None:
        msg.add_attachment(
            draft.forward, maintype="message", subtype="rfc822", filename="forwarded.eml"
        )
    return msg


def recipients(draft: Draft) -> list[str]:
    out = []
    for value in (draft.to, draft.cc, draft.bcc):
        out += [addr for _, addr in email.utils.getaddresses([value]) if addr]
    return out


def _prefixed(prefix: str, subject: str) -> str:
    return subject if subject.lower().startswith(prefix.lower()) else f"{prefix} {subject}"


def _quote(v: View) -> str:
    lines = (v.text or "").splitlines()
    return f"\n\nOn {v.date}, {v.sender} wrote:\n" + "\n".join("> " + ln for ln in lines)


def reply(v: View, *, me: str, everyone: bool) -> Draft:
    """RFC 5322 §3.6.4: In-Reply-To is the parent's Message-ID, References extends its own."""
    to = v.reply_to or v.sender
    cc = ""
    if everyone:
        mine = me.lower()
        others = [
            email.utils.formataddr((n, a))
            for n, a in email.utils.getaddresses([v.to, v.cc])
            if a and a.lower() != mine
        ]
        cc = ", ".join(others)
    refs = " ".join(x for x in (v.references, v.message_id) if x)
    return Draft(
        to=to,
        cc=cc,
        subject=_prefixed("Re:", v.subject),
        body=_quote(v),
        in_reply_to=v.message_id,
        references=refs,
    )


def forward(v: View, raw: bytes) -> Draft:
    return Draft(subject=_prefixed("Fwd:", v.subject), forward=raw)


@dataclass(slots=True)
class Submission:
    host: str
    port: int
    tls: ssl.SSLContext | None  # STARTTLS with this context; None = plain (loopback tests)
    timeout: float = 60.0


async def send(
    sub: Submission, msg: EmailMessage, *, user: str, password: str, rcpts: list[str]
) -> None:
    await aiosmtplib.send(
        msg,
        sender=user,
        recipients=rcpts,
        hostname=sub.host,
        port=sub.port,
        username=user,
        password=password,
        start_tls=sub.tls is not None,
        tls_context=sub.tls,
        timeout=sub.timeout,
    )
