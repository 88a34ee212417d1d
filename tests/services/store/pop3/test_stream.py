"""Stored bytes to the POP3 wire: CRLF normalising, byte-stuffing, TOP cuts, terminator —
in any chunking, against a straightforward line-by-line reference."""

from __future__ import annotations

import io
import re
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.store.pop3.stream import CHUNK, INLINE_READ, WireEncoder, send_message


def reference(data: bytes, body_lines: int | None = None) -> bytes:
    """The multi-line response RFC 1939 §3/§7 asks for, computed the slow, obvious way."""
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if data.endswith(b"\r"):
        data += b"\n"
    if body_lines is not None:
        probe = b"\r\n" + data
        i = probe.find(b"\r\n\r\n")
        if i >= 0:
            end = i + 2
            head, body = data[:end], data[end:]
            lines = body.split(b"\r\n")
            if lines[-1] == b"":
                lines.pop()
            if len(lines) > body_lines:
                body = b"".join(line + b"\r\n" for line in lines[:body_lines])
            data = head + body
    out = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in data.split(b"\r\n"))
    return out + (b".\r\n" if out == b"" or out.endswith(b"\r\n") else b"\r\n.\r\n")


def encode(data: bytes, cuts: list[int], body_lines: int | None = None) -> bytes:
    enc = WireEncoder(body_lines)
    out = []
    pos = 0
    for cut in [*sorted(cuts), len(data)]:
        out.append(enc.feed(data[pos:cut]))
        pos = cut
    return b"".join(out) + enc.finish()


def unstuff(wire: bytes) -> bytes:
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    body = wire[:-3]
    return re.sub(rb"(^|\n)\.", rb"\1", body)


