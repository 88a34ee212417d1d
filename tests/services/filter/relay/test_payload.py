"""The DATA text the relay writes: the same bytes aiosmtplib's ``data()`` would send."""

from __future__ import annotations

from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given
from hypothesis import strategies as st

from services.filter.relay.payload import encode_data


def _reference(body: bytes) -> bytes:
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(body)) + b".\r\n"


_PIECES = st.sampled_from([b"\r\n", b"\n", b"\r", b".", b"..", b"a", b"From: x", b" ", b"\xff"])


@given(st.lists(_PIECES, max_size=40).map(b"".join))
def test_same_as_aiosmtplib(body: bytes) -> None:
    assert encode_data(body) == _reference(body)


@given(st.binary(max_size=200))
def test_same_as_aiosmtplib_for_any_bytes(body: bytes) -> None:
    assert encode_data(body) == _reference(body)


def test_examples() -> None:
    assert encode_data(b".hidden\r\nline\r\n.\r\n") == b"..hidden\r\nline\r\n..\r\n.\r\n"
    assert encode_data(b"bare\nlf") == b"bare\r\nlf\r\n.\r\n"
    assert encode_data(b"") == b"\r\n.\r\n"
