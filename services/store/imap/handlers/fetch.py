"""FETCH and UID FETCH (RFC 3501 §6.4.5, §6.4.8; RFC 7162 CHANGEDSINCE/VANISHED).

A range costs one engine ``fetch()`` per chunk, never one per message; ENVELOPE and
BODYSTRUCTURE renderings are cached per message; section bytes are read from the stored
file at the parsed offsets. Flags come from the session's view, which the change log keeps
current."""

from __future__ import annotations

import asyncio
import binascii
import re
from typing import TYPE_CHECKING, Any, BinaryIO

from mailcore.mailstore import FlagOp, MessageRecord
from mailcore.message import decode_qp
from services.store.imap import objectid, partial, render
from services.store.imap import responses as r
from services.store.imap.commands import Fetch, FetchAtt, Request, Section
from services.store.imap.errors import Refused
from services.store.imap.handlers.common import enable_condstore
from services.store.imap.preview import preview

if TYPE_CHECKING:
    from services.store.imap.selected import Selected
    from services.store.imap.session import Session

CHUNK = 200  # messages per engine round trip
# Section reads (and BINARY decoding) above this go to a thread: a read from the page
# cache costs ~0.1 ms per MiB but from disk far more, and the event loop serves every
# session. Below it they stay inline: the hand-over would cost more than the read.
BIG_READ = 128 * 1024

_NEEDS_RECORD = frozenset(
    {
        "ENVELOPE",
        "INTERNALDATE",
        "RFC822.SIZE",
        "BODY",
        "BODYSTRUCTURE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.TEXT",
        "BINARY",
        "BINARY.SIZE",
        "EMAILID",
        "PREVIEW",
        "SAVEDATE",
    }
)
_SETS_SEEN = frozenset({"RFC822", "RFC822.TEXT"})


def _sets_seen(att: FetchAtt) -> bool:
    # RFC 3501 §6.4.5: BODY[...] (not BODY.PEEK), RFC822 and RFC822.TEXT set \Seen
    return (att.section is not None and not att.peek) or att.name in _SETS_SEEN


async def fetch(s: Session, req: Request) -> str:
    a = req.args
    assert isinstance(a, Fetch)
    sel = s.selected
    assert sel is not None and s.account is not None
    atts = list(a.atts)
    names = {att.name for att in atts}
    if a.changed_since is not None or "MODSEQ" in names:
        enable_condstore(s)  # RFC 7162 §3.1: CONDSTORE enabling command
    if s.condstore and a.changed_since is not None and "MODSEQ" not in names:
        atts.append(FetchAtt("MODSEQ"))
    idx = sel.resolve(a.seqs, a.uid)
    if a.changed_since is not None:
        idx = [i for i in idx if sel.modseqs[i] > a.changed_since]
        if a.vanished:
            await _vanished(s, sel, a)
    if a.partial is not None:
        # RFC 9394 §4: of the messages the set (and CHANGEDSINCE) names, those at the
        # positions asked for (negative: counted from the last)
        idx = partial.pick(idx, a.partial)
    if not idx:
        return f"{req.name} completed"
    if not sel.readonly and any(_sets_seen(att) for att in atts):
        await _mark_seen(s, sel, idx)
        if "FLAGS" not in names:
            atts.append(FetchAtt("FLAGS"))
    need_record = any(att.name in _NEEDS_RECORD for att in atts)
    if all(att.name in _VIEW_ITEMS or _cacheable(att) or _fields_only(att) for att in atts):
        # a client's flag sync or message list: nothing to read from message files
        await _quick(s, sel, idx, atts, a.uid, need_record)
        return f"{req.name} completed"
    # a message's ENVELOPE, BODYSTRUCTURE, INTERNALDATE, size, PREVIEW and header fields
    # never change: when every item is cached or kept in the view, the engine is not asked
    # at all (a webmail list page shown again)
    only_cached = all(_cache_item(att) is not None or att.name in _VIEW_ITEMS for att in atts)
    for start in range(0, len(idx), CHUNK):
        chunk = idx[start : start + CHUNK]
        records: dict[int, MessageRecord] = {}
        asked: set[int] = set()
        if need_record:
            uids = [sel.uids[i] for i in chunk]
            if only_cached:
                uids = [u for u in uids if not _all_cached(s, sel, u, atts)]
            if uids:
                asked = set(uids)
                need_parsed = _needs_parsed(s, sel, atts, uids)
                for got in await s.account.fetch(sel.mailbox_id, uids, parsed=need_parsed):
                    records[got.uid] = got
        for i in chunk:
            uid = sel.uids[i]
            rec = records.get(uid)
            if uid in asked and rec is None:
                continue  # expunged by another session; reported later (RFC 3501 §7.4.1)
            await s.send_chunks(await _one(s, sel, i, uid, rec, atts, a.uid))
    return f"{req.name} completed"