@pytest.mark.parametrize(
    ("stored", "wire"),
    [
        (b"", b".\r\n"),
        (b"a", b"a\r\n.\r\n"),
        (b"a\r\n", b"a\r\n.\r\n"),
        (b"a\n", b"a\r\n.\r\n"),
        (b".", b"..\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"x\r\n.\r\ny\r\n", b"x\r\n..\r\ny\r\n.\r\n"),
        (b"x\n..\ny", b"x\r\n...\r\ny\r\n.\r\n"),
        (b"a\rb\n", b"a\rb\r\n.\r\n"),  # a lone CR inside a line stays
        (b"a\r", b"a\r\n.\r\n"),  # a lone CR at the end ends the line
        (b"S: x\r\n\r\n.body\r\n", b"S: x\r\n\r\n..body\r\n.\r\n"),
    ],
)
def test_examples(stored: bytes, wire: bytes) -> None:
    assert encode(stored, []) == wire
    assert reference(stored) == wire
    # byte by byte gives the same
    assert encode(stored, list(range(1, len(stored)))) == wire


MSG = b"From: a@x\r\nSubject: s\r\n\r\nline1\r\n.line2\r\nline3\r\n"


@pytest.mark.parametrize(
    ("n", "wire"),
    [
        (0, b"From: a@x\r\nSubject: s\r\n\r\n.\r\n"),
        (1, b"From: a@x\r\nSubject: s\r\n\r\nline1\r\n.\r\n"),
        (2, b"From: a@x\r\nSubject: s\r\n\r\nline1\r\n..line2\r\n.\r\n"),
        (3, b"From: a@x\r\nSubject: s\r\n\r\nline1\r\n..line2\r\nline3\r\n.\r\n"),
        (10**9, b"From: a@x\r\nSubject: s\r\n\r\nline1\r\n..line2\r\nline3\r\n.\r\n"),
    ],
)
def test_top(n: int, wire: bytes) -> None:
    assert encode(MSG, [], n) == wire
    assert encode(MSG, list(range(1, len(MSG))), n) == wire
    assert reference(MSG, n) == wire


def test_top_without_header_or_body() -> None:
    assert encode(b"\r\nbody\r\nmore\r\n", [], 1) == b"\r\nbody\r\n.\r\n"  # empty header
    assert encode(b"Subject: only a header\r\n", [], 0) == b"Subject: only a header\r\n.\r\n"
    assert encode(b"Subject: x\n\nb1\nb2\n", [3, 11, 12], 1) == b"Subject: x\r\n\r\nb1\r\n.\r\n"


def test_top_stops_reading() -> None:
    enc = WireEncoder(0)
    enc.feed(b"Subject: x\r\n\r\n")
    assert enc.done
    assert enc.feed(b"more body") == b""


_alphabet = st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"a", b"..", b"\n.", b" "])
_messages = st.lists(_alphabet, max_size=60).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(_messages, st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_retr_any_chunking_matches_reference(data: bytes, cuts: list[int]) -> None:
    cuts = [c for c in cuts if c <= len(data)]
    wire = encode(data, cuts)
    assert wire == reference(data)
    # the client's view: unstuffed, it is the stored message with CRLF line ends
    normal = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if normal.endswith(b"\r"):
        normal += b"\n"
    got = unstuff(wire)
    assert got == (normal if normal == b"" or normal.endswith(b"\r\n") else normal + b"\r\n")
    # nothing but CRLF line ends, and no line is a lone "." before the terminator
    body = wire[:-3]
    assert b"\n" not in body.replace(b"\r\n", b"")
    assert not body.startswith(b".\r\n") and b"\r\n.\r\n" not in body


@settings(max_examples=400, deadline=None)
@given(
    _messages,
    st.lists(st.integers(min_value=0, max_value=200), max_size=8),
    st.integers(min_value=0, max_value=8),
)
def test_top_any_chunking_matches_reference(data: bytes, cuts: list[int], n: int) -> None:
    cuts = [c for c in cuts if c <= len(data)]
    assert encode(data, cuts, n) == reference(data, n)


class _Writer:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    async def drain(self) -> None:
        pass


async def test_send_message_small_is_one_write() -> None:
    w: Any = _Writer()
    await send_message(w, io.BytesIO(MSG), b"+OK 55 octets\r\n")
    assert w.writes == [b"+OK 55 octets\r\n" + reference(MSG)]


@pytest.mark.parametrize("hint", [None, 0, 54, 55, 56, 10_000])
async def test_send_message_size_hint(hint: int | None) -> None:
    """The stored size sizes the first read; a wrong hint changes nothing on the wire."""
    w: Any = _Writer()
    await send_message(w, io.BytesIO(MSG), b"+OK\r\n", size_hint=hint, chunk_size=16)
    assert b"".join(w.writes) == b"+OK\r\n" + reference(MSG)
    w = _Writer()
    await send_message(w, io.BytesIO(MSG), b"+OK\r\n", size_hint=len(MSG))
    assert len(w.writes) == 1


async def test_send_message_large_in_chunks() -> None:
    line = b".dot-led line of text\n" + b"x" * 70 + b"\n"
    data = b"Subject: big\n\n" + line * 40_000  # ~3.7 MB with LF line ends
    w: Any = _Writer()
    await send_message(w, io.BytesIO(data), b"+OK\r\n", chunk_size=64 * 1024)
    assert len(w.writes) > 50
    assert max(len(x) for x in w.writes) < 80 * 1024
    assert b"".join(w.writes) == b"+OK\r\n" + reference(data)


async def test_send_message_top_reads_no_further_than_needed() -> None:
    data = b"Subject: x\r\n\r\n" + b"body line\r\n" * 100_000
    src = io.BytesIO(data)
    w: Any = _Writer()
    await send_message(w, src, b"+OK\r\n", body_lines=2, chunk_size=4096)
    assert b"".join(w.writes) == b"+OK\r\nSubject: x\r\n\r\nbody line\r\nbody line\r\n.\r\n"
    assert src.tell() <= 8192


class _ThreadRecordingSource(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[tuple[int, bool]] = []  # (size asked, on the event loop's thread)

    def read(self, n: int | None = -1) -> bytes:
        self.reads.append((n or 0, threading.get_ident() == MAIN))
        return super().read(n)


MAIN = threading.get_ident()


async def test_large_reads_leave_the_event_loop_small_ones_do_not() -> None:
    small = _ThreadRecordingSource(MSG)
    await send_message(_Writer(), small, b"+OK\r\n", size_hint=len(MSG))  # type: ignore[arg-type]
    assert small.reads == [(len(MSG) + 1, True)]  # one read, inline
    data = b"Subject: big\r\n\r\n" + (b"y" * 78 + b"\r\n") * 20_000  # ~1.6 MB
    big = _ThreadRecordingSource(data)
    w: Any = _Writer()
    await send_message(w, big, b"+OK\r\n", size_hint=len(data))
    assert all(size > INLINE_READ and not inline for size, inline in big.reads)
    assert len(big.reads) >= len(data) // CHUNK
    assert b"".join(w.writes) == b"+OK\r\n" + reference(data)
