"""Domain errors of the storage engine. Each protocol maps them to wire replies in one
module (IMAP: NO [TRYCREATE], NO [OVERQUOTA], …); messages are fit for a log line, not
meant to be sent to clients verbatim."""

from __future__ import annotations


class MailstoreError(Exception):
    """Base of every engine refusal."""

    temporary = False


class InvalidAccountId(MailstoreError):
    """An account id that is not a safe lower-case token (never becomes a path)."""


class NoSuchMailbox(MailstoreError):
    pass


class MailboxExists(MailstoreError):
    pass


class InvalidMailboxName(MailstoreError):
    pass


class MailboxNotAllowed(MailstoreError):
    """The operation is not allowed on this mailbox (deleting INBOX, renaming into itself)."""


class QuotaExceeded(MailstoreError):
    """RFC 9208 §4.3: the account's byte or message limit would be passed."""


class MessageTooLarge(MailstoreError):
    pass


class NoSuchMessage(MailstoreError):
    pass


class StorageFull(MailstoreError):
    """The disk is full (ENOSPC/EDQUOT): temporary, retry later; nothing was committed."""

    temporary = True


class StoreClosed(MailstoreError):
    """The store was closed while the operation waited."""

    temporary = True


class ReadOnlyReplica(MailstoreError):
    """A user's change on a store opened read-only (a mirror's follower: its mail comes
    from the store it follows, and a change made here would never reach that one)."""


class StoreLocked(MailstoreError):
    """Another process holds this store's directory open."""


class InvalidFlag(MailstoreError):
    """A flag that cannot be stored (unknown ``\\``-flag, spaces, controls, brackets)."""


class ChangeLogTruncated(MailstoreError):
    """``changes_since`` asked for changes no longer kept: take a fresh snapshot."""


class SearchStopped(MailstoreError):
    """A search that reads message files was stopped before its end: the caller
    cancelled it (its client went away, its time ran out). Never raised to a caller that
    did not cancel: :meth:`Account.search` re-raises the cancellation instead."""

    temporary = True


class TooManyKeywords(MailstoreError):
    """A STORE/APPEND/COPY would give a message more keywords than
    :data:`~mailcore.mailstore.flags.MAX_KEYWORDS_PER_MESSAGE`, or a mailbox more distinct
    keywords than :data:`~mailcore.mailstore.flags.MAX_KEYWORDS_PER_MAILBOX`."""


class ResyncRequired(MailstoreError):
    """A journal reader fell further behind than the journal keeps for it (its size or
    age ceiling): records it has not confirmed are gone. It must copy the account afresh
    and register again with ``reset=True``."""


class UnknownReader(MailstoreError):
    """No journal reader of that name is registered."""


class ReplicaConflict(MailstoreError):
    """A peer's record cannot be applied: the UID is taken by a different message, or a
    mailbox id or name is used by another mailbox. Nothing of the record was applied."""

    def __init__(self, message: str, *, mailbox_id: int | None = None, uid: int | None = None):
        super().__init__(message)
        self.mailbox_id = mailbox_id
        self.uid = uid
