"""SMTP command parser, pure: a command line (bytes, CRLF removed) in, values out.

Grammar from RFC 5321 §4.1 (commands), §4.1.2 (paths and mailboxes) and §4.1.2/§4.1.1.11
(ESMTP parameters), with RFC 6531 §3.3 (UTF-8 in mailboxes when SMTPUTF8 is used).
Deliberate leniency, as most MTAs have: a space after ``FROM:``/``TO:`` and a path without
angle brackets are accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailcore import address as addr

# RFC 5321 §4.5.3.1: size limits of the parts of a path.
MAX_LOCAL_PART = 64
MAX_DOMAIN = 255
MAX_PATH = 256
POSTMASTER = "postmaster"


class CommandSyntaxError(ValueError):
    """The line is not a well-formed command of its kind."""


class NotUtf8(CommandSyntaxError):
    """The argument is not valid UTF-8."""


class BadAddress(CommandSyntaxError):
    """The path is not a valid RFC 5321 mailbox."""


class UnsupportedParameter(CommandSyntaxError):
    """A well-formed ESMTP parameter this server does not implement."""


class NonAsciiAddress(CommandSyntaxError):
    """RFC 6531 §3.4: a UTF-8 address in a transaction without SMTPUTF8."""


@dataclass(frozen=True, slots=True)
class Command:
    verb: str  # upper-case ASCII letters, "" if the line had none
    arg: str  # everything after the first space, UTF-8 decoded; "" if none


_VERB = re.compile(rb"[A-Za-z]{1,16}")


def parse_command(text: bytes) -> Command:
    """Split a command line (RFC 5321 §4.1.1: ``verb [SP argument]``)."""
    verb, sep, rest = text.partition(b" ")
    if not _VERB.fullmatch(verb):
        return Command("", "")
    try:
        arg = rest.decode("utf-8") if sep else ""
    except UnicodeDecodeError:
        raise NotUtf8("argument is not UTF-8") from None
    return Command(verb.decode("ascii").upper(), arg)


# --- mailboxes (RFC 5321 §4.1.2) -------------------------------------------------------------
# atext (RFC 5322 §3.2.3) plus, for SMTPUTF8, any non-ASCII character (RFC 6531 §3.3).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+"
_DOT_STRING = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
# qtextSMTP / quoted-pairSMTP
_QUOTED_STRING = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"')
_LET_DIG = r"[A-Za-z0-9\u0080-\U0010ffff]"
_LABEL = rf"(?:{_LET_DIG}(?:[A-Za-z0-9\-\u0080-\U0010ffff]*{_LET_DIG})?)"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_ADDRESS_LITERAL = re.compile(r"\[(?:[0-9.]+|IPv6:[0-9A-Fa-f:.]+)\]")
_SOURCE_ROUTE = re.compile(r"@[^,:]+(?:,@[^,:]+)*:")


def parse_mailbox(text: str) -> str:
    """Validate ``Local-part "@" (Domain / address-literal)``; return it unchanged."""
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise BadAddress("not local@domain")
    if len(local.encode()) > MAX_LOCAL_PART or len(domain.encode()) > MAX_DOMAIN:
        raise BadAddress("too long")
    if not (_DOT_STRING.fullmatch(local) or _QUOTED_STRING.fullmatch(local)):
        raise BadAddress("bad local part")
    if not (_DOMAIN.fullmatch(domain) or _ADDRESS_LITERAL.fullmatch(domain)):
        raise BadAddress("bad domain")
    return text


def _split_path(rest: str) -> tuple[str, str]:
    """``<path>`` or a bare path, then the parameter text after it."""
    rest = rest.lstrip(" ")
    if rest.startswith("<"):
        i, quoted = 1, False
        while i < len(rest):
            ch = rest[i]
            if quoted and ch == "\\":
                i += 2
                continue
            if ch == '"':
                quoted = not quoted
            elif ch == ">" and not quoted:
                return rest[1:i], rest[i + 1 :]
            i += 1
        raise CommandSyntaxError("unterminated path")
    path, _, params = rest.partition(" ")
    return path, " " + params if params else ""


def _path(raw: str, *, allow_null: bool) -> str:
    if len(raw.encode()) > MAX_PATH:
        raise BadAddress("path too long")
    if raw == "":
        if allow_null:
            return ""  # RFC 5321 §4.1.1.2: the null reverse-path <>
        raise BadAddress("empty path")
    # RFC 5321 §4.1.2 / Appendix C: an obsolete source route is accepted and ignored.
    raw = _SOURCE_ROUTE.sub("", raw, count=1) if raw.startswith("@") else raw
    return parse_mailbox(raw)


# esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"); esmtp-value = 1*(%d33-60 / %d62-126)
# (RFC 6531 §3.3 adds UTF-8 to values).
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")
_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e\u0080-\U0010ffff]+")


def parse_params(text: str) -> dict[str, str | None]:
    """``SP esmtp-param *(SP esmtp-param)`` into ``{KEYWORD: value or None}``."""
    params: dict[str, str | None] = {}
    if not text.strip(" "):
        return params
    if not text.startswith(" "):
        raise CommandSyntaxError("parameters must follow the path after a space")
    for item in text.split(" "):
        if not item:
            continue
        key, eq, value = item.partition("=")
        if not _KEYWORD.fullmatch(key) or (eq and not _VALUE.fullmatch(value)):
            raise CommandSyntaxError("bad parameter")
        params[key.upper()] = value if eq else None
    return params


@dataclass(frozen=True, slots=True)
class MailFrom:
    address: str  # "" is the null reverse-path
    size: int | None = None
    body: str | None = None  # 7BIT / 8BITMIME (RFC 6152)
    smtputf8: bool = False  # RFC 6531 §3.4
    params: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RcptTo:
    address: str


def _keyword_arg(arg: str, keyword: str) -> str:
    if arg[: len(keyword)].upper() != keyword:
        raise CommandSyntaxError(f"expected {keyword}")
    return arg[len(keyword) :]


def parse_mail(arg: str) -> MailFrom:
    """``MAIL FROM:<reverse-path> [SP Mail-parameters]`` (RFC 5321 §4.1.1.2)."""
    raw, rest = _split_path(_keyword_arg(arg, "FROM:"))
    address = _path(raw, allow_null=True)
    params = parse_params(rest)
    size: int | None = None
    body: str | None = None
    smtputf8 = False
    for key, value in list(params.items()):
        if key == "SIZE":  # RFC 1870 §6
            if value is None or not value.isdigit() or len(value) > 20:
                raise CommandSyntaxError("SIZE needs a number")
            size = int(value)
        elif key == "BODY":  # RFC 6152 §2
            if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                raise UnsupportedParameter("BODY")
            body = value.upper()
        elif key == "SMTPUTF8":  # RFC 6531 §3.4: takes no value
            if value is not None:
                raise CommandSyntaxError("SMTPUTF8 takes no value")
            smtputf8 = True
        elif key == "AUTH":  # RFC 4954 §5: accepted, the identity is not trusted
            pass
        else:
            raise UnsupportedParameter(key)
    if not smtputf8 and not address.isascii():
        raise NonAsciiAddress("non-ASCII sender without SMTPUTF8")
    return MailFrom(address, size, body, smtputf8, params)


def parse_rcpt(arg: str, *, smtputf8: bool) -> RcptTo:
    """``RCPT TO:<forward-path> [SP Rcpt-parameters]`` (RFC 5321 §4.1.1.3)."""
    raw, rest = _split_path(_keyword_arg(arg, "TO:"))
    # RFC 5321 §4.1.1.3: "Postmaster" without a domain must be accepted.
    address = POSTMASTER if raw.lower() == POSTMASTER else _path(raw, allow_null=False)
    params = parse_params(rest)
    if params:
        raise UnsupportedParameter(next(iter(params)))
    if not smtputf8 and not address.isascii():
        raise NonAsciiAddress("non-ASCII recipient without SMTPUTF8")
    return RcptTo(address)


def parse_hello(arg: str) -> str:
    """The EHLO/HELO domain or address literal (RFC 5321 §4.1.1.1); lenient, as the name
    is only recorded in the Received: header."""
    name = arg.strip(" ")
    if not name or " " in name or len(name) > MAX_DOMAIN:
        raise CommandSyntaxError("EHLO needs one domain")
    return name


def canonical(address: str) -> str | None:
    """The directory's canonical form of a mailbox, or None if it has none (quoted local
    parts, address literals): such an address is never a local one."""
    try:
        return addr.normalize(address)
    except addr.InvalidAddress:
        return None