async def _quick(  # noqa: PLR0917
    s: Session,
    sel: Selected,
    idx: list[int],
    atts: list[FetchAtt],
    uid_cmd: bool,
    need_record: bool,
) -> None:
    """FETCH of items kept in the view (UID, FLAGS, MODSEQ) and of cached renderings
    (ENVELOPE, BODYSTRUCTURE, BODY, INTERNALDATE, RFC822.SIZE, a list page's
    BODY[HEADER.FIELDS (...)]): the same lines as :func:`_one` gives, built in one pass
    per chunk with one cache look-up per item and message; the engine is asked, and a
    message file opened, only for the messages with an item not cached yet."""
    assert s.account is not None
    if all(att.name in _VIEW_ITEMS for att in atts):
        await _view_only(s, sel, idx, atts, uid_cmd)
        return
    cache = s.rt.cache
    acct_id = s.account.id
    env_item = "ENVELOPE UTF8" if s.utf8 else "ENVELOPE"  # as _key() names it
    cached = [
        (n, att.name, env_item if att.name == "ENVELOPE" else _cache_item(att) or att.name)
        for n, att in enumerate(atts)
        if _cacheable(att) or _fields_only(att)
    ]
    for start in range(0, len(idx), CHUNK):
        chunk = idx[start : start + CHUNK]
        # the cached renderings of each message, None where one is missing
        values: list[list[bytes | None]] = []
        missing: list[int] = []
        for i in chunk:
            uid = sel.uids[i]
            got: list[bytes | None] = []
            for _, _, item in cached:
                v = cache.get((acct_id, sel.mailbox_id, sel.uidvalidity, uid, item))
                got.append(v)
                if v is None and uid not in missing[-1:]:
                    missing.append(uid)
            values.append(got)
        records: dict[int, MessageRecord] = {}
        if missing and need_record:
            need_parsed = _needs_parsed(s, sel, atts, missing)
            for got_rec in await s.account.fetch(sel.mailbox_id, missing, parsed=need_parsed):
                records[got_rec.uid] = got_rec
        asked = set(missing) if need_record else set()
        out: list[bytes] = []
        for i, got in zip(chunk, values, strict=True):
            uid = sel.uids[i]
            if uid in asked and uid not in records:
                continue  # expunged by another session; reported later (RFC 3501 §7.4.1)
            items = [b"UID %d" % uid] if uid_cmd else []
            k = 0
            for att in atts:
                name = att.name
                if name == "UID":
                    if not uid_cmd:
                        items.append(b"UID %d" % uid)
                elif name == "FLAGS":
                    items.append(b"FLAGS " + sel.flag_list(s, i))
                elif name == "MODSEQ":
                    items.append(b"MODSEQ (%d)" % sel.modseqs[i])  # RFC 7162 §3.1.4
                elif att.section is not None:  # BODY[HEADER.FIELDS (...)] (_fields_only)
                    value = got[k]
                    k += 1
                    if value is None:
                        value = await _fields_cached(s, sel, uid, records.get(uid), att)
                    if value is not None:
                        label = b"BODY[" + att.section.spec().encode() + b"]"
                        items.append(b"".join(_lit(label, value, s.speaks_binary)))
                else:
                    value = got[k]
                    k += 1
                    if value is None:
                        value = _cached(s, sel, uid, records.get(uid), name)
                    if value is not None:
                        items.append(name.encode() + b" " + value)
            out.append(b"* %d FETCH (%s)\r\n" % (i + 1, b" ".join(items)))
        s.send(b"".join(out))
        await s.flush_if_large()


