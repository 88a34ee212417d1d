"""The gateway's one-pass receiving side gives every command exactly what aioimaplib's own
recursive one gives, however the server's bytes are split into reads."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aioimaplib
from hypothesis import given, settings
from hypothesis import strategies as st

from services.webmail.imap_gateway import _FetchCommand, _Protocol

# literal contents: header-like text with CRLFs, parentheses, braces and "* " inside
literal_text = st.lists(
    st.sampled_from([b"Subject: (hi)", b"\r\n", b"{12}", b"* ", b")", b"(", b"x", b" "]),
    min_size=1,
    max_size=12,
).map(b"".join)
quoted = st.lists(st.sampled_from([b"a", b"(", b")", b"{3}", b"* ", b" "]), max_size=8).map(
    lambda b: b'"' + b"".join(b).replace(b'"', b"") + b'"'
)


def fetch_response(tag: bytes, messages: list[tuple[bytes, bytes]]) -> bytes:
    out = b""
    for n, (literal, preview) in enumerate(messages, 1):
        out += b"* %d FETCH (UID %d FLAGS (\\Seen) BODY[HEADER.FIELDS (SUBJECT)] {%d}\r\n" % (
            n,
            n + 100,
            len(literal),
        )
        out += literal + b" PREVIEW " + preview + b")\r\n"
    return out + tag + b" OK FETCH completed\r\n"


def list_response(tag: bytes, names: list[bytes]) -> bytes:
    out = b""
    for name in names:
        out += b'* LIST (\\HasNoChildren) "/" ' + name + b"\r\n"
        out += b"* STATUS " + name + b" (MESSAGES 3 UNSEEN 1)\r\n"
    return out + tag + b" OK LIST completed\r\n"


class _Transport:
    def write(self, data: bytes) -> None:
        pass


def _feed(cls: type[Any], fetch: bytes, listing: bytes, cuts: list[int]) -> list[Any]:
    """Run a FETCH, then a LIST (a sync command, sent once the FETCH is done), through
    protocol ``cls``, the server's bytes cut at ``cuts``; each command's result and lines."""

    async def run() -> list[Any]:
        loop = asyncio.get_running_loop()
        proto = cls(loop, None)
        proto.connection_made(_Transport())
        proto.state = aioimaplib.SELECTED
        commands = [
            _FetchCommand("A1", "1:*", "(UID FLAGS)", prefix="UID", loop=loop),
            aioimaplib.Command("LIST", "A2", '""', '"*"', loop=loop),
        ]
        proto.pending_async_commands["FETCH"] = commands[0]
        for data, then in ((fetch, commands[1]), (listing, None)):
            edges = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
            for a, b in itertools.pairwise(edges):
                proto.data_received(data[a:b])
            proto.pending_sync_command = then
        return [(c.response.result, [bytes(x) for x in c.response.lines]) for c in commands]

    return asyncio.run(run())


@settings(max_examples=200)
@given(
    st.lists(st.tuples(literal_text, quoted), min_size=1, max_size=6),
    st.lists(st.sampled_from([b"INBOX", b"Sent", b'"with space"']), max_size=3),
    st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
)
def test_same_responses_as_aioimaplib_for_any_split(
    messages: list[tuple[bytes, bytes]], names: list[bytes], cuts: list[int]
) -> None:
    fetch, listing = fetch_response(b"A1", messages), list_response(b"A2", names)
    ours = _feed(_Protocol, fetch, listing, cuts)
    theirs = _feed(aioimaplib.IMAP4ClientProtocol, fetch, listing, cuts)
    assert ours == theirs
    assert ours[0][0] == "OK" and ours[1][0] == "OK"
    assert ours[0][1][-1] == b"FETCH completed"  # the tagged reply's text
