"""IMAP URLs (RFC 5092) that name a message or part of one in this account, as CATENATE
(RFC 4469 §5) takes them, with URL-PARTIAL (RFC 5550 §5): a pure parser.

    imap://user@host/INBOX;UIDVALIDITY=385759045/;UID=20/;SECTION=1.2/;PARTIAL=0.1024
    /Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER

Mailbox names and sections are percent-encoded UTF-8 (RFC 5092 §3.3, §5).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from services.store.imap import commands as c
from services.store.imap.lexer import BadSyntax, Cursor
from services.store.imap.parse_items import _section


class BadUrl(ValueError):
    """Not an IMAP URL naming one message (or part) by UID."""


@dataclass(frozen=True, slots=True)
class MessageUrl:
    user: str | None  # the iuserinfo's user, None in a relative URL
    mailbox: str
    uidvalidity: int | None
    uid: int
    section: c.Section | None
    partial: tuple[int, int | None] | None  # RFC 5550 §5: (offset, length or to the end)


_ABSOLUTE = re.compile(r"(?i)^imap://(?:([^@/;]*)(?:;[^@/]*)?@)?[^/]+(/.*)$")
# RFC 5092 §9: imessagepart = ipath-mailbox [uidvalidity] iuid [isection] [ipartial]
_PATH = re.compile(
    r"(?i)^/([^;]+?)(?:;UIDVALIDITY=([1-9][0-9]{0,9}))?"
    r"/;UID=([1-9][0-9]{0,9})"
    r"(?:/;SECTION=([^/]+))?"
    r"(?:/;PARTIAL=([0-9]{1,10})(?:\.([1-9][0-9]{0,9}))?)?$"
)
_MAX32 = 2**32 - 1


def _unescape(text: str) -> str:
    if "%" in text and not re.fullmatch(r"(?:[^%]|%[0-9A-Fa-f]{2})*", text):
        raise BadUrl("bad percent-encoding")
    try:
        return urllib.parse.unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise BadUrl("percent-encoding is not UTF-8") from None


def parse(url: str) -> MessageUrl:
    user = None
    path = url
    absolute = _ABSOLUTE.match(url)
    if absolute is not None:
        user = _unescape(absolute.group(1)) if absolute.group(1) else None
        path = absolute.group(2)
    elif not url.startswith("/") or url.startswith("//"):
        raise BadUrl("neither an imap:// URL nor an absolute path")
    m = _PATH.match(path)
    if m is None:
        raise BadUrl("does not name a message by UID")
    mailbox = _unescape(m.group(1))
    if mailbox.upper() == "INBOX":
        mailbox = "INBOX"
    uidvalidity = int(m.group(2)) if m.group(2) else None
    uid = int(m.group(3))
    if uid > _MAX32 or (uidvalidity is not None and uidvalidity > _MAX32):
        raise BadUrl("number out of range")
    section = None
    if m.group(4):
        spec = _unescape(m.group(4)).encode("utf-8")
        try:
            cur = Cursor(b"[" + spec + b"]")
            section = _section(cur)
            cur.end()
        except BadSyntax:
            raise BadUrl("bad section") from None
    partial = None
    if m.group(5) is not None:
        offset = int(m.group(5))
        length = int(m.group(6)) if m.group(6) else None
        if offset > _MAX32 or (length is not None and length > _MAX32):
            raise BadUrl("partial range out of range")
        partial = (offset, length)
    return MessageUrl(user, mailbox, uidvalidity, uid, section, partial)
