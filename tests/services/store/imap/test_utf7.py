"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.store.imap import utf7


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("INBOX", "INBOX"),
        ("Tom & Jerry", "Tom &- Jerry"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 example
        ("😀", "&2D3eAA-"),
    ],
)
def test_known_forms(name: str, wire: str) -> None:
    assert utf7.encode(name) == wire
    assert utf7.decode(wire) == name


@pytest.mark.parametrize(
    "bad", ["&", "&Jjo!", "&AGE-", "&U,BTFw-&ZeVnLIqe-", "a&/x-", "é", "&APw", "&APw=-"]
)
def test_rejects_non_canonical(bad: str) -> None:
    with pytest.raises(utf7.Utf7Error):
        utf7.decode(bad)


@settings(max_examples=500)
@given(st.text())
def test_round_trip(name: str) -> None:
    wire = utf7.encode(name)
    assert wire.isascii()
    assert utf7.decode(wire) == name


@settings(max_examples=500)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40))
def test_decode_never_raises_other_errors(wire: str) -> None:
    try:
        name = utf7.decode(wire)
    except utf7.Utf7Error:
        return
    assert utf7.encode(name) == wire
