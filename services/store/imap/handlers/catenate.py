"""CATENATE (RFC 4469) with URL-PARTIAL (RFC 5550): an APPEND whose message is joined from
literal text and parts of messages in this account, named by IMAP URLs (RFC 5092)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

from mailcore.mailstore import MailstoreError
from services.store.imap import imapurl, render
from services.store.imap.commands import AppendMessage, Section
from services.store.imap.errors import Refused
from services.store.imap.handlers.common import account

if TYPE_CHECKING:
    from services.store.imap.session import Session


def _bad_url(url: str) -> Refused:
    # RFC 4469 §6: [BADURL url] names the URL that cannot be used
    return Refused("Unusable URL in CATENATE", code=f"BADURL {url}")


async def build(s: Session, m: AppendMessage) -> AppendMessage:
    """``m`` with its parts joined into one message (RFC 4469 §5); refused with
    ``[BADURL …]`` for a URL that names nothing here, ``[TOOBIG]`` past the size limit."""
    limit = s.rt.max_message_size
    out = bytearray()
    for part in m.catenate:
        if part.text is not None:
            out += part.text
        else:
            assert part.url is not None
            out += await _resolve(s, part.url, limit - len(out))
        if len(out) > limit:
            raise Refused("Message too large", code="TOOBIG")  # RFC 4469 §6
    return dataclasses.replace(m, data=bytes(out), catenate=())


async def _resolve(s: Session, url: str, room: int) -> bytes:
    try:
        ref = imapurl.parse(url)
    except imapurl.BadUrl:
        raise _bad_url(url) from None
    assert s.user is not None
    # RFC 4469 §5: only messages this user can read, in this account (same server)
    if ref.user is not None and ref.user.lower() != s.user.address.lower():
        raise _bad_url(url)
    acct = account(s)
    try:
        box = await acct.mailbox(ref.mailbox)
        if ref.uidvalidity is not None and ref.uidvalidity != box.uidvalidity:
            raise _bad_url(url)
        recs = await acct.fetch(box.id, [ref.uid])
    except MailstoreError:
        raise _bad_url(url) from None
    if not recs:
        raise _bad_url(url)
    rec = recs[0]
    section = ref.section or Section()
    if section.part or section.text:
        if rec.parsed is None:
            raise _bad_url(url)
        found = render.section_range(rec.parsed.structure, section, rec.size)
        if found is None:
            raise _bad_url(url)
    else:
        found = (0, rec.size)
    start, end = found
    if ref.partial is not None and not section.text.startswith("HEADER.FIELDS"):
        # RFC 5550 §5: octets from the offset, at most the length (to the end without one)
        offset, length = ref.partial
        start = min(start + offset, end)
        if length is not None:
            end = min(start + length, end)
    if end - start > room and not section.text.startswith("HEADER.FIELDS"):
        raise Refused("Message too large", code="TOOBIG")
    try:
        fh = acct.open_message(rec)
    except MailstoreError:
        raise _bad_url(url) from None
    with fh:

        def read() -> bytes:
            fh.seek(start)
            return fh.read(max(0, end - start)) or b""

        data = await asyncio.to_thread(read) if end - start > 256 * 1024 else read()
    if section.text.startswith("HEADER.FIELDS"):
        data = render.header_fields(data, section.fields, section.text.endswith(".NOT"))
        if ref.partial is not None:
            offset, length = ref.partial
            data = data[offset : None if length is None else offset + length]
    return data
