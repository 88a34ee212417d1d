"""Sort keys (mailcore.mailstore.sortkeys): RFC 5256 §2.1 base subject extraction, with
a Hypothesis test of its properties; first-address keys; RFC 5957 display names;
Message-ID / References / In-Reply-To."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailcore import message
from mailcore.mailstore.sortkeys import base_subject, of


@pytest.mark.parametrize(
    ("subject", "base", "reply"),
    [
        ("hello", "hello", False),
        ("Re: hello", "hello", True),
        ("RE:  re: Fwd: hello", "hello", True),
        ("Fw: hello", "hello", True),
        ("Re [2]: hello", "hello", True),  # subj-refwd with a subj-blob
        ("[list] Re: hello", "hello", True),  # subj-blob then subj-refwd
        ("[list] hello", "hello", False),  # (4) a leading blob goes
        ("[list]", "[list]", False),  # ... unless nothing would be left
        ("hello (fwd)", "hello", True),  # (2) subj-trailer
        ("hello (FWD) (fwd)  ", "hello", True),
        ("[Fwd: Re: hello]", "hello", True),  # (6) subj-fwd
        ("Re: [fwd: [list] hello (fwd)]", "hello", True),
        ("  hello \t  world  ", "hello world", False),  # (1) white space
        ("", "", False),
        ("Re:", "", True),
        ("Rejected: hello", "Rejected: hello", False),  # "re" must be followed by ":"
        ("été", "été", False),
    ],
)
def test_base_subject_examples(subject: str, base: str, reply: bool) -> None:
    assert base_subject(subject) == (base, reply)


_WORDS = st.text(alphabet="abcRrEeFfWwDd:[]() \té", max_size=30)
_LEADING = st.sampled_from(["Re: ", "re:", "FWD: ", "Fw:", "[list] Re: ", "Re[2]: ", "[x]Fwd: "])


@given(_WORDS)
def test_base_subject_is_a_fixed_point(subject: str) -> None:
    base, _ = base_subject(subject)
    assert base_subject(base) == (base, False)
    assert base == base.strip()
    assert not re.match(r"(re|fwd?)\s*(\[[^\[\]]*\]\s*)?:", base, re.IGNORECASE)
    assert not base.lower().endswith("(fwd)")
    assert "  " not in base and "\t" not in base


@given(_WORDS, _LEADING, st.booleans())
def test_reply_markers_do_not_change_the_base(subject: str, lead: str, trail: bool) -> None:
    base, _ = base_subject(subject)
    marked = lead + base + (" (fwd)" if trail else "")
    assert base_subject(marked) == (base, True)
    if "]" not in base:  # "[Fwd: :]]": step (4) takes the blob "[Fwd: :]" before (6)
        assert base_subject(f"[Fwd: {base}]") == (base, True)


def test_keys_of_a_message() -> None:
    data = (
        b"From: =?UTF-8?Q?=C3=89mile?= <Emile@X.org>, b@y\r\n"
        b"To: undisclosed:;, Carl <carl@y.org>\r\n"
        b"Subject: =?UTF-8?Q?Re:_=C3=A9t=C3=A9?=\r\n"
        b"Date: Sun, 5 Jan 2020 10:00:00 -0500\r\n"
        b"Message-ID: <own@x> trailing\r\n"
        b"In-Reply-To: <irt@x>\r\n"
        b"References: <r1@x>\r\n\t<r2@x> junk <r3@x>\r\n\r\nbody\r\n"
    )
    k = of(message.parse(data), data)
    # i;unicode-casemap (mailcore.mailstore.casemap): É is E + U+0301
    assert (k.k_subject, k.k_reply) == ("E\u0301TE\u0301", 1)
    assert (k.k_from, k.k_dfrom) == ("EMILE", "E\u0301MILE")
    assert (k.k_to, k.k_dto) == ("CARL", "CARL")  # the group is not an address
    assert k.k_cc == ""
    assert k.sent_at == 1578236400.0
    assert k.msg_id == "own@x"
    assert k.refs == "r1@x r2@x r3@x"  # References wins over In-Reply-To


def test_in_reply_to_stands_in_for_references() -> None:
    data = b"In-Reply-To: <a@x> <b@x>\r\nTo: bob@y\r\n\r\n"
    k = of(message.parse(data), data)
    assert (k.refs, k.msg_id, k.sent_at, k.k_subject) == ("a@x", None, None, "")
    assert (k.k_to, k.k_dto, k.k_from, k.k_dfrom) == ("BOB", "BOB@Y", "", "")
