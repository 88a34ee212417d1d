"""Search as SQL over the index (sqlsearch) against the reference evaluation (matcher).

Both run on the same real index and message files: a seeded mailbox of awkward messages
(RFC 2047 words, empty and missing fields, groups, odd dates, bare LF, internal dates on
both sides of midnight UTC) and Hypothesis-generated criteria trees.
"""

from __future__ import annotations

import base64
import datetime
import random
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailcore import message as message_pkg
from mailcore.mailstore import Account, Delivery, FlagOp, MailStore, matcher, sqlsearch
from mailcore.mailstore import search as s
from mailcore.mailstore.layout import index_path, msgs_dir
from mailcore.mailstore.schema import SCHEMA_VERSION

DAY = 86400
BASE_DAY = 19700  # 2023-12-09
NAMES = ["Jörg Müller", "STRASSE", "Straße", "o'Brien", "100% _real_", "Ωmega", "a\\b"]
WORDS = ["invoice", "Meeting", "MEETING notes", "ß", "50%_off", "", "Ünïcode", "x\x00y"]


def _word(rng: random.Random, text: str) -> str:
    """``text``, sometimes as an RFC 2047 encoded word."""
    if rng.random() < 0.3:
        raw = base64.b64encode(text.encode()).decode()
        return f"=?utf-8?B?{raw}?="
    if rng.random() < 0.2:
        raw = text.encode("latin-1", "ignore")
        q = "".join(chr(b) if chr(b).isalnum() and b < 128 else f"={b:02X}" for b in raw)
        return f"=?iso-8859-1?Q?{q}?="
    return text


def _address(rng: random.Random, i: int) -> str:
    kind = rng.randrange(5)
    addr = f"user{i % 7}@Example{i % 3}.ORG"
    if kind == 0:
        return addr
    if kind == 1:
        return f"{_word(rng, rng.choice(NAMES))} <{addr}>"
    if kind == 2:
        return f'"{rng.choice(NAMES)}" <{addr}>'
    if kind == 3:
        return "undisclosed-recipients:;"
    return f"Team: {addr}, other{i}@x.test;"


def _date(rng: random.Random, i: int) -> str | None:
    d = datetime.date.fromordinal(datetime.date(2023, 12, 1).toordinal() + i % 20)
    return rng.choice(
        [
            None,
            f"{d.day} {d.strftime('%b')} {d.year} 23:59:59 -1100",
            f"Mon, {d.day} {d.strftime('%b')} {d.year % 100:02d} 00:00:00 +1400",
            "not a date",
            f"{d.day} {d.strftime('%B')} {d.year} 12:00 GMT",
        ]
    )


def build_message(rng: random.Random, i: int) -> bytes:
    lines: list[str] = []
    if rng.random() < 0.9:
        lines.append("From: " + _address(rng, i))
    if rng.random() < 0.1:
        lines.append("From: second@example.org")
    if rng.random() < 0.05:
        lines.append("From:")
    for name in ("To", "Cc", "Bcc"):
        if rng.random() < 0.6:
            n = rng.randrange(0, 3)
            lines.append(f"{name}: " + ", ".join(_address(rng, i + k) for k in range(n)))
    if rng.random() < 0.9:
        subject = " ".join(rng.choice(WORDS).replace("\x00", "") for _ in range(rng.randrange(3)))
        lines.append("Subject: " + _word(rng, subject))
    date = _date(rng, i)
    if date is not None:
        lines.append("Date: " + date)
    if rng.random() < 0.5:
        lines.append(f"X-Tag: {rng.choice(WORDS).replace(chr(0), '')} {i}")
    lines.append(f"Message-ID: <m{i}@example.org>")
    body = f"{rng.choice(WORDS)} body {i}".replace("\x00", "")
    if rng.random() < 0.3:
        lines.append("Content-Transfer-Encoding: base64")
        body = base64.b64encode(body.encode()).decode()
    eol = "\n" if rng.random() < 0.2 else "\r\n"  # bare LF: stored as CRLF
    return (eol.join([*lines, "", body, ""])).encode()


