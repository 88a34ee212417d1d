"""LIST/LSUB mailbox patterns (RFC 3501 §6.3.8) without regular expressions.

``*`` matches any run of characters, ``%`` any run without the hierarchy delimiter. A
pattern is compiled into a bit-parallel automaton (shift-and): bit ``i`` of the state says
"the first ``i`` pattern items match the name read so far". Each name character costs a
handful of integer operations over the state, so a match takes
O(len(name) × ⌈len(pattern) / 64⌉) machine-word steps and never backtracks: ``*a*a*a*a*a*a``
against a 200-character name is as quick as ``*``. (The regex translation this replaces
backtracked exponentially in the number of ``*``.)

Runs of wildcards are collapsed first (``**`` is ``*``; a run holding a ``*`` is ``*``),
and a pattern with more literal characters than a name is long cannot match it, which
bounds the work on any name by the name's own length.
"""

from __future__ import annotations

SEP = "/"


class Pattern:
    """One compiled pattern; :meth:`match` tells whether a whole name matches."""

    __slots__ = (
        "_accept",
        "_literal",
        "_literals",
        "_masks",
        "_pct",
        "_sep",
        "_star",
        "_start",
        "_wild",
    )

    def __init__(self, pattern: str, sep: str = SEP) -> None:
        items: list[str] = []  # one character each; "*" and "%" are wildcards
        for ch in pattern:
            if ch in "*%" and items and items[-1] in "*%":
                if ch == "*":
                    items[-1] = "*"  # "%*", "*%", "**": all mean "*"
                continue
            items.append(ch)
        self._literal: str | None = None if ("*" in items or "%" in items) else pattern
        masks: dict[str, int] = {}
        star = pct = wild = 0
        for i, ch in enumerate(items):
            if ch == "*":
                star |= 1 << (i + 1)  # the state after a "*" survives any character
                wild |= 1 << i
            elif ch == "%":
                pct |= 1 << (i + 1)  # … after a "%", any character but the delimiter
                wild |= 1 << i
            else:
                masks[ch] = masks.get(ch, 0) | (1 << i)
        self._masks = masks
        self._star = star
        self._pct = pct
        self._wild = wild
        self._literals = sum(1 for ch in items if ch not in "*%")
        self._accept = 1 << len(items)
        # a wildcard also matches nothing: the state before it implies the state after
        self._start = 1 | ((1 & wild) << 1)
        self._sep = sep

    def match(self, name: str) -> bool:
        if self._literal is not None:
            return name == self._literal
        if self._literals > len(name):
            return False  # every literal item consumes one character
        masks, star, pct, wild, sep = self._masks, self._star, self._pct, self._wild, self._sep
        state = self._start
        for ch in name:
            moved = (state & masks.get(ch, 0)) << 1
            moved |= state & star
            if ch != sep:
                moved |= state & pct
            state = moved | ((moved & wild) << 1)
            if not state:
                return False
        return bool(state & self._accept)


def compile_pattern(reference: str, pattern: str) -> Pattern:
    """RFC 3501 §6.3.8: the reference is prefixed to the pattern; INBOX (as the first
    level) matches case-insensitively, since names store it as ``INBOX``."""
    full = reference + pattern
    if full[:5].upper() == "INBOX" and (len(full) == 5 or full[5] in "/*%"):
        full = "INBOX" + full[5:]
    return Pattern(full)


__all__ = ["SEP", "Pattern", "compile_pattern"]
