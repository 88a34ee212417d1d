"""Mailbox names: validation and the canonical form. Names are data (rows in the index),
never paths, so a name like ``../../etc`` is just text; what is refused here is what no
client could use sensibly or the wire cannot carry.
"""

from __future__ import annotations

from mailcore.mailstore.errors import InvalidMailboxName

SEP = "/"  # the hierarchy separator (RFC 3501 §5.1.1)
INBOX = "INBOX"
MAX_NAME_BYTES = 1000
MAX_PART_BYTES = 255
MAX_DEPTH = 32
# RFC 3501 §5.1: "%" and "*" are LIST wildcards and cannot be part of a name a client can
# list unambiguously; control characters cannot travel in quoted strings.
_FORBIDDEN = frozenset("*%") | frozenset(chr(c) for c in (*range(32), *range(127, 160)))


def canonical(name: str) -> str:
    """The stored form of a mailbox name, or :class:`InvalidMailboxName`.

    RFC 3501 §5.1: INBOX is case-insensitive; its children are spelled ``INBOX/...`` too.
    """
    if not isinstance(name, str) or not name:
        raise InvalidMailboxName("empty mailbox name")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMailboxName("mailbox name is not valid Unicode") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise InvalidMailboxName(f"mailbox name longer than {MAX_NAME_BYTES} bytes")
    if not _FORBIDDEN.isdisjoint(name):
        raise InvalidMailboxName("mailbox name holds a control character, '*' or '%'")
    parts = name.split(SEP)
    if len(parts) > MAX_DEPTH:
        raise InvalidMailboxName(f"mailbox hierarchy deeper than {MAX_DEPTH}")
    for part in parts:
        if not part or not part.strip():
            raise InvalidMailboxName("mailbox name has an empty level")
        if len(part.encode("utf-8")) > MAX_PART_BYTES:
            raise InvalidMailboxName(f"one level of the name is longer than {MAX_PART_BYTES} bytes")
    if parts[0].upper() == INBOX:
        parts[0] = INBOX
    return SEP.join(parts)


def parents(name: str) -> list[str]:
    """Every ancestor of a canonical name, outermost first."""
    parts = name.split(SEP)
    return [SEP.join(parts[:i]) for i in range(1, len(parts))]


def is_inbox(name: str) -> bool:
    return name == INBOX
