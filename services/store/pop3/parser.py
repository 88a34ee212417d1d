"""POP3 command parser: one line of bytes in, one command value out.

Pure: no sockets, no session state. Every failure is a :class:`ParseError` whose ``kind``
tells the session which reply to send; nothing else is ever raised (Hypothesis checks it).
"""

from __future__ import annotations

import binascii
import enum
import re
from dataclasses import dataclass

# RFC 2449 §4: a command line is at most 255 octets including CRLF. Real clients exceed
# that now and then (long user names, AUTH PLAIN initial responses), so we accept more.
MAX_COMMAND_LINE = 1024
# RFC 5034 §4: SASL responses are base64 lines that may be longer than a command line.
MAX_SASL_LINE = 16 * 1024
# Message numbers and TOP line counts beyond this are clamped: they name no message, and
# TOP with a huge count simply sends the whole message.
MAX_NUMBER = 2**31 - 1
_MAX_DIGITS = 10
_MECHANISM = re.compile(rb"[A-Za-z0-9_-]{1,20}")


class ErrorKind(enum.Enum):
    UNKNOWN = "unknown"  # not a POP3 command
    SYNTAX = "syntax"  # a known command with bad arguments
    TOO_LONG = "too_long"  # line over the length limit


class ParseError(Exception):
    def __init__(self, kind: ErrorKind, message: str, command: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.command = command  # the keyword, when it was recognised


# --- command values -------------------------------------------------------------------
# RFC 1939 §4 (AUTHORIZATION), §5 (TRANSACTION), §6 (UPDATE), §7 (optional commands);
# RFC 2449 §5 (CAPA); RFC 2595 §4 (STLS); RFC 5034 §4 (AUTH).


@dataclass(frozen=True, slots=True)
class User:
    name: str


@dataclass(frozen=True, slots=True)
class Pass:
    password: str


@dataclass(frozen=True, slots=True)
class Auth:
    mechanism: str | None  # None: list the mechanisms (RFC 1734 practice, Outlook uses it)
    initial_response: bytes | None  # decoded; RFC 5034 §4: "=" is an empty response


@dataclass(frozen=True, slots=True)
class Capa:
    pass


@dataclass(frozen=True, slots=True)
class Stls:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Stat:
    pass


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Rset:
    pass


@dataclass(frozen=True, slots=True)
class List:
    msg: int | None


@dataclass(frozen=True, slots=True)
class Uidl:
    msg: int | None


@dataclass(frozen=True, slots=True)
class Retr:
    msg: int


@dataclass(frozen=True, slots=True)
class Dele:
    msg: int


@dataclass(frozen=True, slots=True)
class Top:
    msg: int
    lines: int


Command = (
    User | Pass | Auth | Capa | Stls | Quit | Stat | Noop | Rset | List | Uidl | Retr | Dele | Top
)

_NO_ARGS: dict[bytes, Command] = {
    b"CAPA": Capa(),
    b"STLS": Stls(),
    b"QUIT": Quit(),
    b"STAT": Stat(),
    b"NOOP": Noop(),
    b"RSET": Rset(),
}


def _strip_eol(line: bytes) -> bytes:
    if line.endswith(b"\r\n"):
        return line[:-2]
    if line.endswith(b"\n"):
        return line[:-1]
    return line


def _number(raw: bytes, what: str, keyword: str) -> int:
    # RFC 1939 §3: message numbers are decimal, starting at 1; no signs, no spaces.
    # bytes.isdigit() accepts only ASCII digits, so "٣" or "+1" are syntax errors.
    if not raw or not raw.isdigit():
        raise ParseError(ErrorKind.SYNTAX, f"Invalid {what}", keyword)
    if len(raw) > _MAX_DIGITS:
        return MAX_NUMBER
    return min(int(raw), MAX_NUMBER)


def _text(raw: bytes, keyword: str) -> str:
    """USER/PASS arguments: UTF-8 (RFC 6856 allows it), never control characters."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(ErrorKind.SYNTAX, "Invalid UTF-8 in argument", keyword) from None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ParseError(ErrorKind.SYNTAX, "Control characters in argument", keyword)
    return text


def decode_base64(raw: bytes, keyword: str = "AUTH") -> bytes:
    """RFC 5034 §4: base64 without line breaks; a lone "=" is the empty response."""
    if raw == b"=":
        return b""
    try:
        return binascii.a2b_base64(raw, strict_mode=True)
    except (binascii.Error, ValueError):
        raise ParseError(ErrorKind.SYNTAX, "Invalid base64 data", keyword) from None


def parse_command(line: bytes) -> Command:
    """Parse one command line (with or without its CRLF)."""
    if len(line) > MAX_COMMAND_LINE:
        raise ParseError(ErrorKind.TOO_LONG, "Command line too long")
    line = _strip_eol(line)
    keyword_raw, sep, rest = line.partition(b" ")
    # RFC 1939 §3: keywords are three or four characters, case-insensitive.
    if not (3 <= len(keyword_raw) <= 4 and keyword_raw.isalpha()):
        raise ParseError(ErrorKind.UNKNOWN, "Unknown command")
    keyword_b = keyword_raw.upper()
    keyword = keyword_b.decode("ascii")

    if keyword_b == b"PASS":
        # RFC 1939 §7: the password is everything after the single space (it may contain
        # spaces), as most servers take it.
        if not sep or not rest:
            raise ParseError(ErrorKind.SYNTAX, "PASS needs a password", keyword)
        return Pass(_text(rest, keyword))

    args = rest.split()
    if keyword_b in _NO_ARGS:
        if args:
            raise ParseError(ErrorKind.SYNTAX, f"{keyword} takes no arguments", keyword)
        return _NO_ARGS[keyword_b]
    if keyword_b == b"USER":
        if len(args) != 1:
            raise ParseError(ErrorKind.SYNTAX, "USER needs one user name", keyword)
        return User(_text(args[0], keyword))
    if keyword_b in (b"LIST", b"UIDL"):
        if len(args) > 1:
            raise ParseError(ErrorKind.SYNTAX, f"{keyword} takes at most one argument", keyword)
        msg = _number(args[0], "message number", keyword) if args else None
        return List(msg) if keyword_b == b"LIST" else Uidl(msg)
    if keyword_b in (b"RETR", b"DELE"):
        if len(args) != 1:
            raise ParseError(ErrorKind.SYNTAX, f"{keyword} needs a message number", keyword)
        n = _number(args[0], "message number", keyword)
        return Retr(n) if keyword_b == b"RETR" else Dele(n)
    if keyword_b == b"TOP":
        # RFC 1939 §7: TOP msg n
        if len(args) != 2:
            raise ParseError(
                ErrorKind.SYNTAX, "TOP needs a message number and a line count", keyword
            )
        return Top(
            _number(args[0], "message number", keyword), _number(args[1], "line count", keyword)
        )
    if keyword_b == b"AUTH":
        # RFC 5034 §4: AUTH mechanism [initial-response]
        if not args:
            return Auth(None, None)
        if len(args) > 2:
            raise ParseError(ErrorKind.SYNTAX, "AUTH takes a mechanism and a response", keyword)
        mech = args[0]
        # RFC 4422 §3.1: mechanism names are 1-20 of A-Z 0-9 - _
        if not _MECHANISM.fullmatch(mech):
            raise ParseError(ErrorKind.SYNTAX, "Invalid mechanism name", keyword)
        initial = decode_base64(args[1]) if len(args) == 2 else None
        return Auth(mech.decode("ascii").upper(), initial)
    raise ParseError(ErrorKind.UNKNOWN, "Unknown command")


# --- SASL -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaslCancel:
    """RFC 5034 §4: the client answered "*" to cancel the exchange."""


def parse_sasl_response(line: bytes) -> bytes | SaslCancel:
    """One client line during an AUTH exchange."""
    if len(line) > MAX_SASL_LINE:
        raise ParseError(ErrorKind.TOO_LONG, "Response line too long", "AUTH")
    line = _strip_eol(line).strip(b" ")
    if line == b"*":
        return SaslCancel()
    if not line:
        return b""
    return decode_base64(line)


@dataclass(frozen=True, slots=True)
class PlainCredentials:
    authzid: str
    authcid: str
    password: str


def decode_plain(message: bytes) -> PlainCredentials:
    """RFC 4616 §2: [authzid] NUL authcid NUL passwd, all UTF-8."""
    parts = message.split(b"\x00")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise ParseError(ErrorKind.SYNTAX, "Invalid PLAIN response", "AUTH")
    try:
        authzid, authcid, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        raise ParseError(ErrorKind.SYNTAX, "Invalid UTF-8 in PLAIN response", "AUTH") from None
    return PlainCredentials(authzid, authcid, password)
