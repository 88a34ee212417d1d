"""Sort and thread keys of a message, computed once when it is stored (RFC 5256, 5957).

SORT and THREAD compare these values straight from columns of the ``messages`` row
(:mod:`mailcore.mailstore.searchdata`): no message is parsed at query time.

Every string key is stored in its ``i;unicode-casemap`` form (RFC 5051, the collation
RFC 5256 §1 requires through I18NLEVEL=1: :mod:`mailcore.mailstore.casemap`), so that
comparing keys is a plain binary comparison (SQLite's BINARY collation):

* RFC 5256 §2.1 base subject, and whether extraction removed a reply/forward marker
  (THREAD=REFERENCES §2.2 step 5 needs to know).
* RFC 5256 §3 FROM/TO/CC: the ``addr-mailbox`` of the first address.
* RFC 5957 §3 DISPLAYFROM/DISPLAYTO: the decoded display name of the first address,
  or its ``addr-spec`` when it has none.
* RFC 5256 §2.2 thread ids: the Message-ID and the parent chain (References, else the
  first id of In-Reply-To), as bare ids without angle brackets.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from mailcore.mailstore.casemap import casemap
from mailcore.message import Address, ParsedMessage, decode_words, header_fields

_WSP = re.compile(r"\s+")
_TRAILER = re.compile(r"(?:\s|\(fwd\))+\Z", re.IGNORECASE)  # §5 subj-trailer
_BLOB = r"\[[^\[\]]*\]\s*"  # §5 subj-blob
# §5 subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
_LEADER = re.compile(rf"\A(?:(?:{_BLOB})*(?:re|fwd?)\s*(?:{_BLOB})?:|\s+)", re.IGNORECASE)
_BLOB_PREFIX = re.compile(rf"\A{_BLOB}")
_MSG_ID = re.compile(r"<([^<>\s]+)>")


def base_subject(subject: str) -> tuple[str, bool]:
    """RFC 5256 §2.1 base subject of a decoded subject, and whether a reply/forward
    marker (``Re:``, ``Fwd:``, a ``(fwd)`` trailer, ``[fwd: …]``) was removed."""
    text = _WSP.sub(" ", subject)  # (1) runs of white space are one space
    reply = False
    while True:
        # (2) trailing "(fwd)" and white space
        trimmed = _TRAILER.sub("", text)
        if "(fwd)" in text[len(trimmed) :].lower():
            reply = True
        text = trimmed
        while True:  # (5) repeat (3) and (4) until nothing changes
            before = text
            m = _LEADER.match(text)
            while m is not None and m.end() > 0:  # (3) subj-leader
                if m.group().strip():
                    reply = True
                text = text[m.end() :]
                m = _LEADER.match(text)
            b = _BLOB_PREFIX.match(text)  # (4) a leading subj-blob, unless it is all
            if b is not None and text[b.end() :].strip():
                text = text[b.end() :]
            if text == before:
                break
        # (6) "[fwd:" ... "]" around the whole: unwrap and start again at (2)
        if text[:5].lower() == "[fwd:" and text.endswith("]"):
            text = text[5:-1]
            reply = True
            continue
        return text, reply


def _first(addrs: list[Address]) -> Address | None:
    for a in addrs:
        if a.host is not None:  # group start/end markers are not addresses
            return a
    return None


def _mailbox(addrs: list[Address]) -> str:
    """§3: the addr-mailbox of the first address; "" without one."""
    a = _first(addrs)
    return casemap(a.mailbox or "") if a is not None else ""


def _display(addrs: list[Address]) -> str:
    """RFC 5957 §3: the display name of the first address, else its addr-spec."""
    a = _first(addrs)
    if a is None:
        return ""
    name = decode_words(a.name).strip() if a.name else ""
    if name:
        return casemap(name)
    return casemap(f"{a.mailbox or ''}@{a.host or ''}" if a.host else a.mailbox or "")


def msg_ids(value: str | None) -> list[str]:
    return _MSG_ID.findall(value) if value else []


class SortKeys(NamedTuple):
    k_subject: str
    k_reply: int
    k_from: str
    k_to: str
    k_cc: str
    k_dfrom: str
    k_dto: str
    sent_at: float | None  # the Date header; None: the internal date stands in (§2.2)
    msg_id: str | None
    refs: str  # parent chain, oldest first, space separated


def of(p: ParsedMessage, data: bytes) -> SortKeys:
    env = p.envelope
    subject, reply = base_subject(p.decoded.get("subject", ""))
    own = msg_ids(env.message_id)
    refs = msg_ids(_references(data[: p.header_size]))
    if not refs:  # §2.2 (1)(A): no References, the first id of In-Reply-To
        refs = msg_ids(env.in_reply_to)[:1]
    return SortKeys(
        casemap(subject),
        int(reply),
        _mailbox(env.from_),
        _mailbox(env.to),
        _mailbox(env.cc),
        _display(env.from_),
        _display(env.to),
        p.sent,
        own[0] if own else None,
        " ".join(refs),
    )


def _references(header: bytes) -> str | None:
    if b"eferences" not in header and b"EFERENCES" not in header:
        return None
    for name, value in header_fields(header):
        if name == "references":
            return value
    return None


__all__ = ["SortKeys", "base_subject", "msg_ids", "of"]
