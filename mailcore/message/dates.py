"""RFC 5322 §3.3 date-time (with the obsolete forms of §4.3), parsed leniently."""

from __future__ import annotations

import calendar
import re

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
# RFC 5322 §4.3 obs-zone: named US zones, in minutes east of UTC.
_ZONES = {
    "ut": 0, "utc": 0, "gmt": 0, "z": 0,
    "edt": -240, "est": -300, "cdt": -300, "cst": -360,
    "mdt": -360, "mst": -420, "pdt": -420, "pst": -480,
}  # fmt: skip
MAX_DATE_TEXT = 256
# The day name may only start a run of letters: without the look-behind, a search tried
# it at every letter of a long word, each try reading to the word's end (quadratic).
_DATE = re.compile(
    r"(?:(?<![A-Za-z])[A-Za-z]+\s*,\s*)?(\d{1,2})\s+([A-Za-z]{3})[A-Za-z]*\.?\s+(\d{2,4})"
    r"(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?\s*([+-]\d{4}|[A-Za-z]+)?"
)


def parse_date(value: str | None) -> tuple[float, int] | None:
    """``(epoch seconds, yyyymmdd as written)`` or None when unreadable.

    The day is the date as written in the header, disregarding time and zone, which is
    what RFC 3501 §6.4.4 SENTBEFORE/SENTON/SENTSINCE compare.
    """
    if not value:
        return None
    # A date-time is some 31 characters (comments aside): the rest of a long value is
    # not looked at, whatever it holds.
    m = _DATE.search(value, 0, MAX_DATE_TEXT)
    if m is None:
        return None
    day, mon, year = int(m.group(1)), _MONTHS.get(m.group(2).lower()), int(m.group(3))
    if mon is None or not 1 <= day <= 31:
        return None
    if len(m.group(3)) == 2:  # RFC 5322 §4.3: 00-49 is 2000-2049, 50-99 is 1950-1999
        year += 2000 if year < 50 else 1900
    elif len(m.group(3)) == 3:
        year += 1900
    hour = int(m.group(4) or 0)
    minute = int(m.group(5) or 0)
    second = int(m.group(6) or 0)
    zone = m.group(7)
    offset = 0
    if zone:
        if zone[0] in "+-":
            offset = int(zone[1:3]) * 60 + int(zone[3:5])
            if zone[0] == "-":
                offset = -offset
        else:
            offset = _ZONES.get(zone.lower(), 0)
    try:
        epoch = calendar.timegm((year, mon, day, hour, minute, min(second, 59), 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    return float(epoch - offset * 60), year * 10000 + mon * 100 + day
