"""Message flags: validation, canonical spelling, the stored form, STORE arithmetic.

System flags (RFC 3501 §2.3.2) are kept in their canonical spelling; keywords compare
case-insensitively and keep the spelling first stored. ``\\Recent`` is session state and
never stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mailcore.mailstore.errors import InvalidFlag
from mailcore.mailstore.model import DELETED, SEEN, SYSTEM_FLAGS, FlagOp

_SYSTEM = {f.lower(): f for f in SYSTEM_FLAGS}
# RFC 3501 §9: a flag keyword is an atom: no atom-specials, no "]" (resp-specials).
_BAD_KEYWORD = re.compile(r'[\x00-\x20\x7f-\uffff(){%*"\\\]]')
MAX_KEYWORD = 255
_decoded: dict[str, frozenset[str]] = {}


def normalize(flags: Iterable[str]) -> frozenset[str]:
    """The flags to store, or :class:`InvalidFlag`."""
    out: dict[str, str] = {}
    for flag in flags:
        low = flag.lower()
        if flag.startswith("\\"):
            canon = _SYSTEM.get(low)
            if canon is None:
                if low == "\\recent":
                    continue
                raise InvalidFlag(f"unknown system flag {flag!r}")
            out[low] = canon
        else:
            if not flag or len(flag) > MAX_KEYWORD or _BAD_KEYWORD.search(flag):
                raise InvalidFlag(f"invalid keyword {flag!r}")
            out.setdefault(low, flag)
    return frozenset(out.values())


def apply(op: FlagOp, current: frozenset[str], flags: frozenset[str]) -> frozenset[str]:
    """RFC 3501 §6.4.6: the flags after STORE (keywords case-insensitive)."""
    if op is FlagOp.REPLACE:
        return flags
    have = {f.lower(): f for f in current}
    if op is FlagOp.ADD:
        for f in flags:
            have.setdefault(f.lower(), f)
    else:
        for f in flags:
            have.pop(f.lower(), None)
    result = frozenset(have.values())
    return current if result == current else result


def encode(flags: frozenset[str]) -> str:
    return " ".join(sorted(flags))


def decode(text: str) -> frozenset[str]:
    """The stored form back to a set (shared instances: most messages share few sets)."""
    found = _decoded.get(text)
    if found is None:
        found = frozenset(text.split()) if text else frozenset()
        if len(_decoded) < 10_000:
            _decoded[text] = found
    return found


def has(flags: frozenset[str], name: str) -> bool:
    if name in flags:
        return True
    low = name.lower()
    return any(f.lower() == low for f in flags)


__all__ = ["DELETED", "SEEN", "apply", "decode", "encode", "has", "normalize"]