@pytest.fixture
async def mailbox(tmp_path: Path) -> AsyncIterator[tuple[MailStore, Account, int]]:
    store = await MailStore.open(tmp_path / "store", fsync=False)
    acct = await store.account("acct-1")
    inbox = await acct.mailbox("INBOX")
    rng = random.Random(20241203)
    # astral characters are allowed in keywords; U+10400 lowers to U+10428 in Python only
    flag_pool = [
        "\\Seen",
        "\\Flagged",
        "\\Deleted",
        "$Work",
        "$work2",
        "Arger\U0001d400",
        "Dz\U00010400",
        "x1",
        "x2",
    ]
    for i in range(80):
        # internal dates on both sides of a UTC midnight, to the second and below
        when = (BASE_DAY + i % 4) * DAY + rng.choice([-1.0, -0.25, 0.0, 0.5, 3600.0])
        flags = [f for f in flag_pool if rng.random() < 0.3]
        if i % 10 == 0:
            await store.deliver(
                [Delivery(f"k{i}", "acct-1", "inbox", build_message(rng, i), when, frozenset())]
            )
            if flags:
                await acct.store_flags(inbox.id, [i + 1], FlagOp.ADD, flags)
        else:
            await acct.append(inbox.id, build_message(rng, i), flags=flags, internal_date=when)
    await acct.store_flags(inbox.id, [5, 6], FlagOp.ADD, ["\\Deleted"])
    await acct.expunge(inbox.id, [5, 6])  # holes in the UIDs
    yield store, acct, inbox.id
    await store.close()


@pytest.fixture
def conn(mailbox: tuple[MailStore, Account, int]) -> Iterator[sqlite3.Connection]:
    store, acct, _ = mailbox
    c = sqlite3.connect(index_path(store.account_dir(acct.id)))
    yield c
    c.close()


NEEDLES = [
    "",
    "jörg",
    "JÖRG MÜLLER",
    "strasse",
    "STRASSE",
    "ß",
    "%",
    "_",
    "100%",
    "user3@",
    "example1.org",
    "meeting",
    "undisclosed",
    "team:",
    "x\x00y",
    "\ud800",
    "body 1",
    "invoice",
    "m12@",
    "a\\b",
    "Ωmega",
]
HEADERS = ["from", "To", "cc", "BCC", "subject", "x-tag", "message-id", "date", "x-none"]
FLAG_NAMES = [
    "\\seen",
    "\\Flagged",
    "\\DELETED",
    "$work",
    "$WORK2",
    "arger\U0001d400",
    "ARGER\U0001d400",
    "arger",
    "dz\U00010428",
    "",
    "x1 x2",  # never one flag, though the stored text has it
]
DAYS = [datetime.date(2023, 12, d) for d in range(1, 25)] + [
    datetime.date.fromordinal(datetime.date(1970, 1, 1).toordinal() + BASE_DAY + k)
    for k in range(-1, 5)
]


def _ranges(draw: st.DrawFn) -> tuple[tuple[int, int], ...]:
    n = draw(st.sampled_from([0, 1, 2, 40]))
    out = []
    for _ in range(n):
        lo = draw(st.integers(-2, 90))
        out.append((lo, lo + draw(st.integers(-1, 10))))
    return tuple(out)


@st.composite
def uid_in(draw: st.DrawFn) -> s.SearchKey:
    return s.UidIn(_ranges(draw))


LEAVES = st.one_of(
    st.just(s.All()),
    st.builds(s.Flag, st.sampled_from(FLAG_NAMES), st.booleans()),
    st.builds(s.Larger, st.integers(0, 400)),
    st.builds(s.Smaller, st.integers(0, 400)),
    st.builds(s.ModSeq, st.integers(0, 120)),
    st.builds(s.InternalDate, st.sampled_from(["before", "on", "since"]), st.sampled_from(DAYS)),
    st.builds(s.SentDate, st.sampled_from(["before", "on", "since"]), st.sampled_from(DAYS)),
    st.builds(s.Header, st.sampled_from(HEADERS), st.sampled_from(NEEDLES)),
    st.builds(s.Body, st.sampled_from(NEEDLES)),
    st.builds(s.Text, st.sampled_from(NEEDLES)),
    uid_in(),
)
KEYS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.builds(s.Not, inner),
        st.builds(s.Or, inner, inner),
        st.builds(lambda ks: s.And(tuple(ks)), st.lists(inner, max_size=4)),
    ),
    max_leaves=8,
)


