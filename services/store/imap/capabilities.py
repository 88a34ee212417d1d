"""CAPABILITY (RFC 3501 §6.1.1, §7.2.1): what this server advertises, by state.

An extension is listed here only once it is complete and tested.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.store.imap.session import Session

# Extensions available in every state.
BASE = ("IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE")

# Extensions that only matter once logged in (RFC 3501 §7.2.1 lets the list change).
AFTER_LOGIN = (
    "NAMESPACE",  # RFC 2342
    "UNSELECT",  # RFC 3691
    "UIDPLUS",  # RFC 4315
    "MOVE",  # RFC 6851
    "CHILDREN",  # RFC 3348
    "SPECIAL-USE",  # RFC 6154
    "CREATE-SPECIAL-USE",  # RFC 6154 §3
    "LIST-EXTENDED",  # RFC 5258
    "LIST-STATUS",  # RFC 5819
    "ESEARCH",  # RFC 4731
    "CONDSTORE",  # RFC 7162
    "QRESYNC",  # RFC 7162
    "QUOTA",  # RFC 9208
    "QUOTA=RES-STORAGE",
    "QUOTA=RES-MESSAGE",
    "BINARY",  # RFC 3516
    "SEARCHRES",  # RFC 5182
    "STATUS=SIZE",  # RFC 8438
    "WITHIN",  # RFC 5032
    "OBJECTID",  # RFC 8474
    "PREVIEW",  # RFC 8970
    "SORT",  # RFC 5256
    "SORT=DISPLAY",  # RFC 5957
    "THREAD=ORDEREDSUBJECT",  # RFC 5256 §4
    "THREAD=REFERENCES",
    "ESORT",  # RFC 5267 §3
    "SAVEDATE",  # RFC 8514
    "MULTIAPPEND",  # RFC 3502
    "UTF8=ACCEPT",  # RFC 6855
    "COMPRESS=DEFLATE",  # RFC 4978
    "CATENATE",  # RFC 4469
    "URL-PARTIAL",  # RFC 5550 §5
    "NOTIFY",  # RFC 5465
    "PARTIAL",  # RFC 9394 (SEARCH, SORT and FETCH)
    "CONTEXT=SEARCH",  # RFC 5267 §4
    "CONTEXT=SORT",
)

# What ENABLE accepts (RFC 5161 §3.1), upper-cased, with the spelling ENABLED echoes.
ENABLEABLE = {
    "CONDSTORE": "CONDSTORE",
    "QRESYNC": "QRESYNC",
    "IMAP4REV2": "IMAP4rev2",
    "UTF8=ACCEPT": "UTF8=ACCEPT",  # RFC 6855 §3
}


def capabilities(s: Session) -> list[str]:
    caps = list(BASE)
    if s.user is None:
        if not s.conn.tls and s.rt.tls_context is not None:
            caps.append("STARTTLS")  # RFC 3501 §6.2.1
        if s.plaintext_ok:
            caps.append("AUTH=PLAIN")  # RFC 4616
        else:
            caps.append("LOGINDISABLED")  # RFC 3501 §6.2.3
    else:
        caps.extend(AFTER_LOGIN)
    caps.append(f"APPENDLIMIT={s.rt.max_message_size}")  # RFC 7889
    return caps
