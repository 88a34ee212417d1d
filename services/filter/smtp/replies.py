"""Every SMTP reply the filter sends, by name, and the one mapping from domain errors to
replies (tests use the same names, as aiosmtpd's own tests do).

RFC 2034 §3: with ENHANCEDSTATUSCODES every reply except the greeting and the replies to
HELO/EHLO carries an enhanced status code (RFC 3463). Reply text never includes exception
text or anything else from inside the filter.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.filter import errors
from services.filter.smtp import framing


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    status: str  # enhanced status code (RFC 3463), "" where none is sent
    text: str

    @property
    def line(self) -> bytes:
        """The reply as sent, CRLF included."""
        if self.status:
            return f"{self.code} {self.status} {self.text}\r\n".encode()
        return f"{self.code} {self.text}\r\n".encode()

    def with_text(self, text: str) -> Reply:
        return Reply(self.code, self.status, text)

    @property
    def positive(self) -> bool:
        return self.code < 400

    @property
    def closes(self) -> bool:
        """421 closes the transmission channel (RFC 5321 §3.8)."""
        return self.code == 421

    def __str__(self) -> str:
        return self.line.decode().rstrip("\r\n")


def multiline(code: int, lines: list[str]) -> bytes:
    """RFC 5321 §4.2.1: ``code-text`` for every line but the last, ``code text`` last."""
    out = [f"{code}-{text}\r\n" for text in lines[:-1]]
    out.append(f"{code} {lines[-1]}\r\n")
    return "".join(out).encode()


# --- 2xx / 3xx -------------------------------------------------------------------------
GREETING = Reply(220, "", "{host} ESMTP Postern")
BYE = Reply(221, "2.0.0", "Bye")
OK = Reply(250, "2.0.0", "Ok")
SENDER_OK = Reply(250, "2.1.0", "Sender ok")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient ok")
QUEUED = Reply(250, "2.0.0", "Ok: queued as {id}")
HELP = Reply(214, "2.0.0", "See RFC 5321; commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT")
VRFY = Reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
# STARTTLS's "220 Ready to start TLS" is sent by aiosmtpd's smtp_STARTTLS itself.

# --- 421: the session ends --------------------------------------------------------------
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down; try again later")
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections from your address")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors; closing connection")
TIMEOUT = Reply(421, "4.4.2", "Timeout; closing connection")
AUTH_THROTTLED = Reply(421, "4.7.0", "Too many failed logins from your address; try later")
PROXY_REFUSED = Reply(421, "4.7.0", "PROXY protocol header missing or not trusted")

# --- other 4xx: try again later ---------------------------------------------------------
INTERNAL = Reply(451, "4.3.0", "Internal error; try again later")
BUS_UNAVAILABLE = Reply(451, "4.3.0", "Temporary failure queuing the message; try again later")
SCANNER_UNAVAILABLE = Reply(451, "4.7.1", "Content scanning unavailable; try again later")
STORAGE_FULL = Reply(452, "4.3.1", "Insufficient system storage; try again later")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available")
# RFC 4954 §6: the password could not be checked now (no store answered)
AUTH_TEMPORARY = Reply(454, "4.7.0", "Temporary authentication failure; try again later")

# --- 5xx: syntax and sequence ------------------------------------------------------------
UNKNOWN_COMMAND = Reply(500, "5.5.1", "Command unrecognized")
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")
BARE_LINE_ENDING = Reply(500, "5.5.2", "Bare CR or LF in command; end lines with CRLF")
SYNTAX = Reply(501, "5.5.2", "Syntax error")
SYNTAX_HELO = Reply(501, "5.5.2", "Syntax: EHLO hostname")
SYNTAX_MAIL = Reply(501, "5.5.2", "Syntax: MAIL FROM:<address> [parameters]")
SYNTAX_RCPT = Reply(501, "5.5.2", "Syntax: RCPT TO:<address>")
SYNTAX_NO_ARGS = Reply(501, "5.5.4", "No parameters allowed")
BAD_UTF8 = Reply(501, "5.5.2", "Invalid UTF-8 in command")
NOT_IMPLEMENTED = Reply(502, "5.5.1", "Command not implemented")
NEED_HELO = Reply(503, "5.5.1", "Send EHLO first")
NEED_MAIL = Reply(503, "5.5.1", "Need MAIL before RCPT")
NEED_RCPT = Reply(503, "5.5.1", "Need RCPT before DATA")
NESTED_MAIL = Reply(503, "5.5.1", "Nested MAIL command")
ALREADY_AUTHENTICATED = Reply(503, "5.5.1", "Already authenticated")
AUTH_IN_TRANSACTION = Reply(503, "5.5.1", "AUTH not allowed during a mail transaction")
ALREADY_TLS = Reply(503, "5.5.1", "TLS already active")
AUTH_UNKNOWN_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication mechanism")
PARAM_UNSUPPORTED = Reply(555, "5.5.4", "Unsupported MAIL/RCPT parameter")
BODY_UNSUPPORTED = Reply(501, "5.5.4", "BODY must be 7BIT or 8BITMIME")
AUTH_CANCELLED = Reply(501, "5.7.0", "Authentication cancelled")
AUTH_BAD_RESPONSE = Reply(501, "5.5.2", "Cannot decode authentication response")

# --- 5xx: policy and content -------------------------------------------------------------
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
STARTTLS_REQUIRED = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_ENCRYPTION_REQUIRED = Reply(
    538, "5.7.11", "Encryption required for requested authentication mechanism"
)
UNKNOWN_USER = Reply(550, "5.1.1", "Recipient address rejected: user unknown")
SPAM = Reply(550, "5.7.1", "Message rejected as spam")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed limit")
BAD_RECIPIENT_ADDRESS = Reply(553, "5.1.3", "Malformed recipient address")
BAD_SENDER_ADDRESS = Reply(553, "5.1.7", "Malformed sender address")
NON_ASCII_ADDRESS = Reply(553, "5.6.7", "Non-ASCII address needs SMTPUTF8")
SENDER_NOT_OWNED = Reply(553, "5.7.1", "Sender address not owned by the authenticated user")
RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
VIRUS = Reply(554, "5.7.1", "Message rejected: virus found")
BARE_LINE_ENDING_DATA = Reply(
    554, "5.6.0", "Message refused: bare CR or LF in message (RFC 5321 2.3.8)"
)
DATA_LINE_TOO_LONG = Reply(
    554, "5.6.0", "Message refused: line longer than 998 characters (RFC 5322 2.1.1)"
)


_FOR_ERROR: dict[type[errors.FilterError], Reply] = {
    errors.RelayDenied: RELAY_DENIED,
    errors.UnknownRecipient: UNKNOWN_USER,
    errors.SenderNotOwned: SENDER_NOT_OWNED,
    errors.TooManyRecipients: TOO_MANY_RECIPIENTS,
    errors.AuthRequired: AUTH_REQUIRED,
    errors.TlsRequired: STARTTLS_REQUIRED,
    errors.VirusFound: VIRUS,
    errors.SpamRejected: SPAM,
    errors.ScannerUnavailable: SCANNER_UNAVAILABLE,
    errors.BusUnavailable: BUS_UNAVAILABLE,
    errors.StorageFull: STORAGE_FULL,
}

_FOR_DATA_PROBLEM: dict[framing.DataProblem, Reply] = {
    framing.DataProblem.BARE_LINE_ENDING: BARE_LINE_ENDING_DATA,
    framing.DataProblem.LINE_TOO_LONG: DATA_LINE_TOO_LONG,
    framing.DataProblem.TOO_BIG: MESSAGE_TOO_BIG,
}


def for_error(error: errors.FilterError) -> Reply:
    """The one reply for a domain error; an unmapped error is an internal failure (451)."""
    reply = _FOR_ERROR.get(type(error), INTERNAL)
    if isinstance(error, errors.VirusFound):
        return reply.with_text(f"Message rejected: virus found ({_printable(error.signature)})")
    return reply


def for_data_problem(problem: framing.DataProblem) -> Reply:
    return _FOR_DATA_PROBLEM[problem]


def _printable(text: str) -> str:
    return "".join(c if 32 < ord(c) < 127 else "?" for c in text)[:100]
