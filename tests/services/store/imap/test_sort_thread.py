"""SORT, SORT=DISPLAY, ESORT and THREAD (RFC 5256, RFC 5957, RFC 5267 §3.2) over a real
socket: a mailbox with a UID gap (sequence numbers differ from UIDs), messages without
the sorted header, RFC 2047 encoded subjects and names, replies and forwards."""

from __future__ import annotations

import re

import pytest

from tests.services.store.imap.conftest import ImapHarness

DAY = 86400.0
BASE = 1577836800.0  # 2020-01-01T00:00:00Z


def _msg(*headers: str) -> bytes:
    return ("\r\n".join(headers) + "\r\n\r\nbody\r\n").encode()


# uid -> message; uid 3 is expunged below (a gap), uid 4 has no Subject/Date/From/To
MESSAGES = {
    1: _msg(
        'From: "Zed" <zed@x.org>',
        "To: amy@y.org",
        "Subject: Re: hello",
        "Date: Thu, 2 Jan 2020 10:00:00 +0000",
        "Message-ID: <b@x>",
        "In-Reply-To: <a@x>",
    ),
    2: _msg(
        "From: Alice <bob@x.org>",
        'To: "Carl" <carl@y.org>',
        "Cc: dan@y.org",
        "Subject: hello",
        "Date: Wed, 1 Jan 2020 10:00:00 +0000",
        "Message-ID: <a@x>",
    ),
    3: _msg("From: gone@x.org", "Subject: gone", "Message-ID: <g@x>"),
    4: _msg("Message-ID: <c@x>"),
    5: _msg(
        "From: =?UTF-8?Q?=C3=89mile?= <emile@x.org>",
        "Subject: =?UTF-8?Q?Fwd:_=C3=A9t=C3=A9?=",
        "Date: Sat, 4 Jan 2020 10:00:00 +0000",
        "Message-ID: <d@x>",
    ),
    6: _msg(
        "From: carl@x.org",
        "Subject: [list] Re: hello (fwd)",
        "Date: Fri, 3 Jan 2020 10:00:00 +0000",
        "Message-ID: <e@x>",
        "References: <a@x>\r\n <b@x>",
    ),
    7: _msg(
        'From: "amy" <AMY@x.org>',
        "Subject: =?UTF-8?B?w6l0w6k=?=",
        "Date: Sun, 5 Jan 2020 10:00:00 -0500",
        "Message-ID: <f@x>",
        "References: <missing@x>",
    ),
}
# internal dates: uid 4 (no Date header) arrived first, on 31 Dec 2019
ARRIVED = {uid: BASE + uid * 3600 for uid in MESSAGES} | {4: BASE - DAY}
SEQ = {1: 1, 2: 2, 4: 3, 5: 4, 6: 5, 7: 6}  # after uid 3 is expunged


async def _mailbox(imap: ImapHarness) -> None:
    acct, inbox = await imap.inbox()
    for uid, data in MESSAGES.items():
        assert (await acct.append(inbox, data, internal_date=ARRIVED[uid])).uid == uid
    await acct.expunge(inbox, [3], force=True)


async def _ask(imap: ImapHarness, *commands: bytes) -> list[list[bytes]]:
    c = await imap.raw_login()
    try:
        await c.cmd(b"s SELECT INBOX")
        out = []
        for i, command in enumerate(commands):
            tag = b"t%d" % i
            lines = await c.cmd(tag + b" " + command)
            assert lines[-1].startswith(tag + b" OK"), lines
            out.append([line.rstrip(b"\r\n") for line in lines[:-1]])
        return out
    finally:
        await c.close()


def _seqs(uids: list[int]) -> bytes:
    return b" ".join(b"%d" % SEQ[u] for u in uids)


def _uids(uids: list[int]) -> bytes:
    return b" ".join(b"%d" % u for u in uids)