async def _view_only(
    s: Session, sel: Selected, idx: list[int], atts: list[FetchAtt], uid_cmd: bool
) -> None:
    """FETCH of UID, FLAGS and MODSEQ only (a client's flag sync, FETCH 1:* (FLAGS)):
    one line template for the command and a column per item, so that the work per
    message is one formatting of a line (the same bytes as :func:`_one`)."""
    names = ["UID"] if uid_cmd else []
    names += [att.name for att in atts if not (uid_cmd and att.name == "UID")]
    template = b"* %%d FETCH (%s)\r\n" % b" ".join(_VIEW_FORMATS[n] for n in names)
    for start in range(0, len(idx), CHUNK):
        chunk = idx[start : start + CHUNK]
        columns: list[list[Any]] = [[i + 1 for i in chunk]]
        for name in names:
            if name == "UID":
                columns.append([sel.uids[i] for i in chunk])
            elif name == "FLAGS":
                columns.append(sel.flag_lists(s, chunk))
            else:
                columns.append([sel.modseqs[i] for i in chunk])
        s.send(b"".join([template % row for row in zip(*columns, strict=True)]))
        await s.flush_if_large()  # a large mailbox's lines go out chunk by chunk


_VIEW_FORMATS = {"UID": b"UID %d", "FLAGS": b"FLAGS %b", "MODSEQ": b"MODSEQ (%d)"}  # §7.4.2
_VIEW_ITEMS = frozenset({"UID", "FLAGS", "MODSEQ"})
_CACHEABLE = frozenset({"ENVELOPE", "BODYSTRUCTURE", "BODY", "INTERNALDATE", "RFC822.SIZE"})


def _cacheable(att: FetchAtt) -> bool:
    return att.section is None and att.name in _CACHEABLE


def _cache_item(att: FetchAtt) -> str | None:
    """The render cache's name for ``att``'s bytes, or None when they are not cached."""
    if _cacheable(att) or att.name == "PREVIEW":
        return att.name
    if _fields_only(att):
        assert att.section is not None
        return "BODY[" + att.section.spec() + "]"
    return None


def _all_cached(s: Session, sel: Selected, uid: int, atts: list[FetchAtt]) -> bool:
    cache = s.rt.cache
    for att in atts:
        item = _cache_item(att)
        if item is not None and cache.get(_key(s, sel, uid, item)) is None:
            return False
    return True


def _needs_parsed(s: Session, sel: Selected, atts: list[FetchAtt], uids: list[int]) -> bool:
    for att in atts:
        if att.section is not None:
            if att.section.part or att.section.text:
                return True
        elif att.name in (
            "ENVELOPE",
            "BODY",
            "BODYSTRUCTURE",
            "RFC822.HEADER",
            "RFC822.TEXT",
            "PREVIEW",  # RFC 8970: made from the text part, found in the structure
        ):
            for uid in uids:
                if s.rt.cache.get(_key(s, sel, uid, att.name)) is None:
                    return True
    return False


def _key(s: Session, sel: Selected, uid: int, item: str) -> tuple[str, int, int, int, str]:
    assert s.account is not None
    if item == "ENVELOPE" and s.utf8:
        item = "ENVELOPE UTF8"  # RFC 6855: UTF-8 as it is, not downgraded
    return (s.account.id, sel.mailbox_id, sel.uidvalidity, uid, item)


