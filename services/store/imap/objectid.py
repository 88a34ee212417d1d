"""OBJECTID (RFC 8474): the identifiers of mailboxes and messages as the wire shows them.

* MAILBOXID is ``M`` + the mailbox's UIDVALIDITY: the engine never gives two mailboxes of
  an account the same UIDVALIDITY (RFC 3501 §2.3.1.1), keeps it on RENAME and gives a
  re-created name a new one — exactly the lifetime RFC 8474 §4 asks of a MAILBOXID.
* EMAILID is ``E`` + the id of the stored file holding the message: COPY and MOVE share the
  file, so a copy keeps the EMAILID (§5.1); a file id is never reused for other content.
* THREADID is NIL: there are no threads yet (§5.2 allows NIL), and SEARCH THREADID matches
  nothing.
"""

from __future__ import annotations

import re

_EMAILID = re.compile(r"E([0-9]{1,18})")


def mailbox_id(uidvalidity: int) -> str:
    return f"M{uidvalidity}"


def email_id(file_id: int) -> str:
    return f"E{file_id}"


def file_of(emailid: str) -> int | None:
    """The file id an EMAILID names, or None when it names nothing here."""
    m = _EMAILID.fullmatch(emailid)
    return int(m.group(1)) if m else None