SORTS = [
    # (criteria, UIDs in order)
    # i;unicode-casemap (RFC 5051): "é" is "E" + U+0301, so éTé sorts before HELLO
    (b"(SUBJECT)", [4, 5, 7, 1, 2, 6]),  # "", éTé x2, HELLO x3 (by UID)
    (b"(FROM)", [4, 7, 2, 6, 5, 1]),  # "", AMY, BOB, CARL, EMILE, ZED (mailbox parts)
    (b"(DISPLAYFROM)", [4, 2, 7, 6, 5, 1]),  # "", ALICE, AMY, CARL@X.ORG, ÉMILE, ZED
    (b"(DATE)", [4, 2, 1, 6, 5, 7]),  # no Date: the internal date (31 Dec) stands in
    (b"(REVERSE DATE)", [7, 5, 6, 1, 2, 4]),
    (b"(ARRIVAL)", [4, 1, 2, 5, 6, 7]),
    (b"(TO)", [4, 5, 6, 7, 1, 2]),  # no To: "" first, in mailbox order
    (b"(DISPLAYTO)", [4, 5, 6, 7, 1, 2]),  # AMY@Y.ORG, CARL
    (b"(CC)", [1, 4, 5, 6, 7, 2]),
    (b"(SUBJECT REVERSE DATE)", [4, 7, 5, 6, 1, 2]),
    (b"(REVERSE SUBJECT ARRIVAL)", [1, 2, 6, 5, 7, 4]),
]


@pytest.mark.parametrize(("criteria", "order"), SORTS)
async def test_sort_orders_by_each_key(
    imap: ImapHarness, criteria: bytes, order: list[int]
) -> None:
    await _mailbox(imap)
    seq, uid = await _ask(
        imap, b"SORT " + criteria + b" UTF-8 ALL", b"UID SORT " + criteria + b" US-ASCII ALL"
    )
    assert seq == [b"* SORT " + _seqs(order)]
    assert uid == [b"* SORT " + _uids(order)]


async def test_sort_by_size_and_with_search_criteria(imap: ImapHarness) -> None:
    await _mailbox(imap)
    by_size = sorted(SEQ, key=lambda u: (len(MESSAGES[u]), u))
    size, searched, none = await _ask(
        imap,
        b"UID SORT (SIZE) UTF-8 ALL",
        b'SORT (DATE) UTF-8 FROM "x.org" NOT SUBJECT "zzz"',  # criteria as SEARCH's
        b"SORT (DATE) UTF-8 SUBJECT nothing-like-this",
    )
    assert size == [b"* SORT " + _uids(by_size)]
    assert searched == [b"* SORT " + _seqs([2, 1, 6, 5, 7])]
    assert none == [b"* SORT"]


async def test_esort_return_options(imap: ImapHarness) -> None:
    await _mailbox(imap)
    mmc, everything, empty = await _ask(
        imap,
        b"SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL",
        b"UID SORT RETURN () (REVERSE DATE) UTF-8 ALL",
        b"SORT RETURN (MIN COUNT) (DATE) UTF-8 SUBJECT nothing-like-this",
    )
    # RFC 5267 §3.2: MIN and MAX are the first and last in sort order
    assert mmc == [b'* ESEARCH (TAG "t0") MIN 3 MAX 6 COUNT 6']
    assert everything == [b'* ESEARCH (TAG "t1") UID ALL 7,5,6,1,2,4']
    assert empty == [b'* ESEARCH (TAG "t2") COUNT 0']


async def test_sort_with_a_modseq_criterion_reports_the_highest(imap: ImapHarness) -> None:
    await _mailbox(imap)
    fetched, plain, esort = await _ask(
        imap,
        b"FETCH 1:* (MODSEQ)",
        b"SORT (DATE) UTF-8 MODSEQ 1",
        b"SORT RETURN (MIN) (DATE) UTF-8 MODSEQ 1",
    )
    modseqs = {}
    for line in fetched:  # (after "* OK [HIGHESTMODSEQ n]": CONDSTORE is enabled)
        m = re.match(rb"\* (\d+) FETCH \(MODSEQ \((\d+)\)\)", line)
        if m is None:
            assert line.startswith(b"* OK [HIGHESTMODSEQ"), line
            continue
        modseqs[int(m.group(1))] = int(m.group(2))
    # RFC 7162 §3.1.5: the highest modseq of the messages returned
    order = [4, 2, 1, 6, 5, 7]
    top = max(modseqs.values())
    assert plain == [b"* SORT " + _seqs(order) + b" (MODSEQ %d)" % top]
    first = SEQ[order[0]]
    assert esort == [b'* ESEARCH (TAG "t2") MIN %d MODSEQ %d' % (first, modseqs[first])]