async def test_sql_search_equals_the_reference_on_generated_criteria(
    mailbox: tuple[MailStore, Account, int], conn: sqlite3.Connection
) -> None:
    store, acct, box = mailbox
    msgs = str(msgs_dir(store.account_dir(acct.id)))
    hits = 0

    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(KEYS, st.none() | st.lists(st.integers(0, 90), max_size=60))
    def check(key: s.SearchKey, uids: list[int] | None) -> None:
        nonlocal hits
        fast = sqlsearch.run(conn, msgs, box, key, uids)
        slow = matcher.scan(conn, msgs, box, key, uids)
        assert fast == slow, key
        hits += bool(fast)

    check()
    assert hits > 50  # the criteria did select something, not just empty results
    # and through the account, for a few
    key = s.Or(s.Header("from", "JÖRG"), s.Body("invoice"))
    assert await acct.search(box, key) == matcher.scan(conn, msgs, box, key)


async def test_every_indexed_criterion_selects_as_the_reference(
    mailbox: tuple[MailStore, Account, int], conn: sqlite3.Connection
) -> None:
    store, acct, box = mailbox
    msgs = str(msgs_dir(store.account_dir(acct.id)))
    for name in ("from", "to", "cc", "bcc", "subject"):
        for needle in NEEDLES:
            key = s.Header(name, needle)
            assert sqlsearch.run(conn, msgs, box, key) == matcher.scan(conn, msgs, box, key)
    for flag in FLAG_NAMES:
        for present in (True, False):
            key = s.Flag(flag, present)
            assert sqlsearch.run(conn, msgs, box, key) == matcher.scan(conn, msgs, box, key)
    assert sqlsearch.run(conn, msgs, box, s.Flag("dz\U00010428"))  # some have it
    for day in DAYS:
        for op in ("before", "on", "since"):
            for key in (s.InternalDate(op, day), s.SentDate(op, day)):  # type: ignore[arg-type]
                assert sqlsearch.run(conn, msgs, box, key) == matcher.scan(conn, msgs, box, key)


