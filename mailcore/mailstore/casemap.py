"""The ``i;unicode-casemap`` collation (RFC 5051), which SORT and THREAD use for strings.

RFC 5256 §1 (and §7): a server offering SORT or THREAD collates strings as I18NLEVEL=1
requires (RFC 5255 §4.5), whose default comparator is ``i;unicode-casemap``. RFC 5051 §2:
each character is replaced by its simple titlecase mapping (UnicodeData.txt), then by its
full canonical decomposition; the results are compared as octets (``i;octet``), which
SQLite's BINARY collation does on UTF-8 (code point order). So ``Ä``, ``ä`` and ``A`` +
COMBINING DIAERESIS are one key, sorted next to ``A``; ``ß`` has no simple titlecase (its
full one, ``Ss``, is not used), so it stays ``ß``. Hangul syllables keep their code point
(UnicodeData.txt gives them no decomposition mapping: theirs is algorithmic).

For ASCII text the mapping is the ``i;ascii-casemap`` one (a-z upper-cased), so keys
stored before this collation differ only where they held other characters; and mapping
an ``i;ascii-casemap`` key again gives the same as mapping the original text (the a-z
it changed titlecase to themselves), which the index upgrade relies on
(mailcore.mailstore.migrate, 5 → 6).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

_HANGUL_SYLLABLES = range(0xAC00, 0xD7A4)


@lru_cache(maxsize=8192)
def _char(c: str) -> str:
    title = c.title()
    # str.title() gives the full titlecase mapping (SpecialCasing.txt); where that is
    # more than one character the simple mapping of UnicodeData.txt is none
    t = title if len(title) == 1 else c
    if ord(t) in _HANGUL_SYLLABLES:
        return t
    return unicodedata.normalize("NFD", t)


def casemap(text: str) -> str:
    """``text`` in the form ``i;unicode-casemap`` compares as octets (RFC 5051 §2)."""
    if text.isascii():
        return text.upper()
    return "".join(map(_char, text))


__all__ = ["casemap"]