async def test_thread_orderedsubject_and_references(imap: ImapHarness) -> None:
    await _mailbox(imap)
    ordered, uid_ordered, refs, uid_refs = await _ask(
        imap,
        b"THREAD ORDEREDSUBJECT UTF-8 ALL",
        b"UID THREAD ORDEREDSUBJECT UTF-8 ALL",
        b"THREAD REFERENCES UTF-8 ALL",
        b"UID THREAD REFERENCES UTF-8 ALL",
    )
    # ORDEREDSUBJECT: "", HELLO (2 first by date, then 1 and 6 its children), éTé
    assert uid_ordered == [b"* THREAD (4)(2 (1)(6))(5 7)"]
    assert ordered == [b"* THREAD (3)(2 (1)(5))(4 6)"]
    # REFERENCES: 2 <- 1 <- 6 by References/In-Reply-To; the dummy parent of 7 is
    # pruned; 5 ("Fwd: été") is a forward of 7 ("été") by subject
    assert uid_refs == [b"* THREAD (4)(2 1 6)(7 5)"]
    assert refs == [b"* THREAD (3)(2 1 5)(6 4)"]


async def test_thread_with_search_criteria(imap: ImapHarness) -> None:
    await _mailbox(imap)
    (found,) = await _ask(imap, b"UID THREAD REFERENCES UTF-8 NOT UID 1")
    # without 1, 6 still hangs below 2 (its References name both)
    assert found == [b"* THREAD (4)(2 6)(7 5)"]


async def test_empty_mailbox_and_capabilities(imap: ImapHarness) -> None:
    await imap.inbox()
    caps, sort, thread, esort = await _ask(
        imap,
        b"CAPABILITY",
        b"SORT (SUBJECT) UTF-8 ALL",
        b"THREAD REFERENCES UTF-8 ALL",
        b"SORT RETURN (COUNT) (DATE) UTF-8 ALL",
    )
    words = caps[0].split()
    for cap in (b"SORT", b"SORT=DISPLAY", b"THREAD=ORDEREDSUBJECT", b"THREAD=REFERENCES"):
        assert cap in words
    assert b"ESORT" in words
    assert sort == [b"* SORT"]
    assert thread == [b"* THREAD"]
    assert esort == [b'* ESEARCH (TAG "t3") COUNT 0']


async def test_bad_sort_and_thread_arguments(imap: ImapHarness) -> None:
    await imap.inbox()
    c = await imap.raw_login()
    try:
        await c.cmd(b"s SELECT INBOX")
        for command in (
            b"a SORT (COLOR) UTF-8 ALL",
            b"b SORT () UTF-8 ALL",
            b"c SORT (DATE) ALL",  # the charset is not optional
            b"d THREAD BYCOLOR UTF-8 ALL",
            b"e SORT RETURN (PARTIAL) (DATE) UTF-8 ALL",
        ):
            (reply,) = await c.cmd(command)
            assert reply.split()[1] == b"BAD", (command, reply)
    finally:
        await c.close()


DEEP = 1_500  # replies each answering the previous: beyond Python's recursion limit


async def test_thread_references_on_a_chain_deeper_than_the_recursion_limit(
    imap: ImapHarness,
) -> None:
    acct, inbox = await imap.inbox()
    for n in range(1, DEEP + 1):
        parent = f"In-Reply-To: <m{n - 1}@x>" if n > 1 else "X-First: yes"
        data = _msg(f"Subject: {'Re: ' if n > 1 else ''}deep", f"Message-ID: <m{n}@x>", parent)
        await acct.append(inbox, data, internal_date=BASE + n)
    refs, ordered = await _ask(
        imap, b"UID THREAD REFERENCES UTF-8 ALL", b"UID THREAD ORDEREDSUBJECT UTF-8 ALL"
    )
    chain = b" ".join(b"%d" % n for n in range(1, DEEP + 1))
    assert refs == [b"* THREAD (" + chain + b")"]
    assert ordered == [b"* THREAD (1 " + b"".join(b"(%d)" % n for n in range(2, DEEP + 1)) + b")"]


