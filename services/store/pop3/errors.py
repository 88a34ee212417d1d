"""The one place where errors become POP3 replies.

Engine errors (``mailcore.mailstore``), login refusals (``services.store.auth``), maildrop
message-number errors and parser errors map to ``-ERR`` replies with RFC 2449 §8 / RFC 3206
response codes. Anything unexpected becomes ``-ERR [SYS/TEMP]`` with a fixed text: an
exception's own text never reaches the client.
"""

from __future__ import annotations

from mailcore.mailstore import errors as store_errors
from services.store.auth import AuthRefused, Refusal
from services.store.pop3 import replies
from services.store.pop3.maildrop import MessageMarkedDeleted, NoSuchMessageNumber
from services.store.pop3.parser import ErrorKind, ParseError
from services.store.pop3.replies import Reply

# RFC 3206 §4: [AUTH] for credentials and policy; one reply for an unknown user and a
# wrong password.
_REFUSALS: dict[Refusal, Reply] = {
    Refusal.FAILED: replies.AUTH_FAILED,
    Refusal.PLAINTEXT: replies.PLAINTEXT_REFUSED,
    Refusal.THROTTLED: replies.THROTTLED,
    Refusal.TOO_MANY_CONNECTIONS: replies.TOO_MANY_CONNECTIONS,
}

# Most specific first: the first class the exception is an instance of wins.
_BY_TYPE: list[tuple[type[BaseException], Reply]] = [
    (NoSuchMessageNumber, replies.NO_SUCH_MESSAGE),
    (MessageMarkedDeleted, replies.MESSAGE_DELETED),
    # expunged by another (IMAP) session after this POP3 session's snapshot
    (store_errors.NoSuchMessage, replies.MESSAGE_GONE),
    (store_errors.ReadOnlyReplica, replies.READ_ONLY_REPLICA),
    # RFC 3206 §5: SYS/TEMP — a temporary problem on the server's side
    (store_errors.StorageFull, replies.STORAGE_UNAVAILABLE),
    (store_errors.MailstoreError, replies.STORAGE_UNAVAILABLE),
    (OSError, replies.STORAGE_UNAVAILABLE),
]

_PARSE: dict[ErrorKind, Reply] = {
    ErrorKind.UNKNOWN: replies.UNKNOWN_COMMAND,
    ErrorKind.TOO_LONG: replies.LINE_TOO_LONG,
}


def reply_for(exc: BaseException) -> Reply:
    """The reply for an error a command ended with."""
    if isinstance(exc, AuthRefused):
        return _REFUSALS.get(exc.reason, replies.AUTH_FAILED)
    if isinstance(exc, ParseError):
        return reply_for_parse_error(exc)
    for cls, reply in _BY_TYPE:
        if isinstance(exc, cls):
            return reply
    return replies.INTERNAL_ERROR


def reply_for_parse_error(exc: ParseError) -> Reply:
    known = _PARSE.get(exc.kind)
    if known is not None:
        return known
    # the parser's messages are fixed texts (never client bytes)
    return replies.syntax_error(exc.message)
