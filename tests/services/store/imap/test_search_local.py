"""SEARCH on flags, numbers and modseqs is answered from the session's view; it must agree
with the engine's evaluation of the same criteria."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from services.store.imap import commands as c
from services.store.imap.handlers.search import is_local, local, translate
from services.store.imap.parser import parse
from services.store.imap.selected import Selected
from tests.services.store.imap.conftest import ImapHarness, message

FLAGS = ["\\Seen", "\\Flagged", "\\Deleted", "\\Answered", "\\Draft", "$Work"]
KEYS = [
    "ALL",
    "SEEN",
    "UNSEEN",
    "FLAGGED",
    "UNFLAGGED",
    "DELETED",
    "UNDELETED",
    "ANSWERED",
    "UNANSWERED",
    "DRAFT",
    "UNDRAFT",
    "KEYWORD $Work",
    "KEYWORD $work",
    "UNKEYWORD $Work",
    "1:5",
    "3,7:*",
    "*",
    "UID 2:9",
    "UID 20:*",
    "MODSEQ 20",
    "NEW",
    "OLD",
    "RECENT",
]


def search_keys() -> st.SearchStrategy[str]:
    leaf = st.sampled_from(KEYS)
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.builds(lambda a: f"NOT {a}", inner),
            st.builds(lambda a, b: f"OR {a} {b}", inner, inner),
            st.builds(lambda a, b: f"({a} {b})", inner, inner),
        ),
        max_leaves=6,
    )


async def test_local_search_agrees_with_engine(imap: ImapHarness) -> None:
    acct, inbox = await imap.inbox()
    uids = await imap.deliver(*[message(i) for i in range(30)])
    rng = random.Random(7)
    from mailcore.mailstore import FlagOp

    for uid in uids:
        chosen = [f for f in FLAGS if rng.random() < 0.4]
        if chosen:
            await acct.store_flags(inbox, [uid], FlagOp.ADD, chosen)
    await acct.expunge(inbox, uids[10:12])  # holes in the UID sequence
    sel = Selected(inbox, "INBOX", False, await acct.snapshot(inbox))
    sel.recent = set(uids[20:25])
    cases: list[str] = []

    @settings(max_examples=150, deadline=None)
    @given(search_keys())
    def collect(text: str) -> None:
        cases.append(text)

    collect()
    for text in cases:
        req = parse(f"t SEARCH {text}".encode())
        assert isinstance(req.args, c.Search) and is_local(req.args.key)
        mine = sorted(sel.uids[i] for i in local(req.args.key, sel))
        engine = sorted(await acct.search(inbox, translate(req.args.key, sel)))
        assert mine == engine, text