async def _mark_seen(s: Session, sel: Selected, idx: list[int]) -> None:
    assert s.account is not None
    unseen = [sel.uids[i] for i in idx if "\\Seen" not in sel.flags[i]]
    if not unseen:
        return
    res = await s.account.store_flags(sel.mailbox_id, unseen, FlagOp.ADD, ["\\Seen"])
    for uid, modseq, flags in res.changed:
        i = sel.index_of(uid)
        if i is not None:
            sel.set_flags(i, flags, modseq)


async def _vanished(s: Session, sel: Selected, a: Fetch) -> None:
    # RFC 7162 §3.2.6: UIDs in the set expunged since CHANGEDSINCE
    assert s.account is not None and a.changed_since is not None
    gone = await s.account.expunged_since(sel.mailbox_id, a.changed_since)
    largest = max([*gone, *(sel.uids[-1:] or [0])])
    gone = sorted(u for u in gone if a.seqs.contains(u, largest))
    if gone:
        s.untagged(b"VANISHED (EARLIER) " + r.seq_set(gone))


async def _one(  # noqa: PLR0917
    s: Session,
    sel: Selected,
    i: int,
    uid: int,
    rec: MessageRecord | None,
    atts: list[FetchAtt],
    uid_cmd: bool,
) -> list[bytes]:
    items: list[bytes | tuple[bytes, bytes]] = []
    if uid_cmd:
        items.append(b"UID %d" % uid)  # RFC 3501 §6.4.8
    fh: BinaryIO | None = None
    try:
        for att in atts:
            name = att.name
            if name == "UID":
                if not uid_cmd:
                    items.append(b"UID %d" % uid)
            elif name == "FLAGS":
                items.append(b"FLAGS " + sel.flag_list(s, i))
            elif name == "MODSEQ":
                items.append(b"MODSEQ (%d)" % sel.modseqs[i])  # RFC 7162 §3.1.4
            elif name == "PREVIEW":
                key = _key(s, sel, uid, "PREVIEW")
                shown = s.rt.cache.get(key)
                if shown is None:
                    if rec is None or s.account is None:
                        continue
                    if fh is None:
                        fh = s.account.open_message(rec)
                    shown = r.nstring(_preview(rec, fh))  # RFC 8970 §3
                    s.rt.cache.put(key, shown)
                items.append(b"PREVIEW " + shown)
            elif name == "SAVEDATE":
                if rec is not None:  # RFC 8514 §4.1: NIL when not known
                    saved = rec.save_date
                    shown = b"NIL" if saved is None else render.internal_date(saved)
                    items.append(b"SAVEDATE " + shown)
            elif name == "THREADID":
                items.append(b"THREADID NIL")  # RFC 8474 §5.2: no threads
            elif name == "EMAILID":
                if rec is not None:  # RFC 8474 §5.1
                    items.append(b"EMAILID (%s)" % objectid.email_id(rec.file_id).encode())
            elif _cacheable(att):
                value = _cached(s, sel, uid, rec, name)
                if value is not None:
                    items.append(name.encode() + b" " + value)
            elif _fields_only(att):
                # a list page's BODY.PEEK[HEADER.FIELDS (...)]: the same for as long as
                # the message exists, so kept with the rendered items
                assert att.section is not None
                key = _key(s, sel, uid, "BODY[" + att.section.spec() + "]")
                data = s.rt.cache.get(key)
                if data is None:
                    if rec is None:
                        continue
                    if fh is None:
                        fh = s.account.open_message(rec) if s.account is not None else None
                    assert fh is not None
                    data = await _fields(att.section, rec, fh)
                    s.rt.cache.put(key, data)
                items.append(
                    _lit(b"BODY[" + att.section.spec().encode() + b"]", data, s.speaks_binary)
                )
            elif rec is None:
                continue
            else:
                if fh is None:
                    fh = s.account.open_message(rec) if s.account is not None else None
                assert fh is not None
                if att.name in ("BINARY", "BINARY.SIZE"):
                    s.speaks_binary = True
                items.append(await _body(att, rec, fh, s.speaks_binary))
    finally:
        if fh is not None:
            fh.close()
    # chunks, so that a large literal goes to the socket without being copied around
    chunks = [b"* %d FETCH (" % (i + 1)]
    for n, item in enumerate(items):
        if n:
            chunks.append(b" ")
        if isinstance(item, tuple):
            chunks.extend(item)
        else:
            chunks.append(item)
    chunks.append(b")\r\n")
    return chunks


