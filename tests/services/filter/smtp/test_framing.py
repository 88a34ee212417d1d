"""Framing: command lines and DATA, including every smuggling ending (CVE-2023-51764)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.filter.smtp.framing import (
    TOO_LONG,
    DataProblem,
    DataReader,
    LineBuffer,
    command_text,
)


def read_all(chunks: list[bytes], max_size: int = 10_000_000) -> tuple[bytes | DataProblem, bytes]:
    reader = DataReader(max_size)
    rest = b""
    for chunk in chunks:
        rest = reader.feed(chunk) if not reader.done else rest + chunk
    assert reader.done
    return reader.result(), rest


def test_command_text_requires_crlf() -> None:
    assert command_text(b"NOOP\r\n") == b"NOOP"
    assert command_text(b"NOOP\n") is None
    assert command_text(b"NOOP\rRSET\r\n") is None
    assert command_text(b"NOOP\r\r\n") is None


def test_line_buffer_splits_pipelined_commands() -> None:
    buf = LineBuffer()
    buf.feed(b"MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDA")
    assert buf.next_line() == b"MAIL FROM:<a@b.c>\r\n"
    assert buf.next_line() == b"RCPT TO:<d@e.f>\r\n"
    assert buf.next_line() is None
    buf.feed(b"TA\r\n")
    assert buf.next_line() == b"DATA\r\n"


def test_line_buffer_reports_an_overlong_line_once_and_recovers() -> None:
    buf = LineBuffer(limit=100)
    buf.feed(b"X" * 150)
    assert buf.next_line() is None  # discarded as it comes
    assert len(buf) == 0
    buf.feed(b"Y" * 150 + b"\r\nNOOP\r\n")
    assert buf.next_line() is TOO_LONG
    assert buf.next_line() == b"NOOP\r\n"


def test_plain_message_and_pipelined_rest() -> None:
    body, rest = read_all([b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n"])
    assert body == b"Subject: x\r\n\r\nhello\r\n"
    assert rest == b"QUIT\r\n"


def test_empty_message() -> None:
    assert read_all([b".\r\n"]) == (b"", b"")


def test_terminator_split_across_every_boundary() -> None:
    wire = b"Subject: x\r\n\r\nline\r\n.\r\nNOOP\r\n"
    for cut in range(1, len(wire)):
        body, rest = read_all([wire[:cut], wire[cut:]])
        assert body == b"Subject: x\r\n\r\nline\r\n", cut
        assert rest == b"NOOP\r\n", cut


def test_dot_unstuffing() -> None:
    body, _ = read_all([b"..leading\r\n...two\r\nmid.dle\r\n..\r\n.\r\n"])
    assert body == b".leading\r\n..two\r\nmid.dle\r\n.\r\n"


SMUGGLING_ENDINGS = [
    b"\n.\n",
    b"\r.\r",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r\n.\r",
    b"\r.\r\n",
    b"\r.\n",
    b"\n.\r",
    b"\r\n\x00.\r\n",
]


@pytest.mark.parametrize("ending", SMUGGLING_ENDINGS, ids=repr)
def test_smuggling_endings_are_data_and_refused(ending: bytes) -> None:
    smuggled = b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<a@b.test>\r\nDATA\r\nSpoofed\r\n"
    wire = b"Subject: one\r\n\r\nfirst" + ending + smuggled + b".\r\nQUIT\r\n"
    result, rest = read_all([wire])
    # The whole stream up to the one real terminator is one message...
    assert rest == b"QUIT\r\n"
    if ending == b"\r\n\x00.\r\n":
        assert isinstance(result, bytes)  # NUL is not a line ending; it stays data
    else:
        # ...and a bare CR or LF anywhere in it refuses it whole.
        assert result is DataProblem.BARE_LINE_ENDING


def test_overlong_line_is_refused() -> None:
    ok, _ = read_all([b"A" * 998 + b"\r\n.\r\n"])
    assert ok == b"A" * 998 + b"\r\n"
    stuffed, _ = read_all([b"." + b"A" * 998 + b"\r\n.\r\n"])
    assert stuffed == b"A" * 998 + b"\r\n"  # 999 on the wire with the transparency period
    # RFC 5321 §4.5.3.1.6: 998 octets and CRLF; a 999-octet line is refused
    assert read_all([b"A" * 999 + b"\r\n.\r\n"])[0] is DataProblem.LINE_TOO_LONG
    assert read_all([b"A" * 1000 + b"\r\n.\r\n"])[0] is DataProblem.LINE_TOO_LONG
    assert read_all([b".." + b"A" * 998 + b"\r\n.\r\n"])[0] is DataProblem.LINE_TOO_LONG


def test_too_big_reads_to_the_end_then_refuses() -> None:
    reader = DataReader(max_size=1000)
    for _ in range(100):
        assert reader.feed(b"0123456789" * 9 + b"\r\n") == b""
    assert reader.feed(b".\r\nNOOP\r\n") == b"NOOP\r\n"
    assert reader.result() is DataProblem.TOO_BIG


# --- properties ------------------------------------------------------------------------
_line = st.binary(max_size=120).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


def _stuff(lines: list[bytes]) -> bytes:
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


@given(st.lists(_line, max_size=30), st.lists(st.integers(min_value=1, max_value=64), max_size=8))
def test_any_clean_message_round_trips_in_any_chunking(lines: list[bytes], cuts: list[int]) -> None:
    wire = _stuff(lines) + b".\r\nNEXT\r\n"
    chunks, pos = [], 0
    for cut in cuts:
        chunks.append(wire[pos : pos + cut])
        pos += cut
    chunks.append(wire[pos:])
    body, rest = read_all([c for c in chunks if c] or [b""])
    assert body == b"".join(line + b"\r\n" for line in lines)
    assert rest == b"NEXT\r\n"


@given(st.binary(max_size=400))
def test_arbitrary_data_yields_one_message_or_a_refusal(data: bytes) -> None:
    reader = DataReader(max_size=300)
    rest = reader.feed(data + b"\r\n.\r\n")
    assert reader.done
    result = reader.result()
    if isinstance(result, bytes):
        # A message never holds a bare CR or LF, and stuffed again it reads back the same.
        assert result.count(b"\r") == result.count(b"\n") == result.count(b"\r\n")
        again, rest_again = read_all([_stuff(result.split(b"\r\n")[:-1]) + b".\r\n"])
        assert again == result and rest_again == b""
    assert isinstance(rest, bytes)


def whole_buffer_reference(wire: bytes, max_size: int) -> tuple[bytes | DataProblem, bytes]:
    """DATA read the simple way, all at once: the model the incremental reader must match."""
    buf = b"\r\n" + wire
    end = buf.find(b"\r\n.\r\n")
    assert end >= 0
    data, rest = buf[2 : end + 2], buf[end + 5 :]
    if len(data) > max_size:
        return DataProblem.TOO_BIG, rest
    lines = data.count(b"\r\n")
    if data.count(b"\r") != lines or data.count(b"\n") != lines:
        return DataProblem.BARE_LINE_ENDING, rest
    if any(len(line) > (999 if line.startswith(b".") else 998) for line in data.split(b"\r\n")):
        return DataProblem.LINE_TOO_LONG, rest
    return (b"\r\n" + data).replace(b"\r\n.", b"\r\n")[2:], rest


# Pieces that meet at chunk boundaries in every way that matters: CR, LF, CRLF, periods at
# line starts, the terminator itself, and runs that make lines of 998 to 1001 octets.
_piece = st.sampled_from(
    [
        b"\r",
        b"\n",
        b"\r\n",
        b".",
        b"..",
        b"\r\n.",
        b"\r\n.\r\n",
        b"a",
        b"x" * 250,
        b"y" * 499,
        b"w" * 998,
    ]
)


@given(
    st.lists(_piece, max_size=40),
    st.lists(st.integers(min_value=1, max_value=700), max_size=12),
    st.sampled_from([200, 1000, 100_000]),
)
def test_incremental_checks_match_the_whole_buffer_model(
    pieces: list[bytes], cuts: list[int], max_size: int
) -> None:
    wire = b"".join(pieces) + b"\r\n.\r\nNEXT\r\n"
    chunks, pos = [], 0
    for cut in cuts:
        chunks.append(wire[pos : pos + cut])
        pos += cut
    chunks.append(wire[pos:])
    assert read_all([c for c in chunks if c], max_size) == whole_buffer_reference(wire, max_size)


@pytest.mark.parametrize("length", [997, 998, 999, 1000, 1001, 2500])
@pytest.mark.parametrize("chunk", [1, 7, 64, 999, 1000, 1001, 65536])
def test_line_length_limit_at_every_chunk_size(length: int, chunk: int) -> None:
    """998 octets pass, 999 do not (RFC 5321 §4.5.3.1.6), however the line is cut."""
    wire = b"Subject: x\r\n\r\n" + b"z" * length + b"\r\nshort\r\n.\r\n"
    chunks = [wire[i : i + chunk] for i in range(0, len(wire), chunk)]
    result, _ = read_all(chunks)
    if length <= 998:
        assert result == b"Subject: x\r\n\r\n" + b"z" * length + b"\r\nshort\r\n"
    else:
        assert result is DataProblem.LINE_TOO_LONG


def test_problems_are_found_as_the_data_comes() -> None:
    """The checks run in feed(), piece by piece: result() has no pass over the message left
    to do, and a refused message's data is not kept."""
    reader = DataReader(10_000_000)
    reader.feed(b"Subject: x\r\n\r\nfine\r\n" * 1000)
    assert reader.problem is None
    reader.feed(b"bare\nline\r\n" + b"q" * 100_000)
    assert not reader.done and reader.problem is DataProblem.BARE_LINE_ENDING
    assert reader.feed(b"\r\n.\r\nNOOP\r\n") == b"NOOP\r\n"
    assert reader.result() is DataProblem.BARE_LINE_ENDING

    long = DataReader(10_000_000)
    long.feed(b"w" * 998)
    assert long.problem is None
    long.feed(b"w" * 10)  # past 998 octets with no CRLF in sight: too long already
    assert long.problem is DataProblem.LINE_TOO_LONG
