"""Every POP3 reply the server sends, by name: the code and the tests use the same catalogue.

RFC 1939 §3: a reply is a status indicator (``+OK``/``-ERR``) and text; RFC 2449 §8 adds a
bracketed response code after ``-ERR`` (RESP-CODES: ``[IN-USE]``, ``[LOGIN-DELAY]``),
RFC 3206 adds ``[SYS/TEMP]``, ``[SYS/PERM]`` and ``[AUTH]`` (AUTH-RESP-CODE). RFC 2449 §4
caps a reply line at 512 octets including CRLF: the texts here are short and never echo
what the client sent.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_REPLY_LINE = 512  # RFC 2449 §4


@dataclass(frozen=True, slots=True)
class Reply:
    ok: bool
    text: str
    code: str | None = None

    @property
    def line(self) -> bytes:
        status = "+OK" if self.ok else "-ERR"
        code = f" [{self.code}]" if self.code else ""
        text = f" {self.text}" if self.text else ""
        return f"{status}{code}{text}\r\n".encode("ascii")


def ok(text: str = "") -> Reply:
    return Reply(True, text)


def err(text: str, code: str | None = None) -> Reply:
    return Reply(False, text, code)


# --- greeting, capabilities, goodbyes --------------------------------------------------
GREETING = ok("Postern POP3 server ready")
CAPA_FOLLOWS = ok("Capability list follows")
BYE = ok("Postern POP3 server signing off")
IDLE_TIMEOUT = err("Autologout: idle for too long")
SHUTTING_DOWN = err("Server shutting down", "SYS/TEMP")
TOO_MANY_BAD_COMMANDS = err("Too many bad commands, closing the connection")

# --- authorization state (RFC 1939 §4, §7; RFC 5034; RFC 2595) -------------------------
USER_ACCEPTED = ok("Send PASS")
PASS_WITHOUT_USER = err("Send USER first")
AUTH_FAILED = err("Authentication failed", "AUTH")
PLAINTEXT_REFUSED = err(
    "Plaintext authentication disallowed on non-secure connections; use STLS or POP3S",
    "AUTH",
)
THROTTLED = err("Too many failed logins; try again later", "AUTH")
TOO_MANY_CONNECTIONS = err("Too many connections for this user", "SYS/TEMP")
IN_USE = err("Maildrop is locked by another POP3 session", "IN-USE")
MAILDROP_UNAVAILABLE = err("Unable to open the maildrop; try again later", "SYS/TEMP")
ALREADY_AUTHENTICATED = err("Already logged in")
NOT_AUTHENTICATED = err("Log in first")
AUTH_MECHANISMS = ok("Mechanisms follow")
AUTH_UNSUPPORTED = err("Unsupported authentication mechanism")
AUTH_CANCELLED = err("Authentication cancelled")
AUTH_BAD_RESPONSE = err("Invalid authentication response")
AUTH_AUTHZID_REFUSED = err("Authorization identity refused", "AUTH")
SASL_CONTINUE = b"+ \r\n"  # RFC 5034 §4: an empty server challenge
STLS_BEGIN = ok("Begin TLS negotiation")
STLS_ACTIVE = err("TLS is already active")
STLS_UNAVAILABLE = err("TLS is not available")

# --- transaction state (RFC 1939 §5) ----------------------------------------------------
NO_SUCH_MESSAGE = err("No such message")
MESSAGE_DELETED = err("Message is deleted")
MESSAGE_GONE = err("Message was removed by another session")
TOP_FOLLOWS = ok("Top of message follows")
LISTING_FOLLOWS = ok("Scan listing follows")
UIDL_FOLLOWS = ok("Unique-id listing follows")
DELETED = ok("Message deleted")
NOOP = ok()
INTERNAL_ERROR = err("Internal server error; try again later", "SYS/TEMP")
STORAGE_UNAVAILABLE = err("Mail storage temporarily unavailable", "SYS/TEMP")
# RFC 3206 §4 SYS/PERM: a mirror's read-only follower never removes a message
READ_ONLY_REPLICA = err(
    "This server is a read-only replica: delete messages on the master server", "SYS/PERM"
)

# --- update state (RFC 1939 §6) ----------------------------------------------------------
UPDATE_FAILED = err("Some deleted messages were not removed", "SYS/TEMP")

# --- protocol errors -------------------------------------------------------------------
UNKNOWN_COMMAND = err("Unknown command")
LINE_TOO_LONG = err("Line too long")
WRONG_STATE = err("Command not valid in this state")


def syntax_error(message: str) -> Reply:
    """``message`` comes from the parser's fixed texts, never from client bytes."""
    return err(message)


def logged_in(messages: int, octets: int) -> Reply:
    return ok(f"Logged in: {messages} messages ({octets} octets)")


def stat(messages: int, octets: int) -> Reply:
    # RFC 1939 §5 STAT: "+OK nn mm"
    return ok(f"{messages} {octets}")


def scan_line(msg: int, octets: int) -> bytes:
    # RFC 1939 §5 LIST: "msg octets"; the same text follows +OK for a single message.
    return b"%d %d\r\n" % (msg, octets)


def uidl_line(msg: int, uid: str) -> bytes:
    # RFC 1939 §7 UIDL: "msg unique-id"
    return f"{msg} {uid}\r\n".encode("ascii")


def retr_follows(octets: int) -> Reply:
    return ok(f"{octets} octets")


def maildrop_reset(messages: int, octets: int) -> Reply:
    return ok(f"Maildrop has {messages} messages ({octets} octets)")


def signed_off(deleted: int) -> Reply:
    return ok(f"Postern POP3 server signing off ({deleted} messages deleted)")


END_OF_LIST = b".\r\n"  # RFC 1939 §3: a multi-line response ends with CRLF.CRLF