async def test_thread_references_matches_message_ids_without_their_quoting(
    imap: ImapHarness,
) -> None:
    # RFC 5256 §4: <"01KF8JCEOCBS0045PS"@xxx.yyy.com> and <01KF8JCEOCBS0045PS@xxx.yyy.com>
    # are one Message ID
    acct, inbox = await imap.inbox()
    first = _msg("Subject: one", 'Message-ID: <"01KF8JCEOCBS0045PS"@xxx.yyy.com>')
    reply = _msg(
        "Subject: two", "Message-ID: <r@x>", "In-Reply-To: <01KF8JCEOCBS0045PS@xxx.yyy.com>"
    )
    for n, data in enumerate((first, reply), start=1):
        await acct.append(inbox, data, internal_date=BASE + n)
    (refs,) = await _ask(imap, b"UID THREAD REFERENCES UTF-8 ALL")
    assert refs == [b"* THREAD (1 2)"]


# RFC 5256 §1: SORT and THREAD collate strings as I18NLEVEL=1 requires, with
# i;unicode-casemap (RFC 5051): case is folded beyond ASCII and accented letters sort
# with their base letter; "ß" has no simple titlecase, so it is not "SS"
I18N = {
    1: _msg("Subject: Zebra", "From: zoe@x.org", "Date: Wed, 1 Jan 2020 10:00:00 +0000"),
    2: _msg(  # "Ärger", Ä upper-case
        "Subject: =?UTF-8?Q?=C3=84rger?=",
        "From: =?UTF-8?Q?=C3=96lf?= <b@x.org>",
        "Date: Thu, 2 Jan 2020 10:00:00 +0000",
    ),
    3: _msg(  # "äpfel" in Latin-1, ä lower-case
        "Subject: =?ISO-8859-1?Q?=E4pfel?=",
        "From: =?ISO-8859-1?Q?=F6rn?= <c@x.org>",
        "Date: Fri, 3 Jan 2020 10:00:00 +0000",
    ),
    4: _msg("Subject: Apfel", "From: Otto <d@x.org>", "Date: Sat, 4 Jan 2020 10:00:00 +0000"),
    5: _msg(  # "Re: ärger": a reply to 2, in lower case
        "Subject: =?UTF-8?B?UmU6IMOkcmdlcg==?=",
        "From: SS <e@x.org>",
        "Date: Sun, 5 Jan 2020 10:00:00 +0000",
    ),
    6: _msg(  # "ßuppe"
        "Subject: =?UTF-8?Q?=C3=9Fuppe?=",
        "From: =?UTF-8?Q?=C3=9F?= <f@x.org>",
        "Date: Mon, 6 Jan 2020 10:00:00 +0000",
    ),
}


async def test_sort_and_thread_fold_case_beyond_ascii(imap: ImapHarness) -> None:
    acct, inbox = await imap.inbox()
    for uid, data in I18N.items():
        assert (await acct.append(inbox, data, internal_date=BASE + uid)).uid == uid
    subject, display, ordered = await _ask(
        imap,
        b"UID SORT (SUBJECT) UTF-8 ALL",
        b"UID SORT (DISPLAYFROM) UTF-8 ALL",
        b"UID THREAD ORDEREDSUBJECT UTF-8 ALL",
    )
    # APFEL, ÄPFEL, ÄRGER (2 and its reply 5, by UID), ZEBRA, then ß (after Z)
    assert subject == [b"* SORT 4 3 2 5 1 6"]
    # Ö is O + U+0308, so ÖLF and ÖRN sort among the O names (after OTTO: U+0308 comes
    # after T); then SS, ZOE@X.ORG (no name: the address), ß
    assert display == [b"* SORT 4 2 3 5 1 6"]
    # "Ärger" and "Re: ärger" are one base subject
    assert ordered == [b"* THREAD (1)(2 5)(3)(4)(6)"]
