"""Header fields the filter adds to a message, and the forged ones it takes away.

* ``Received:`` — RFC 5321 §4.4 trace information, with the ``with`` protocol names of
  RFC 3848 and RFC 6531 §3.7.3 (ESMTP, ESMTPS, ESMTPSA, UTF8SMTPS, …).
* ``Authentication-Results:`` — RFC 8601, with this node's host name as authserv-id.
  RFC 8601 §5: fields from outside that claim our authserv-id are removed, and so are
  incoming ``X-Spam-*`` and ``X-Postern-Unscanned`` fields, which would otherwise pass for
  our own screening results.

Everything is done on bytes, touching only the header block, and only when a cheap search
says there is something to remove: the hot path never parses the message.
"""

from __future__ import annotations

import datetime
import email.utils
import functools
import ipaddress
import re
import time

CRLF = b"\r\n"
_FOLD_AT = 76
_SAFE_TOKEN = re.compile(r"[^A-Za-z0-9.\-:\[\]_]")
# Incoming fields that would pass for ours (lower-case names, the colon included).
_SCREENING_FIELDS = (b"x-spam-", b"x-postern-unscanned:")


def protocol_name(*, esmtp: bool, tls: bool, authenticated: bool, smtputf8: bool) -> str:
    """RFC 3848 §2 and RFC 6531 §3.7.3 ``with`` keywords."""
    base = "UTF8SMTP" if smtputf8 else "ESMTP" if esmtp else "SMTP"
    if base == "SMTP":
        return base
    return base + ("S" if tls else "") + ("A" if authenticated else "")


def _token(text: str, limit: int = 100) -> str:
    cleaned = _SAFE_TOKEN.sub("?", text[:limit])
    return cleaned or "unknown"


def _ip_literal(ip: str) -> str:
    """RFC 5321 §4.1.3 address literal."""
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return "[unknown]"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped:
            return f"[{parsed.ipv4_mapped}]"
        return f"[IPv6:{parsed.compressed}]"
    return f"[{parsed}]"


@functools.lru_cache(maxsize=4)
def _date(second: int) -> str:
    """RFC 5322 §3.3 date-time, in UTC (formatted once per second)."""
    return email.utils.format_datetime(datetime.datetime.fromtimestamp(second, datetime.UTC))


def received(
    *,
    helo: str | None,
    ip: str,
    hostname: str,
    protocol: str,
    message_id: str,
    recipient: str | None,
    tls_version: str | None,
    when: float | None = None,
) -> tuple[str, str]:
    """RFC 5321 §4.4: ``from`` (HELO name, address), ``by``, ``with``, ``id``, ``for``, date."""
    tls = f" ({_token(tls_version, 20)})" if tls_version else ""
    parts = [
        f"from {_token(helo or 'unknown')} ({_ip_literal(ip)})",
        f"by {_token(hostname)} (Postern) with {protocol}{tls} id {message_id}",
    ]
    # Only a single recipient is named: more would tell each one about the others.
    if recipient is not None and recipient.isprintable() and ">" not in recipient:
        parts.append(f"for <{recipient}>")
    parts[-1] += ";"
    parts.append(_date(int(time.time() if when is None else when)))
    return "Received", "\r\n\t".join(parts)


def authentication_results(
    hostname: str, auth_user: str | None, checks: list[str] | None = None
) -> tuple[str, str]:
    """RFC 8601 §2.2: ``authserv-id; method=result property…`` per check, or ``; none``."""
    authserv = _token(hostname)
    results = list(checks or [])
    if auth_user is not None:
        # RFC 8601 §2.7.4 (auth), property smtp.auth (§2.3).
        results.insert(0, f"auth=pass smtp.auth={auth_user}")
    if not results:
        return "Authentication-Results", f"{authserv}; none"
    return "Authentication-Results", authserv + ";" + ";".join(f"\r\n\t{r}" for r in results)


def render(fields: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{name}: {value}\r\n".encode() for name, value in fields)


def header_end(message: bytes) -> int:
    """Index just past the header block's last CRLF (0: no header block)."""
    if message.startswith(CRLF):
        return 0
    end = message.find(b"\r\n\r\n")
    return len(message) if end < 0 else end + 2


def _fields(head: bytes) -> list[list[bytes]]:
    """The header block's fields, each as its lines (continuations included)."""
    lines = head.split(CRLF)
    if lines and lines[-1] == b"":
        lines.pop()
    fields: list[list[bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:  # RFC 5322 §2.2.3 folding
            fields[-1].append(line)
        else:
            fields.append([line])
    return fields


def strip_untrusted(message: bytes, authserv_id: str) -> bytes:
    """Remove forged screening and Authentication-Results fields from the header block."""
    end = header_end(message)
    kept = _kept_head(message[:end], authserv_id)
    return message if kept is None else kept + message[end:]


def stamp(fields: list[tuple[str, str]], message: bytes, authserv_id: str) -> bytes:
    """Our header fields on top of the client's message, forged fields taken out: the
    message is copied once, however large (no intermediate copies of it)."""
    end = header_end(message)
    kept = _kept_head(message[:end], authserv_id)
    if kept is None:
        return render(fields) + message
    return b"".join((render(fields), kept, memoryview(message)[end:]))


def _kept_head(head: bytes, authserv_id: str) -> bytes | None:
    """The header block without forged fields, or None when there are none to remove."""
    lowered = head.lower()
    ours = authserv_id.lower().encode()
    forged_ar = b"authentication-results:" in lowered and ours in lowered
    if not forged_ar and not any(name in lowered for name in _SCREENING_FIELDS):
        return None
    kept: list[bytes] = []
    for field in _fields(head):
        first = field[0].lower()
        if first.startswith(_SCREENING_FIELDS):
            continue
        if first.startswith(b"authentication-results:"):
            value = b" ".join(part.strip() for part in field).partition(b":")[2]
            if value.split(b";", 1)[0].strip() == ours:
                continue
        kept.extend(field)
    return b"".join(line + CRLF for line in kept)
