"""Hostile input against a live session: random but well-framed commands built from IMAP
tokens never make the server fail internally ([SERVERBUG]) or drop the connection without
a BYE; the session keeps answering."""

from __future__ import annotations

import os
import random

from tests.services.store.imap.conftest import ImapHarness, Line, message

SETS = ["1", "*", "1:*", "2:4", "$", "3,1", "5:2", "1:99", "0", "4294967295"]
ATTS = [
    "FLAGS",
    "(UID FLAGS ENVELOPE)",
    "BODY[]",
    "BODY.PEEK[1.2.MIME]",
    "ALL",
    "FULL",
    "BODY.PEEK[HEADER.FIELDS (FROM)]<0.5>",
    "BINARY[1]",
    "BINARY.SIZE[9]",
    "RFC822",
    "BODYSTRUCTURE",
    "(MODSEQ)",
    "(FLAGS) (CHANGEDSINCE 1)",
    "BODY[TEXT]<2.3>",
    "RFC822.HEADER",
]
MBOXES = ["INBOX", "Sent", "Trash", "Nowhere", '"a b"', "&AOk-", "Fuzz/x", '""', "inbox"]
KEYS = [
    "ALL",
    "UNSEEN",
    "OR SEEN 2",
    "NOT 1:2",
    "FROM x",
    "SINCE 1-Jan-2020",
    "LARGER 10",
    "RETURN (SAVE) ALL",
    "RETURN (MIN COUNT) UNSEEN",
    "CHARSET UTF-8 BODY x",
    "MODSEQ 5",
    "$",
    "UID 2:*",
    "TEXT message",
    "HEADER Subject 3",
    "NEW",
    "(DELETED FLAGGED)",
]
TEMPLATES = [
    "FETCH {set} {atts}",
    "UID FETCH {set} {atts}",
    "STORE {set} {op} {flags}",
    "UID STORE {set} {op} {flags}",
    "SEARCH {keys}",
    "UID SEARCH {keys}",
    "COPY {set} {mbox}",
    "MOVE {set} {mbox}",
    "UID MOVE {set} {mbox}",
    "EXPUNGE",
    "UID EXPUNGE {set}",
    "SELECT {mbox}",
    "EXAMINE {mbox}",
    "SELECT {mbox} (CONDSTORE)",
    "STATUS {mbox} (MESSAGES UNSEEN)",
    'LIST "" {mbox}',
    'LIST "" *',
    "CREATE {mbox}",
    "DELETE {mbox}",
    "RENAME {mbox} {mbox}",
    "SUBSCRIBE {mbox}",
    "APPEND {mbox} {flags} {{3+}}\r\nabc",
    "NOOP",
    "CHECK",
    "UNSELECT",
    "ENABLE QRESYNC",
    "GETQUOTAROOT {mbox}",
    "NAMESPACE",
    "CLOSE",
]
OPS = ["+FLAGS", "-FLAGS.SILENT", "FLAGS", "+FLAGS.SILENT"]
FLAGS = ["(\\Seen)", "(\\Deleted)", "($x)", "()", "(\\Seen \\Flagged)", "(\\Bogus)"]
NOISE = ["(", ")", "NIL", "*", "{", "]", '"', "\\", "1:", "&", "BODY[", "<1.>"]


def command(rng: random.Random) -> str:
    text = rng.choice(TEMPLATES).format(
        set=rng.choice(SETS),
        atts=rng.choice(ATTS),
        mbox=rng.choice(MBOXES),
        keys=rng.choice(KEYS),
        op=rng.choice(OPS),
        flags=rng.choice(FLAGS),
    )
    if rng.random() < 0.15:  # mutate: insert a stray token somewhere
        words = text.split(" ")
        words.insert(rng.randint(1, len(words)), rng.choice(NOISE))
        text = " ".join(words)
    return text


async def _fresh(imap: ImapHarness) -> Line:
    c = await imap.raw_login()
    await c.cmd(b"s SELECT INBOX")
    return c


async def test_random_commands_never_break_the_server(imap: ImapHarness) -> None:
    await imap.deliver(*[message(i) for i in range(1, 6)])
    rng = random.Random(int(os.environ.get("FUZZ_SEED", "20240304")))
    statuses: dict[bytes, int] = {}
    c = await _fresh(imap)
    for n in range(600):
        words = command(rng)
        tag = b"f%d" % n
        await c.send(tag + b" " + words.encode() + b"\r\n")
        lines = []
        while True:
            ln = await c.line()
            if not ln or ln.startswith(b"* BYE"):
                assert not ln or b"SERVERBUG" not in ln
                lines = []
                await c.close()
                c = await _fresh(imap)  # a session that ended said BYE first; go on
                break
            lines.append(ln)
            assert b"[SERVERBUG]" not in ln, (words, ln)
            if ln.startswith(tag + b" "):
                status = ln.split()[1]
                statuses[status] = statuses.get(status, 0) + 1
                break
            if ln.startswith(b"+ "):  # a synchronizing literal we announced by chance
                await c.send(b"abc\r\n")
    # the mix must exercise handlers, not only the parser
    assert statuses.get(b"OK", 0) > 50 and statuses.get(b"NO", 0) > 10, statuses
    reply = await c.cmd(b"z NOOP")
    assert reply[-1].startswith(b"z OK")
    await c.close()