def _cached(
    s: Session, sel: Selected, uid: int, rec: MessageRecord | None, name: str
) -> bytes | None:
    key = _key(s, sel, uid, name)
    hit = s.rt.cache.get(key)
    if hit is not None or rec is None:
        return hit
    if name == "INTERNALDATE":
        out = render.internal_date(rec.internal_date)
    elif name == "RFC822.SIZE":
        out = b"%d" % rec.size
    else:
        p = rec.parsed
        assert p is not None
        if name == "ENVELOPE":
            out = render.envelope(p.envelope, s.utf8)
        else:
            out = render.body_structure(p.structure, extended=name == "BODYSTRUCTURE")
    s.rt.cache.put(key, out)
    return out


async def _fields_cached(
    s: Session, sel: Selected, uid: int, rec: MessageRecord | None, att: FetchAtt
) -> bytes | None:
    """A header-fields section's bytes (``_fields_only``), read and kept in the render
    cache as :func:`_one` does; None without the message's record (expunged)."""
    if rec is None or s.account is None:
        return None
    assert att.section is not None
    with s.account.open_message(rec) as fh:
        data = await _fields(att.section, rec, fh)
    s.rt.cache.put(_key(s, sel, uid, "BODY[" + att.section.spec() + "]"), data)
    return data


async def _read(fh: BinaryIO, start: int, end: int) -> bytes:
    def read() -> bytes:
        fh.seek(start)
        return fh.read(max(0, end - start))

    if end - start > BIG_READ:
        return await asyncio.to_thread(read)
    return read()


def _preview(rec: MessageRecord, fh: BinaryIO) -> str:
    if rec.parsed is None:
        return ""

    def read(start: int, end: int) -> bytes:
        fh.seek(start)
        return fh.read(max(0, end - start))

    return preview(rec.parsed.structure, read)


def _lit(head: bytes, data: bytes, binary: bool = False) -> tuple[bytes, bytes]:
    """A literal. RFC 3501 §4.3 / RFC 9051 §4.3: a literal is CHAR8, which excludes NUL.
    Content holding NUL goes as an RFC 3516 §4.3 literal8 to a client that speaks BINARY
    (``binary``: it sent a literal8 or fetched BINARY in this session, and always for
    BINARY[]); to any other client each NUL is sent as 0x80 (as Dovecot does), so sizes
    and partial offsets stay true."""
    if b"\x00" in data:
        if binary:
            return (head + b" ~{%d}\r\n" % len(data), data)
        data = data.replace(b"\x00", b"\x80")
    return (head + b" {%d}\r\n" % len(data), data) if data else (head + b' ""', b"")


async def _binary(att: FetchAtt, rec: MessageRecord, fh: BinaryIO) -> tuple[bytes, bytes]:
    """RFC 3516 / RFC 9051 §6.4.5 BINARY[part]<partial> and BINARY.SIZE[part]: the part's
    content with its Content-Transfer-Encoding undone."""
    section = att.section or Section()
    spec = section.spec().encode()
    if not section.part:
        data = await _read(fh, 0, rec.size)
    else:
        assert rec.parsed is not None
        node = render.find_part(rec.parsed.structure, section.part)
        if node is None:
            data = b""
        else:
            raw = await _read(fh, node.body_start, node.body_end)
            if len(raw) > BIG_READ:
                data = await asyncio.to_thread(decode_cte, raw, node.encoding)
            else:
                data = decode_cte(raw, node.encoding)
    if att.name == "BINARY.SIZE":
        return (b"BINARY.SIZE[%s] %d" % (spec, len(data)), b"")
    label = b"BINARY[" + spec + b"]"
    if att.partial is not None:
        data = data[att.partial[0] : att.partial[0] + att.partial[1]]
        label += b"<%d>" % att.partial[0]
    return _lit(label, data, binary=True)  # literal8 when it holds NUL (RFC 3516 §4.4)


