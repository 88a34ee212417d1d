"""A stored message → what the reader shows: headers, the text or the sanitized HTML,
attachments and inline images.

HTML is hostile input. :func:`safe_html` inlines ``cid:`` images as ``data:`` URIs and
drops remote images unless the user asked for them, and then, as the LAST step, runs
nh3 (ammonia) with an allow-list: no script, no event handlers, no forms, no frames, no
``style`` elements; links get ``rel="noopener noreferrer"`` and ``target=_blank``. The
page serving it adds a sandboxed iframe and a strict Content-Security-Policy on top.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from email import message_from_bytes
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from email.policy import default as default_policy

import nh3

from services.webmail.imap_records import decode_words

INLINE_IMAGE_LIMIT = 5 * 1024 * 1024  # bytes of cid: images inlined into one message view

_TAGS = {
    "a",
    "abbr",
    "b",
    "blockquote",
    "br",
    "caption",
    "center",
    "code",
    "col",
    "colgroup",
    "dd",
    "del",
    "div",
    "dl",
    "dt",
    "em",
    "font",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "ins",
    "li",
    "ol",
    "p",
    "pre",
    "q",
    "s",
    "small",
    "span",
    "strike",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "tt",
    "u",
    "ul",
}
_GENERIC_ATTRS = {
    "align",
    "bgcolor",
    "border",
    "color",
    "dir",
    "height",
    "lang",
    "style",
    "title",
    "valign",
    "width",
}
_ATTRS = {
    "a": {"href", "name"},
    "img": {"src", "alt", "width", "height"},
    "font": {"face", "size", "color"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
    "table": {"cellpadding", "cellspacing"},
    "*": _GENERIC_ATTRS,
}
_CSS = {
    "background-color",
    "border",
    "border-collapse",
    "color",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "height",
    "line-height",
    "margin",
    "padding",
    "text-align",
    "text-decoration",
    "vertical-align",
    "width",
    "white-space",
}
_IMG_SRC = re.compile(r"""(<img\b[^>]*?\bsrc\s*=\s*)(["']?)([^"'\s>]+)\2""", re.IGNORECASE)


@dataclass(slots=True)
class Attachment:
    index: int  # position in msg.walk(): the download URL names it
    filename: str
    content_type: str
    size: int


@dataclass(slots=True)
class View:
    subject: str
    sender: str
    to: str
    cc: str
    date: str
    message_id: str
    references: str
    reply_to: str
    text: str | None = None
    html: str | None = None  # raw HTML: render with safe_html() for display
    attachments: list[Attachment] = field(default_factory=list)
    has_remote_images: bool = False


class _MemoHeaders(HeaderRegistry):
    """The email package's header registry, remembering the header objects it made.

    The EmailPolicy parses a header's value again on every read: a message view reads a
    part's Content-Type five times or more (type, charset, file name, content), and most
    messages share the same few Content-Type values. Header objects are immutable (a
    ``str`` with read-only properties), so the same value of the same field gives an
    equal object: memoizing changes nothing but the CPU spent. Short values only, and a
    bounded table, so hostile mail cannot grow it."""

    LIMIT = 4096  # entries
    LONGEST = 512  # characters of a value worth remembering

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[tuple[str, str], BaseHeader] = {}

    def __call__(self, name: str, value: str) -> BaseHeader:
        if len(value) > self.LONGEST:
            made: BaseHeader = super().__call__(name, value)
            return made
        key = (name, value)
        found = self._made.get(key)
        if found is None:
            if len(self._made) >= self.LIMIT:
                self._made.clear()
            found = self._made[key] = super().__call__(name, value)
        return found


_POLICY = default_policy.clone(header_factory=_MemoHeaders())


def parse_message(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=_POLICY)
    assert isinstance(msg, EmailMessage)
    return msg


def _header(msg: Message, name: str) -> str:
    value = msg.get(name)
    if value is None:
        return ""
    try:
        return str(value)
    except (ValueError, LookupError):
        return decode_words(str(msg.get_all(name, [""])[0]))


def _content(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, ValueError, AssertionError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


def view(raw: bytes) -> View:
    msg = parse_message(raw)
    v = View(
        subject=_header(msg, "Subject"),
        sender=_header(msg, "From"),
        to=_header(msg, "To"),
        cc=_header(msg, "Cc"),
        date=_header(msg, "Date"),
        message_id=_header(msg, "Message-ID"),
        references=_header(msg, "References"),
        reply_to=_header(msg, "Reply-To"),
    )
    for index, part in enumerate(msg.walk()):
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        disposition = part.get_content_disposition()
        filename = part.get_filename()
        if (
            disposition == "attachment"
            or (filename and disposition != "inline")
            or (not ctype.startswith("text/") and not part.get("Content-ID"))
        ):
            payload = part.get_payload(decode=True)
            v.attachments.append(
                Attachment(
                    index,
                    filename or f"part-{index}",
                    ctype,
                    len(payload) if isinstance(payload, bytes) else 0,
                )
            )
        elif ctype == "text/html" and v.html is None:
            v.html = _content(part)
        elif ctype == "text/plain" and v.text is None:
            v.text = _content(part)
    if v.html is not None:
        v.has_remote_images = bool(
            [m for m in _IMG_SRC.finditer(v.html) if m.group(3).lower().startswith(("http", "//"))]
        )
    return v


def part_by_index(raw: bytes, index: int) -> tuple[bytes, str, str] | None:
    """(decoded bytes, content type, file name) of the ``index``-th part."""
    msg = parse_message(raw)
    for i, part in enumerate(msg.walk()):
        if i == index and not part.is_multipart():
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            return data, part.get_content_type(), part.get_filename() or f"part-{index}"
    return None


def _cid_images(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    total = 0
    for part in parse_message(raw).walk():
        cid = str(part.get("Content-ID", "")).strip().strip("<>")
        ctype = part.get_content_type()
        if not cid or not ctype.startswith("image/") or ctype == "image/svg+xml":
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or total + len(payload) > INLINE_IMAGE_LIMIT:
            continue
        total += len(payload)
        out[cid] = f"data:{ctype};base64," + base64.b64encode(payload).decode()
    return out


def _only_images_get_data(tag: str, attr: str, value: str) -> str | None:
    # data: URIs are the inlined cid: images; a data: link could carry a whole page
    if value.strip().lower().startswith("data:") and not (tag == "img" and attr == "src"):
        return None
    if tag == "img" and attr == "src" and value.strip().lower().startswith("data:image/svg"):
        return None
    return value


def safe_html(raw: bytes, html: str, *, remote_images: bool) -> str:
    cids = _cid_images(raw)

    def rewrite(m: re.Match[str]) -> str:
        src = m.group(3)
        low = src.lower()
        if low.startswith("cid:"):
            data = cids.get(src[4:].strip("<>"))
            return f'{m.group(1)}"{data}"' if data else f'{m.group(1)}""'
        if low.startswith(("http:", "https:", "//")) and remote_images:
            return m.group(0)
        return f'{m.group(1)}""'  # blocked: remote until asked, anything else never

    prepared = _IMG_SRC.sub(rewrite, html)
    # nh3 LAST: whatever the rewriting above let through is judged by the allow-list
    return nh3.clean(
        prepared,
        tags=_TAGS,
        attributes=_ATTRS,
        url_schemes={"http", "https", "mailto", "data"},
        attribute_filter=_only_images_get_data,
        link_rel="noopener noreferrer",
        strip_comments=True,
        set_tag_attribute_values={"a": {"target": "_blank"}},
        filter_style_properties=_CSS,
    )
