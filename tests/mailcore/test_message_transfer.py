"""Quoted-printable decoding (RFC 2045 §6.7) and the trailing-comment display name of an
address without a phrase."""

from __future__ import annotations

import binascii

from hypothesis import given
from hypothesis import strategies as st

from mailcore.message import decode_qp, parse_addresses


def test_trailing_white_space_is_not_data() -> None:
    # rule 3: white space at the end of an encoded line is deleted
    assert decode_qp(b"keep  \t\r\nnext\r\n") == b"keep\r\nnext\r\n"


def test_equals_then_white_space_is_a_soft_line_break() -> None:
    # rule 5: "=" followed by white space before the line break
    assert decode_qp(b"soft=  \r\nbreak\r\n") == b"softbreak\r\n"
    assert decode_qp(b"soft=\r\nbreak") == b"softbreak"
    assert decode_qp(b"soft=\t\nbreak") == b"softbreak"


def test_escapes_and_stray_equals() -> None:
    assert decode_qp(b"caf=C3=A9 =3d=3D") == "café ==".encode()
    assert decode_qp(b"a=ZZb=") == b"a=ZZb"  # not hex: kept; "=" at the end: soft break
    assert decode_qp(b"") == b""


@given(st.binary().filter(lambda b: b"\r" not in b and b"\n" not in b))
def test_round_trip_of_any_line(data: bytes) -> None:
    assert decode_qp(binascii.b2a_qp(data, quotetabs=True)) == data


def test_comment_is_the_name_of_an_address_without_phrase() -> None:
    (a,) = parse_addresses("user@example.com (Real Name)")
    assert (a.name, a.mailbox, a.host) == ("Real Name", "user", "example.com")
    a, b = parse_addresses("x@example.com (Ex  Ample), Phrase <y@example.com> (ignored)")
    assert (a.name, a.mailbox, a.host) == ("Ex Ample", "x", "example.com")
    assert (b.name, b.mailbox, b.host) == ("Phrase", "y", "example.com")
    (c,) = parse_addresses("user@example.com ()")
    assert c.name is None
    (d,) = parse_addresses(r"user@example.com (A \(nested\) name)")
    assert d.name == "A (nested) name"
