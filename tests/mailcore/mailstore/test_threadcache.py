"""THREAD answers kept between commands (mailcore.mailstore.threadcache): on a real store,
a kept answer is given again while the mailbox's messages stay the same (flag changes
included), and after appends, expunges and both together every answer, kept or not, is
byte for byte what the same THREAD gives uncached (criteria that are never kept)."""

from __future__ import annotations

import random

from mailcore.mailstore import Account, mailthreads
from mailcore.mailstore import search as q
from mailcore.mailstore.model import FlagOp
from mailcore.mailstore.threadcache import ThreadCache, span

ALGORITHMS = ("REFERENCES", "ORDEREDSUBJECT")


def _message(rnd: random.Random, n: int) -> bytes:
    """Message ``n``: a subject of a few, maybe a reply marker, references to earlier
    (and some never stored) messages, maybe no Message-ID or a duplicate one."""
    subject = rnd.choice(["a", "b", "c", "Re: a", "Fwd: b", ""])
    own = rnd.choice([f"<{n}@x>"] * 6 + [f"<{max(1, n - 1)}@x>", ""])
    head = f"Subject: {subject}\r\nDate: Mon, {1 + rnd.randrange(3)} Dec 2024 10:00:00 +0000\r\n"
    if own:
        head += f"Message-ID: {own}\r\n"
    refs = [f"<{rnd.randrange(1, n + 3)}@x>" for _ in range(rnd.randrange(4))]
    if refs and rnd.random() < 0.5:
        head += f"References: {' '.join(refs)}\r\n"
    elif refs:
        head += f"In-Reply-To: {refs[0]}\r\n"
    return (head + "\r\nbody\r\n").encode()


async def _same_as_uncached(acct: Account, box: int, uids: list[int]) -> None:
    # ``UidIn`` alone is never kept (threadcache.span): the answer of today's code
    everything = q.UidIn(((1, 2**62),))
    assert span(everything) is None
    view = q.And((q.UidIn(((uids[0], uids[-1]),)), q.All()))  # as handlers.sort asks
    numbers = {u: i + 1 for i, u in enumerate(uids)}
    for algorithm in ALGORITHMS:
        fresh = await acct.thread(box, everything, algorithm)
        assert not isinstance(fresh, mailthreads.Rendered)
        for criteria in (q.All(), view):
            got = await acct.thread(box, criteria, algorithm)
            assert isinstance(got, mailthreads.Rendered)
            assert mailthreads.render(got) == mailthreads.render(fresh)
            assert mailthreads.render(got, numbers) == mailthreads.render(fresh, numbers)


async def test_kept_threads_match_uncached_ones_through_changes(account: Account) -> None:
    rnd = random.Random(5256)
    box = (await account.mailbox("INBOX")).id
    uids = [(await account.append(box, _message(rnd, n))).uid for n in range(1, 41)]
    cache: ThreadCache = account._threads  # what the test is about

    await _same_as_uncached(account, box, uids)  # filled
    hits = cache.hits
    await _same_as_uncached(account, box, uids)  # given again: 2 algorithms x 2 criteria
    assert cache.hits == hits + 4

    await account.store_flags(box, uids[::3], FlagOp.ADD, ["\\Seen", "$x"])  # flags only
    hits = cache.hits
    await _same_as_uncached(account, box, uids)
    assert cache.hits == hits + 4

    uids += [(await account.append(box, _message(rnd, n))).uid for n in range(41, 51)]
    await _same_as_uncached(account, box, uids)  # appended

    gone = uids[1::4]
    await account.store_flags(box, gone, FlagOp.ADD, ["\\Deleted"])
    await account.expunge(box)
    uids = [u for u in uids if u not in gone]
    await _same_as_uncached(account, box, uids)  # expunged

    # as many messages as before, not the same ones: one goes, one comes
    await account.expunge(box, [uids[0]], force=True)
    uids = [*uids[1:], (await account.append(box, _message(rnd, 51))).uid]
    await _same_as_uncached(account, box, uids)

    account.release_memory()
    assert len(cache) == 0


def test_only_every_message_of_a_span_is_kept() -> None:
    assert span(q.All()) is not None
    assert span(q.And((q.UidIn(((3, 9),)), q.All()))) == (3, 9)
    assert span(q.And((q.UidIn(((3, 9),)), q.Flag("\\Seen")))) is None
    assert span(q.And((q.UidIn(((1, 2), (5, 9))), q.All()))) is None
    assert span(q.UidIn(((1, 9),))) is None


def test_the_least_recently_used_answer_goes_first() -> None:
    cache = ThreadCache(size=2)
    cache.put((1, 1, "REFERENCES", 1, 9, 3), b"(1)")
    cache.put((2, 1, "REFERENCES", 1, 9, 3), b"(2)")
    assert cache.get((1, 1, "REFERENCES", 1, 9, 3)) == b"(1)"
    cache.put((3, 1, "REFERENCES", 1, 9, 3), b"(3)")
    assert cache.get((2, 1, "REFERENCES", 1, 9, 3)) is None
    assert len(cache) == 2
