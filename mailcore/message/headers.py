"""Header fields: splitting and unfolding, MIME parameters, and address lists.

Lenient like every MUA: garbage yields a best-effort value, never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailcore.message.encoded import decode_2231

# RFC 5322 §2.2.3: a field body continues on lines that start with WSP (folding).
_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*(?:\n[ \t].*)*)", re.MULTILINE)
_UNFOLD = re.compile(r"\r?\n(?=[ \t])|\r$")


@dataclass(slots=True)
class Address:
    """RFC 3501 §7.4.2 address structure, as data.

    A group start has ``mailbox`` = group name and ``host`` None; a group end has both None.
    """

    name: str | None
    adl: str | None
    mailbox: str | None
    host: str | None


def split_fields(block: bytes, wanted: frozenset[str] | None = None) -> list[tuple[str, str]]:
    """``(lower-case name, unfolded value)`` for the fields of a header block, in order
    (only those named in ``wanted`` when given).

    Values have surrounding white space stripped and are decoded as UTF-8 (RFC 6532),
    with undecodable octets replaced.
    """
    fields: list[tuple[str, str]] = []
    for raw_name, raw_value in _FIELD.findall(block):
        key = raw_name.lower().decode("ascii", "replace")
        if wanted is not None and key not in wanted:
            continue
        text = raw_value.decode("utf-8", "replace")
        if "\n" in text:
            text = _UNFOLD.sub("", text)
        fields.append((key, text.strip()))
    return fields


def first(fields: list[tuple[str, str]], name: str) -> str | None:
    for key, value in fields:
        if key == name:
            return value
    return None


# --- MIME parameters (RFC 2045 §5.1, RFC 2231) ------------------------------------------
def _split_params(value: str) -> list[str]:
    """Split on ";" outside quoted strings."""
    if '"' not in value:
        return value.split(";")
    out: list[str] = []
    cur: list[str] = []
    quoted = escaped = False
    for ch in value:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            cur.append(ch)
            escaped = True
        elif ch == '"':
            quoted = not quoted
            cur.append(ch)
        elif ch == ";" and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_params(parts: list[str]) -> list[tuple[str, str]]:
    """Parameters in order, names lower-case, RFC 2231 continuations and charsets decoded."""
    plain: list[tuple[str, str]] = []
    # RFC 2231 §3: name*0, name*1 ... are one value; name*0* marks an encoded segment.
    continued: dict[str, dict[int, tuple[str, bool]]] = {}
    order: dict[str, None] = {}  # first appearance of each name (a dict: O(1) look-ups)
    for part in parts:
        name, eq, value = part.partition("=")
        name = name.strip().lower()
        if not eq or not name:
            continue
        extended = name.endswith("*")
        if extended:
            name = name[:-1]
        base, star, index = name.partition("*")
        if star and index.isdigit():
            if base not in continued:
                continued[base] = {}
                order.setdefault(base)
            continued[base][int(index)] = (value.strip(), extended)
            continue
        text = _unquote(value)
        if extended:
            text = decode_2231(text, extended=True)
        order.setdefault(name)
        plain.append((name, text))
    if not continued:
        return plain
    values = dict(plain)
    for base, segments in continued.items():
        any_ext = any(ext for _, ext in segments.values())
        joined: list[str] = []
        charset_prefix = ""
        for i in sorted(segments):
            raw, ext = segments[i]
            if ext:
                if i == 0 and raw.count("'") >= 2:
                    charset, lang, rest = raw.split("'", 2)
                    charset_prefix = f"{charset}'{lang}'"
                    raw = rest
                joined.append(raw)
            else:
                # Quote plain segments' %-signs so one decode pass treats them literally.
                text = _unquote(raw)
                joined.append(text.replace("%", "%25") if any_ext else text)
        value = "".join(joined)
        if any_ext:
            value = decode_2231(charset_prefix + value, extended=True)
        values.setdefault(base, value)
    return [(name, values[name]) for name in order if name in values]


# The common case: type/subtype with at most one simple parameter. No two neighbouring
# parts can match the same text (every white-space run belongs to exactly one "\s*"), so a
# failing match backtracks at most once per character: linear time on any input.
_SIMPLE_CTYPE = re.compile(
    r'\s*([\w.+-]+)/([\w.+-]+)\s*(?:;\s*([\w-]+)=(?:"([^"\\]*)"|([^\s";*]+))\s*)?(?:;\s*)?'
)
# Values longer than this skip the regex fast paths (a real one is far shorter); the
# general parsers below are linear too, this only bounds the work spent on a miss.
FAST_PATH_MAX = 1000


def parse_content_type(value: str | None) -> tuple[str, str, list[tuple[str, str]]] | None:
    """``(type, subtype, params)`` lower-cased, or None when absent or malformed."""
    if not value:
        return None
    m = _SIMPLE_CTYPE.fullmatch(value) if len(value) <= FAST_PATH_MAX else None
    if m is not None:
        value4 = m.group(4) if m.group(4) is not None else m.group(5)
        params = [(m.group(3).lower(), value4)] if m.group(3) else []
        return m.group(1).lower(), m.group(2).lower(), params
    parts = _split_params(value)
    mtype, slash, subtype = parts[0].partition("/")
    mtype, subtype = mtype.strip().lower(), subtype.strip().lower()
    if not slash or not mtype or not subtype or " " in mtype or " " in subtype:
        return None
    return mtype, subtype, parse_params(parts[1:])


def parse_disposition(value: str | None) -> tuple[str, list[tuple[str, str]]] | None:
    """RFC 2183 Content-Disposition: ``(type, params)``."""
    if not value:
        return None
    parts = _split_params(value)
    kind = parts[0].strip().lower()
    if not kind:
        return None
    return kind, parse_params(parts[1:])


# --- address lists (RFC 5322 §3.4) --------------------------------------------------------
Token = tuple[str, str]  # (kind, text): a atom, q quoted, d domain literal, s special, c comment
# RFC 5322 §3.2: quoted-string, domain literal, specials, comment (one nesting level is
# enough in practice), atom (any run of other printable characters).
_TOKEN = re.compile(
    r'"((?:[^"\\]|\\.)*)"?|(\[[^\]]*\]?)|([<>@,;:.])|\(((?:[^()\\]|\\.|\([^()]*\))*)\)?'
    r'|([^\s<>@,;:."()\[\]\\]+)'
)
_QUOTED_PAIR = re.compile(r"\\(.)")
# The common case, one plain mailbox: "Name" <local@host>, Name <local@host>, local@host.
# The display name is words separated by white space (a word never holds white space), so
# it cannot overlap the "\s*" around it: linear time on any input. (A lazy "[^…]*?" that
# also took white space made a folded header quadratic, cubic with the outer "\s*".)
_WORD = r'[^"<>@,;:()\[\]\\\s]+'
_SPEC = r'[^<>@\s,;:"()\[\]\\]+'
_SIMPLE = re.compile(
    rf'\s*(?:"([^"\\]*)"\s*|({_WORD}(?:\s+{_WORD})*)?\s*)<({_SPEC})@({_SPEC})>\s*'
    rf"|\s*({_SPEC})@({_SPEC})\s*"
)


def _tokens(value: str) -> list[Token]:
    out: list[Token] = []
    for m in _TOKEN.finditer(value):
        quoted, literal, special, comment, atom = m.group(1, 2, 3, 4, 5)
        if atom is not None:
            out.append(("a", atom))
        elif special is not None:
            out.append(("s", special))
        elif quoted is not None:
            out.append(("q", _QUOTED_PAIR.sub(r"\1", quoted) if "\\" in quoted else quoted))
        elif literal is not None:
            out.append(("d", literal))
        elif comment is not None:
            text = _QUOTED_PAIR.sub(r"\1", comment) if "\\" in comment else comment
            out.append(("c", " ".join(text.split())))
    return out


def _phrase(tokens: list[Token]) -> str | None:
    words: list[str] = []
    for kind, text in tokens:
        if kind == "s" and text == "." and words:
            words[-1] += "."  # obs-phrase: "John Q. Public"
        elif kind in ("a", "q"):
            words.append(text)
    return " ".join(words).strip() or None


def _joined(tokens: list[Token]) -> str:
    return "".join(t for kind, t in tokens if kind != "c")


class _AddressParser:
    def __init__(self, value: str) -> None:
        self.toks = _tokens(value)
        self.pos = 0

    def peek(self) -> Token | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def parse_list(self) -> list[Address]:
        out: list[Address] = []
        while self.pos < len(self.toks):
            tok = self.peek()
            if tok in (("s", ","), ("s", ";")):
                self.pos += 1
                continue
            self.parse_one(out, in_group=False)
        return out

    def parse_one(self, out: list[Address], *, in_group: bool) -> None:
        start = self.pos
        while self.pos < len(self.toks):
            kind, text = self.toks[self.pos]
            if kind == "s" and text in "<:@,;":
                break
            self.pos += 1
        words = self.toks[start : self.pos]
        tok = self.peek()
        if tok == ("s", ":") and not in_group:
            # RFC 5322 §3.4 group: display-name ":" [group-list] ";"
            self.pos += 1
            out.append(Address(None, None, _phrase(words) or "", None))
            while self.pos < len(self.toks) and self.peek() != ("s", ";"):
                if self.peek() == ("s", ","):
                    self.pos += 1
                    continue
                self.parse_one(out, in_group=True)
            self.pos += 1
            out.append(Address(None, None, None, None))
        elif tok == ("s", "<"):
            self.pos += 1
            out.append(self.angle(_phrase(words)))
        elif tok == ("s", "@"):
            self.pos += 1
            host, comment = self.domain()
            # an addr-spec without a phrase: its trailing comment, "user@host (Real Name)",
            # is the display name (RFC 5322 §3.4 obs / common practice; ENVELOPE, SEARCH)
            out.append(Address(comment, None, _joined(words), host))
        elif any(kind != "c" for kind, _ in words):
            # A bare local part (no "@"): keep it, host empty.
            out.append(Address(None, None, _joined(words), ""))
        elif tok is not None:
            self.pos += 1  # stray special (comments alone are skipped)

    def domain(self) -> tuple[str, str | None]:
        """The domain of an addr-spec, and the first non-empty comment after it."""
        start = self.pos
        comment: str | None = None
        while self.pos < len(self.toks):
            kind, text = self.toks[self.pos]
            if kind == "s" and text in ",;<>":
                break
            if kind == "c" and text and comment is None:
                comment = text
            self.pos += 1
        return _joined(self.toks[start : self.pos]), comment

    def angle(self, name: str | None) -> Address:
        adl: str | None = None
        # RFC 5322 §4.4 obs-route: "<@a,@b:user@host>"
        if self.peek() == ("s", "@"):
            start = self.pos
            while self.pos < len(self.toks) and self.peek() not in (("s", ":"), ("s", ">")):
                self.pos += 1
            adl = _joined(self.toks[start : self.pos]) or None
            if self.peek() == ("s", ":"):
                self.pos += 1
        start = self.pos
        while self.pos < len(self.toks) and self.peek() not in (("s", "@"), ("s", ">")):
            self.pos += 1
        local = _joined(self.toks[start : self.pos])
        host = ""
        if self.peek() == ("s", "@"):
            self.pos += 1
            start = self.pos
            while self.pos < len(self.toks) and self.peek() != ("s", ">"):
                self.pos += 1
            host = _joined(self.toks[start : self.pos])
        if self.peek() == ("s", ">"):
            self.pos += 1
        return Address(name, adl, local or None, host)


def parse_addresses(value: str | None) -> list[Address]:
    """Every address of an address-list header, groups as start/end markers."""
    if not value:
        return []
    m = _SIMPLE.fullmatch(value) if len(value) <= FAST_PATH_MAX else None
    if m is not None:
        if m.group(3) is not None:
            name = m.group(1) if m.group(1) is not None else " ".join((m.group(2) or "").split())
            return [Address(name or None, None, m.group(3), m.group(4))]
        return [Address(None, None, m.group(5), m.group(6))]
    return _AddressParser(value).parse_list()


def address_text(addresses: list[Address]) -> str:
    """Plain text of an address list, for search (names as given, ``mailbox@host``)."""
    parts: list[str] = []
    for a in addresses:
        if a.mailbox is None:
            continue
        if a.host is None:
            parts.append(a.mailbox + ":")
            continue
        spec = f"{a.mailbox}@{a.host}" if a.host else a.mailbox
        parts.append(f"{a.name} <{spec}>" if a.name else spec)
    return ", ".join(parts)
