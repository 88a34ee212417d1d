"""List rows from FETCH data: the fast header reader agrees with the email package."""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32

from hypothesis import example, given
from hypothesis import strategies as st

from services.webmail.imap_records import _row_of, base_subject, header_fields, row_of

names = st.sampled_from(["From", "To", "Subject", "Date", "X-Other"])
values = st.from_regex(r"\A[ -~]{0,30}\Z").map(str.strip)


@given(st.lists(st.tuples(names, values, st.booleans()), max_size=8))
def test_header_fields_match_the_email_package(fields: list[tuple[str, str, bool]]) -> None:
    raw = b""
    for name, value, fold in fields:
        if fold and " " in value:
            head, _, tail = value.partition(" ")
            raw += f"{name}: {head}\r\n {tail}\r\n".encode()
        else:
            raw += f"{name}: {value}\r\n".encode()
    raw += b"\r\nbody: not a header\r\n"
    ours = header_fields(raw)
    ref = BytesHeaderParser(policy=compat32).parsebytes(raw)
    for name in {n for n, _, _ in fields}:
        expected = " ".join(str(ref.get(name, "")).split())
        assert " ".join(ours.get(name.lower(), "").split()) == expected
    assert "body" not in ours


def test_row_of_fetch_line() -> None:
    hdr = (
        b"Date: Mon, 4 Mar 2024 10:00:01 +0000\r\nFrom: =?utf-8?q?Ren=C3=A9?= <r@example.net>"
        b"\r\nTo: user@example.com\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n \r\n\r\n"
    )
    line = (
        b"1 FETCH (UID 7 FLAGS (\\Seen \\Flagged) RFC822.SIZE 4096 INTERNALDATE "
        b'"04-Mar-2024 10:00:01 +0000" BODY[HEADER.FIELDS (DATE FROM TO SUBJECT)] {%d}\r\n'
        % len(hdr)
        + hdr
        + b")"
    )
    r = row_of(line)
    assert r is not None
    assert (r.uid, r.size, r.sender, r.sender_address, r.subject) == (
        7,
        4096,
        "René",
        "r@example.net",
        "café",
    )
    assert r.seen and r.flagged and r.date is not None and r.date.year == 2024
    # the same line again: the remembered row, equal to a fresh parse; other flags, a
    # different line and a different row
    assert row_of(bytes(bytearray(line))) is r
    assert row_of(line) == _row_of(line)
    other = row_of(line.replace(b"(\\Seen \\Flagged)", b"()"))
    assert other is not None and not other.seen and not other.flagged


def test_base_subject() -> None:
    assert base_subject("Re: FWD: Re: Plans ") == "plans"
    assert base_subject("[Fwd: Plans]") == "plans"


local = st.from_regex(r"\A[a-z0-9._+-]{1,10}\Z")
display = st.from_regex(r"\A[A-Za-z0-9 .'-]{0,16}\Z")


@given(local, local, display, st.sampled_from(["bare", "plain", "quoted"]))
@example("0", "0", " ", "quoted")  # a quoted name of spaces keeps them, as the package does
def test_first_address_agrees_with_the_email_package(
    user: str, host: str, name: str, shape: str
) -> None:
    import email.utils

    from services.webmail.imap_records import _first_address

    addr = f"{user}@{host}.example"
    raw = {"bare": addr, "plain": f"{name} <{addr}>", "quoted": f'"{name}" <{addr}>'}[shape]
    assert _first_address(raw) == email.utils.getaddresses([raw])[0]