def decode_cte(raw: bytes, encoding: str) -> bytes:
    enc = encoding.lower()
    if enc in ("7bit", "8bit", "binary", ""):
        return raw
    if enc == "base64":
        # lenient like every MUA: ignore junk, repair padding, drop a dangling sextet
        b64 = re.sub(rb"[^A-Za-z0-9+/]", b"", raw)
        b64 = b64[: len(b64) - (len(b64) % 4 == 1)]
        return binascii.a2b_base64(b64 + b"=" * (-len(b64) % 4))
    if enc == "quoted-printable":
        return decode_qp(raw)  # RFC 2045 §6.7
    # RFC 3516 §4.3: an encoding we cannot undo
    raise Refused("Unknown Content-Transfer-Encoding", code="UNKNOWN-CTE")


def _fields_only(att: FetchAtt) -> bool:
    """BODY[HEADER.FIELDS (...)] or its .NOT of the whole message, all of it."""
    sec = att.section
    return (
        att.name == "BODY"
        and sec is not None
        and not sec.part
        and sec.text.startswith("HEADER.FIELDS")
        and att.partial is None
    )


async def _fields(section: Section, rec: MessageRecord, fh: BinaryIO) -> bytes:
    """RFC 3501 §6.4.5 HEADER.FIELDS / HEADER.FIELDS.NOT of the top-level header, as
    :func:`_body` gives it."""
    assert rec.parsed is not None
    found = render.section_range(rec.parsed.structure, section, rec.size)
    if found is None:
        return b""
    data = await _read(fh, *found)
    return render.header_fields(data, section.fields, section.text.endswith(".NOT"))


async def _body(
    att: FetchAtt, rec: MessageRecord, fh: BinaryIO, binary: bool = False
) -> tuple[bytes, bytes]:
    name = att.name
    if name in ("BINARY", "BINARY.SIZE"):
        return await _binary(att, rec, fh)
    if name == "RFC822":
        return _lit(b"RFC822", await _read(fh, 0, rec.size), binary)
    if name in ("RFC822.HEADER", "RFC822.TEXT"):
        p = rec.parsed
        hs = p.structure.body_start if p is not None else rec.size
        rng = (0, hs) if name == "RFC822.HEADER" else (hs, rec.size)
        return _lit(name.encode(), await _read(fh, *rng), binary)
    section = att.section or Section()
    if section.part or section.text:
        assert rec.parsed is not None
        found = render.section_range(rec.parsed.structure, section, rec.size)
    else:
        found = (0, rec.size)
    if found is None:
        data = b""
    else:
        start, end = found
        if att.partial is not None and not section.text.startswith("HEADER.FIELDS"):
            # RFC 3501 §6.4.5 <partial>: read only the requested octets
            start, end = (
                min(start + att.partial[0], end),
                min(start + att.partial[0] + att.partial[1], end),
            )
            data = await _read(fh, start, end)
        else:
            data = await _read(fh, start, end)
            if section.text.startswith("HEADER.FIELDS"):
                data = render.header_fields(data, section.fields, section.text.endswith(".NOT"))
            if att.partial is not None:
                data = data[att.partial[0] : att.partial[0] + att.partial[1]]
    label = b"BODY[" + section.spec().encode() + b"]"
    if att.partial is not None:
        label += b"<%d>" % att.partial[0]  # RFC 3501 §7.4.2: only the origin octet is echoed
    return _lit(label, data, binary)
