"""The message parser: envelope, MIME tree with byte offsets, search data, cache form."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailcore.message import (
    Address,
    BodyPart,
    ParsedMessage,
    dumps,
    is_crlf_clean,
    loads,
    parse,
    to_crlf,
)


def _roundtrip(p: ParsedMessage) -> ParsedMessage:
    again = loads(dumps(p))
    assert again == p
    return p


def _body(data: bytes, part: BodyPart) -> bytes:
    return data[part.body_start : part.body_end]


def _header(data: bytes, part: BodyPart) -> bytes:
    return data[part.header_start : part.body_start]


def test_envelope_of_a_simple_message() -> None:
    data = (
        b"Date: Mon, 2 Dec 2024 10:00:00 +0100\r\n"
        b'From: "Doe, Jane" <jane@example.org>\r\n'
        b"To: bob@example.net, =?utf-8?q?J=C3=B6rg?= <joerg@example.de>\r\n"
        b"Cc: Undisclosed recipients:;\r\n"
        b"Subject: =?utf-8?B?SMOpbGxv?=\r\n  world\r\n"
        b"In-Reply-To: <parent@example.org>\r\nMessage-ID: <id-1@example.org>\r\n"
        b"\r\nHello.\r\n"
    )
    p = _roundtrip(parse(data))
    e = p.envelope
    assert e.date == "Mon, 2 Dec 2024 10:00:00 +0100"
    assert e.subject == "=?utf-8?B?SMOpbGxv?=  world"  # raw, unfolded
    assert e.from_ == [Address("Doe, Jane", None, "jane", "example.org")]
    # RFC 3501 §7.4.2: sender and reply-to default to from.
    assert e.sender == e.from_ and e.reply_to == e.from_
    assert e.to == [
        Address(None, None, "bob", "example.net"),
        Address("=?utf-8?q?J=C3=B6rg?=", None, "joerg", "example.de"),
    ]
    assert e.cc == [
        Address(None, None, "Undisclosed recipients", None),
        Address(None, None, None, None),
    ]
    assert e.bcc == [] and e.in_reply_to == "<parent@example.org>"
    assert e.message_id == "<id-1@example.org>"
    assert p.decoded["subject"] == "Héllo  world"
    assert "Jörg <joerg@example.de>" in p.decoded["to"]
    assert p.sent_day == 20241202 and p.sent == 1733130000.0
    assert p.header_size == data.index(b"\r\n\r\n") + 4
    s = p.structure
    assert (s.type, s.subtype, s.params) == ("text", "plain", [("charset", "us-ascii")])
    assert _body(data, s) == b"Hello.\r\n" and s.size == 8 and s.lines == 1


def test_address_forms() -> None:
    data = (
        b"From: <@relay.example:route@example.org>\r\n"
        b'To: Group One: a@x.org, "B. Smith" <b@y.org>;, (comment) c@z.org (Carl)\r\n'
        b"Cc: localonly, John Q. Public <jqp@example.com>\r\n"
        b'Bcc: "quoted \\"name\\"" <q@example.com>\r\n\r\n'
    )
    e = _roundtrip(parse(data)).envelope
    assert e.from_ == [Address(None, "@relay.example", "route", "example.org")]
    assert e.to == [
        Address(None, None, "Group One", None),
        Address(None, None, "a", "x.org"),
        Address("B. Smith", None, "b", "y.org"),
        Address(None, None, None, None),
        Address("Carl", None, "c", "z.org"),  # no phrase: the trailing comment names it
    ]
    assert e.cc == [
        Address(None, None, "localonly", ""),
        Address("John Q. Public", None, "jqp", "example.com"),
    ]
    assert e.bcc == [Address('quoted "name"', None, "q", "example.com")]


def test_dates() -> None:
    def day(value: str) -> tuple[float, int] | None:
        p = parse(f"Date: {value}\r\n\r\n".encode())
        return (p.sent, p.sent_day) if p.sent is not None and p.sent_day else None

    assert day("Tue, 3 Dec 2024 23:30:00 -0800") == (1733297400.0, 20241203)
    assert day("3 Dec 24 23:30 PST") == (1733297400.0, 20241203)
    assert day("Fri, 1 Jan 99 00:00:00 GMT") == (915148800.0, 19990101)
    assert day("not a date") is None
    assert day("31 Foo 2024 10:00:00 +0000") is None


MULTI = (
    b"From: a@example.org\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    b"This is the preamble.\r\n"
    b"--outer\r\n"
    b"Content-Type: multipart/alternative; boundary=outer-inner\r\n\r\n"
    b"--outer-inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain text\r\nline 2\r\n"
    b"--outer-inner\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n"
    b"--outer-inner--\r\n"
    b"--outer\r\n"
    b"Content-Type: application/pdf;\r\n name*0*=utf-8''r%C3%A9sum; name*1=\".pdf\"\r\n"
    b"Content-Disposition: attachment; filename*=iso-8859-1'en'%E9t%E9.pdf; size=4\r\n"
    b"Content-Transfer-Encoding: base64\r\nContent-ID: <cid1@x>\r\n"
    b"Content-Description: a file\r\nContent-Language: en, fr\r\n"
    b"Content-Location: http://example.org/f.pdf\r\nContent-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
    b"\r\nJVBERi0=\r\n"
    b"--outer\r\nContent-Type: message/rfc822\r\n\r\n"
    b"From: inner@example.net\r\nTo: x@example.org\r\nSubject: inner subject\r\n\r\ninner body\r\n"
    b"--outer--\r\nepilogue\r\n"
)


def test_multipart_tree_offsets_and_details() -> None:
    p = _roundtrip(parse(MULTI))
    root = p.structure
    assert (root.type, root.subtype) == ("multipart", "mixed")
    assert root.param("boundary") == "outer"
    alt, pdf, msg = root.parts
    assert (alt.type, alt.subtype) == ("multipart", "alternative")
    plain, html = alt.parts
    assert _body(MULTI, plain) == b"plain text\r\nline 2"  # CRLF before a delimiter is its own
    assert plain.lines == 2 and plain.param("charset") == "utf-8"
    assert _header(MULTI, plain) == b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    assert _body(MULTI, html) == b"<p>html</p>"
    assert (pdf.type, pdf.subtype, pdf.encoding) == ("application", "pdf", "base64")
    assert pdf.params == [("name", "résum.pdf")]
    assert pdf.disposition == ("attachment", [("filename", "été.pdf"), ("size", "4")])
    assert pdf.id == "<cid1@x>" and pdf.description == "a file"
    assert pdf.language == ["en", "fr"] and pdf.location == "http://example.org/f.pdf"
    assert pdf.md5 == "Q2hlY2sgSW50ZWdyaXR5IQ==" and pdf.lines is None
    assert _body(MULTI, pdf) == b"JVBERi0=" and pdf.size == 8
    assert (msg.type, msg.subtype) == ("message", "rfc822") and msg.message is not None
    env, inner = msg.message
    assert env.subject == "inner subject" and env.from_[0].mailbox == "inner"
    assert inner.header_start == msg.body_start
    assert _body(MULTI, inner) == b"inner body"
    assert msg.lines == 5


def test_odd_structures() -> None:
    # No blank line at all: everything is header.
    p = _roundtrip(parse(b"Subject: only header\r\nX: y\r\n"))
    assert p.header_size == p.structure.body_start == len(b"Subject: only header\r\nX: y\r\n")
    assert p.structure.size == 0
    # Bare LF line ends.
    lf = b"Subject: lf\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\npart one\n--b--\n"
    p = _roundtrip(parse(lf))
    assert p.envelope.subject == "lf" and len(p.structure.parts) == 1
    assert _body(lf, p.structure.parts[0]) == b"part one"
    # A multipart without a boundary is plain text (RFC 2046 §5.1.1 requires one).
    p = _roundtrip(parse(b"Content-Type: multipart/mixed\r\n\r\n--x\r\n"))
    assert (p.structure.type, p.structure.subtype) == ("text", "plain")
    # A missing close delimiter: the last part runs to the end.
    p = _roundtrip(parse(b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n\r\nrest"))
    assert len(p.structure.parts) == 1 and p.structure.parts[0].size == 4
    # multipart/digest parts default to message/rfc822 (RFC 2046 §5.1.5).
    dig = (
        b"Content-Type: multipart/digest; boundary=d\r\n\r\n"
        b"--d\r\n\r\nSubject: in\r\n\r\nb\r\n--d--\r\n"
    )
    p = _roundtrip(parse(dig))
    part = p.structure.parts[0]
    assert (part.type, part.subtype) == ("message", "rfc822")
    assert part.message is not None and part.message[0].subject == "in"
    # Empty input and a lone blank line.
    assert _roundtrip(parse(b"")).structure.size == 0
    assert _roundtrip(parse(b"\r\nbody")).header_size == 2


def _check_offsets(part: BodyPart, n: int) -> None:
    assert 0 <= part.header_start <= part.body_start <= part.body_end <= n
    assert part.size == part.body_end - part.body_start
    for child in part.parts:
        assert part.body_start <= child.header_start and child.body_end <= part.body_end
        _check_offsets(child, n)
    if part.message is not None:
        _check_offsets(part.message[1], n)


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_garbage_never_raises(data: bytes) -> None:
    p = _roundtrip(parse(data))
    _check_offsets(p.structure, len(data))


_HEADERISH = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=q\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"From: =?x?q?bad?= <a@\r\n",
        b"To: ;;,,<<>>@@\r\n",
        b"Subject: \xff\xfe\r\n",
        b"\r\n",
        b"--q\r\n",
        b"--q--\r\n",
        b"Content-Type: text/plain; name*0*=utf-8''%ZZ; name*1=x\r\n",
        b"body line\r\n",
    ]
)


@settings(max_examples=300)
@given(st.lists(_HEADERISH, max_size=30))
def test_mime_shaped_garbage_never_raises(lines: list[bytes]) -> None:
    data = b"".join(lines)
    p = _roundtrip(parse(data))
    _check_offsets(p.structure, len(data))


_TEXT = st.text(alphabet="abcdefghij \r\n.", max_size=60).map(lambda s: s.encode())


@st.composite
def _trees(draw: st.DrawFn, depth: int = 0) -> tuple[bytes, list[bytes]]:
    """A serialised MIME entity and the bodies of its leaves, in order."""
    if depth >= 3 or draw(st.booleans()):
        body = draw(_TEXT)
        return b"Content-Type: text/plain\r\n\r\n" + body, [body]
    boundary = f"bnd{depth}{draw(st.integers(0, 999))}".encode()
    children = draw(st.lists(_trees(depth + 1), min_size=1, max_size=3))
    out = b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\npreamble\r\n"
    leaves: list[bytes] = []
    for entity, bodies in children:
        out += b"--" + boundary + b"\r\n" + entity + b"\r\n"
        leaves.extend(bodies)
    out += b"--" + boundary + b"--\r\n"
    return out, leaves


def _leaf_bodies(data: bytes, part: BodyPart) -> list[bytes]:
    if part.parts:
        return [b for child in part.parts for b in _leaf_bodies(data, child)]
    return [_body(data, part)]


@settings(max_examples=200)
@given(_trees())
def test_generated_trees_are_recovered_exactly(tree: tuple[bytes, list[bytes]]) -> None:
    data, leaves = tree
    p = _roundtrip(parse(b"Subject: t\r\n" + data))
    assert _leaf_bodies(b"Subject: t\r\n" + data, p.structure) == leaves


def test_present_but_empty_search_fields_are_empty_strings() -> None:
    # RFC 3501 §6.4.4: HEADER <field> "" matches messages that have the field, even
    # when it carries no address or text; an absent field has no entry.
    p = parse(b"From:\r\nTo: ,\r\nSubject:   \r\nCc: Group:;\r\n\r\nx\r\n")
    assert p.decoded["from"] == "" and p.decoded["to"] == "" and p.decoded["subject"] == ""
    assert p.decoded["cc"] == "Group:"
    assert "bcc" not in p.decoded
    assert _roundtrip(p).decoded == p.decoded


def test_to_crlf_normalises_bare_lf_and_bare_cr() -> None:
    assert to_crlf(b"a\nb\r\nc\rd\n\r\n\r") == b"a\r\nb\r\nc\r\nd\r\n\r\n\r\n"
    assert to_crlf(b"\n\n") == b"\r\n\r\n"
    assert to_crlf(b"\r\r\n") == b"\r\n\r\n"
    assert to_crlf(b"") == b""
    clean = b"Subject: x\r\n\r\nbody\r\n"
    assert to_crlf(clean) is clean  # CRLF-clean data (everything from SMTP) is not copied
    assert is_crlf_clean(clean) and not is_crlf_clean(b"x\n") and not is_crlf_clean(b"x\r")


@settings(max_examples=300)
@given(st.binary(max_size=200) | st.text(alphabet="ab\r\n", max_size=60).map(str.encode))
def test_to_crlf_is_clean_idempotent_and_keeps_the_lines(data: bytes) -> None:
    out = to_crlf(data)
    assert is_crlf_clean(out)
    assert to_crlf(out) == out
    # the same lines: every line break (CRLF, bare CR, bare LF) is one CRLF afterwards
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    assert out.split(b"\r\n") == lines