async def test_indexed_searches_never_touch_a_message(
    mailbox: tuple[MailStore, Account, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, acct, box = mailbox
    calls = {"loads": 0, "matches": 0, "open": 0}

    def counting(name: str, fn: object) -> object:
        def wrapped(*args: object, **kwargs: object) -> object:
            calls[name] += 1
            return fn(*args, **kwargs)  # type: ignore[operator]

        return wrapped

    monkeypatch.setattr(message_pkg, "loads", counting("loads", message_pkg.loads))
    monkeypatch.setattr(matcher, "matches", counting("matches", matcher.matches))
    monkeypatch.setattr(matcher, "open", counting("open", open), raising=False)
    key = s.And(
        (
            s.UidIn(((1, 80),)),
            s.Or(s.Header("FROM", "jörg"), s.Header("subject", "meeting")),
            s.Not(s.Flag("\\Deleted")),
            s.InternalDate("since", DAYS[-5]),
            s.SentDate("before", datetime.date(2023, 12, 30)),
            s.Larger(10),
            s.Header("bcc", ""),
        )
    )
    await acct.search(box, key)
    assert calls == {"loads": 0, "matches": 0, "open": 0}
    await acct.search(box, s.Body("invoice"))  # needs the messages: each is read once
    n = len((await acct.snapshot(box)).uids)
    assert calls == {"loads": n, "matches": n, "open": n}


async def test_criteria_beyond_sqlite_limits_fall_back_to_the_reference(
    mailbox: tuple[MailStore, Account, int], conn: sqlite3.Connection
) -> None:
    store, acct, box = mailbox
    # more parameters than SQLite takes in one statement
    absent = tuple(s.Not(s.Header("subject", f"absent {i}")) for i in range(40_000))
    assert await acct.search(box, s.And((s.UidIn(((3, 4),)), *absent))) == [3, 4]
    # how IMAP nests "OR OR OR ... a b c d": a chain as deep as it is long, flattened
    chain: s.SearchKey = s.Header("from", "jörg")
    for i in range(300):
        chain = s.Or(s.UidIn(((1000 + i, 1000 + i),)), s.Not(s.Not(chain)))
    assert await acct.search(box, chain) == await acct.search(box, s.Header("from", "jörg"))
    # alternating nesting deeper than SQLite's parser takes
    deep: s.SearchKey = s.Header("from", "jörg")
    for i in range(60):
        deep = s.Not(s.Or(s.UidIn(((1000 + i, 1000 + i),)), deep))
    msgs = str(msgs_dir(store.account_dir(acct.id)))
    assert await acct.search(box, deep) == matcher.scan(conn, msgs, box, deep)


async def test_ten_thousand_messages_searched_without_a_parse_per_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await MailStore.open(tmp_path / "big", fsync=False)
    try:
        acct = await store.account("big")
        box = (await acct.mailbox("INBOX")).id
        for start in range(0, 10_000, 2_000):
            await store.deliver(
                [
                    Delivery(
                        f"d{i}",
                        "big",
                        "inbox",
                        (
                            f"From: Sender {i % 50} <sender{i % 50}@bench.test>\r\n"
                            f"Subject: {['invoice', 'meeting', 'report'][i % 3]} {i}\r\n"
                            f"Date: {1 + i % 28} Jan 2024 10:00:00 +0000\r\n\r\nbody {i}\r\n"
                        ).encode(),
                        1.7e9 + i * 60,
                    )
                    for i in range(start, start + 2_000)
                ]
            )
        decodes = 0
        real_loads = message_pkg.loads

        def counting(blob: bytes) -> message_pkg.ParsedMessage:
            nonlocal decodes
            decodes += 1
            return real_loads(blob)

        monkeypatch.setattr(message_pkg, "loads", counting)
        found = await acct.search(box, s.Header("from", "sender3@"))
        assert found == [i + 1 for i in range(10_000) if i % 50 == 3]
        found = await acct.search(box, s.Header("subject", "MEETING"))
        assert len(found) == 3_333
        found = await acct.search(box, s.SentDate("on", datetime.date(2024, 1, 5)))
        assert found == [i + 1 for i in range(10_000) if 1 + i % 28 == 5]
        since = datetime.datetime.fromtimestamp(1.7e9 + 9_000 * 60, datetime.UTC).date()
        found = await acct.search(box, s.InternalDate("since", since))
        assert found and found[-1] == 10_000 and all(u > 8_000 for u in found)
        assert decodes == 0
    finally:
        await store.close()


async def test_index_of_version_1_is_upgraded_on_open(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = await MailStore.open(root, fsync=False)
    acct = await store.account("old")
    box = (await acct.mailbox("INBOX")).id
    await acct.append(box, b"From: =?utf-8?q?J=C3=B6rg?= <j@x.org>\r\nSubject:\r\n\r\nhi\r\n")
    await acct.append(box, b"From: b@y.org\r\nDate: 3 Dec 2024 10:00 +0000\r\n\r\nho\r\n")
    await acct.copy(box, [1, 2], (await acct.mailbox("Archive")).id)
    path = index_path(store.account_dir("old"))
    await store.close()
    # what version 1 wrote: no search columns
    c = sqlite3.connect(path)
    for column in ("hdr_size", "s_from", "s_to", "s_cc", "s_bcc", "s_subject", "sent_day"):
        c.execute(f"ALTER TABLE messages DROP COLUMN {column}")
    c.execute("UPDATE state SET schema = 1")
    c.commit()
    c.close()
    store = await MailStore.open(root, fsync=False)
    try:
        acct = await store.account("old")
        assert await acct.search(box, s.Header("from", "JÖRG")) == [1]
        assert await acct.search(box, s.Header("subject", "")) == [1]  # present, empty
        assert await acct.search(box, s.SentDate("on", datetime.date(2024, 12, 3))) == [2]
        archive = (await acct.mailbox("Archive")).id
        assert await acct.search(archive, s.Header("from", "b@y")) == [2]
        c = sqlite3.connect(path)
        assert c.execute("SELECT schema FROM state").fetchone() == (SCHEMA_VERSION,)
        c.close()
    finally:
        await store.close()
